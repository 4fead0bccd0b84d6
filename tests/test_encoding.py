"""How sequences are built from chat turns and how answers end: prompt truncation inside the
content, the end-of-turn token, the sampler's stop ids and finish reasons, and the tokens logps and
train score for finished and cut answers."""


import pytest
import torch

from inpo.config import load_config
from inpo.modeling import (build_word_tokenizer, encode, encode_pairs, encode_prompt, end_of_turn_token, load_policy,
                           prompt_ids)
from inpo.sampling import make_sampler
from inpo.task import VOCABULARY

LLAMA3_LIKE = (  # Llama 3's chat template's layout, on the word tokenizer's special words
    "{{ bos_token }}{% for m in messages %}{{ '<start> ' + m['role'] + ' <end> ' + m['content'] + ' <eot> ' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start> assistant <end> ' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    return build_word_tokenizer(VOCABULARY)


@pytest.fixture(scope="module")
def policy(two_stop_policy):
    return two_stop_policy


def words(tokenizer, ids):
    return tokenizer.convert_ids_to_tokens(ids)


def template(tokenizer, messages, **kwargs):
    return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False, **kwargs)


def user(content):
    return {"role": "user", "content": content}


def assistant(content):
    return {"role": "assistant", "content": content}


def test_a_long_prompt_keeps_bos_and_headers_and_loses_the_start_of_its_content(tokenizer):
    """The case prompt-truncation-drops-bos: max_length=20, max_prompt_length=8."""
    prompt = "sort " + " ".join("3917" * 10)
    cut = encode(tokenizer, prompt, "( 1 3 7 9 )", max_length=20, max_prompt_length=8)
    assert words(tokenizer, cut["ids"]) == ["<bos>", "<user>", *prompt.split()[-5:], "<assistant>",
                                           "(", "1", "3", "7", "9", ")", "<eos>"]
    assert cut["prompt_truncated"] and not cut["response_truncated"] and cut["response_start"] == 8
    assert encode_prompt(tokenizer, "sort 3 1", 8) == (template(tokenizer, [user("sort 3 1")], add_generation_prompt=True), False)


def test_the_oldest_turns_go_first_then_the_start_of_the_oldest_kept_turn(tokenizer):
    system = {"role": "system", "content": "sure"}
    turns = [system, user("sort 3 1 2"), assistant("( 1 2 3 )"), user("sort 9 8 7 6 5")]
    full = template(tokenizer, turns, add_generation_prompt=True)
    # room for the system turn and the whole last question: the first exchange goes, the system turn stays
    last = [system, user("sort 9 8 7 6 5")]
    assert prompt_ids(tokenizer, turns, len(full) - 1) == template(tokenizer, last, add_generation_prompt=True)
    # two tokens fewer: the question loses its first two words, never its end or the headers
    short = template(tokenizer, last, add_generation_prompt=True)
    assert prompt_ids(tokenizer, turns, len(short) - 2) == template(tokenizer, [system, user("8 7 6 5")],
                                                                    add_generation_prompt=True)
    # an assistant turn never opens what is kept
    no_system = turns[1:]
    one_exchange = template(tokenizer, [assistant("( 1 2 3 )"), user("sort 9 8 7 6 5")], add_generation_prompt=True)
    assert prompt_ids(tokenizer, no_system, len(one_exchange)) == template(tokenizer, [user("sort 9 8 7 6 5")],
                                                                          add_generation_prompt=True)
    with pytest.raises(ValueError, match="max_prompt_length=4 leaves no room for the question"):
        prompt_ids(tokenizer, turns, 4)


def test_the_end_of_turn_token_is_what_the_template_writes_after_an_answer():
    tokenizer = build_word_tokenizer([*VOCABULARY, "<start>", "<end>", "<eot>", "assistant", "user"])
    assert end_of_turn_token(tokenizer) == "<eos>"
    tokenizer.chat_template = LLAMA3_LIKE
    assert end_of_turn_token(tokenizer) == "<eot>"
    finished = encode(tokenizer, "sort 2 1", "( 1 2 )")
    assert words(tokenizer, finished["ids"]) == words(tokenizer, template(tokenizer, [user("sort 2 1"), assistant("( 1 2 )")]))


def test_answers_are_closed_by_the_token_they_ended_with_and_cut_ones_by_none(tokenizer):
    pair = {"id": "a", "prompt": "sort 2 1", "chosen": "( 1 2 )", "rejected": "( 2",
            "chosen_finish_reason": "stop", "chosen_stop_token": "<system>",
            "rejected_finish_reason": "length", "rejected_stop_token": None}
    (sides,), counts = encode_pairs(tokenizer, [pair, ][:1])
    prompt = template(tokenizer, [user("sort 2 1")], add_generation_prompt=True)
    assert words(tokenizer, sides["chosen"]["ids"]) == words(tokenizer, prompt) + ["(", "1", "2", ")", "<system>"]
    assert words(tokenizer, sides["rejected"]["ids"]) == words(tokenizer, prompt) + ["(", "2"]
    assert counts == {"prompts_truncated": 0, "answers_without_end_token": 1, "responses_truncated": 0}
    # a pair in TRL's format (no finish reasons) holds finished answers, closed as the template closes a turn
    plain = {k: pair[k] for k in ("id", "prompt", "chosen", "rejected")}
    (sides,), counts = encode_pairs(tokenizer, [plain], max_length=len(prompt) + 3)
    assert sides["chosen"]["ids"] == template(tokenizer, [user("sort 2 1"), assistant("( 1 2 )")])[: len(prompt) + 3]
    assert sides["rejected"]["ids"] == template(tokenizer, [user("sort 2 1"), assistant("( 2")])
    assert counts == {"prompts_truncated": 0, "answers_without_end_token": 0, "responses_truncated": 1}
    with pytest.raises(ValueError, match="chosen_finish_reason is 'stop' but chosen_stop_token is None"):
        encode_pairs(tokenizer, [{**pair, "chosen_stop_token": None}])


