"""The API judges against a local OpenAI-compatible server (tests/openai_server.py): real HTTP,
the real client, no mocks."""

from __future__ import annotations

import json
import math
import socket
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from inpo.judges import make_judge
from inpo.judges.alpaca_eval import AlpacaEvalJudge
from inpo.judges.api_client import ApiError, ChatClient, RequestRejected, request_key
from inpo.judges.arena_hard import ArenaHardJudge
from openai_server import SECRET, expected_p2

CONF = Path(__file__).resolve().parents[1] / "conf" / "judge"
JUDGE_CONFIG = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "arena-hard-v0.1" / "judge_config.yaml"
needs_judge_config = pytest.mark.skipif(not JUDGE_CONFIG.is_file(), reason=f"no {JUDGE_CONFIG}")
FAST = {"initial_backoff_s": 0.001, "max_backoff_s": 0.002}  # retries without waiting in tests


def client(server, **options) -> ChatClient:
    return ChatClient(server.base_url, "judge-model", **{"api_key_env": "INPO_TEST_KEY", **FAST, **options})


def echo_requests(n: int, tag: str = "q") -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"{tag}{i}"}], "temperature": 0} for i in range(n)]


def contents(responses: list[dict]) -> list[str]:
    return [r["choices"][0]["message"]["content"] for r in responses]


RECORD = {"id": "p0", "prompt": "What is 6 x 7?"}
SHORT, LONG = "42", "6 x 7 = 42, because six sevens are forty-two."


# --- AlpacaEval ---------------------------------------------------------------------------------

def test_alpaca_preference_is_the_servers_label_softmax_in_both_orders(server):
    judge = AlpacaEvalJudge(client(server))
    (p_short_first, raw), (p_long_first, _) = judge.preference_many([("Q?", SHORT, LONG), ("Q?", LONG, SHORT)])
    assert p_short_first == pytest.approx(expected_p2(SHORT, LONG), abs=1e-9)
    assert p_long_first == pytest.approx(expected_p2(LONG, SHORT), abs=1e-9)
    assert p_short_first > 0.5 > p_long_first  # the longer output wins from either position
    assert raw["choices"][0]["message"]["content"] == "M"

    p = judge.compare({**RECORD, "prompt": "Q?"}, LONG, SHORT)
    assert p == pytest.approx(0.5 * ((1 - expected_p2(LONG, SHORT)) + expected_p2(SHORT, LONG)), abs=1e-9)
    assert judge.n_calls == 4 and judge.n_cached == 2 and judge.n_requests == 2


def test_alpaca_refusal_is_no_verdict_not_a_draw_and_is_not_cached(server, tmp_path):
    """alpaca-eval's logprob_parser gives NaN when neither label is among the top log-probs
    (../shared/cases/alpaca-refusal-counted-as-draw); a sampled label alone does not count either."""
    judge = AlpacaEvalJudge(client(server, cache_path=tmp_path / "cache.jsonl"))
    [(refused, _), (sampled, _), (one_label, _)] = judge.preference_many(
        [("Q REFUSE", LONG, SHORT), ("Q SAMPLED_M", LONG, SHORT), ("Q ONLY_M", LONG, SHORT)])
    assert math.isnan(refused) and math.isnan(sampled)
    assert one_label == 1.0  # a missing label has probability 0, as the package's parser says
    assert len((tmp_path / "cache.jsonl").read_text().splitlines()) == 1  # only the reply with a verdict
    with pytest.raises(ApiError, match="no verdict in either order for prompt 'p0'"):
        judge.compare({**RECORD, "prompt": "Q REFUSE"}, LONG, SHORT)


def test_alpaca_identical_outputs_are_a_draw_without_a_request(server):
    judge = AlpacaEvalJudge(client(server))
    assert judge.preference_many([("Q?", SHORT, SHORT)]) == [(0.5, None)]
    assert server.state["requests"] == []


# --- Arena-Hard ---------------------------------------------------------------------------------

