"""The HF sampler's own decode loop (inpo.sampling.HFSampler): greedy answers as transformers'
generate gives them, answers in prompt order and draws that depend on the seed and the prompt's
index only (not on batch sizes, token budgets or shards), top-p as transformers filters, and the
batching settings checked."""


import pytest
import torch

from inpo import sampling
from inpo.config import load_config
from inpo.modeling import load_policy, prompt_ids
from inpo.sampling import HFSampler, completion_fields, draw_tokens, make_sampler

# prompts of 5 to 20 tokens under the chat template, one of them two turns long
PROMPTS = ["sort 2 1", "sort 7 3 9 1 0 4 4 8 2 6 5 1 9", "sort 5", "here is the list you asked for : 3 1 2",
           [{"role": "user", "content": "sort 3 1"}, {"role": "assistant", "content": "( 1 3 )"},
            {"role": "user", "content": "sort 9 8 7 6 5 4"}], "sort 6 6 1 0"]
STOPS = "['.','is','sort']"  # beside <eos> and <system> (the generation config's): answers end at different lengths


@pytest.fixture(scope="module")
def policy(two_stop_policy):
    return str(two_stop_policy)


def sampler_config(**settings):
    overrides = ["policy=x", "prompts=x", "output=x", *(f"sampler.{k}={v}" for k, v in settings.items())]
    return load_config("sample", overrides).sampler


def counting(mp, owner, name):
    """Count the calls of ``owner.name``, a function or method, which still runs."""
    calls = []
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    mp.setattr(owner, name, counted)
    return calls


def test_greedy_answers_are_generates_token_for_token_however_they_are_batched(policy, monkeypatch):
    """Against transformers' generate on each prompt alone (its own limit: max_new_tokens, or what
    max_length leaves; the same stop ids), while the sampler batches, refills and shrinks batches."""
    joins, selects = counting(monkeypatch, sampling, "join"), counting(monkeypatch, sampling.Batch, "select")
    model, tokenizer = load_policy(policy)
    reference = None
    for batching in ({"batch_size": 512}, {"batch_size": 2}, {"batch_size": 3, "batch_tokens": 50}, {"batch_size": 1}):
        sampler = make_sampler(policy, sampler_config(temperature=0, max_new_tokens=10, max_length=24,
                                                      stop_tokens=STOPS, **batching))
        answers = sampler.generate(PROMPTS, 1, seed=0)
        if reference is None:
            reference = []
            for prompt in PROMPTS:
                ids = prompt_ids(tokenizer, prompt)
                limit = min(10, 24 - len(ids))
                out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                     do_sample=False, max_new_tokens=limit, eos_token_id=sampler.stop_ids,
                                     pad_token_id=tokenizer.pad_token_id)
                reference.append(completion_fields(tokenizer, out[0, len(ids):].tolist(), sampler.stop_ids, limit))
        assert [(a["responses"][0], a["finish_reasons"][0], a["stop_tokens"][0]) for a in answers] == reference, batching
        assert all(a["prompt_truncated"] is False for a in answers)
    # the answers end in every way, at different lengths: at once, at three different stop tokens, cut at
    # max_new_tokens, and cut where max_length leaves less (the second prompt: 17 tokens, so 7)
    assert sorted((len(r[0].split()), r[1], r[2]) for r in reference) == [
        (0, "stop", "sort"), (2, "stop", "is"), (3, "stop", "is"), (6, "stop", "."), (7, "length", None),
        (10, "length", None)]
    assert joins and selects  # prompts joined running batches, and ended answers left them


def test_samples_depend_on_the_seed_and_the_prompt_index_only(policy, monkeypatch):
    """The same seed gives the same answers whatever the batch size or token budget; a shard
    (``offset``) gives what the whole run gives its prompts; and the token budget is kept."""
    seen = []
    draw = HFSampler.draw
    monkeypatch.setattr(HFSampler, "draw", lambda self, batch: seen.append(
        (len(batch.answers), max(a.size for a in batch.answers))) or draw(self, batch))
    settings = {"temperature": 1.0, "top_p": 0.9, "max_new_tokens": 8, "stop_tokens": STOPS}
    runs = []
    for batching in ({"batch_size": 512, "batch_tokens": "null"}, {"batch_size": 3}, {"batch_size": 6, "batch_tokens": 90}):
        sampler = make_sampler(policy, sampler_config(**settings, **batching), 3)
        runs.append(sampler.generate(PROMPTS, 3, seed=11))
        if batching["batch_size"] == 6:  # two prompts' answers only while 6 x the largest prompt + 8 <= 90
            assert seen[0] == (3, 20 + 8) and max(rows for rows, _ in seen) == 6
            assert all(rows * size <= 90 for rows, size in seen)
        seen.clear()
    assert runs[0] == runs[1] == runs[2]
    assert sampler.generate(PROMPTS[3:], 3, seed=11, offset=3) == runs[0][3:]
    other = sampler.generate(PROMPTS, 3, seed=12)
    assert other != runs[0]
    # the 3 answers of a prompt are 3 draws, not copies (but for the last prompt, whose first token's nucleus
    # at top_p 0.9 is 'sort' alone, a stop token)
    assert [len(set(r["responses"])) > 1 for r in runs[0]] == [True] * 5 + [False]


