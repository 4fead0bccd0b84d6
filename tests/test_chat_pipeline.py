"""sample -> annotate -> logps -> train on multi-turn prompts longer than max_prompt_length, with
answers the sampler cut at its length limit: the token ids that reach the loss, checked against a
construction of our own from the chat template (no call to inpo's encoders).

The prompts are written so that the truncation rule of ``inpo.modeling.encode_prompt`` has
hand-checkable results (``PROMPTS``: each record's kept turns). With max_prompt_length=12:
the oldest non-system turns go first (an assistant turn left first goes too), then the start of
the oldest kept turn's content; system turns, BOS, the turn headers and the generation prompt stay.
"""

from dataclasses import dataclass

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from inpo import annotate, logps, sample, sampling, tiny_models, train
from inpo.judges import hf_models
from inpo.config import load_config
from inpo.records import PAIR, SAMPLE, SCORED_PAIR, read_json, read_jsonl, write_jsonl
from inpo.task import VOCABULARY

MAX_PROMPT_LENGTH = 12
SAMPLER_MAX_NEW_TOKENS = 5
SAMPLER_MAX_LENGTH = 16  # binding for prompts of more than 11 tokens: their answers get 16 - len(prompt)
MAX_LENGTH = 15  # logps and train: cuts the longest prompt + answer sequences on the right
# Frequent tokens of a random tiny policy end answers too, so that some answers end and others
# are cut at the limit (quoted: an int in sampler.stop_tokens is a token id).
STOP_WORDS = ["1", "3", "5", "7", "9"]
SEED = 6  # on a CPU: its answers give pairs with all three endings below, whole and cut to MAX_LENGTH


def user(content):
    return {"role": "user", "content": content}


def assistant(content):
    return {"role": "assistant", "content": content}


def system(content):
    return {"role": "system", "content": content}


# id -> (messages, the turns kept under max_prompt_length=12, worked out by hand).
# Tokens: <bos>, then per turn "<role> words" (+ <eos> after an assistant turn), then <assistant>.
PROMPTS = {
    # 1 + 4 + 1 = 7 tokens: fits
    "short": ([user("sort 3 1 2")],
              [user("sort 3 1 2")]),
    # 15 tokens; the first user turn goes, and the assistant turn left first too, though the
    # 10 tokens of [assistant, user] would fit: 6 tokens
    "drop-pair": ([user("sort 9 8 7 6"), assistant("( 6 )"), user("sort 2 1")],
                  [user("sort 2 1")]),
    # 20 tokens; the system turn stays, the first exchange goes: 1 + 3 + 5 + 1 = 10
    "system-drop": ([system("sort [ ]"), user("sort 5 4"), assistant("[ 4 5 ]"), user("sort 7 3 1")],
                    [system("sort [ ]"), user("sort 7 3 1")]),
    # 22 tokens; the first exchange goes (14), then 2 words of the question: 1 + 1 + 9 + 1 = 12
    "cut-question": ([user("sort 1 2"), assistant("( 1 2 )"), user("sort 9 8 7 6 5 4 3 2 1 0")],
                     [user("8 7 6 5 4 3 2 1 0")]),
    # 24 tokens; the exchange goes (15), then 3 words of the question: 1 + 4 + 6 + 1 = 12
    "system-cut": ([system("sort { }"), user("sort 4 4"), assistant("{ 4 4 }"), user("sort 8 6 4 2 0 9 7")],
                   [system("sort { }"), user("4 2 0 9 7")]),
    # 22 tokens; only the first exchange goes: 1 + 2 + 4 + 3 + 1 = 11, an assistant turn kept inside
    "keep-middle": ([user("sort 1 0"), assistant("( 0 1 )"), user("sort"), assistant("( )"), user("sort 2")],
                    [user("sort"), assistant("( )"), user("sort 2")]),
    # 1 + 2 + 8 + 1 = 12 tokens exactly: fits
    "exact-fit": ([system("sort"), user("sort 1 2 3 4 5 6")],
                  [system("sort"), user("sort 1 2 3 4 5 6")]),
}


def template_ids(tokenizer, messages, generation_prompt=False):
    return tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=True,
                                         return_dict=False)


@dataclass
class Expected:
    ids: list  # the whole sequence, as it should reach the model
    response_start: int  # index of the first answer token
    cut_to_max_length: bool  # the answer lost its last tokens to MAX_LENGTH


