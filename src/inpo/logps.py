"""Stage ``logps``: summed log-probs of chosen and rejected under pi_ref and pi_t, stored with
each pair so that training never runs the frozen models.

One batched, no-grad pass per model over the data (one pass in all when pi_t is pi_ref). Each
answer is scored as it ended: with the stop token the sampler drew, or without any end token when
it was cut at the length limit (``inpo.modeling.encode_pairs``).

    python -m inpo.logps pairs=results/iter1/pairs.jsonl ref_policy=results/sft/model \
        policy=results/sft/model output=results/iter1/scored_pairs.jsonl
"""

from __future__ import annotations

import logging
import os

import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from .config import hydra_app
from .batching import packing_mode, token_budget_batches
from .logprobs import collate_sequences, sequence_logps, set_up_packing
from .modeling import compute_dtype, default_device, encode_pairs, load_policy
from .records import PAIR, read_jsonl, write_jsonl

log = logging.getLogger(__name__)


@torch.no_grad()
def score_sequences(model, sequences: list[dict], pad_id: int, batch_size: int, chunk_size: int, desc: str, *,
                    max_tokens: int | None = None, layout: str = "padded") -> list[float]:
    """sequence_logps of every sequence, in the given order. The forward passes take the sequences
    sorted by length, at most ``batch_size`` and ``max_tokens`` tokens each (``token_budget_batches``),
    in ``layout`` (``inpo.logprobs.collate_sequences``)."""
    device = next(model.parameters()).device
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]["ids"]))
    groups = token_budget_batches([len(sequences[i]["ids"]) for i in order], max_tokens, batch_size)
    scores = [0.0] * len(sequences)
    for group in tqdm(groups, desc=desc, unit="batch"):
        index = [order[j] for j in group]
        batch = collate_sequences([sequences[i]["ids"] for i in index], [sequences[i]["response_start"] for i in index],
                                  pad_id, layout)
        batch = {k: v.to(device) for k, v in batch.items()}
        for i, value in zip(index, sequence_logps(model, batch, chunk_size=chunk_size).tolist()):
            scores[i] = value
    return scores


def run(cfg: DictConfig) -> list[dict]:
    if cfg.batch_size < 1 or cfg.chunk_size < 1:
        raise ValueError(f"batch_size and chunk_size must be >= 1, got {cfg.batch_size}, {cfg.chunk_size}")
    if cfg.max_tokens is not None and cfg.max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1 or null, got {cfg.max_tokens}")
    packing_mode(cfg.packing, None)  # an unknown mode fails here, before any work
    pairs = read_jsonl(cfg.pairs, PAIR)
    device = default_device()
    dtype = compute_dtype(cfg.dtype, device)
    same = os.path.realpath(str(cfg.policy)) == os.path.realpath(str(cfg.ref_policy))
    scores = {}
    for role, path in [("ref", cfg.ref_policy)] + ([] if same else [("prev", cfg.policy)]):
        model, tokenizer = load_policy(path, dtype=dtype, device=device, trust_remote_code=cfg.trust_remote_code)
        model.eval()
        encoded, counts = encode_pairs(tokenizer, pairs, max_length=cfg.max_length, max_prompt_length=cfg.max_prompt_length)
        sequences = [e[side] for e in encoded for side in ("chosen", "rejected")]
        layout = set_up_packing(model, cfg.packing, [s["ids"] for s in sequences], [s["response_start"] for s in sequences],
                                tokenizer.pad_token_id)
        scores[role] = score_sequences(model, sequences, tokenizer.pad_token_id, cfg.batch_size, cfg.chunk_size,
                                       f"logps {role}", max_tokens=cfg.max_tokens, layout=layout)
        del model
    scores.setdefault("prev", scores["ref"])
    log.info("%d pairs: %d prompts cut to max_prompt_length, %d answers scored without an end token (cut by the "
             "sampler), %d answers cut to max_length", len(pairs), counts["prompts_truncated"],
             counts["answers_without_end_token"], counts["responses_truncated"])
    records = [
        {**pair,
         "ref_chosen_logp": scores["ref"][2 * i], "ref_rejected_logp": scores["ref"][2 * i + 1],
         "prev_chosen_logp": scores["prev"][2 * i], "prev_rejected_logp": scores["prev"][2 * i + 1],
         "max_length": cfg.max_length, "max_prompt_length": cfg.max_prompt_length}
        for i, pair in enumerate(pairs)
    ]
    write_jsonl(cfg.output, records)
    return records


@hydra_app("logps")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
