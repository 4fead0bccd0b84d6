"""Policies as Hugging Face model folders: build the embedded default's tokenizer and tiny Llama,
load any causal LM by name or path, and encode prompts/responses with the chat template."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>"}
ROLE_TOKENS = ["<system>", "<user>", "<assistant>"]
# Roles as words, each turn ended by a space; an assistant turn closes with the EOS token so the
# model learns to stop.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<' + message['role'] + '> ' + message['content'] + ' ' }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token + ' ' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<assistant> ' }}{% endif %}"
)


def build_word_tokenizer(vocabulary: Sequence[str]) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over ``vocabulary``, with special tokens and a chat template."""
    words = list(SPECIAL_TOKENS.values()) + ROLE_TOKENS + [w for w in dict.fromkeys(vocabulary)]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIAL_TOKENS)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_llama(tokenizer: PreTrainedTokenizerFast, architecture: Mapping[str, Any], seed: int) -> LlamaForCausalLM:
    """A randomly initialised Llama sized by ``architecture`` (LlamaConfig fields) for ``tokenizer``."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **architecture,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def load_policy(path: str | os.PathLike, *, dtype: str = "auto", device: str | torch.device = "cpu",
                trust_remote_code: bool = False):
    """Load a causal LM and its tokenizer from a Hugging Face folder or hub name; returns (model, tokenizer)."""
    torch_dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as err:
        raise FileNotFoundError(f"model {str(path)!r} could not be loaded: not a model folder, or not reachable ({err})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    return model.to(device), tokenizer


def save_policy(model, tokenizer, path: str | os.PathLike, *, state_dict=None, save_function=torch.save,
                is_main_process: bool = True) -> None:
    """Save a Hugging Face folder atomically: written beside ``path``, then renamed into place.

    Under accelerate every process calls this with ``state_dict=accelerator.get_state_dict(model)``
    (gathered from ZeRO-3/FSDP shards) and its ``is_main_process``; only the main one writes.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    if is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, state_dict=state_dict, save_function=save_function, is_main_process=is_main_process,
                          safe_serialization=True)
    if not is_main_process:
        return
    tokenizer.save_pretrained(tmp)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """Token ids of a user prompt under the chat template, ending where the assistant's answer begins."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True, return_dict=False
    )


def response_ids(tokenizer, response: str) -> list[int]:
    """Token ids of a response, closed by EOS (the token that ends the assistant turn)."""
    return tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def encode(tokenizer, prompt: str, response: str) -> dict:
    """``{"ids": prompt + response token ids, "response_start": index of the first response token}``."""
    p = prompt_ids(tokenizer, prompt)
    return {"ids": p + response_ids(tokenizer, response), "response_start": len(p)}


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
