"""Summed log-probabilities of responses under a causal LM, memory-bounded.

    logp(y | x) = sum_{t in response} log pi(y_t | x, y_<t)

The full [batch, length, vocab] log-softmax is never built: the LM head runs only on the
hidden states that predict response tokens, in chunks of ``chunk_size`` tokens, and each
token's log-probability is ``logit[target] - logsumexp(logits)`` in float32. Under autograd
each chunk is checkpointed, so the backward pass recomputes its logits instead of keeping them.

A batch is padded (``pad_sequences``) or padding-free (``pack_sequences``: several sequences share a
row, their position ids restart at 0, and transformers keeps attention within each sequence);
both give the same log-probs (``check_packing`` verifies it for a model before a stage packs).
"""

from __future__ import annotations

import contextlib
from typing import Mapping, Sequence

import torch
from torch.utils.checkpoint import checkpoint

from .attention import SEGMENT_ATTENTION
from .batching import balanced_rows, packing_mode

Tensor = torch.Tensor


def _token_logps(head: torch.nn.Module, hidden: Tensor, targets: Tensor, softcap: float | None) -> Tensor:
    """log softmax(head(hidden))[target] for each row, computed in float32."""
    logits = head(hidden.to(head.weight.dtype)).float()
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


def unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face model inside a DDP or DeepSpeed wrapper (they keep it as ``.module``)."""
    return getattr(model, "module", model)


def final_hidden_states(model: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor | None, position_ids: Tensor) -> Tensor:
    """The decoder's output [B, L, H] (after the final norm), from a forward of the whole model.

    Going through the model's own forward keeps what wrappers do there (accelerate's autocast,
    DDP's and DeepSpeed's bookkeeping); ``logits_to_keep`` with no position makes its LM head
    compute nothing, and a hook on the decoder catches the hidden states. Without a cache and with
    ``attention_mask`` None, transformers reads sequences packed into a row from ``position_ids``
    that restart at 0 (``masking_utils.find_packed_sequence_indices``; flash-attention's varlen path).
    """
    captured = []
    handle = unwrapped(model).get_decoder().register_forward_hook(lambda module, args, output: captured.append(output[0]))
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
              logits_to_keep=torch.zeros(0, dtype=torch.long, device=input_ids.device))
    finally:
        handle.remove()
    return captured[0]


def sequence_logps(model: torch.nn.Module, batch: Mapping[str, Tensor], *, chunk_size: int = 1024) -> Tensor:
    """Sum of log pi(token | prefix) over the response tokens of each sequence of ``batch``.

    ``batch`` is padded (``pad_sequences``: ``input_ids``, ``attention_mask``, ``response_mask``, all
    [B, L]; padding on either side, positions counted from the first real token) or packed
    (``pack_sequences``: ``input_ids``, ``position_ids``, ``response_mask``, ``sequence_ids``, all
    [R, T]). Returns float32 [number of sequences], in the order the sequences were given.
    Raises ValueError when the tensors' shapes differ.
    """
    input_ids, response_mask = batch["input_ids"], batch["response_mask"]
    packed = "sequence_ids" in batch
    other = batch["sequence_ids"] if packed else batch["attention_mask"]
    if not input_ids.shape == other.shape == response_mask.shape:
        raise ValueError(f"input_ids {tuple(input_ids.shape)}, {'sequence_ids' if packed else 'attention_mask'} "
                         f"{tuple(other.shape)} and response_mask {tuple(response_mask.shape)} must have the same shape")
    if packed:
        sequence_ids = batch["sequence_ids"]
        hidden = final_hidden_states(model, input_ids, None, batch["position_ids"])
        # hidden[:, t] predicts token t + 1, which it may score only within one sequence
        scored = response_mask[:, 1:].bool() & (sequence_ids[:, 1:] == sequence_ids[:, :-1])
        owner = sequence_ids[:, 1:][scored]
        n_sequences = int(sequence_ids.max()) + 1
    else:
        attention_mask = batch["attention_mask"]
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        hidden = final_hidden_states(model, input_ids, attention_mask, position_ids)
        scored = response_mask[:, 1:].bool() & attention_mask[:, 1:].bool()
        n_sequences, length = input_ids.shape
        owner = torch.arange(n_sequences, device=input_ids.device).unsqueeze(1).expand(n_sequences, length - 1)[scored]
    predicting = hidden[:, :-1][scored]
    targets = input_ids[:, 1:][scored]

    head = unwrapped(model).get_output_embeddings()
    softcap = getattr(unwrapped(model).config, "final_logit_softcapping", None)
    pieces = []
    for start in range(0, targets.numel(), chunk_size):
        args = (head, predicting[start : start + chunk_size], targets[start : start + chunk_size], softcap)
        if torch.is_grad_enabled():
            pieces.append(checkpoint(_token_logps, *args, use_reentrant=False))
        else:
            pieces.append(_token_logps(*args))
    token_logps = torch.cat(pieces) if pieces else hidden.new_zeros(0, dtype=torch.float32)
    return torch.zeros(n_sequences, dtype=torch.float32, device=input_ids.device).index_add(0, owner, token_logps)


def pad_sequences(
    sequences: Sequence[Sequence[int]],
    response_starts: Sequence[int],
    pad_id: int,
    *,
    side: str = "right",
) -> dict[str, Tensor]:
    """Pad token lists into ``input_ids``, ``attention_mask`` and ``response_mask`` tensors.

    ``response_starts[i]`` is the index in ``sequences[i]`` of its first response token.
    """
    if side not in ("left", "right"):
        raise ValueError(f"padding side must be 'left' or 'right', got {side!r}")
    length = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    response_mask = torch.zeros_like(input_ids)
    for i, (seq, start) in enumerate(zip(sequences, response_starts)):
        offset = length - len(seq) if side == "left" else 0
        input_ids[i, offset : offset + len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask[i, offset : offset + len(seq)] = 1
        response_mask[i, offset + start : offset + len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "response_mask": response_mask}


def pack_sequences(
    sequences: Sequence[Sequence[int]],
    response_starts: Sequence[int],
    pad_id: int,
    rows: Sequence[Sequence[int]] | None = None,
) -> dict[str, Tensor]:
    """Pack token lists into rows without padding between them: ``rows`` holds the indices of the
    sequences of each row (``batching.balanced_rows``; None: one row for all).

    Returns ``input_ids``, ``position_ids`` (restarting at 0 with each sequence), ``response_mask``
    and ``sequence_ids`` (the index in ``sequences`` of each token's sequence), all [R, T]. A row
    shorter than the longest is filled up with ``pad_id`` tokens that form a sequence of their own
    (positions from 0, ``sequence_ids`` -1), which no real token attends to and nothing scores.
    """
    rows = rows if rows is not None else [list(range(len(sequences)))]
    length = max(sum(len(sequences[i]) for i in row) for row in rows)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    position_ids = torch.zeros_like(input_ids)
    response_mask = torch.zeros_like(input_ids)
    sequence_ids = torch.full_like(input_ids, -1)
    for r, row in enumerate(rows):
        offset = 0
        for i in row:
            n = len(sequences[i])
            input_ids[r, offset : offset + n] = torch.tensor(sequences[i], dtype=torch.long)
            position_ids[r, offset : offset + n] = torch.arange(n)
            response_mask[r, offset + response_starts[i] : offset + n] = 1
            sequence_ids[r, offset : offset + n] = i
            offset += n
        position_ids[r, offset:] = torch.arange(length - offset)
    return {"input_ids": input_ids, "position_ids": position_ids, "response_mask": response_mask,
            "sequence_ids": sequence_ids}


def collate_sequences(sequences: Sequence[Sequence[int]], response_starts: Sequence[int], pad_id: int,
                      layout: str) -> dict[str, Tensor]:
    """The batch ``sequence_logps`` takes, in a layout of ``batching.packing_mode``: ``padded``
    (right padding), ``rows`` (packed, about as many rows as it takes sequences as long as the
    longest, balanced), ``single_row`` or ``segments`` (packed in one row)."""
    if layout == "padded":
        return pad_sequences(sequences, response_starts, pad_id)
    if layout not in ("rows", "single_row", "segments"):
        raise ValueError(f"layout must be padded, rows, single_row or segments, got {layout!r}")
    rows = balanced_rows([len(s) for s in sequences], 0 if layout == "rows" else None)
    return pack_sequences(sequences, response_starts, pad_id, rows)


class PackingError(RuntimeError):
    pass


@torch.no_grad()
def check_packing(model: torch.nn.Module, sequences: Sequence[Sequence[int]], response_starts: Sequence[int],
                  pad_id: int, layout: str, *, tolerance: float | None = None) -> float:
    """Score up to four ``sequences`` packed in ``layout`` and padded, and raise PackingError when they
    differ by more than ``tolerance`` nats per response token (default: 1e-4 for a float32 or float64
    model, 5e-2 for a half-precision one).

    A model whose attention ignores the restarting position ids (a custom architecture, flash-attention
    given several rows) lets packed sequences attend to each other: its log-probs would be silently
    wrong, so a stage checks before it packs. In ``rows`` the first two sequences share a row and the
    others a second one, filled up to the first's length; ``segments`` packs them under
    ``inpo.attention``'s segment attention and scores the padded batch under the model's own.
    Returns the largest difference per token.
    """
    sequences, response_starts = list(sequences[:4]), list(response_starts[:4])
    if layout == "padded":
        return 0.0
    lengths = [len(s) for s in sequences]
    n = len(sequences)
    rows = [row for row in (list(range(min(2, n))), list(range(2, n))) if row] if layout == "rows" else None
    was_training = model.training
    model.eval()
    try:
        padded = sequence_logps(model, pad_sequences(sequences, response_starts, pad_id))
        with attention_implementation(model, SEGMENT_ATTENTION if layout == "segments" else None):
            packed = sequence_logps(model, pack_sequences(sequences, response_starts, pad_id, rows))
    finally:
        model.train(was_training)
    tokens = torch.tensor([max(n - s, 1) for n, s in zip(lengths, response_starts)], dtype=torch.float32)
    difference = float(((packed - padded).abs().cpu() / tokens).max())
    dtype = next(unwrapped(model).parameters()).dtype
    limit = tolerance if tolerance is not None else (1e-4 if dtype in (torch.float32, torch.float64) else 5e-2)
    if not difference <= limit:
        config = unwrapped(model).config
        raise PackingError(
            f"packed sequences score differently from padded ones ({difference:.3g} nats per response token, more than "
            f"{limit:g}): {type(unwrapped(model)).__name__} with attention {getattr(config, '_attn_implementation', None)!r} "
            f"does not keep packed sequences apart (layout {layout!r}); set packing=padded for this model")
    return difference


@contextlib.contextmanager
def attention_implementation(model: torch.nn.Module, name: str | None):
    """Run ``model`` with the attention implementation ``name`` inside the block (None: unchanged)."""
    previous = unwrapped(model).config._attn_implementation
    if name is not None:
        unwrapped(model).set_attn_implementation(name)
    try:
        yield
    finally:
        if name is not None:
            unwrapped(model).set_attn_implementation(previous)


def set_up_packing(model: torch.nn.Module, mode: str, sequences: Sequence[Sequence[int]], response_starts: Sequence[int],
                   pad_id: int, *, check: bool = True) -> str:
    """The layout of a stage's ``packing`` setting for ``model`` (``batching.packing_mode``), checked on
    the first ``sequences`` (``check_packing``; pass ``check=False`` for a model sharded over processes,
    which cannot run a forward yet: its architecture was checked by the ``logps`` stage). Under
    ``segments`` the model is switched to ``inpo.attention``'s segment attention (the implementation
    is not saved with the model). Raises PackingError as ``check_packing``."""
    layout = packing_mode(mode, unwrapped(model).config._attn_implementation,
                          sum(map(len, sequences)) / max(len(sequences), 1))
    if check:
        check_packing(model, sequences, response_starts, pad_id, layout)
    if layout == "segments":
        unwrapped(model).set_attn_implementation(SEGMENT_ATTENTION)
    return layout
