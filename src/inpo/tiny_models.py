"""Tiny random Hugging Face models of the classes the workflow loads, built from conf/tiny_models.yaml,
so that tests and smoke runs exercise the model code paths with no download.

    python -m inpo.tiny_models kind=pair_preference output=DIR

- ``policy``: a LlamaForCausalLM over the embedded default's word tokenizer and chat template;
- ``pair_preference``: a LlamaForCausalLM whose vocabulary adds the labels and the words of the
  pair-preference template, for ``PairPreferenceJudge``;
- ``reward_model``: a LlamaForSequenceClassification with one label and ``pad_token_id`` set.

Every vocabulary holds the task's words (``inpo.task.VOCABULARY``); other words read as ``<unk>``.
The judges' tokenizers prepend BOS when encoding, as Llama 3's does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from tokenizers import processors
from transformers import LlamaConfig, LlamaForSequenceClassification

from .config import hydra_app
from .modeling import build_llama, build_word_tokenizer, save_policy
from .task import VOCABULARY

KINDS = ("policy", "pair_preference", "reward_model")


def build_tokenizer(words: Sequence[str], add_bos: bool):
    """The word tokenizer over the task vocabulary and ``words``; ``add_bos``: encoding prepends BOS."""
    tokenizer = build_word_tokenizer([*VOCABULARY, *words])
    if add_bos:
        tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{tokenizer.bos_token} $A", pair=f"{tokenizer.bos_token} $A $B",
            special_tokens=[(tokenizer.bos_token, tokenizer.bos_token_id)],
        )
    return tokenizer


def build_model(kind: str, tokenizer, architecture: Mapping[str, Any], seed: int):
    """A randomly initialised Llama of ``kind`` sized by ``architecture`` (LlamaConfig fields)."""
    if kind != "reward_model":
        return build_llama(tokenizer, architecture, seed)
    config = LlamaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, num_labels=1,
                         **architecture)
    torch.manual_seed(seed)
    return LlamaForSequenceClassification(config)


def run(cfg: DictConfig) -> Path:
    """Build the model ``cfg.kind`` and save it, with its tokenizer, as the folder ``cfg.output``."""
    if cfg.kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {cfg.kind!r}")
    spec = cfg.models[cfg.kind]
    tokenizer = build_tokenizer(list(spec.words), spec.add_bos)
    model = build_model(cfg.kind, tokenizer, OmegaConf.to_container(cfg.architecture), cfg.seed)
    save_policy(model, tokenizer, cfg.output)
    return Path(cfg.output)


@hydra_app("tiny_models")
def main(cfg: DictConfig) -> None:
    print(f"{cfg.kind}: {run(cfg)}")


if __name__ == "__main__":
    main()
