"""The Hugging Face model judges on tiny random models built by inpo.tiny_models, checked against
forward passes computed here by hand (texts written out, one unpadded sequence at a time)."""

import shutil

import pytest
import torch
from omegaconf import OmegaConf
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from inpo.config import CONF_DIR, load_config
from inpo.judges import make_judge, sigmoid
from inpo.judges.reward_model import RewardModelJudge
from inpo.modeling import ModelLoadError, build_word_tokenizer
from inpo.task import VOCABULARY, make_prompts, render_response
from inpo.tiny_models import KINDS, run

RECORD = {"id": "t-0", "prompt": "sort 3 1 2", "items": [3, 1, 2]}
LONG = render_response([1, 2, 3], 0, 3)  # 16 words
SHORT = render_response([3, 1, 2], 1, 0)  # 5 words


def build(kind, folder, seed=0):
    return run(load_config("tiny_models", [f"kind={kind}", f"output={folder}", f"seed={seed}"]))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {kind: build(kind, root / kind) for kind in KINDS}


def judge(name, folder, **overrides):
    """make_judge from conf/judge/<name>.yaml with ``model`` pointing at a tiny folder."""
    cfg = OmegaConf.merge(OmegaConf.load(CONF_DIR / "judge" / f"{name}.yaml"), {"model": str(folder), **overrides})
    return make_judge(**cfg)


def comparisons():
    """Prompts of 3 to 5 digits against responses of 2 to 16 words, some with unknown words."""
    out = []
    for p in make_prompts(4, seed=1):
        out.append((p, render_response(sorted(p["items"]), 0, 3), render_response(p["items"], 2, 0)))
        out.append((p, render_response(p["items"], 1, 1), "no idea"))
    return out


# --- pair preference ------------------------------------------------------------------------------


def pm_by_hand(folder, prompt, a, b, temperature=1.0):
    """RLHFlow's format written out: p(A) = softmax(logits of "A", "B" / T) after the chat prompt, no BOS."""
    text = f"<user> [CONTEXT] \n\n<turn> user\n {prompt}\n [RESPONSE A] {a} [RESPONSE B] {b} \n <assistant> "
    return pm_on_text(folder, text, temperature)


def pm_on_text(folder, text, temperature=1.0):
    """(ids, p(A)) for a written-out judge text: one unpadded sequence, no BOS."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1]
    labels = tokenizer.convert_tokens_to_ids(["A", "B"])
    return ids, torch.softmax(logits[labels] / temperature, -1)[0].item()


def test_pair_preference_is_the_label_softmax_of_the_written_out_prompt_in_both_orders(tiny):
    folder = tiny["pair_preference"]
    pm = judge("pair_preference_llama3", folder, temperature=2.0)
    ids_ab, p_ab = pm_by_hand(folder, RECORD["prompt"], LONG, SHORT, temperature=2.0)
    ids_ba, p_ba = pm_by_hand(folder, RECORD["prompt"], SHORT, LONG, temperature=2.0)
    assert pm.encode(RECORD, LONG, SHORT) == ids_ab and pm.encode(RECORD, SHORT, LONG) == ids_ba
    assert pm.tokenizer.bos_token_id not in ids_ab
    assert pm.preferences([(RECORD, LONG, SHORT), (RECORD, SHORT, LONG)]) == pytest.approx([p_ab, p_ba], abs=1e-5)
    assert abs(p_ab - (1 - p_ba)) > 1e-3  # the orders disagree, so averaging them matters
    assert pm.compare(RECORD, LONG, SHORT) == pytest.approx((p_ab + 1 - p_ba) / 2, abs=1e-5)
    assert pm.n_calls == 4


def test_pair_preference_batches_match_one_at_a_time(tiny):
    batched = judge("pair_preference_llama3", tiny["pair_preference"], batch_size=3)
    single = judge("pair_preference_llama3", tiny["pair_preference"], batch_size=1)
    items = comparisons()
    expected = [single.compare(*c) for c in items]
    assert batched.compare_many(items) == pytest.approx(expected, abs=1e-5)
    assert max(expected) - min(expected) > 1e-2  # the comparisons differ, so a mix-up would show
    assert batched.n_calls == single.n_calls == 2 * len(items)
    assert batched.compare_many([]) == []


def test_max_length_cuts_the_longer_response_and_keeps_the_answer_position(tiny):
    folder = tiny["pair_preference"]
    full, _ = pm_by_hand(folder, RECORD["prompt"], LONG, SHORT)
    pm = judge("pair_preference_llama3", folder, max_length=len(full) - 4)
    cut = " ".join(LONG.split()[:-4])  # the longer response loses the 4 tokens, the shorter keeps all
    expected, p = pm_by_hand(folder, RECORD["prompt"], cut, SHORT)
    assert pm.encode(RECORD, LONG, SHORT) == expected
    assert pm.preferences([(RECORD, LONG, SHORT)]) == pytest.approx([p], abs=1e-5)
    # the 16 + 5 words must fit in 4: both keep 2
    pm = judge("pair_preference_llama3", folder, max_length=len(full) - len(LONG.split()) - len(SHORT.split()) + 4)
    first_two = [" ".join(text.split()[:2]) for text in (LONG, SHORT)]
    assert pm.encode(RECORD, LONG, SHORT) == pm_by_hand(folder, RECORD["prompt"], *first_two)[0]
    with pytest.raises(ValueError, match="max_length"):
        judge("pair_preference_llama3", folder, max_length=10).compare(RECORD, LONG, SHORT)


# --- reward model ---------------------------------------------------------------------------------


def rm_by_hand(folder, prompt, response):
    """The logit of [user, assistant] in the chat template, one unpadded sequence with one BOS."""
    return rm_on_text(folder, f"<user> {prompt} <assistant> {response} <eos> ")


def rm_on_text(folder, text):
    """The logit on a written-out chat text, encoded with its one BOS, one unpadded sequence."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, 0].item()


