"""Summed log-probabilities of responses under a causal LM, memory-bounded.

    logp(y | x) = sum_{t in response} log pi(y_t | x, y_<t)

The full [batch, length, vocab] log-softmax is never built: the LM head runs only on the
hidden states that predict response tokens, in chunks of ``chunk_size`` tokens, and each
token's log-probability is ``logit[target] - logsumexp(logits)`` in float32. Under autograd
each chunk is checkpointed, so the backward pass recomputes its logits instead of keeping them.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.utils.checkpoint import checkpoint

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


def final_hidden_states(model: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor:
    """The decoder's output [B, L, H] (after the final norm), from a forward of the whole model.

    Going through the model's own forward keeps what wrappers do there (accelerate's autocast,
    DDP's and DeepSpeed's bookkeeping); ``logits_to_keep`` with no position makes its LM head
    compute nothing, and a hook on the decoder catches the hidden states.
    """
    captured = []
    handle = unwrapped(model).get_decoder().register_forward_hook(lambda module, args, output: captured.append(output[0]))
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
              logits_to_keep=torch.zeros(0, dtype=torch.long, device=input_ids.device))
    finally:
        handle.remove()
    return captured[0]


def sequence_logps(
    model: torch.nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    response_mask: Tensor,
    *,
    chunk_size: int = 1024,
) -> Tensor:
    """Sum of log pi(token | prefix) over the tokens where ``response_mask`` is 1, per sequence.

    All inputs are [B, L]; padding may be on either side (positions are counted from the first
    real token, so a left-padded sequence scores like the unpadded one). Returns float32 [B].
    """
    if input_ids.shape != attention_mask.shape or input_ids.shape != response_mask.shape:
        raise ValueError(
            f"input_ids {tuple(input_ids.shape)}, attention_mask {tuple(attention_mask.shape)} and "
            f"response_mask {tuple(response_mask.shape)} must have the same shape"
        )
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    hidden = final_hidden_states(model, input_ids, attention_mask, position_ids)
    # hidden[:, t] predicts token t + 1.
    scored = response_mask[:, 1:].bool() & attention_mask[:, 1:].bool()
    batch_size, length = input_ids.shape
    row_of_token = torch.arange(batch_size, device=input_ids.device).unsqueeze(1).expand(batch_size, length - 1)[scored]
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
    return torch.zeros(batch_size, dtype=torch.float32, device=input_ids.device).index_add(0, row_of_token, token_logps)


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