def expected_sequence(tokenizer, kept, answer, finish_reason, stop_token) -> Expected:
    """The sequence of one answer, built from the chat template alone: the kept turns plus the
    answer as an assistant turn (which the template closes with <eos>), that <eos> replaced by the
    token that really ended the answer, or dropped for an answer cut at the sampler's limit; then
    cut on the right to MAX_LENGTH."""
    vocab = tokenizer.get_vocab()
    prompt = template_ids(tokenizer, kept, generation_prompt=True)
    full = template_ids(tokenizer, kept + [assistant(answer)])
    # the template writes "<eos> " after an assistant turn: the space is no token
    assert full[: len(prompt)] == prompt and full[-1] == vocab["<eos>"] and full[-2] != vocab["<eos>"]
    assert len(full) == len(prompt) + len(answer.split()) + 1
    if finish_reason == "length":
        assert stop_token is None
        full = full[:-1]
    else:
        full = full[:-1] + [vocab[stop_token]]
    return Expected(full[:MAX_LENGTH], len(prompt), len(full) > MAX_LENGTH)


def sequences_of(model, batch, **_):
    """(ids, response mask) of each sequence a ``sequence_logps`` call got, in its order, read back from
    a packed batch (by ``sequence_ids``) or a padded one (where the attention mask is 1, which must be
    contiguous from the start: right padding)."""
    ids, response = batch["input_ids"].detach().cpu(), batch["response_mask"].detach().cpu()
    if "sequence_ids" in batch:
        owner = batch["sequence_ids"].detach().cpu()
        return [(ids[owner == i].tolist(), response[owner == i].tolist()) for i in range(int(owner.max()) + 1)]
    sequences = []
    for row, attention, mask in zip(ids, batch["attention_mask"].detach().cpu(), response):
        n = int(attention.sum())
        assert attention[:n].all() and not attention[n:].any(), "padding is not on the right"
        sequences.append((row[:n].tolist(), mask[:n].tolist()))
    return sequences


