"""Checks of sampler settings, without torch: the samplers run them before loading a model, and
the workflow before planning any job (``inpo.workflow_config``)."""

from __future__ import annotations


def check_sampling(max_new_tokens: int, temperature: float, top_p: float, max_prompt_length: int | None = None,
                   max_length: int | None = None) -> None:
    """Reject sampler settings that cannot run, naming them."""
    if max_new_tokens < 1:
        raise ValueError(f"sampler.max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"sampler.temperature must be >= 0 and sampler.top_p in (0, 1], got {temperature}, {top_p}")
    if max_length is not None and max_prompt_length is not None and not max_prompt_length < max_length:
        raise ValueError(f"sampler.max_prompt_length ({max_prompt_length}) must be below sampler.max_length "
                         f"({max_length}), or no prompt leaves room for an answer")


def check_n(temperature: float, n: int) -> None:
    """Greedy decoding has one answer per prompt: several would be copies, not samples of pi."""
    if n < 1:
        raise ValueError(f"n_samples (answers per prompt) must be >= 1, got {n}")
    if temperature == 0 and n > 1:
        raise ValueError(f"sampler.temperature=0 is greedy decoding, which gives one answer per prompt, but {n} were "
                         f"asked for (n_samples); sample with temperature > 0, or ask for one answer")


def check_hf_batching(batch_size: int, batch_tokens: int | None, static_cache: bool, compile: bool) -> None:
    """Reject the HF sampler's batching settings that cannot run, naming them (that ``static_cache``
    and ``compile`` need a CUDA GPU is checked where the device is known)."""
    if batch_size < 1 or batch_tokens is not None and batch_tokens < 1:
        raise ValueError(f"sampler.batch_size must be >= 1 and sampler.batch_tokens >= 1 or null, got {batch_size}, "
                         f"{batch_tokens}")
    if compile and not static_cache:
        raise ValueError("sampler.compile=true needs sampler.static_cache=true: a compiled decode step (CUDA graphs) "
                         "needs the fixed shapes of a static cache")
