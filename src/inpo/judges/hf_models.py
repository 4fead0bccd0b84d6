"""What the Hugging Face model judges (``preference_model``, ``reward_model``) share: option
checks, loading, batched forward passes over left-padded sequences, and cutting responses to fit
``max_length``."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from inpo.logprobs import pad_sequences
from inpo.modeling import compute_dtype, default_device, load_model_weights, load_tokenizer

# Options every model judge takes; ``model`` has no default.
MODEL_OPTIONS = {"model": None, "batch_size": 8, "max_length": None, "dtype": "auto", "trust_remote_code": False}


def check_options(kind: str, options: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict:
    """``defaults`` updated with ``options``: an unknown option or a missing ``model`` is an error."""
    unknown = set(options) - set(defaults)
    if unknown:
        raise ValueError(f"judge {kind} takes options {sorted(defaults)}, got unknown {sorted(unknown)}")
    settings = {**defaults, **options}
    if not settings["model"]:
        raise ValueError(f"judge {kind} needs `model`: a hub name or a Hugging Face model folder")
    return settings


def load_model(auto_class, name: str, *, dtype: str = "auto", trust_remote_code: bool = False):
    """(model, tokenizer) from a hub name or folder, in eval mode on the default device. Raises as
    ``inpo.modeling.load_model_weights``."""
    device = default_device()
    torch_dtype = compute_dtype(dtype, device)
    tokenizer = load_tokenizer(name, trust_remote_code=trust_remote_code)
    model = load_model_weights(auto_class, name, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    return model.to(device).eval(), tokenizer


def check_batching(batch_size: int, max_length: int | None) -> None:
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_length is not None and int(max_length) < 1:
        raise ValueError(f"max_length must be >= 1 or null (no limit), got {max_length}")


def run_batches(sequences: Sequence[Sequence[int]], forward: Callable[..., torch.Tensor], *, batch_size: int,
                pad_id: int, device: torch.device, desc: str) -> torch.Tensor:
    """``forward(input_ids, attention_mask, position_ids)`` over ``sequences``; rows in input order, float32.

    Sequences run longest first (little padding within a batch, and memory peaks at once),
    left-padded so that each ends at the last position, with positions counted from its first
    token so that padding does not change the result.
    """
    if not sequences:
        return torch.empty(0)
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    rows: list[torch.Tensor | None] = [None] * len(sequences)
    with torch.inference_mode():
        for batch in tqdm(batches, desc=desc, unit="batch", disable=len(batches) < 2):
            padded = pad_sequences([sequences[i] for i in batch], [0] * len(batch), pad_id, side="left")
            mask = padded["attention_mask"].to(device)
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            out = forward(padded["input_ids"].to(device), mask, position_ids).float().cpu()
            for i, row in zip(batch, out):
                rows[i] = row
    return torch.stack(rows)


def truncate_text(tokenizer, text: str, n_tokens: int) -> str:
    """The prefix of ``text`` made of its first ``n_tokens`` tokens (cut at a token boundary)."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return text if len(offsets) <= n_tokens else text[: offsets[n_tokens][0]]


def cut_responses(tokenizer, responses: Sequence[str], excess: int, where: str) -> list[str]:
    """Shorten the responses by ``excess`` tokens in all, the longest first.

    Response i keeps min(n_i, c) tokens, c the largest cap with sum_i min(n_i, c) <= sum_i n_i - excess.
    """
    lengths = [len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses]
    target = sum(lengths) - excess
    if target < 0:
        raise ValueError(f"{where}: its conversation and the template alone exceed max_length; raise max_length")
    cap = max(c for c in range(max(lengths) + 1) if sum(min(n, c) for n in lengths) <= target)
    return [truncate_text(tokenizer, r, cap) for r in responses]


def fit_responses(encode: Callable[..., list[int]], responses: Sequence[str], tokenizer, max_length: int | None,
                  where: str) -> list[int]:
    """``encode(*responses)``, with the responses cut until it has at most ``max_length`` tokens.

    Only the responses are cut, so the end of the sequence, where the judge reads its answer, stays.
    """
    ids = encode(*responses)
    while max_length is not None and len(ids) > max_length:
        responses = cut_responses(tokenizer, responses, len(ids) - max_length, where)
        ids = encode(*responses)
    return ids