def test_reward_judge_matches_unpadded_logits_in_mixed_batches(tiny):
    folder = tiny["reward_model"]
    rm = judge("reward_llama3", folder, batch_size=3)
    items = [(record, text) for record, a, b in comparisons() for text in (a, b)]
    expected = [rm_by_hand(folder, record["prompt"], text) for record, text in items]
    assert rm.rewards_many(items) == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert max(expected) - min(expected) > 1e-2
    assert rm.n_calls == len(items)
    r_long, r_short = rm_by_hand(folder, RECORD["prompt"], LONG), rm_by_hand(folder, RECORD["prompt"], SHORT)
    assert rm.reward(RECORD, LONG) == pytest.approx(r_long, rel=1e-5, abs=1e-5)
    assert rm.compare(RECORD, LONG, SHORT) == pytest.approx(sigmoid(r_long - r_short), abs=1e-5)
    assert rm.compare_many([(RECORD, SHORT, LONG)]) == pytest.approx([sigmoid(r_short - r_long)], abs=1e-5)


def test_reward_model_without_a_pad_id_scores_the_last_token_in_batches(tiny):
    folder = tiny["reward_model"]
    model, tokenizer = AutoModelForSequenceClassification.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    model.config.pad_token_id = None
    tokenizer.pad_token = tokenizer.eos_token  # every sequence ends with it: a poor pad id for the model's pooling
    rm = RewardModelJudge(model, tokenizer, batch_size=3)
    items = [(record, a) for record, a, _ in comparisons()]
    expected = [rm_by_hand(folder, record["prompt"], text) for record, text in items]
    assert rm.rewards_many(items) == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_reward_judge_cuts_the_response_to_max_length(tiny):
    folder = tiny["reward_model"]
    rm = judge("reward_llama3", folder, max_length=12)  # BOS, <user>, 4 prompt words, <assistant>, <eos>: 4 left
    cut = " ".join(LONG.split()[:4])
    assert rm.encode(RECORD, LONG) == rm.tokenizer(f"<user> {RECORD['prompt']} <assistant> {cut} <eos> ")["input_ids"]
    assert rm.reward(RECORD, LONG) == pytest.approx(rm_by_hand(folder, RECORD["prompt"], cut), rel=1e-5, abs=1e-5)


# --- multi-turn conversations -----------------------------------------------------------------------

SYSTEM = {"role": "system", "content": "you asked for the sorted list"}
TURNS = [{"role": "user", "content": "sort 2 1"}, {"role": "assistant", "content": "sure , here it is : ( 1 2 )"},
         {"role": "user", "content": RECORD["prompt"]}]