@needs_judge_config
def test_arena_hard_games_swap_positions_and_parse_verdicts(server):
    judge = ArenaHardJudge(client(server), judge_config=str(JUDGE_CONFIG))
    [game_1, game_2] = judge.games_many([("Q?", SHORT, LONG)])[0]
    assert "<|The Start of Assistant A's Answer|>\n42\n<|The End of Assistant A's Answer|>" in game_1["prompt"]
    assert f"<|The Start of Assistant A's Answer|>\n{LONG}\n<|The End" in game_2["prompt"]
    assert game_1["prompt"].startswith("<|User Prompt|>\nQ?\n")
    assert (game_1["score"], game_2["score"]) == ("B>>A", "A>>B")
    assert game_1["judgment"].startswith("\n") and game_1["judgment"].endswith("[[B>>A]]")  # as gen_judgment joins it

    # P(answer wins) from A's side of each verdict, averaged: both games say the longer answer is much better
    assert judge.compare_many([(RECORD, LONG, SHORT), (RECORD, SHORT, LONG), (RECORD, "abc", "abd")]) == [1.0, 0.0, 0.5]
    assert judge.compare(RECORD, "abcd", "abc") == 0.75
    assert judge.n_calls == 2 + 6 + 2


@needs_judge_config
def test_arena_hard_asks_again_when_a_judgment_has_no_verdict(server, tmp_path):
    """number_of_judgment_attempts: 2: the reply and "continue your judgment ..." are appended and
    the judge asked once more; a judgment that never gives a verdict scores None and is not cached."""
    judge = ArenaHardJudge(client(server, cache_path=tmp_path / "cache.jsonl"), judge_config=str(JUDGE_CONFIG))
    [[late_1, _], [never_1, never_2], [two_1, _]] = judge.games_many(
        [("NO_VERDICT Q?", SHORT, LONG), ("NEVER_VERDICT Q?", SHORT, LONG), ("TWO_VERDICTS Q?", SHORT, LONG)])
    assert late_1["score"] == "B>>A" and late_1["judgment"].count("My own answer") == 2
    assert never_1["score"] is None and never_2["score"] is None
    assert two_1["score"] is None and two_1["judgment"].count("My own answer") == 1  # several labels: no retry
    asked = [r["body"]["messages"] for r in server.state["requests"]]
    assert len(asked) == 4 + 4 + 2  # both games of the NO_VERDICT and NEVER_VERDICT questions asked twice
    [retry] = [m for m in asked if len(m) == 4 and "NO_VERDICT" in m[1]["content"] and "<|The Start of Assistant A's Answer|>\n42" in m[1]["content"]]
    assert [m["role"] for m in retry] == ["system", "user", "assistant", "user"]
    assert retry[3]["content"] == "continue your judgment and finish by outputting a final verdict label"
    assert retry[2]["content"] == "My own answer: 42.\nBoth are fine.\nI need to think more."  # the first reply
    cached = [json.loads(line)["response"]["choices"][0]["message"]["content"]
              for line in (tmp_path / "cache.jsonl").read_text().splitlines()]
    assert len(cached) == 2 and all("[[B>>A]]" in c or "[[A>>B]]" in c for c in cached)  # the two retries
    with pytest.raises(ApiError, match="no verdict in either game"):
        judge.compare({**RECORD, "prompt": "NEVER_VERDICT"}, LONG, SHORT)


# --- retries and errors -------------------------------------------------------------------------

def test_retries_429_and_5xx_then_succeeds(server):
    server.state["fail_next"] = [(429, "slow down", {"Retry-After": "0"}), (500, "oops", {"Retry-After": "0"}),
                                 (503, "busy", {"Retry-After": "0"})]
    c = client(server, max_retries=3, max_concurrency=1, initial_backoff_s=30.0, max_backoff_s=30.0)
    start = time.monotonic()
    assert contents(c.complete_many(echo_requests(2))) == ["echo: q0", "echo: q1"]
    assert time.monotonic() - start < 5  # Retry-After: 0 overrides the 30 s backoff
    assert c.n_requests == 5


def test_backoff_retries_without_retry_after(server):
    server.state["fail_next"] = [(502, "bad gateway", {}), (500, "oops", {})]
    c = client(server, max_retries=2)
    assert contents(c.complete_many(echo_requests(1))) == ["echo: q0"]
    assert c.n_requests == 3


