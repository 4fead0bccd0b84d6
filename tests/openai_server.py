"""A local OpenAI-compatible server for tests: real HTTP, answering from the request content.

Requests in AlpacaEval's official annotator format get label log-probs from ``alpaca_logprobs``
(the longer output is preferred), requests in Arena-Hard's official judge format get a verdict from
``arena_verdict``, MT-Bench's single-answer grading requests a rating from ``mt_bench_rating``,
anything else an echo of the last message. Markers in the text script the judges' odd replies
(see ``alpaca_reply``, ``arena_reply``, ``mt_bench_reply``). ``server.state`` scripts failures
and records every request.
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


ALPACA_OUTPUT = re.compile(r'"model_identifier": "[mM]",\s*"output": """(.*?)"""\n', re.S)


def alpaca_reply(user: str) -> dict:
    """Label log-probs for the two outputs; markers: ONLY_M (one label in the top log-probs),
    REFUSE (no label: a refusal), SAMPLED_M (M sampled, no label among the top log-probs)."""
    out_1, out_2 = ALPACA_OUTPUT.findall(user)
    l_m, l_big_m = alpaca_logprobs(out_1, out_2)
    top = [{"token": "The", "logprob": -0.01}, {"token": "m", "logprob": l_m}, {"token": "M", "logprob": l_big_m}]
    content = "M" if l_big_m > l_m else "m"
    if "ONLY_M" in user:
        top = top[:1] + top[2:]
    if "REFUSE" in user or "SAMPLED_M" in user:
        top, content = [{"token": "I", "logprob": -0.01}, {"token": "Sorry", "logprob": -5.0}], "M" if "SAMPLED_M" in user else "I"
    return {"message": {"role": "assistant", "content": content},
            "logprobs": {"content": [{"token": content, "logprob": -0.01, "top_logprobs": top}]}}


def arena_reply(messages: list[dict]) -> dict:
    """A judgment ending with the verdict of ``arena_verdict``; NO_VERDICT in the question: none on
    the first attempt (given when asked to continue), NEVER_VERDICT: none ever, TWO_VERDICTS: two
    different labels."""
    user = next(m["content"] for m in messages if m["role"] == "user")
    answer_a, answer_b = (user.split(f"<|The Start of Assistant {x}'s Answer|>\n", 1)[1]
                          .split(f"\n<|The End of Assistant {x}'s Answer|>", 1)[0] for x in "AB")
    verdict = f"My final verdict is: [[{arena_verdict(answer_a, answer_b)}]]"
    continued = messages[-1]["role"] == "user" and messages[-1]["content"] != user
    if "NEVER_VERDICT" in user or ("NO_VERDICT" in user and not continued):
        verdict = "I need to think more."
    if "TWO_VERDICTS" in user:
        verdict = "Maybe [[A>B]], or rather [[B>A]]."
    return {"message": {"role": "assistant", "content": f"My own answer: 42.\nBoth are fine.\n{verdict}"}}


def mt_bench_rating(answer: str) -> int:
    """The rating the server gives an MT-Bench answer: 1 + its length mod 10."""
    return 1 + len(answer) % 10


def mt_bench_reply(messages: list[dict]) -> dict:
    """MT-Bench single-answer grading: "Rating: [[N]]" for the graded answer (single-v1's, or the
    last assistant turn of the multi-turn prompts), N = ``mt_bench_rating``. Markers in the request:
    NO_RATING, a reply without a rating; BACKUP_RATING, "Rating: [N]"."""
    user, text = messages[-1]["content"], "".join(m["content"] for m in messages)
    if "[The Start of Assistant's Answer]" in user:
        answer = user.split("[The Start of Assistant's Answer]\n", 1)[1].rsplit("\n[The End of Assistant's Answer]", 1)[0]
    else:
        answer = user.rsplit("### Assistant A:\n", 1)[1].split("\n\n<|The End of Assistant A's Conversation", 1)[0]
    rating = f"[{mt_bench_rating(answer)}]" if "BACKUP_RATING" in text else f"[[{mt_bench_rating(answer)}]]"
    content = "I cannot judge this." if "NO_RATING" in text else f"The answer is short.\n\nRating: {rating}"
    return {"message": {"role": "assistant", "content": content}}


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
        if failure is None and "REJECT_ME" in json.dumps(body["messages"]):
            failure = (400, "This prompt was rejected by the content filter", {})
        if failure is not None:
            status, message, headers = failure
            return self.send(status, {"error": {"message": message}}, headers)
        if '"model_identifier": "M"' in user:
            choice = alpaca_reply(user)
        elif any("<|The Start of Assistant A's Answer|>" in m["content"] for m in body["messages"]):
            choice = arena_reply(body["messages"])
        elif any("[[rating]]" in m["content"] for m in body["messages"]):  # MT-Bench's single-answer grading
            choice = mt_bench_reply(body["messages"])
        else:
            choice = {"message": {"role": "assistant", "content": f"echo: {user}"}}
        self.send(200, {"id": "cmpl", "object": "chat.completion", "created": 0, "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop", **choice}],
                        "usage": {"prompt_tokens": len(user) // 4, "completion_tokens": 1, "total_tokens": len(user) // 4 + 1}})


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