def capture(monkeypatch, module, name, calls, keep):
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(keep(*args, **kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat_pipeline")
    for kind in ("policy", "pair_preference"):
        tiny_models.run(load_config("tiny_models", [f"kind={kind}", f"output={root}/{kind}"]))
    assert {w for messages, _ in PROMPTS.values() for m in messages for w in m["content"].split()} <= set(VOCABULARY)
    write_jsonl(root / "prompts.jsonl", [{"id": k, "prompt": messages[-1]["content"], "messages": messages}
                                         for k, (messages, _) in PROMPTS.items()])
    policy = root / "policy"
    truncation = [f"max_length={MAX_LENGTH}", f"max_prompt_length={MAX_PROMPT_LENGTH}"]
    captured = {"logps_rows": [], "logps_sequences": [], "train_rows": []}
    with pytest.MonkeyPatch.context() as mp:
        # the answers (and so the pairs SEED was picked for) and the stored log-probs: drawn and
        # computed on the CPU, in float32, on any machine
        for module in (sampling, hf_models, logps):
            mp.setattr(module, "default_device", lambda: torch.device("cpu"))
        capture(mp, logps, "sequence_logps", captured["logps_rows"], sequences_of)
        capture(mp, logps, "score_sequences", captured["logps_sequences"],
                lambda model, sequences, *a, **k: [dict(s) for s in sequences])
        capture(mp, train, "sequence_logps", captured["train_rows"], sequences_of)
        sample.run(load_config("sample", [
            f"policy={policy}", f"prompts={root}/prompts.jsonl", f"output={root}/samples.jsonl", "n_samples=4",
            f"seed={SEED}", f"sampler.max_new_tokens={SAMPLER_MAX_NEW_TOKENS}",
            f"sampler.max_prompt_length={MAX_PROMPT_LENGTH}", f"sampler.max_length={SAMPLER_MAX_LENGTH}",
            "sampler.stop_tokens=[" + ",".join(f'"{w}"' for w in STOP_WORDS) + "]"]))
        annotate.run(load_config("annotate", [
            f"samples={root}/samples.jsonl", f"output={root}/pairs.jsonl", f"stats={root}/annotation.json",
            "judge=pair_preference_llama3", f"judge.model={root}/pair_preference"]))
        logps.run(load_config("logps", [f"pairs={root}/pairs.jsonl", f"ref_policy={policy}", f"policy={policy}",
                                        f"output={root}/scored.jsonl", "batch_size=5", *truncation]))
        train.run(load_config("train", [
            f"pairs={root}/scored.jsonl", f"policy={policy}", f"output={root}/train/policy", f"work_dir={root}/train",
            "optim.epochs=1", "optim.batch_size=4", "report_to=none", "lora.enabled=false", *truncation]))
    tokenizer = AutoTokenizer.from_pretrained(policy)
    pairs = read_jsonl(root / "pairs.jsonl", PAIR)
    expected = [{side: expected_sequence(tokenizer, PROMPTS[p["id"]][1], p[side], p[f"{side}_finish_reason"],
                                         p[f"{side}_stop_token"]) for side in ("chosen", "rejected")} for p in pairs]
    return {"root": root, "tokenizer": tokenizer, "pairs": pairs, "expected": expected, **captured,
            "samples": read_jsonl(root / "samples.jsonl", SAMPLE)}


def test_samples_record_cut_prompts_and_how_each_answer_ended(run):
    tokenizer, samples = run["tokenizer"], run["samples"]
    assert [s["id"] for s in samples] == list(PROMPTS)
    ends = set()
    for s in samples:
        messages, kept = PROMPTS[s["id"]]
        assert s["prompt_truncated"] == (kept != messages), s["id"]
        prompt_length = len(template_ids(tokenizer, kept, generation_prompt=True))
        assert prompt_length <= MAX_PROMPT_LENGTH
        limit = min(SAMPLER_MAX_NEW_TOKENS, SAMPLER_MAX_LENGTH - prompt_length)
        for text, reason, stop in zip(s["responses"], s["finish_reasons"], s["stop_tokens"], strict=True):
            ends.add(reason)
            if reason == "length":  # cut at the limit: exactly `limit` tokens, no end token
                assert stop is None and len(text.split()) == limit, (s["id"], text)
            else:  # ended by a stop token within the limit
                assert reason == "stop" and stop in ["<eos>", *STOP_WORDS], (s["id"], stop)
                assert len(text.split()) + 1 <= limit, (s["id"], text)
    assert ends == {"stop", "length"}


def test_annotation_stats_and_pair_endings_follow_the_samples(run):
    samples, pairs = run["samples"], run["pairs"]
    stats = read_json(run["root"] / "annotation.json")
    by_id = {s["id"]: s for s in samples}
    for p in pairs:
        s = by_id[p["id"]]
        for side in ("chosen", "rejected"):
            i = p[f"{side}_index"]
            assert p[side] == s["responses"][i]
            assert p[f"{side}_finish_reason"] == s["finish_reasons"][i]
            assert p[f"{side}_stop_token"] == s["stop_tokens"][i]
        assert p["messages"] == PROMPTS[p["id"]][0]  # the untruncated conversation travels on
    reasons = [p[f"{side}_finish_reason"] for p in pairs for side in ("chosen", "rejected")]
    assert "length" in reasons and "stop" in reasons  # the pairs hold a cut answer and a finished one
    # every kind of ending reaches the model whole (short enough to keep its last token): an answer
    # cut by the sampler, one ended at <eos>, one ended at another stop token; and some are cut
    # to MAX_LENGTH
    fitting = [(p[f"{side}_finish_reason"], p[f"{side}_stop_token"]) for p, e in zip(pairs, run["expected"])
               for side in ("chosen", "rejected") if not e[side].cut_to_max_length]
    missing = "the pairs lack an ending the test needs (sampling changed?): pick another SEED"
    assert ("length", None) in fitting and ("stop", "<eos>") in fitting, (missing, fitting)
    assert any(reason == "stop" and stop != "<eos>" for reason, stop in fitting), (missing, fitting)
    assert any(e[side].cut_to_max_length for e in run["expected"] for side in ("chosen", "rejected"))

    assert stats["prompts"] == len(samples) and stats["pairs"] == len(pairs)
    assert stats["dropped"] == len(samples) - len(pairs)
    assert stats["responses"] == sum(len(s["responses"]) for s in samples)
    assert stats["responses_cut"] == sum(r == "length" for s in samples for r in s["finish_reasons"])
    assert stats["prompts_truncated"] == sum(kept != messages for messages, kept in PROMPTS.values()) == 5
    assert stats["prompts_without_two_finished"] == 0  # mask_truncated_completions is off: all answers play
    assert stats["chosen_cut"] == sum(p["chosen_finish_reason"] == "length" for p in pairs)
    assert stats["rejected_cut"] == sum(p["rejected_finish_reason"] == "length" for p in pairs)


def words(tokenizer, ids) -> str:
    return " ".join(tokenizer.convert_ids_to_tokens(list(ids)))


def response_mask(want: Expected) -> list:
    """1 on the answer's tokens (its end token included), 0 on the prompt's."""
    return [0] * want.response_start + [1] * (len(want.ids) - want.response_start)


def check_row(tokenizer, ids, mask, want: Expected, kept):
    """One sequence that reached a model, against the expected one of its pair and side."""
    vocab = tokenizer.get_vocab()
    assert ids == want.ids
    assert mask == response_mask(want)
    assert ids[0] == vocab["<bos>"] and ids[1] == vocab[f"<{kept[0]['role']}>"]
    assert len(ids) <= MAX_LENGTH and want.response_start <= MAX_PROMPT_LENGTH


def test_logps_score_the_sequences_of_the_chat_template(run):
    tokenizer, pairs, expected = run["tokenizer"], run["pairs"], run["expected"]

    # one pass (pi_t is pi_ref), in the pairs' order: chosen, rejected, chosen, ...
    (sequences,) = run["logps_sequences"]
    assert len(sequences) == 2 * len(pairs)
    for k, (p, e) in enumerate(zip(pairs, expected)):
        for sequence, side in zip(sequences[2 * k : 2 * k + 2], ("chosen", "rejected")):
            want = e[side]
            mask = [0] * sequence["response_start"] + [1] * (len(sequence["ids"]) - sequence["response_start"])
            check_row(tokenizer, sequence["ids"], mask, want, PROMPTS[p["id"]][1])

    # the (packed) batches sequence_logps received hold the same sequences
    rows = sorted(sequence for batch in run["logps_rows"] for sequence in batch)
    assert rows == sorted((e[side].ids, response_mask(e[side])) for e in expected for side in ("chosen", "rejected"))

    # the stored log-probs are of those tokens: recomputed here with the plain model
    model = AutoModelForCausalLM.from_pretrained(run["root"] / "policy", dtype=torch.float32).eval()
    scored = read_jsonl(run["root"] / "scored.jsonl", SCORED_PAIR)
    for record, e in zip(scored, expected):
        for side in ("chosen", "rejected"):
            ids, start = e[side].ids, e[side].response_start
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0].float()
            token_logps = logits[:-1].log_softmax(-1).gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).squeeze(-1)
            want = token_logps[start - 1 :].sum().item()
            assert record[f"ref_{side}_logp"] == pytest.approx(want, abs=1e-4)
            assert record[f"prev_{side}_logp"] == record[f"ref_{side}_logp"]