def test_client_error_fails_at_once_with_the_servers_message(server):
    server.state["fail_next"] = [(404, "The model `judge-model` does not exist", {})]
    c = client(server, max_retries=5)
    with pytest.raises(ApiError, match=r"/v1/chat/completions failed with HTTP 404: The model `judge-model` does not"):
        c.complete_many(echo_requests(1))
    assert c.n_requests == 1


def test_a_rejected_request_is_returned_in_its_place_and_never_cached(server, tmp_path):
    """HTTP 400 is that request's fault (e.g. a content filter): the others are answered."""
    c = client(server, max_retries=5, cache_path=tmp_path / "cache.jsonl")
    requests = echo_requests(2) + [{"messages": [{"role": "user", "content": "REJECT_ME"}]}]
    first, second, rejected = c.complete_many(requests)
    assert contents([first, second]) == ["echo: q0", "echo: q1"]
    assert isinstance(rejected, RequestRejected) and "HTTP 400: This prompt was rejected by the content filter" in str(rejected)
    assert c.n_requests == 3 and c.n_rejected == 1  # not retried
    assert len((tmp_path / "cache.jsonl").read_text().splitlines()) == 2


def test_an_error_body_with_http_200_is_retried_and_never_cached(server, tmp_path):
    """../shared/cases/api-cache-keeps-error-reply: a proxy's {"error": ...} sent with HTTP 200."""
    server.state["fail_next"] = [(200, "upstream overloaded, try again", {})]
    cache = tmp_path / "cache.jsonl"
    assert contents(client(server, cache_path=cache).complete_many(echo_requests(1))) == ["echo: q0"]
    assert len(server.state["requests"]) == 2
    assert [json.loads(line)["response"]["choices"][0]["message"]["content"] for line in cache.read_text().splitlines()] == ["echo: q0"]

    server.state["fail_next"] = [(200, "still overloaded", {})] * 3
    with pytest.raises(ApiError, match="gave up after 3 attempts .*HTTP 200 without choices: still overloaded"):
        client(server, cache_path=cache, max_retries=2).complete_many(echo_requests(1, tag="new"))
    assert len(cache.read_text().splitlines()) == 1


def test_an_unusable_reply_in_an_old_cache_is_asked_again(server, tmp_path):
    """A cache written by an earlier version (an error body stored under the request's key) is not replayed."""
    cache = tmp_path / "cache.jsonl"
    [body] = echo_requests(1)
    error = {"error": {"message": "upstream overloaded, try again", "code": 503}}
    cache.write_text(json.dumps({"key": request_key("judge-model", body), "response": error}) + "\n")
    c = client(server, cache_path=cache)
    assert contents(c.complete_many([body])) == ["echo: q0"] and c.n_requests == 1 and c.n_cached == 0


def test_an_unusable_reply_is_returned_but_not_cached(server, tmp_path):
    cache = tmp_path / "cache.jsonl"
    c = client(server, cache_path=cache)
    replies = c.complete_many(echo_requests(3), usable=lambda reply: reply["choices"][0]["message"]["content"] != "echo: q1")
    assert contents(replies) == ["echo: q0", "echo: q1", "echo: q2"]
    rerun = client(server, cache_path=cache)
    assert contents(rerun.complete_many(echo_requests(3))) == ["echo: q0", "echo: q1", "echo: q2"]
    assert rerun.n_cached == 2 and rerun.n_requests == 1  # only the unusable one is asked again


def test_the_cache_reads_back_any_text_a_json_reply_can_hold(server, tmp_path):
    """Line separators, NEL, a lone surrogate, astral characters: one ASCII line each, read back equal."""
    text = "a\u2028b\u2029c\x85d\ud800e\U0001F600f\r\ng\x00h"
    cache = tmp_path / "cache.jsonl"
    c = client(server, cache_path=cache)
    [reply] = c.complete_many([{"messages": [{"role": "user", "content": text}]}])
    assert reply["choices"][0]["message"]["content"] == f"echo: {text}"
    assert cache.read_bytes().isascii() and len(cache.read_bytes().splitlines()) == 1
    rerun = client(server, cache_path=cache)
    assert rerun.complete_many([{"messages": [{"role": "user", "content": text}]}]) == [reply] and rerun.n_requests == 0


