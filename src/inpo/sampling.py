"""Generating responses from a policy: batched, seeded, with a progress bar.

The backend is chosen by the ``sampler`` config group: ``hf`` (transformers ``generate``, the
default, nothing beyond the base install) or ``vllm`` (``pip install 'inpo[vllm]'``, a CUDA GPU).
A prompt is a user message or a list of chat turns (``inpo.modeling.conversation``), cut to
``max_prompt_length`` inside its content. Every answer comes with how it ended: its finish reason
(``stop`` at one of the model's stop tokens, or ``length`` when cut at ``max_new_tokens`` or the
total ``max_length``) and its stop token, so that later stages score and train exactly what the
policy generated.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, GenerationConfig

from .logprobs import pad_sequences
from .modeling import FINISH_REASONS, compute_dtype, default_device, encode_prompt, end_of_turn_token, load_policy, token_id
from .sampler_settings import check_n, check_sampling

Prompt = str | Sequence[Mapping[str, str]]


def stop_token_ids(tokenizer, generation_eos: int | Sequence[int] | None, extra: Sequence[str | int] = ()) -> list[int]:
    """The ids at which an answer ends (sorted): the model's ``generation_config.eos_token_id`` (an
    id or a list: Llama-3-Instruct lists ``[128001, 128009]``), the tokenizer's EOS, the chat
    template's end-of-turn token (``inpo.modeling.end_of_turn_token``) and ``extra`` tokens or ids
    (``sampler.stop_tokens``, as RLHFlow's ``--eos_ids 128009``). Passing only the tokenizer's EOS
    to ``generate`` would replace the generation config's list, and a Llama 3 chat model would run
    past ``<|eot_id|>`` into a second, made-up turn (vllm-project/vllm#4180)."""
    ids = {tokenizer.eos_token_id, token_id(tokenizer, end_of_turn_token(tokenizer))}
    if generation_eos is not None:
        ids.update([generation_eos] if isinstance(generation_eos, int) else generation_eos)
    for token in extra:
        if isinstance(token, int) and not 0 <= token < len(tokenizer):
            raise ValueError(f"sampler.stop_tokens: {token} is not an id of this tokenizer (0 to {len(tokenizer) - 1})")
        ids.add(token if isinstance(token, int) else token_id(tokenizer, token))
    return sorted(i for i in ids if i is not None)


def completion_fields(tokenizer, token_ids: Sequence[int], stop_ids: Sequence[int], limit: int) -> tuple[str, str, str | None]:
    """(text, finish_reason, stop_token) of generated ``token_ids`` (which may run on past the
    answer: padding, or tokens beyond this prompt's ``limit`` of new tokens).

    The answer ends at its first stop id within ``limit`` tokens: finish_reason ``"stop"`` and that
    token's text; otherwise it was cut at the limit: ``"length"`` and None. The text is the answer's
    tokens before the stop token, special tokens included (they are part of what the policy said),
    stripped of surrounding whitespace.
    """
    tokens = list(token_ids[:limit])
    stops = set(stop_ids)
    end = next((k for k, t in enumerate(tokens) if t in stops), None)
    body = tokens if end is None else tokens[:end]
    text = tokenizer.decode(body, skip_special_tokens=False).strip()
    if end is None:
        return text, "length", None
    return text, "stop", tokenizer.convert_ids_to_tokens(tokens[end])


def answers_record(completions: Sequence[tuple[str, str, str | None]], prompt_truncated: bool) -> dict:
    """The fields a sample record gets for one prompt's answers (``inpo.records.SAMPLE``)."""
    return {"responses": [c[0] for c in completions], "finish_reasons": [c[1] for c in completions],
            "stop_tokens": [c[2] for c in completions], "prompt_truncated": prompt_truncated}


def encode_prompts(tokenizer, prompts: Sequence[Prompt], max_prompt_length: int | None, max_new_tokens: int,
                   max_length: int | None) -> tuple[list[tuple[list[int], bool]], list[int]]:
    """Each prompt's ``encode_prompt`` (ids, cut or not), and how many tokens its answer may have:
    ``max_new_tokens``, and no more than ``max_length`` minus the prompt's length (a total cap, as
    vLLM's ``max_model_len`` in the authors' sampling). Raises ValueError when a prompt leaves no
    room for an answer."""
    encoded = [encode_prompt(tokenizer, p, max_prompt_length) for p in prompts]
    limits = [max_new_tokens if max_length is None else min(max_new_tokens, max_length - len(ids)) for ids, _ in encoded]
    short = next((i for i, limit in enumerate(limits) if limit < 1), None)
    if short is not None:
        raise ValueError(f"prompt {short} has {len(encoded[short][0])} tokens, which leaves no room for an answer within "
                         f"sampler.max_length={max_length}; set sampler.max_prompt_length below it")
    return encoded, limits


class HFSampler:
    """Sampling with transformers ``generate`` on one device, left-padded batches."""

    def __init__(self, policy_path: str, *, batch_size: int, max_new_tokens: int, temperature: float,
                 top_p: float = 1.0, dtype: str = "auto", trust_remote_code: bool = False,
                 max_prompt_length: int | None = None, max_length: int | None = None,
                 stop_tokens: Sequence[str | int] = ()) -> None:
        if batch_size < 1:
            raise ValueError(f"sampler.batch_size must be >= 1, got {batch_size}")
        check_sampling(max_new_tokens, temperature, top_p, max_prompt_length, max_length)
        self.max_prompt_length, self.max_length = max_prompt_length, max_length
        self.device = default_device()
        self.model, self.tokenizer = load_policy(policy_path, dtype=compute_dtype(dtype, self.device), device=self.device,
                                                 trust_remote_code=trust_remote_code)
        self.model.eval()
        self.stop_ids = stop_token_ids(self.tokenizer, self.model.generation_config.eos_token_id, stop_tokens)
        self.batch_size, self.max_new_tokens, self.temperature, self.top_p = batch_size, max_new_tokens, temperature, top_p

    @torch.no_grad()
    def generate(self, prompts: Sequence[Prompt], n: int, *, seed: int, desc: str = "sample", offset: int = 0) -> list[dict]:
        """``n`` answers for each prompt (greedy if temperature is 0), as ``answers_record`` dicts:
        texts, finish reasons, stop tokens and whether the prompt was cut.

        ``offset`` is the index of ``prompts[0]`` in the whole prompt set: a shard's random stream
        starts at ``seed + offset``, so shards draw independently."""
        check_n(self.temperature, n)
        torch.manual_seed(seed + offset)
        per_batch = max(1, self.batch_size // n)
        encoded, limits = encode_prompts(self.tokenizer, prompts, self.max_prompt_length, self.max_new_tokens,
                                         self.max_length)
        out: list[dict] = []
        greedy = self.temperature == 0
        for start in tqdm(range(0, len(prompts), per_batch), desc=desc, unit="batch"):
            chunk = [ids for ids, _ in encoded[start : start + per_batch]]
            batch = pad_sequences(chunk, [len(c) for c in chunk], self.tokenizer.pad_token_id, side="left")
            generated = self.model.generate(
                input_ids=batch["input_ids"].to(self.device),
                attention_mask=batch["attention_mask"].to(self.device),
                do_sample=not greedy,
                temperature=None if greedy else self.temperature,
                top_p=None if greedy else self.top_p,
                top_k=None,
                num_return_sequences=n,
                max_new_tokens=max(limits[start : start + len(chunk)]),
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.stop_ids,
            )[:, batch["input_ids"].shape[1] :].tolist()
            for i in range(len(chunk)):
                k = start + i
                out.append(answers_record([completion_fields(self.tokenizer, row, self.stop_ids, limits[k])
                                           for row in generated[i * n : (i + 1) * n]], encoded[k][1]))
        return out


class VLLMSampler:
    """Sampling with vLLM (continuous batching, paged attention) on one or several GPUs.

    Each prompt has its own seed (``seed`` + its index), so the samples do not depend on how
    vLLM batches them, nor on how the prompts are sharded over jobs.
    """

    def __init__(self, policy_path: str, *, max_new_tokens: int, temperature: float, top_p: float = 1.0,
                 dtype: str = "auto", trust_remote_code: bool = False, max_prompt_length: int | None = None,
                 max_length: int | None = None, stop_tokens: Sequence[str | int] = (), tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9) -> None:
        check_sampling(max_new_tokens, temperature, top_p, max_prompt_length, max_length)
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
        self.stop_ids = stop_token_ids(self.tokenizer, generation_eos(policy_path, trust_remote_code), stop_tokens)
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.max_prompt_length, self.max_length = max_prompt_length, max_length

    def generate(self, prompts: Sequence[Prompt], n: int, *, seed: int, desc: str = "sample", offset: int = 0) -> list[dict]:
        """As ``HFSampler.generate``; ``offset`` is the index of ``prompts[0]`` in the whole prompt set."""
        check_n(self.temperature, n)
        encoded, limits = encode_prompts(self.tokenizer, prompts, self.max_prompt_length, self.max_new_tokens,
                                         self.max_length)
        requests = [{"prompt_token_ids": ids} for ids, _ in encoded]
        # stop_token_ids: vLLM stops at them besides the tokenizer's EOS and keeps them in token_ids
        params = [self.vllm.SamplingParams(n=n, temperature=self.temperature, top_p=self.top_p, max_tokens=limit,
                                           seed=seed + offset + i, stop_token_ids=self.stop_ids)
                  for i, limit in enumerate(limits)]
        outputs = self.llm.generate(requests, params, use_tqdm=True)
        return [answers_record([self.completion(o, limit) for o in out.outputs], truncated)
                for out, (_, truncated), limit in zip(outputs, encoded, limits)]

    def completion(self, output, limit: int) -> tuple[str, str, str | None]:
        """``completion_fields`` of a vLLM CompletionOutput, checked against vLLM's own finish reason."""
        text, reason, stop = completion_fields(self.tokenizer, output.token_ids, self.stop_ids, limit)
        if output.finish_reason not in FINISH_REASONS:
            raise RuntimeError(f"vLLM finished an answer with reason {output.finish_reason!r} ({output.stop_reason!r})")
        if reason == "length" and output.finish_reason == "stop":
            # a stop token vLLM left out of token_ids: stop_reason names it, None meaning the EOS
            stop_id = output.stop_reason if isinstance(output.stop_reason, int) else self.tokenizer.eos_token_id
            reason, stop = "stop", self.tokenizer.convert_ids_to_tokens(stop_id)
        return text, reason, stop


def generation_eos(policy_path: str, trust_remote_code: bool = False) -> int | list[int] | None:
    """The ``eos_token_id`` transformers' ``generate`` uses for a model: its generation_config.json's,
    else its config's (as ``GenerationConfig.from_model_config``)."""
    try:
        return GenerationConfig.from_pretrained(policy_path).eos_token_id
    except OSError:  # no generation_config.json
        return AutoConfig.from_pretrained(policy_path, trust_remote_code=trust_remote_code).eos_token_id


SAMPLERS = {"hf": HFSampler, "vllm": VLLMSampler}


def make_sampler(policy_path: str, cfg: Mapping[str, Any], n: int = 1):
    """The sampler named by ``cfg.backend`` for the policy at ``policy_path``, to give ``n`` answers
    per prompt (checked before the model loads)."""
    options = {k: v for k, v in cfg.items() if k != "backend"}
    if cfg["backend"] not in SAMPLERS:
        raise ValueError(f"sampler.backend must be one of {sorted(SAMPLERS)}, got {cfg['backend']!r}")
    check_n(cfg["temperature"], n)
    return SAMPLERS[cfg["backend"]](policy_path, **options)
