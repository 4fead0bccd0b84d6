"""Variable-length attention for packed rows without flash-attention: causal attention within each
sequence of a row, one ``scaled_dot_product_attention`` call per distinct sequence length (the
sequences of that length stacked).

Flash-attention's varlen kernel does this on a GPU. Elsewhere, transformers' SDPA and eager paths
keep packed sequences apart with a dense row x row mask, computing (and, on a CPU, storing) scores
between every pair of positions of the row, so a row must stay short. Per-sequence calls compute
only the causal triangles of the sequences (sum of L_i^2 / 2 scores instead of T^2), and let a
whole micro-batch share one row with no filler. Registered with transformers' attention and mask
interfaces under ``SEGMENT_ATTENTION``; ``use_segment_attention`` switches a model to it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, flash_attention_mask

SEGMENT_ATTENTION = "inpo_segments"


def segment_starts(position_ids: torch.Tensor) -> list[int]:
    """The index of each sequence's first token in a packed row ([1, T] position ids restarting at 0),
    and T at the end."""
    if position_ids is None or position_ids.dim() != 2 or position_ids.shape[0] != 1:
        raise ValueError(f"{SEGMENT_ATTENTION} attention needs the [1, T] position ids of one packed row, got "
                         f"{None if position_ids is None else tuple(position_ids.shape)}")
    starts = torch.nonzero(position_ids[0] == 0).flatten().tolist()
    if not starts or starts[0] != 0:
        raise ValueError(f"{SEGMENT_ATTENTION} attention: a packed row must start with position 0")
    return starts + [position_ids.shape[1]]


def segment_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                              attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                              **kwargs) -> tuple[torch.Tensor, None]:
    """Causal attention within each sequence of one packed row, as transformers' attention functions
    take it: ``query`` [1, heads, T, D], ``key``/``value`` [1, kv_heads, T, D] (grouped-query heads
    are repeated), ``position_ids`` in kwargs. Returns the output [1, T, heads, D] and no weights.
    Raises ValueError for a padded batch (an attention mask), a cache (T of keys != of queries),
    sliding windows or logit soft-capping, which it does not implement.
    """
    if attention_mask is not None or key.shape[2] != query.shape[2]:
        raise ValueError(f"{SEGMENT_ATTENTION} attention takes packed rows only: no attention mask, no cache")
    if kwargs.get("sliding_window") is not None or kwargs.get("softcap") is not None:
        raise ValueError(f"{SEGMENT_ATTENTION} attention implements neither sliding windows nor soft-capping")
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    starts = segment_starts(kwargs.get("position_ids"))
    # one call per distinct length, its sequences stacked: short sequences cost few calls
    by_length: dict[int, list[int]] = {}
    for a, b in zip(starts, starts[1:]):
        by_length.setdefault(b - a, []).append(a)
    heads, dim = query.shape[1], query.shape[3]
    indices, outputs = [], []
    for length, firsts in by_length.items():
        index = (torch.tensor(firsts, device=query.device).unsqueeze(1) + torch.arange(length, device=query.device)).flatten()

        def stacked(x: torch.Tensor) -> torch.Tensor:  # [1, heads, T, D] -> [sequences, heads, length, D]
            return x[0][:, index].view(heads, len(firsts), length, dim).transpose(0, 1)

        attended = F.scaled_dot_product_attention(stacked(query), stacked(key), stacked(value), is_causal=True,
                                                  dropout_p=dropout if module.training else 0.0, scale=scaling)
        indices.append(index)
        outputs.append(attended.transpose(0, 1).reshape(heads, -1, dim))
    output = query.new_empty(heads, query.shape[2], dim).index_copy(1, torch.cat(indices), torch.cat(outputs, dim=1))
    return output.transpose(0, 1).unsqueeze(0).contiguous(), None


AttentionInterface.register(SEGMENT_ATTENTION, segment_attention_forward)
# like flash-attention, it takes no mask for packed rows: transformers' own mask function for it
ALL_MASK_ATTENTION_FUNCTIONS.register(SEGMENT_ATTENTION, flash_attention_mask)


def use_segment_attention(model: torch.nn.Module) -> str:
    """Switch ``model`` (a transformers model; its config's ``_attn_implementation``) to segment
    attention; returns the implementation it had."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(SEGMENT_ATTENTION)
    return previous
