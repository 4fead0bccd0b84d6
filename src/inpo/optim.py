"""The ``optim`` settings of the training stages (``sft``, ``train``), checked without importing
torch, so that the workflow can refuse a bad value before any job runs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class OptimSettings:
    """How to train; one field per knob of ``optim`` in the stage configs.

    Raises ValueError naming the setting (``optim.<name>``) when a value is out of range.
    """

    learning_rate: float
    epochs: int = 1
    batch_size: int = 8  # examples per device and micro-batch (at most, under max_tokens)
    gradient_accumulation_steps: int = 1  # an optimizer step takes batch_size x this many examples per device
    max_tokens: int | None = None  # token budget of a micro-batch: the step's examples, longest first, cut by it
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"  # auto: bf16 on a GPU that supports it, else full precision
    fused: bool = True  # torch's fused AdamW kernel where torch has one for the device (not under DeepSpeed)
    checkpoint_every: int = 50  # optimizer steps between checkpoints
    log_every: int = 10  # optimizer steps between log lines

    def __post_init__(self) -> None:
        for name in ("learning_rate", "epochs", "batch_size", "gradient_accumulation_steps", "checkpoint_every", "log_every"):
            if not getattr(self, name) > 0:
                raise ValueError(f"optim.{name} must be > 0, got {getattr(self, name)}")
        if self.max_tokens is not None and not (isinstance(self.max_tokens, int) and self.max_tokens > 0):
            raise ValueError(f"optim.max_tokens must be a positive number of tokens or null, got {self.max_tokens!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"optim.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not isinstance(self.fused, bool):
            raise ValueError(f"optim.fused must be true or false, got {self.fused!r}")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ValueError(f"optim.mixed_precision must be auto, no, bf16 or fp16, got {self.mixed_precision!r}")

    def resolved_precision(self) -> str:
        if self.mixed_precision != "auto":
            return self.mixed_precision
        import torch

        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