def test_each_answer_is_drawn_with_its_prompts_own_random_numbers(policy):
    """Answer j of prompt k, from a plain loop: the model on the whole unpadded sequence at each
    step, the token drawn (draw_tokens) with row j of torch.rand(n, limit) under the seed
    seed + k, until a stop id or the limit."""
    sampler = make_sampler(policy, sampler_config(temperature=0.8, top_p=0.95, max_new_tokens=6, stop_tokens=STOPS,
                                                  batch_size=4), 2)
    answers = sampler.generate(PROMPTS, 2, seed=5)
    stops = set(sampler.stop_ids)
    for k, prompt in enumerate(PROMPTS):
        ids = prompt_ids(sampler.tokenizer, prompt)
        uniforms = torch.rand(2, 6, generator=torch.Generator().manual_seed(5 + k))
        for j in range(2):
            tokens = []
            while not tokens or (tokens[-1] not in stops and len(tokens) < 6):
                with torch.no_grad():
                    logits = sampler.model(torch.tensor([ids + tokens])).logits[:, -1].float()
                tokens.append(draw_tokens(logits, 0.8, 0.95, uniforms[j, len(tokens)][None]).item())
            expected = completion_fields(sampler.tokenizer, tokens, sampler.stop_ids, 6)
            assert (answers[k]["responses"][j], answers[k]["finish_reasons"][j], answers[k]["stop_tokens"][j]) == expected


def test_top_p_keeps_the_most_likely_tokens_up_to_p_and_draws_in_proportion():
    """On a 6-token vocabulary, against a direct computation: the kept tokens are the most likely
    ones until their probability (at the temperature) reaches top_p; each is drawn in proportion
    to its probability among them; the others never."""
    logits = torch.tensor([[1.0, 3.0, -1.0, 2.5, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0, 5.0]])
    grid = (torch.arange(20_000) + 0.5) / 20_000  # uniform numbers spread evenly over [0, 1)
    for temperature, top_p in ((1.0, 1.0), (0.7, 0.8), (1.5, 0.5), (1.0, 0.05)):
        for row in logits:
            probs = (row / temperature).softmax(-1)
            order = probs.argsort(descending=True)
            mass_before = probs[order].cumsum(0) - probs[order]
            kept = order[mass_before < top_p]  # the most likely tokens, up to and including the one reaching top_p
            expected = torch.zeros(6)
            expected[kept] = probs[kept] / probs[kept].sum()
            drawn = draw_tokens(row.expand(len(grid), 6), temperature, top_p, grid)
            frequencies = torch.bincount(drawn, minlength=6) / len(grid)
            assert torch.allclose(frequencies, expected, atol=1e-4), (temperature, top_p, frequencies, expected)
    assert draw_tokens(logits, 0, 1.0, None).tolist() == [1, 5]  # greedy: the argmax


def test_a_static_cache_gives_the_dynamic_caches_answers(policy):
    """The static-cache path (a CUDA option; here forced on the CPU, which the setting refuses)."""
    dynamic = make_sampler(policy, sampler_config(temperature=0.9, max_new_tokens=8, stop_tokens=STOPS, batch_size=6), 2)
    static = make_sampler(policy, sampler_config(temperature=0.9, max_new_tokens=8, stop_tokens=STOPS, batch_size=6), 2)
    static.static_cache = True
    assert static.generate(PROMPTS, 2, seed=3) == dynamic.generate(PROMPTS, 2, seed=3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="static_cache and compile are CUDA options")
def test_a_compiled_static_decode_step_gives_the_same_greedy_answers(policy):
    settings = {"temperature": 0, "max_new_tokens": 8, "stop_tokens": STOPS, "dtype": "float32"}
    compiled = make_sampler(policy, sampler_config(**settings, static_cache="true", compile="true"))
    plain = make_sampler(policy, sampler_config(**settings))
    assert compiled.generate(PROMPTS, 1, seed=0) == plain.generate(PROMPTS, 1, seed=0)


def test_batching_settings_are_checked_before_the_model_loads():
    with pytest.raises(ValueError, match="sampler.compile=true needs sampler.static_cache=true"):
        make_sampler("no/such/model", sampler_config(compile="true"))
    with pytest.raises(ValueError, match="sampler.batch_size must be >= 1 and sampler.batch_tokens >= 1 or null, got 8, 0"):
        make_sampler("no/such/model", sampler_config(batch_size=8, batch_tokens=0))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sampler.static_cache and sampler.compile are for a CUDA GPU, and this "
                                             "sampler runs on cpu: set them to false"):
            make_sampler("no/such/model", sampler_config(static_cache="true"))
