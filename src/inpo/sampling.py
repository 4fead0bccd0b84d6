"""Generating responses from a policy: batched, seeded, with a progress bar.

The backend is chosen by the ``sampler`` config group: ``hf`` (transformers ``generate``, the
default, nothing beyond the base install) or ``vllm`` (``pip install 'inpo[vllm]'``, a CUDA GPU).
A prompt is a user message or a list of chat turns (``inpo.modeling.conversation``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from .logprobs import pad_sequences
from .modeling import compute_dtype, default_device, load_policy, prompt_ids

Prompt = str | Sequence[Mapping[str, str]]


class HFSampler:
    """Sampling with transformers ``generate`` on one device, left-padded batches."""

    def __init__(self, policy_path: str, *, batch_size: int, max_new_tokens: int, temperature: float,
                 top_p: float = 1.0, dtype: str = "auto", trust_remote_code: bool = False,
                 max_prompt_length: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"sampler.batch_size must be >= 1, got {batch_size}")
        check_sampling(max_new_tokens, temperature, top_p)
        self.max_prompt_length = max_prompt_length
        self.device = default_device()
        self.model, self.tokenizer = load_policy(policy_path, dtype=compute_dtype(dtype, self.device), device=self.device,
                                                 trust_remote_code=trust_remote_code)
        self.model.eval()
        self.batch_size, self.max_new_tokens, self.temperature, self.top_p = batch_size, max_new_tokens, temperature, top_p

    @torch.no_grad()
    def generate(self, prompts: Sequence[Prompt], n: int, *, seed: int, desc: str = "sample", offset: int = 0) -> list[list[str]]:
        """``n`` responses for each prompt (greedy if temperature is 0), as decoded text.

        ``offset`` is the index of ``prompts[0]`` in the whole prompt set: a shard's random stream
        starts at ``seed + offset``, so shards draw independently."""
        torch.manual_seed(seed + offset)
        per_batch = max(1, self.batch_size // n)
        encoded = [prompt_ids(self.tokenizer, p, self.max_prompt_length) for p in prompts]
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


class VLLMSampler:
    """Sampling with vLLM (continuous batching, paged attention) on one or several GPUs.

    Each prompt has its own seed (``seed`` + its index), so the samples do not depend on how
    vLLM batches them, nor on how the prompts are sharded over jobs.
    """

    def __init__(self, policy_path: str, *, max_new_tokens: int, temperature: float, top_p: float = 1.0,
                 dtype: str = "auto", trust_remote_code: bool = False, max_prompt_length: int | None = None,
                 tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9) -> None:
        check_sampling(max_new_tokens, temperature, top_p)
        try:
            import vllm
        except ImportError:
            raise ImportError("sampler.backend=vllm needs vLLM, which is not installed: pip install 'inpo[vllm]' "
                              "(Linux with a CUDA GPU), or use sampler=hf") from None
        self.vllm = vllm
        self.llm = vllm.LLM(model=str(policy_path), dtype="bfloat16" if dtype == "auto" else dtype,
                            trust_remote_code=trust_remote_code, tensor_parallel_size=tensor_parallel_size,
                            gpu_memory_utilization=gpu_memory_utilization)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.max_prompt_length = max_prompt_length

    def generate(self, prompts: Sequence[Prompt], n: int, *, seed: int, desc: str = "sample", offset: int = 0) -> list[list[str]]:
        """``n`` responses for each prompt; ``offset`` is the index of ``prompts[0]`` in the whole prompt set."""
        requests = [{"prompt_token_ids": prompt_ids(self.tokenizer, p, self.max_prompt_length)} for p in prompts]
        params = [self.vllm.SamplingParams(n=n, temperature=self.temperature, top_p=self.top_p,
                                           max_tokens=self.max_new_tokens, seed=seed + offset + i)
                  for i in range(len(prompts))]
        outputs = self.llm.generate(requests, params, use_tqdm=True)
        return [[o.text.strip() for o in out.outputs] for out in outputs]


def check_sampling(max_new_tokens: int, temperature: float, top_p: float) -> None:
    if max_new_tokens < 1:
        raise ValueError(f"sampler.max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"sampler.temperature must be >= 0 and sampler.top_p in (0, 1], got {temperature}, {top_p}")


SAMPLERS = {"hf": HFSampler, "vllm": VLLMSampler}


def make_sampler(policy_path: str, cfg: Mapping[str, Any]):
    """The sampler named by ``cfg.backend`` for the policy at ``policy_path``."""
    options = {k: v for k, v in cfg.items() if k != "backend"}
    if cfg["backend"] not in SAMPLERS:
        raise ValueError(f"sampler.backend must be one of {sorted(SAMPLERS)}, got {cfg['backend']!r}")
    return SAMPLERS[cfg["backend"]](policy_path, **options)