def test_exhausted_retries_give_a_clear_error(server):
    server.state["fail_if"] = "q"
    c = client(server, max_retries=2)
    last_error = r"gave up after 3 attempts \(max_retries=2\); last error: HTTP 500: permanently down"
    with pytest.raises(ApiError, match=last_error):
        c.complete_many(echo_requests(1))
    assert c.n_requests == 3


def test_connection_errors_are_retried_then_reported():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = ChatClient(f"http://127.0.0.1:{port}/v1", "m", api_key_env=None, max_retries=1, **FAST)
    refused = rf"127.0.0.1:{port}/v1/chat/completions gave up after 2 attempts .*: ConnectionRefusedError"
    with pytest.raises(ApiError, match=refused):
        c.complete_many(echo_requests(1))
    assert c.n_requests == 2


# --- concurrency --------------------------------------------------------------------------------

def test_requests_run_concurrently_and_keep_input_order(server):
    server.state["delay_s"] = 0.05
    c = client(server, max_concurrency=4)
    assert contents(c.complete_many(echo_requests(12))) == [f"echo: q{i}" for i in range(12)]
    assert 1 < server.state["max_in_flight"] <= 4


# --- cache --------------------------------------------------------------------------------------

def test_cache_answers_a_rerun_without_http(server, tmp_path):
    cache = tmp_path / "judge_cache.jsonl"
    first = client(server, cache_path=cache).complete_many(echo_requests(5) + echo_requests(1))  # a duplicate
    assert len(server.state["requests"]) == 5
    assert len(cache.read_text().splitlines()) == 5

    rerun = client(server, cache_path=cache)
    assert rerun.complete_many(echo_requests(5) + echo_requests(1)) == first
    assert (rerun.n_requests, rerun.n_cached) == (0, 6)
    assert len(server.state["requests"]) == 5


def test_cache_key_has_model_and_body_but_not_the_url(server, tmp_path):
    body = echo_requests(1)[0]
    assert request_key("judge-model", body) == request_key("judge-model", dict(reversed(body.items())))
    assert request_key("judge-model", body) != request_key("other-model", body)
    assert request_key("judge-model", body) != request_key("judge-model", {**body, "temperature": 1})

    cache = tmp_path / "judge_cache.jsonl"
    client(server, cache_path=cache).complete_many([body])
    elsewhere = ChatClient("http://127.0.0.1:9/proxy/v1", "judge-model", api_key_env=None, cache_path=cache)
    assert contents(elsewhere.complete_many([body])) == ["echo: q0"] and elsewhere.n_requests == 0


def test_interrupted_run_resumes_with_only_the_missing_requests(server, tmp_path):
    cache = tmp_path / "judge_cache.jsonl"
    requests = echo_requests(4, "early") + echo_requests(4, "late")
    server.state["fail_if"] = "late"
    with pytest.raises(ApiError, match="HTTP 500"):
        client(server, cache_path=cache, max_concurrency=1, max_retries=0).complete_many(requests)
    assert len(cache.read_text().splitlines()) == 4

    server.state["fail_if"] = "\0never"
    resumed = client(server, cache_path=cache, max_concurrency=1)
    assert contents(resumed.complete_many(requests)) == [f"echo: {r['messages'][0]['content']}" for r in requests]
    assert (resumed.n_requests, resumed.n_cached) == (4, 4)


def test_a_torn_last_cache_line_is_ignored(server, tmp_path):
    cache = tmp_path / "judge_cache.jsonl"
    client(server, cache_path=cache).complete_many(echo_requests(2))
    with cache.open("a") as f:
        f.write('{"key": "0123abc", "respon')  # killed mid-write
    resumed = client(server, cache_path=cache)
    assert contents(resumed.complete_many(echo_requests(3))) == ["echo: q0", "echo: q1", "echo: q2"]
    assert (resumed.n_requests, resumed.n_cached) == (1, 2)
    assert sorted(json.loads(line)["response"]["choices"][0]["message"]["content"]
                  for line in cache.read_text().splitlines()) == ["echo: q0", "echo: q1", "echo: q2"]


