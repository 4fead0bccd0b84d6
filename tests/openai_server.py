"""A local OpenAI-compatible server for tests: real HTTP, answering from the request content.

AlpacaEval-style requests get label log-probs from ``alpaca_logprobs`` (the longer output is
preferred), Arena-Hard-style requests get a verdict from ``arena_verdict``, anything else an
echo of the last message. ``server.state`` scripts failures and records every request.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

SECRET = "sk-test-5ecret-do-not-leak"


def alpaca_logprobs(output_1: str, output_2: str) -> tuple[float, float]:
    """(l_m, l_M) the server encodes: the longer output gets more mass."""
    return -0.2 - len(output_2) / 20, -0.4 - len(output_1) / 20


def expected_p2(output_1: str, output_2: str) -> float:
    l_m, l_big_m = alpaca_logprobs(output_1, output_2)
    return math.exp(l_big_m) / (math.exp(l_m) + math.exp(l_big_m))


def arena_verdict(answer_a: str, answer_b: str) -> str:
    """A much better if longer by > 10 characters, slightly if longer, a tie on equal lengths."""
    gap = len(answer_a) - len(answer_b)
    if gap == 0:
        return "A=B"
    better, worse = ("A", "B") if gap > 0 else ("B", "A")
    return f"{better}>>{worse}" if abs(gap) > 10 else f"{better}>{worse}"


def alpaca_reply(user: str) -> dict:
    out_1, out_2 = re.findall(r'<output model="[mM]">\n(.*?)\n</output>', user, re.S)
    l_m, l_big_m = alpaca_logprobs(out_1, out_2)
    top = [{"token": "The", "logprob": -0.01}, {"token": "m", "logprob": l_m}, {"token": "M", "logprob": l_big_m}]
    content = "M" if l_big_m > l_m else "m"
    if "ONLY_M" in user:  # one label in the top log-probs
        top = top[:1] + top[2:]
    if "SAMPLED_M" in user or "SAMPLED_OTHER" in user:  # no label among the top log-probs
        top, content = top[:1], "M" if "SAMPLED_M" in user else "Both"
    return {"message": {"role": "assistant", "content": content},
            "logprobs": {"content": [{"token": content, "logprob": -0.01, "top_logprobs": top}]}}


def arena_reply(user: str) -> dict:
    answer_a = re.search(r"\[Start of assistant A's answer\]\n(.*?)\n\[End of", user, re.S).group(1)
    answer_b = re.search(r"\[Start of assistant B's answer\]\n(.*?)\n\[End of", user, re.S).group(1)
    verdict = "" if "NO_VERDICT" in user else f"My final verdict: [[{arena_verdict(answer_a, answer_b)}]]"
    return {"message": {"role": "assistant", "content": f"My own answer: 42.\nBoth are fine.\n{verdict}"}}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        state = self.server.state
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with state["lock"]:
            state["requests"].append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                      "body": body})
            state["in_flight"] += 1
            state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
            failure = state["fail_next"].pop(0) if state["fail_next"] else None
        time.sleep(state["delay_s"])
        with state["lock"]:  # before answering: once answered, the client may send the next one
            state["in_flight"] -= 1
        user = body["messages"][-1]["content"]
        if failure is None and state["fail_if"] in user:
            failure = (500, "permanently down", {})
        if failure is not None:
            status, message, headers = failure
            return self.send(status, {"error": {"message": message}}, headers)
        if "<output model=" in user:
            choice = alpaca_reply(user)
        elif "[Start of assistant A's answer]" in user:
            choice = arena_reply(user)
        else:
            choice = {"message": {"role": "assistant", "content": f"echo: {user}"}}
        self.send(200, {"id": "cmpl", "object": "chat.completion", "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop", **choice}]})


@pytest.fixture
def server(monkeypatch):
    """A local /v1/chat/completions; its ``state`` scripts failures and records every request."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("INPO_TEST_KEY", SECRET)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.state = {"lock": threading.Lock(), "requests": [], "in_flight": 0, "max_in_flight": 0,
                   "fail_next": [], "fail_if": "\0never", "delay_s": 0.0}
    httpd.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