MULTI = {**RECORD, "id": "t-multi", "messages": TURNS}
WITH_SYSTEM = {**RECORD, "id": "t-system", "messages": [SYSTEM, *TURNS]}
# The context template of RLHFlow/pair-preference-model-LLaMA3-8B's model card, verbatim: roles by position
RLHFLOW_CONTEXT_TEMPLATE = ("\n{% for message in messages %}{% if loop.index0 % 2 == 0 %}\n\n<turn> user\n "
                            "{{ message['content'] }}{% else %}\n\n<turn> assistant\n {{ message['content'] }}"
                            "{% endif %}{% endfor %}\n\n\n")


def in_order(ids, pieces):
    """Whether each piece (a list of ids) occurs in ``ids`` after the one before it."""
    start = 0
    for piece in pieces:
        found = next((i for i in range(start, len(ids) - len(piece) + 1) if ids[i : i + len(piece)] == piece), None)
        if found is None:
            return False
        start = found + len(piece)
    return True


def pm_text(context, a, b):
    """The pair preference judge's text, written out, for a rendered context."""
    return f"<user> [CONTEXT] {context} [RESPONSE A] {a} [RESPONSE B] {b} \n <assistant> "


MULTI_CONTEXT = "\n\n<turn> user\n sort 2 1\n<turn> assistant\n sure , here it is : ( 1 2 )\n<turn> user\n sort 3 1 2\n"
SYSTEM_CONTEXT = "\n\n<turn> system\n you asked for the sorted list\n<turn> user\n sort 2 1\n<turn> assistant\n" \
                 " sure , here it is : ( 1 2 )\n<turn> user\n sort 3 1 2\n"


@pytest.mark.parametrize("record, context", [(MULTI, MULTI_CONTEXT), (WITH_SYSTEM, SYSTEM_CONTEXT)],
                         ids=["user-assistant-user", "system-first"])
def test_pair_preference_reads_every_turn_in_order_labelled_by_role(tiny, record, context):
    folder = tiny["pair_preference"]
    pm = judge("pair_preference_llama3", folder)
    assert pm.text(record, LONG, SHORT) == pm_text(context, LONG, SHORT)
    expected, p_ab = pm_on_text(folder, pm_text(context, LONG, SHORT))
    assert pm.encode(record, LONG, SHORT) == expected
    words = lambda text: pm.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    turns = [words(f"<turn> {t['role']} {t['content']}") for t in record["messages"]]
    assert in_order(expected, [words("[CONTEXT]"), *turns, words(f"[RESPONSE A] {LONG} [RESPONSE B] {SHORT}")])
    _, p_ba = pm_on_text(folder, pm_text(context, SHORT, LONG))
    assert pm.preferences([(record, LONG, SHORT), (record, SHORT, LONG)]) == pytest.approx([p_ab, p_ba], abs=1e-5)
    assert abs(p_ab - pm_by_hand(folder, RECORD["prompt"], LONG, SHORT)[1]) > 1e-3  # the history changes the answer


def test_pair_preference_context_is_rlhflow_s_on_alternating_turns_and_unchanged_for_one_turn(tiny):
    pm = judge("pair_preference_llama3", tiny["pair_preference"])
    for turns in ([TURNS[-1]], TURNS, [*TURNS, *TURNS[1:]]):  # 0, 1 and 2 exchanges before the last user turn
        context = pm.tokenizer.apply_chat_template(turns, chat_template=RLHFLOW_CONTEXT_TEMPLATE, tokenize=False)
        assert pm.text({**RECORD, "messages": turns}, LONG, SHORT) == pm_text(context, LONG, SHORT)
    one_turn = pm_text(f"\n\n<turn> user\n {RECORD['prompt']}\n", LONG, SHORT)
    assert pm.text(RECORD, LONG, SHORT) == pm.text({**RECORD, "messages": [TURNS[-1]]}, LONG, SHORT) == one_turn


def test_pair_preference_cuts_only_the_responses_of_a_conversation(tiny):
    folder = tiny["pair_preference"]
    full, _ = pm_on_text(folder, pm_text(MULTI_CONTEXT, LONG, SHORT))
    pm = judge("pair_preference_llama3", folder, max_length=len(full) - 4)
    cut = " ".join(LONG.split()[:-4])
    assert pm.encode(MULTI, LONG, SHORT) == pm_on_text(folder, pm_text(MULTI_CONTEXT, cut, SHORT))[0]
    # one user turn and the template take 13 tokens, 7 left for the responses; the 2 earlier turns take 17 more
    pm = judge("pair_preference_llama3", folder, max_length=20)
    assert len(pm.encode(RECORD, LONG, SHORT)) <= 20
    with pytest.raises(ValueError, match="prompt 't-multi': its conversation and the template alone exceed max_length"):
        pm.compare(MULTI, LONG, SHORT)


