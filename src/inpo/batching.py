"""How sequences are grouped for a forward pass: micro-batches under a token budget, and rows of a
padding-free (packed) batch. Pure functions of the sequence lengths; they return indices."""

from __future__ import annotations

import heapq
from typing import Sequence

PACKING_MODES = ("auto", "segments", "single_row", "rows", "padded")


def token_budget_batches(lengths: Sequence[int], max_tokens: int | None, max_items: int | None = None) -> list[list[int]]:
    """Consecutive groups of ``range(len(lengths))``, each holding at most ``max_tokens`` tokens (the sum of
    its lengths) and at most ``max_items`` items; an item longer than the budget forms a group of its own.
    ``None`` means no limit. The order is kept: sort the items first to group similar lengths.

    Raises ValueError for a budget or item limit below 1.
    """
    for name, limit in (("max_tokens", max_tokens), ("max_items", max_items)):
        if limit is not None and limit < 1:
            raise ValueError(f"{name} must be >= 1 or null, got {limit}")
    groups: list[list[int]] = []
    tokens = 0
    for i, length in enumerate(lengths):
        full = groups and ((max_tokens is not None and tokens + length > max_tokens)
                           or (max_items is not None and len(groups[-1]) >= max_items))
        if not groups or full:
            groups.append([])
            tokens = 0
        groups[-1].append(i)
        tokens += length
    return groups


def _lpt_rows(lengths: Sequence[int], order: list[int], n_rows: int) -> list[list[int]]:
    """Items (longest first) each into the row holding the fewest tokens so far: the LPT rule."""
    rows: list[list[int]] = [[] for _ in range(n_rows)]
    loads = [(0, r) for r in range(n_rows)]  # a heap of (tokens, row)
    for i in order:
        load, r = heapq.heappop(loads)
        rows[r].append(i)
        heapq.heappush(loads, (load + lengths[i], r))
    return [row for row in rows if row]


def balanced_rows(lengths: Sequence[int], capacity: int | None) -> list[list[int]]:
    """Rows of a packed batch, about ``max(capacity, longest)`` tokens long (one row when ``capacity``
    is None). The packed batch is as long as its longest row, so the shorter rows are filled up: of
    the row counts from ``ceil(total / max(capacity, longest))`` to twice that, the one whose rows,
    balanced by the LPT rule (longest item first, each into the row with the fewest tokens so far),
    compute the fewest positions (rows x longest row), the fewer rows on a tie. Returns the item
    indices of each row, longest first within a row.
    """
    if not lengths:
        return []
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    if capacity is None:
        return [order]
    fewest = -(-sum(lengths) // max(capacity, *lengths))

    def positions(rows: list[list[int]]) -> int:
        return len(rows) * max(sum(lengths[i] for i in row) for row in rows)

    candidates = (_lpt_rows(lengths, order, n) for n in range(fewest, min(2 * fewest, len(lengths)) + 1))
    return min(candidates, key=positions)  # min keeps the first, the fewest rows, on a tie


SHORT_SEQUENCES = 64  # tokens: below this mean length, auto packs in rows (measured on the embedded default)


def packing_mode(mode: str, attn_implementation: str | None, mean_length: float | None = None) -> str:
    """The layout a stage's ``packing`` setting means for a model whose attention is ``attn_implementation``,
    for sequences of ``mean_length`` tokens on average.

    ``auto`` is ``single_row`` under flash-attention (its varlen kernel keeps the sequences of a row
    apart) and otherwise ``segments`` (one row too, with ``inpo.attention``'s per-sequence attention),
    or ``rows`` for sequences shorter than SHORT_SEQUENCES on average, whose attention costs less than
    the calls of ``segments`` (the embedded default's train stage: 27 s in rows, 30 s in segments;
    benchmarks/vs_trl.py's sequences of 24-450 tokens: 2.9x TRL in segments, 2.3x in rows).
    ``rows`` keeps the model's SDPA or eager attention, which separates packed sequences by a dense
    row x row mask: rows about as long as the longest sequence, balanced. ``padded``: right padding.
    Raises ValueError naming the setting for an unknown mode.
    """
    if mode not in PACKING_MODES:
        raise ValueError(f"packing must be one of {PACKING_MODES}, got {mode!r}")
    if mode != "auto":
        return mode
    if (attn_implementation or "").startswith("flash"):
        return "single_row"
    return "rows" if mean_length is not None and mean_length < SHORT_SEQUENCES else "segments"
