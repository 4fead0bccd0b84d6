"""A small client for an OpenAI-compatible ``/chat/completions`` endpoint (standard library only).

``ChatClient.complete_many`` sends request bodies concurrently and returns the parsed responses
in input order. Transient failures (HTTP 408, 429, 5xx, timeouts, dropped connections, and an HTTP
200 whose body is not a chat completion, e.g. the ``{"error": ...}`` some proxies send for an
overloaded upstream) are retried with capped, jittered exponential backoff; the n-th retry waits

    Retry-After (when the server sends it)   else   min(max_backoff_s, initial_backoff_s 2^(n-1)) u,  u ~ U(1/2, 1).

A request the server rejects on its own merits (HTTP 400, e.g. a content filter) comes back as a
``RequestRejected`` in that request's place, so the judge records that one item as missing; any
other HTTP error (401, 403, 404, ...) fails the batch at once, naming the URL, the status and the
server's message.

The API key is read from the environment variable ``api_key_env`` when requests are sent and
lives only in the request headers: never in the client, the cache, ``repr`` or an error.
``api_key_env=None`` sends no ``Authorization`` header (a local server without auth).

Cache: key = sha256 of the canonical JSON of {model, body}. The base URL, the key and the
transport settings are left out, since they do not change the answer (the same model behind
another proxy hits the cache); everything in the body is in, since it does. Answers are also
kept for sampled requests (temperature > 0): a rerun reproduces them instead of resampling.
Only usable answers are kept: a chat completion for which the caller's ``usable`` predicate holds
(for a judge: the reply gave a verdict), so a rerun asks again for a refusal, an unparsable reply
or a rejected request instead of replaying it. Identical requests in one batch are sent once.
Without ``cache_path`` answers live in memory for the client's life; with it every answer is
appended to a JSONL file (one ASCII line, non-ASCII text as JSON escapes, so any string a JSON
reply can hold reads back; flushed at once), so an interrupted run resumes without paying twice;
text after the file's last newline is a write torn by a kill and is dropped. One process per
cache file at a time.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable, Sequence

from tqdm.auto import tqdm

MAX_ERROR_CHARS = 500  # of the server's error text quoted in an exception


class ApiError(RuntimeError):
    """A request that cannot be answered; the message names the URL, status or setting."""


class RequestRejected(ApiError):
    """The server refused this one request (HTTP 400); returned in its place by ``complete_many``."""


class _Transient(Exception):
    """A failure worth retrying, with the server's requested delay when it gave one."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def request_key(model: str, body: dict) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces) of {"model": model, "body": body}."""
    canonical = json.dumps({"model": model, "body": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def backoff_delay(retry: int, initial_s: float, max_s: float) -> float:
    """Wait before retry n >= 1: min(max_s, initial_s 2^(n-1)) u with u ~ U(1/2, 1)."""
    return min(max_s, initial_s * 2 ** (retry - 1)) * random.uniform(0.5, 1.0)


def _server_message(raw: bytes) -> str:
    """The ``error.message`` of an OpenAI-style error body, else the body itself (truncated)."""
    text = raw.decode("utf-8", errors="replace")
    try:
        error = json.loads(text).get("error")
        text = error.get("message", text) if isinstance(error, dict) else str(error or text)
    except (ValueError, AttributeError):
        pass
    return text[:MAX_ERROR_CHARS]


def is_chat_completion(response) -> bool:
    """Whether a parsed reply is a chat completion: a JSON object with a non-empty ``choices`` list of objects."""
    choices = response.get("choices") if isinstance(response, dict) else None
    return isinstance(choices, list) and bool(choices) and all(isinstance(c, dict) for c in choices)


def _retry_after(headers) -> float | None:
    """The Retry-After header in seconds, when it is a number (HTTP dates fall back to backoff)."""
    try:
        return max(0.0, float(headers.get("Retry-After")))
    except (TypeError, ValueError):
        return None


class ResponseCache:
    """key -> response, mirrored in an append-only JSONL file of {"key", "response"} lines."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path is not None else None
        self.answers: dict[str, dict] = {}
        self._lock = threading.Lock()
        if self.path is not None and self.path.exists():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):  # a write torn by a kill: cut it so the next line starts clean
            with self.path.open("r+b") as f:
                f.truncate(complete)
        for number, line in enumerate(data[:complete].split(b"\n"), start=1):
            if not line.strip():
                continue
            try:  # decoded line by line: a bad byte (UnicodeDecodeError is a ValueError) names its line
                entry = json.loads(line.decode("utf-8"))
                self.answers[entry["key"]] = entry["response"]
            except (ValueError, KeyError, TypeError):
                raise ApiError(f"{self.path}:{number}: not a cache line; delete the file to start over") from None

    def __contains__(self, key: str) -> bool:
        return key in self.answers

    def __getitem__(self, key: str) -> dict:
        return self.answers[key]

    def add(self, key: str, response: dict) -> None:
        # ASCII with escapes: a lone surrogate or U+2028 in a reply would not survive a UTF-8 line
        line = json.dumps({"key": key, "response": response}) + "\n"
        with self._lock:
            self.answers[key] = response
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(line)
                    f.flush()


class ChatClient:
    """Concurrent, retrying, caching POSTs to ``{base_url}/chat/completions`` for one ``model``."""

    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = "OPENAI_API_KEY",
                 max_concurrency: int = 8, max_retries: int = 6, initial_backoff_s: float = 1.0,
                 max_backoff_s: float = 60.0, timeout_s: float = 120.0,
                 cache_path: str | os.PathLike | None = None):
        if not base_url.startswith(("http://", "https://")):
            raise ApiError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.cache = ResponseCache(cache_path)
        self.n_requests = 0  # HTTP requests sent, retries included
        self.n_cached = 0  # answers served from the cache
        self.n_rejected = 0  # requests the server refused (HTTP 400), returned as RequestRejected
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ChatClient(url={self.url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ApiError(
                    f"environment variable {self.api_key_env!r} (judge option api_key_env) is not set: export the "
                    f"API key for {self.url} in it, or set api_key_env: null for a server without authentication"
                )
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post_once(self, payload: bytes, headers: dict[str, str]) -> dict:
        with self._count_lock:
            self.n_requests += 1
        request = urllib.request.Request(self.url, data=payload, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            message = f"HTTP {err.code}: {_server_message(err.read())}"
            if "Authorization" in headers:  # a server may echo the key it rejects
                message = message.replace(headers["Authorization"].removeprefix("Bearer "), "<api key>")
            if err.code in (408, 429) or err.code >= 500:  # request timeout, rate limit, server trouble
                raise _Transient(message, _retry_after(err.headers)) from None
            if err.code == 400:  # this request's own fault (content filter, too long): the others may pass
                raise RequestRejected(f"POST {self.url} rejected the request with {message}") from None
            raise ApiError(f"POST {self.url} failed with {message}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:  # timeouts, refused, reset
            cause = err.reason if isinstance(getattr(err, "reason", None), BaseException) else err
            raise _Transient(f"{type(cause).__name__}: {cause}") from None
        try:
            response = json.loads(raw)
        except ValueError:
            raise ApiError(f"POST {self.url} answered with non-JSON: {raw[:MAX_ERROR_CHARS]!r}") from None
        if not is_chat_completion(response):  # an error object sent with HTTP 200: retried, never cached
            raise _Transient(f"HTTP 200 without choices: {_server_message(raw)}")
        return response

    def _post(self, body: dict, headers: dict[str, str]) -> dict:
        """POST one body, retrying transient failures up to ``max_retries`` times."""
        payload = json.dumps({"model": self.model, **body}).encode("utf-8")
        last = _Transient("no attempt")
        for retry in range(self.max_retries + 1):
            if retry:
                backoff = backoff_delay(retry, self.initial_backoff_s, self.max_backoff_s)
                time.sleep(last.retry_after if last.retry_after is not None else backoff)
            try:
                return self._post_once(payload, headers)
            except _Transient as err:
                last = err
        raise ApiError(f"POST {self.url} gave up after {self.max_retries + 1} attempts (max_retries="
                       f"{self.max_retries}); last error: {last}")

    def _answer(self, key: str, body: dict, headers: dict[str, str], usable: Callable[[dict], bool],
                answers: dict[str, dict | RequestRejected]) -> None:
        try:
            response = self._post(body, headers)
        except RequestRejected as rejected:
            with self._count_lock:
                self.n_rejected += 1
            answers[key] = rejected
            return
        answers[key] = response
        if usable(response):
            self.cache.add(key, response)

    def complete_many(self, requests: Sequence[dict], desc: str = "judge",
                      usable: Callable[[dict], bool] = lambda response: True) -> list[dict | RequestRejected]:
        """The parsed response to each request body (a chat-completions body without ``model``), in
        order, or a ``RequestRejected`` where the server refused that request (HTTP 400).

        Cached requests are not sent, identical requests are sent once; only responses for which
        ``usable(response)`` holds are cached. The first other failure (or Ctrl-C) cancels the
        requests not yet started and is raised once the running ones are done (and cached).
        """
        keys = [request_key(self.model, body) for body in requests]
        # a cached reply is used only if usable now: a cache written before (an error body, a refusal) is asked again
        answers: dict[str, dict | RequestRejected] = {
            key: self.cache[key] for key in keys if key in self.cache and is_chat_completion(self.cache[key]) and usable(self.cache[key])}
        pending = {key: body for key, body in zip(keys, requests) if key not in answers}
        self.n_cached += sum(key in answers for key in keys)
        if pending:
            headers = self._headers()
            with tqdm(total=len(pending), desc=desc) as bar:
                pool = ThreadPoolExecutor(self.max_concurrency)
                try:
                    futures = [pool.submit(self._answer, key, body, headers, usable, answers)
                               for key, body in pending.items()]
                    for future in futures:
                        future.add_done_callback(lambda f: f.cancelled() or bar.update())
                    wait(futures, return_when=FIRST_EXCEPTION)
                finally:  # after a failure or Ctrl-C start nothing new; running requests finish and are cached
                    pool.shutdown(cancel_futures=True)
            errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
            if errors:
                raise errors[0]
        return [answers[key] for key in keys]