def rm_text(turns, response):
    """The tiny models' chat template written out for ``turns`` + [assistant: response], no BOS."""
    chat = "".join(f"<{t['role']}> {t['content']} " + ("<eos> " if t["role"] == "assistant" else "") for t in turns)
    return f"{chat}<assistant> {response} <eos> "


def test_reward_judge_scores_every_turn_in_order(tiny):
    folder = tiny["reward_model"]
    rm = judge("reward_llama3", folder, batch_size=3)
    assert rm.text(WITH_SYSTEM, LONG) == ("<system> you asked for the sorted list <user> sort 2 1 <assistant> sure , here "
                                          f"it is : ( 1 2 ) <eos> <user> sort 3 1 2 <assistant> {LONG} <eos> ")
    assert rm.text(WITH_SYSTEM, LONG) == rm_text(WITH_SYSTEM["messages"], LONG)
    expected = rm.tokenizer(rm_text(WITH_SYSTEM["messages"], LONG))["input_ids"]
    assert rm.encode(WITH_SYSTEM, LONG) == expected and expected.count(rm.tokenizer.bos_token_id) == 1
    words = lambda text: rm.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert in_order(expected, [words(f"<{t['role']}> {t['content']}") for t in WITH_SYSTEM["messages"]]
                    + [words(f"<assistant> {LONG}")])
    items = [(record, text) for record in (RECORD, MULTI, WITH_SYSTEM) for text in (LONG, SHORT)]
    by_hand = [rm_on_text(folder, rm_text(record.get("messages", [TURNS[-1]]), text)) for record, text in items]
    assert rm.rewards_many(items) == pytest.approx(by_hand, rel=1e-5, abs=1e-5)
    assert abs(by_hand[0] - by_hand[2]) > 1e-3  # the history changes the reward


def test_reward_judge_single_turn_text_is_unchanged(tiny):
    rm = judge("reward_llama3", tiny["reward_model"])
    one_turn = f"<user> {RECORD['prompt']} <assistant> {LONG} <eos> "
    assert rm.text(RECORD, LONG) == rm.text({**RECORD, "messages": [TURNS[-1]]}, LONG) == one_turn


def test_reward_judge_cuts_only_the_response_of_a_conversation(tiny):
    folder = tiny["reward_model"]
    # BOS, the 3 turns (21 tokens with their role tokens and an <eos>), <assistant>, <eos>: 24; 4 left
    rm = judge("reward_llama3", folder, max_length=28)
    cut = " ".join(LONG.split()[:4])
    assert rm.encode(MULTI, LONG) == rm.tokenizer(rm_text(TURNS, cut))["input_ids"]
    assert rm.reward(MULTI, LONG) == pytest.approx(rm_on_text(folder, rm_text(TURNS, cut)), rel=1e-5, abs=1e-5)
    rm = judge("reward_llama3", folder, max_length=12)  # enough for one turn, not for three
    assert len(rm.encode(RECORD, LONG)) <= 12
    with pytest.raises(ValueError, match="prompt 't-multi': its conversation and the template alone exceed max_length"):
        rm.reward(MULTI, LONG)


# --- configs and errors ---------------------------------------------------------------------------


def test_configs_build_the_judges_with_their_settings(tiny):
    pm = judge("pair_preference_llama3", tiny["pair_preference"])
    assert type(pm).__name__ == "PairPreferenceJudge"
    assert pm.token_ids == pm.tokenizer.convert_tokens_to_ids(["A", "B"])
    assert (pm.temperature, pm.batch_size, pm.max_length) == (1.0, 8, 8192)
    rm = judge("reward_llama3", tiny["reward_model"])
    assert type(rm).__name__ == "RewardModelJudge" and (rm.batch_size, rm.max_length) == (8, 8192)