def test_train_feeds_the_loss_the_sequences_logps_scored(run):
    tokenizer, pairs, expected = run["tokenizer"], run["pairs"], run["expected"]
    # the rows are shuffled: find each pair by its two sequences
    want = {(tuple(e["chosen"].ids), tuple(e["rejected"].ids)): (p, e) for p, e in zip(pairs, expected)}
    assert len(want) == len(pairs)
    seen = []
    for batch in run["train_rows"]:  # each call: the chosen sequences of a batch of pairs, then their rejected ones
        assert len(batch) % 2 == 0
        half = len(batch) // 2
        for (chosen_ids, chosen_mask), (rejected_ids, rejected_mask) in zip(batch[:half], batch[half:]):
            key = (tuple(chosen_ids), tuple(rejected_ids))
            if key not in want:
                same_prompt = [" | ".join(words(tokenizer, ids) for ids in k) for k in want if k[0][:5] == key[0][:5]]
                pytest.fail(f"train's loss got the pair {' | '.join(words(tokenizer, ids) for ids in key)}; "
                            f"expected, of pairs that start alike: {same_prompt}")
            p, e = want[key]
            check_row(tokenizer, chosen_ids, chosen_mask, e["chosen"], PROMPTS[p["id"]][1])
            check_row(tokenizer, rejected_ids, rejected_mask, e["rejected"], PROMPTS[p["id"]][1])
            seen.append(key)
    assert sorted(seen) == sorted(want)  # one epoch: each pair once

    summary = read_json(run["root"] / "train" / "train_summary.json")
    sides = [(p, e, side) for p, e in zip(pairs, expected) for side in ("chosen", "rejected")]
    assert summary["pairs"] == len(pairs)
    assert summary["prompts_truncated"] == sum(PROMPTS[p["id"]][1] != PROMPTS[p["id"]][0] for p in pairs)
    assert summary["answers_without_end_token"] == sum(p[f"{side}_finish_reason"] == "length" for p, _, side in sides)
    assert summary["responses_truncated"] == sum(e[side].cut_to_max_length for _, e, side in sides)