def greedy_reference(model, tokenizer, prompt, max_new_tokens):
    """What transformers' generate gives with the model's own generation config (its stop ids)."""
    ids = prompt_ids(tokenizer, prompt)
    out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=max_new_tokens,
                         pad_token_id=tokenizer.pad_token_id)
    return out[0, len(ids):].tolist()


def sampler_config(**settings):
    overrides = ["policy=x", "prompts=x", "output=x", *(f"sampler.{k}={v}" for k, v in settings.items())]
    return load_config("sample", overrides).sampler


PROMPTS = ["sort 7 3 9 1", "sort 2 1", "sort 5 5 0 1 8", "sort 4 6 2"]


def test_the_sampler_stops_at_the_generation_configs_stop_ids_and_says_how_each_answer_ended(policy):
    """The case sampler-ignores-generation-config-eos, and finish reasons against plain generate."""
    model, tokenizer = load_policy(policy)
    stops = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<system>")}
    sampler = make_sampler(str(policy), sampler_config(temperature=0, max_new_tokens=8))
    answers = sampler.generate(PROMPTS, 1, seed=0)
    ended = set()
    for prompt, answer in zip(PROMPTS, answers):
        reference = greedy_reference(model, tokenizer, prompt, 8)
        end = next((k for k, t in enumerate(reference) if t in stops), None)
        body = reference if end is None else reference[:end]
        assert answer["responses"] == [tokenizer.decode(body).strip()]
        assert answer["finish_reasons"] == ["length" if end is None else "stop"]
        assert answer["stop_tokens"] == [None if end is None else tokenizer.convert_ids_to_tokens(reference[end])]
        assert answer["prompt_truncated"] is False
        ended.add(answer["finish_reasons"][0])
    assert answers[0]["responses"] == ["sort"] and answers[0]["stop_tokens"] == ["<system>"]
    assert ended == {"stop", "length"}  # both kinds were checked


def test_extra_stop_tokens_and_the_total_length_cap(policy):
    model, tokenizer = load_policy(policy)
    # '1' and '6' end an answer too (named as a token, or by id as RLHFlow's --eos_ids); no answer runs
    # past 12 tokens of prompt and answer
    sampler = make_sampler(str(policy), sampler_config(temperature=0, max_new_tokens=8, max_length=12,
                                                       stop_tokens=f"['1',{tokenizer.convert_tokens_to_ids('6')}]"))
    answers = sampler.generate(PROMPTS, 1, seed=0)
    stops = {tokenizer.convert_tokens_to_ids(t) for t in ["1", "6", "<eos>", "<system>"]}
    for prompt, answer in zip(PROMPTS, answers):
        limit = min(8, 12 - len(prompt_ids(tokenizer, prompt)))
        reference = greedy_reference(model, tokenizer, prompt, limit)
        end = next((k for k, t in enumerate(reference) if t in stops), None)
        assert answer["finish_reasons"] == ["length" if end is None else "stop"]
        assert answer["responses"] == [tokenizer.decode(reference if end is None else reference[:end]).strip()]
    assert [a["stop_tokens"][0] for a in answers] == ["<system>", "1", "6", None]
    # the last prompt has 7 tokens: its answer was cut at 12 - 7 = 5 tokens, before max_new_tokens
    assert len(tokenizer(answers[3]["responses"][0])["input_ids"]) == 5
    with pytest.raises(ValueError, match="'<nope>' is not a token of this tokenizer"):
        make_sampler(str(policy), sampler_config(stop_tokens="['<nope>']"))
    with pytest.raises(ValueError, match="sampler.stop_tokens: 99999 is not an id of this tokenizer"):
        make_sampler(str(policy), sampler_config(stop_tokens="[99999]"))
    with pytest.raises(ValueError, match=r"sampler.max_prompt_length \(14\) must be below sampler.max_length \(14\)"):
        make_sampler(str(policy), sampler_config(max_length=14, max_prompt_length=14))


def test_greedy_sampling_of_several_answers_is_refused_before_the_model_loads():
    with pytest.raises(ValueError, match="sampler.temperature=0 is greedy decoding, which gives one answer per prompt, "
                                         "but 4 were asked for"):
        make_sampler("no/such/model", sampler_config(temperature=0), 4)
