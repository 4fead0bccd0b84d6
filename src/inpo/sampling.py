"""Generating responses from a policy: batched, seeded, with a progress bar.

The backend is chosen by the ``sampler`` config group; ``hf`` (transformers ``generate``) is
the default and the only one that needs nothing beyond the base install.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from .logprobs import pad_sequences
from .modeling import default_device, load_policy, prompt_ids


class HFSampler:
    """Sampling with transformers ``generate`` on one device, left-padded batches."""

    def __init__(self, policy_path: str, *, batch_size: int, max_new_tokens: int, temperature: float,
                 top_p: float = 1.0, dtype: str = "auto", trust_remote_code: bool = False) -> None:
        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError(f"sampler.batch_size and sampler.max_new_tokens must be >= 1, got {batch_size}, {max_new_tokens}")
        if temperature < 0 or not 0 < top_p <= 1:
            raise ValueError(f"sampler.temperature must be >= 0 and sampler.top_p in (0, 1], got {temperature}, {top_p}")
        self.device = default_device()
        if dtype == "auto":
            dtype = "bfloat16" if self.device.type == "cuda" else "float32"
        self.model, self.tokenizer = load_policy(policy_path, dtype=dtype, device=self.device, trust_remote_code=trust_remote_code)
        self.model.eval()
        self.batch_size, self.max_new_tokens, self.temperature, self.top_p = batch_size, max_new_tokens, temperature, top_p

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], n: int, *, seed: int, desc: str = "sample") -> list[list[str]]:
        """``n`` responses for each prompt (greedy if temperature is 0), as decoded text."""
        torch.manual_seed(seed)
        per_batch = max(1, self.batch_size // n)
        encoded = [prompt_ids(self.tokenizer, p) for p in prompts]
        out: list[list[str]] = []
        greedy = self.temperature == 0
        for start in tqdm(range(0, len(prompts), per_batch), desc=desc, unit="batch"):
            chunk = encoded[start : start + per_batch]
            batch = pad_sequences(chunk, [len(c) for c in chunk], self.tokenizer.pad_token_id, side="left")
            generated = self.model.generate(
                input_ids=batch["input_ids"].to(self.device),
                attention_mask=batch["attention_mask"].to(self.device),
                do_sample=not greedy,
                temperature=None if greedy else self.temperature,
                top_p=None if greedy else self.top_p,
                top_k=None,
                num_return_sequences=n,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
            texts = self.tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
            out.extend([t.strip() for t in texts[i * n : (i + 1) * n]] for i in range(len(chunk)))
        return out


def make_sampler(policy_path: str, cfg: Mapping[str, Any]):
    """The sampler named by ``cfg.backend`` for the policy at ``policy_path``."""
    options = {k: v for k, v in cfg.items() if k != "backend"}
    if cfg["backend"] == "hf":
        return HFSampler(policy_path, **options)
    raise ValueError(f"sampler.backend must be 'hf', got {cfg['backend']!r}")
