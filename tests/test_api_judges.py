"""The API judges against a local OpenAI-compatible server (tests/openai_server.py): real HTTP,
the real client, no mocks."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from inpo.judges import make_judge
from inpo.judges.api import AlpacaEvalJudge, ArenaHardJudge
from inpo.judges.api_client import ApiError, ChatClient, request_key
from openai_server import SECRET, expected_p2

CONF = Path(__file__).resolve().parents[1] / "conf" / "judge"
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

    sent = server.state["requests"]
    [first] = [r for r in sent if '<output model="m">\n42\n' in r["body"]["messages"][-1]["content"]]  # any order
    assert f'<output model="M">\n{LONG}\n</output>' in first["body"]["messages"][-1]["content"]
    assert first["path"] == "/v1/chat/completions"
    assert {k: first["body"][k] for k in ("model", "max_tokens", "temperature", "logprobs", "top_logprobs")} == {
        "model": "judge-model", "max_tokens": 1, "temperature": 0, "logprobs": True, "top_logprobs": 5}

    p = judge.compare({**RECORD, "prompt": "Q?"}, LONG, SHORT)
    assert p == pytest.approx(0.5 * ((1 - expected_p2(LONG, SHORT)) + expected_p2(SHORT, LONG)), abs=1e-9)
    assert judge.n_calls == 4 and judge.n_cached == 2 and judge.n_requests == 2


@pytest.mark.parametrize("marker, p2", [("ONLY_M", 1.0), ("SAMPLED_M", 1.0), ("SAMPLED_OTHER", 0.5)])
def test_alpaca_falls_back_to_one_label_then_the_sampled_token(server, marker, p2):
    judge = AlpacaEvalJudge(client(server))
    [(p, _)] = judge.preference_many([(f"Q {marker}", LONG, SHORT)])  # the logprobs alone would say p2 < 0.5
    assert p == p2


# --- Arena-Hard ---------------------------------------------------------------------------------

def test_arena_hard_games_swap_positions_and_parse_verdicts(server):
    judge = ArenaHardJudge(client(server))
    [game_1, game_2] = judge.games_many([("Q?", SHORT, LONG)])[0]
    assert "[Start of assistant A's answer]\n42\n[End of assistant A's answer]" in game_1["prompt"]
    assert f"[Start of assistant A's answer]\n{LONG}\n[End" in game_2["prompt"]
    assert game_1["prompt"].startswith("[User prompt]\nQ?\n")
    assert (game_1["score"], game_2["score"]) == ("B>>A", "A>>B")
    assert game_1["judgment"].endswith("[[B>>A]]")

    sent = [r["body"] for r in server.state["requests"]]
    [body] = [b for b in sent if b["messages"][1]["content"] == game_1["prompt"]]  # sent concurrently: any order
    assert (body["temperature"], body["max_tokens"], body["messages"][0]["role"]) == (0, 4096, "system")

    # P(answer wins) from A's side of each verdict, averaged: both games say the longer answer is much better
    assert judge.compare_many([(RECORD, LONG, SHORT), (RECORD, SHORT, LONG), (RECORD, "abc", "abd")]) == [1.0, 0.0, 0.5]
    assert judge.compare(RECORD, "abcd", "abc") == 0.75
    assert judge.compare(RECORD, "NO_VERDICT long answer", SHORT) == 0.5
    assert judge.n_calls == 2 + 6 + 2 + 2


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
    server.state["fail_next"] = [(400, "messages must be a list", {})]
    c = client(server, max_retries=5)
    with pytest.raises(ApiError, match=r"/v1/chat/completions failed with HTTP 400: messages must be a list"):
        c.complete_many(echo_requests(1))
    assert c.n_requests == 1


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
                                       ("arena_hard_gpt4_turbo", ArenaHardJudge)])
def test_make_judge_builds_the_configured_judges(server, tmp_path, name, cls):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    cfg.base_url, cfg.api_key_env, cfg.cache = server.base_url, "INPO_TEST_KEY", str(tmp_path / "cache.jsonl")
    judge = make_judge(**OmegaConf.to_container(cfg, resolve=True))
    assert type(judge) is cls and judge.client.model == "gpt-4-1106-preview"
    assert judge.compare(RECORD, LONG, SHORT) > 0.5
    assert {r["body"]["model"] for r in server.state["requests"]} == {"gpt-4-1106-preview"}
    assert (tmp_path / "cache.jsonl").exists()

    options = OmegaConf.to_container(cfg)
    with pytest.raises(ValueError, match=rf"judge {cls.__name__} takes options .*got unknown \['temprature'\]"):
        make_judge(**options, temprature=0)
    with pytest.raises(ValueError, match="option max_concurrency must be an integer >= 1, got 0"):
        make_judge(**{**options, "max_concurrency": 0})
    del options["base_url"]
    with pytest.raises(ValueError, match=r"needs options \['base_url'\]"):
        make_judge(**options)


def test_judge_specific_options_belong_to_their_judge():
    with pytest.raises(ValueError, match=r"got unknown \['max_tokens'\]"):
        make_judge("alpaca_eval_api", base_url="http://localhost/v1", model="m", max_tokens=10)
    with pytest.raises(ValueError, match="option top_logprobs must be an integer from 1 to 20, got 21"):
        make_judge("alpaca_eval_api", base_url="http://localhost/v1", model="m", top_logprobs=21)