@pytest.mark.parametrize("line", [b"not json", b'{"key": "b", "response": "\xff"}'], ids=["not JSON", "not UTF-8"])
def test_a_corrupt_cache_line_names_the_file_and_line(server, tmp_path, line):
    cache = tmp_path / "judge_cache.jsonl"
    cache.write_bytes(b'{"key": "a", "response": {}}\n' + line + b"\n")
    with pytest.raises(ApiError) as error:
        client(server, cache_path=cache)
    assert str(error.value) == f"{cache}:2: not a cache line; delete the file to start over"


# --- the API key --------------------------------------------------------------------------------

def test_api_key_is_sent_but_never_stored_or_shown(server, tmp_path):
    cache = tmp_path / "judge_cache.jsonl"
    judge = AlpacaEvalJudge(client(server, cache_path=cache))
    judge.compare(RECORD, LONG, SHORT)
    assert {r["headers"]["authorization"] for r in server.state["requests"]} == {f"Bearer {SECRET}"}
    assert SECRET not in cache.read_text() and SECRET not in repr(judge)
    assert "INPO_TEST_KEY" in repr(judge)

    server.state["fail_next"] = [(401, f"Incorrect API key provided: {SECRET}", {})]
    with pytest.raises(ApiError, match="HTTP 401: Incorrect API key provided") as err:
        judge.compare(RECORD, "new", "pair")
    assert SECRET not in str(err.value)


def test_missing_key_variable_is_named_and_null_sends_no_header(server, monkeypatch):
    monkeypatch.delenv("INPO_TEST_KEY")
    with pytest.raises(ApiError, match="environment variable 'INPO_TEST_KEY' .* is not set"):
        client(server).complete_many(echo_requests(1))
    assert server.state["requests"] == []

    assert contents(client(server, api_key_env=None).complete_many(echo_requests(1))) == ["echo: q0"]
    assert "authorization" not in server.state["requests"][0]["headers"]


# --- configs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, cls", [("alpaca_eval_gpt4_turbo", AlpacaEvalJudge),
                                       pytest.param("arena_hard_gpt4_turbo", ArenaHardJudge, marks=needs_judge_config)])
def test_make_judge_builds_the_configured_judges(server, tmp_path, name, cls):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    cfg.base_url, cfg.api_key_env, cfg.cache = server.base_url, "INPO_TEST_KEY", str(tmp_path / "cache.jsonl")
    if "judge_config" in cfg:
        cfg.judge_config = str(JUDGE_CONFIG)
    judge = make_judge(**OmegaConf.to_container(cfg, resolve=True))
    assert type(judge) is cls and judge.client.model == "gpt-4-1106-preview"  # model: null -> the official judge
    assert judge.compare(RECORD, LONG, SHORT) > 0.5
    assert {r["body"]["model"] for r in server.state["requests"]} == {"gpt-4-1106-preview"}
    assert (tmp_path / "cache.jsonl").exists()
    assert make_judge(**{**OmegaConf.to_container(cfg), "model": "my-proxy-name"}).client.model == "my-proxy-name"

    options = OmegaConf.to_container(cfg)
    with pytest.raises(ValueError, match=rf"judge {cls.__name__} takes options .*got unknown \['temprature'\]"):
        make_judge(**options, temprature=0)
    with pytest.raises(ValueError, match="option max_concurrency must be an integer >= 1, got 0"):
        make_judge(**{**options, "max_concurrency": 0})
    del options["base_url"]
    with pytest.raises(ValueError, match=r"needs options \['base_url'\]"):
        make_judge(**options)


def test_judge_specific_options_belong_to_their_judge():
    with pytest.raises(ValueError, match=r"got unknown \['judge_config'\]"):
        make_judge("alpaca_eval_api", base_url="http://localhost/v1", judge_config="x.yaml")
    with pytest.raises(ValueError, match="alpaca-eval has no annotator 'no_such_annotator'"):
        make_judge("alpaca_eval_api", base_url="http://localhost/v1", annotator="no_such_annotator")
    with pytest.raises(ValueError, match="needs option 'judge_config'"):
        make_judge("arena_hard_api", base_url="http://localhost/v1", model="m")