@pytest.mark.parametrize(
    "name, kind, overrides, error, match",
    [
        ("pair_preference_llama3", "pair_preference", {"top_k": 5}, ValueError, r"unknown \['top_k'\]"),
        ("reward_llama3", "reward_model", {"temperature": 1.0}, ValueError, r"unknown \['temperature'\]"),
        ("pair_preference_llama3", "pair_preference", {"tokens": ["A", "A B"]}, ValueError, "'A B'.*one known token"),
        ("pair_preference_llama3", "pair_preference", {"tokens": ["A", "Z"]}, ValueError, "'Z'.*one known token"),
        ("pair_preference_llama3", "pair_preference", {"template": "{context} {response_a}"}, ValueError,
         "response_b"),
        ("pair_preference_llama3", "pair_preference", {"dtype": "int8"}, ValueError, "dtype"),
        # a causal LM's folder: no score head, which transformers would draw at random
        ("reward_llama3", "pair_preference", {}, ModelLoadError, r"lacks 1 weights \(score.weight\)"),
    ],
)
def test_bad_options_give_clear_errors(tiny, name, kind, overrides, error, match):
    with pytest.raises(error, match=match):
        judge(name, tiny[kind], **overrides)


def test_a_classifier_with_two_labels_is_no_reward_model(tiny, tmp_path):
    folder = shutil.copytree(tiny["reward_model"], tmp_path / "two_labels")
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2, ignore_mismatched_sizes=True)
    model.save_pretrained(folder)
    with pytest.raises(ValueError, match="has 2 labels; a reward model has one"):
        judge("reward_llama3", folder)


@pytest.mark.parametrize("name", ["pair_preference_llama3", "reward_llama3"])
def test_a_missing_model_folder_is_named(tmp_path, name):
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        judge(name, tmp_path / "no-such-model")


@pytest.mark.parametrize("name, kind", [("pair_preference_llama3", "pair_preference"), ("reward_llama3", "reward_model")])
def test_a_truncated_weights_file_is_named_with_its_folder(tiny, tmp_path, name, kind):
    folder = tmp_path / kind
    shutil.copytree(tiny[kind], folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ModelLoadError) as error:
        judge(name, folder)
    assert str(error.value) == (f"model '{folder}' could not be loaded: {weights} is not a valid safetensors file "
                                f"(Error while deserializing header: incomplete metadata, file not fully covered)")
    assert isinstance(error.value.__cause__, SafetensorError)


# --- tiny models ----------------------------------------------------------------------------------


AUTO = {"policy": (AutoModelForCausalLM, "LlamaForCausalLM"),
        "pair_preference": (AutoModelForCausalLM, "LlamaForCausalLM"),
        "reward_model": (AutoModelForSequenceClassification, "LlamaForSequenceClassification")}


@pytest.mark.parametrize("kind", KINDS)
def test_tiny_models_reload_with_the_auto_classes(tiny, kind):
    auto_class, class_name = AUTO[kind]
    model, tokenizer = auto_class.from_pretrained(tiny[kind]), AutoTokenizer.from_pretrained(tiny[kind])
    assert type(model).__name__ == class_name and model.config.vocab_size == len(tokenizer)
    assert tokenizer.chat_template
    ids = tokenizer(" ".join(VOCABULARY), add_special_tokens=False)["input_ids"]
    assert len(ids) == len(VOCABULARY) and tokenizer.unk_token_id not in ids
    assert tokenizer("qwerty", add_special_tokens=False)["input_ids"] == [tokenizer.unk_token_id]
    # the judges' tokenizers prepend BOS like Llama 3's; the policy's is the embedded default's
    assert (tokenizer("sort 1")["input_ids"][0] == tokenizer.bos_token_id) == (kind != "policy")
    if kind == "policy":
        assert tokenizer.get_vocab() == build_word_tokenizer(VOCABULARY).get_vocab()
    if kind == "reward_model":
        assert model.config.num_labels == 1 and model.config.pad_token_id == tokenizer.pad_token_id


def test_tiny_models_are_seeded(tiny, tmp_path):
    reference = AutoModelForCausalLM.from_pretrained(tiny["pair_preference"]).state_dict()
    for seed, same in ((0, True), (1, False)):
        again = AutoModelForCausalLM.from_pretrained(build("pair_preference", tmp_path / str(seed), seed)).state_dict()
        assert all(torch.equal(reference[k], again[k]) for k in reference) == same


@pytest.mark.parametrize("kind", ["pair_preference_lm", "reward_model"])
def test_the_model_option_is_required(kind):
    with pytest.raises(ValueError, match="needs `model`"):
        make_judge(kind, batch_size=2)
