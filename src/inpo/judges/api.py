"""LLM judges over an OpenAI-compatible chat API: the shared base ``ApiJudge`` and its options.

The judges themselves send their benchmark's official requests, read at run time from the
benchmark's own files (``alpaca_eval``: AlpacaEval 2.0's weighted annotator from the alpaca-eval
package; ``arena_hard``: Arena-Hard v0.1's ``judge_config.yaml``; ``mt_bench``: FastChat's
``judge_prompts.jsonl``). All send their requests through one ``ChatClient`` (concurrency,
retries, a cache of the replies that gave a verdict: see ``api_client``). ``n_calls`` counts
requests asked, cached or not; ``n_requests``/``n_cached``/``n_rejected`` are the client's HTTP
requests, cache hits and requests the server refused.
"""

from __future__ import annotations

from typing import Any, Callable

from inpo.judges import Judge
from inpo.judges.api_client import ChatClient, RequestRejected


def reply_text(response: dict | RequestRejected) -> str | None:
    """The text of a chat completion's first choice; None for a rejected request or a reply without text."""
    if isinstance(response, RequestRejected):
        return None
    content = (response["choices"][0].get("message") or {}).get("content")
    return content if isinstance(content, str) else None


def _is_int(low: int, high: float = float("inf")) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _is_number(low: float) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= low


def _is_name(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


# option -> (check, what it must be); the client's options are shared by both judges
OPTION_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "base_url": (lambda v: isinstance(v, str) and v.startswith(("http://", "https://")), "an http(s) URL"),
    "model": (lambda v: v is None or _is_name(v), "a model name, or null for the benchmark's official judge"),
    "api_key_env": (lambda v: v is None or _is_name(v), "an environment variable name, or null for no auth"),
    "max_concurrency": (_is_int(1), "an integer >= 1"),
    "max_retries": (_is_int(0), "an integer >= 0"),
    "initial_backoff_s": (_is_number(0), "a number >= 0"),
    "max_backoff_s": (_is_number(0), "a number >= 0"),
    "timeout_s": (_is_number(1e-3), "a number of seconds > 0"),
    "cache": (lambda v: v is None or _is_name(v), "a file path, or null for no cache file"),
    "annotator": (_is_name, "the name of an alpaca-eval annotator config"),
    "judge_config": (_is_name, "the path of a judge_config.yaml"),
    "judge_prompts": (_is_name, "the path of a judge_prompts.jsonl"),
}
CLIENT_OPTIONS = ("base_url", "model", "api_key_env", "max_concurrency", "max_retries", "initial_backoff_s",
                  "max_backoff_s", "timeout_s", "cache")


class ApiJudge(Judge):
    """A judge whose verdicts come from a ``ChatClient``; subclasses name their own ``OPTIONS`` and
    the benchmark's official judge model (``official_model``, used when ``model`` is null)."""

    OPTIONS: tuple[str, ...] = ()

    def __init__(self, client: ChatClient):
        self.client = client
        self.n_calls = 0

    @classmethod
    def from_config(cls, **options: Any) -> "ApiJudge":
        """The judge from its config keys: the client's ``CLIENT_OPTIONS`` and the judge's ``OPTIONS``."""
        allowed = CLIENT_OPTIONS + cls.OPTIONS
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(f"judge {cls.__name__} takes options {list(allowed)}, got unknown {unknown}")
        if "base_url" not in options:
            raise ValueError(f"judge {cls.__name__} needs options ['base_url']")
        for name, value in options.items():
            check, expected = OPTION_RULES[name]
            if not check(value):
                raise ValueError(f"judge {cls.__name__}: option {name} must be {expected}, got {value!r}")
        client_options = {name: options.pop(name) for name in CLIENT_OPTIONS if name in options}
        client_options["cache_path"] = client_options.pop("cache", None)
        judge_options = {name: options[name] for name in cls.OPTIONS if name in options}
        if client_options.get("model") is None:
            client_options["model"] = cls.official_model(**judge_options)
        return cls(ChatClient(**client_options), **judge_options)

    @classmethod
    def official_model(cls, **options: Any) -> str:
        """The judge model the benchmark's official settings name (for ``model: null``)."""
        raise ValueError(f"judge {cls.__name__} needs option 'model'")

    @property
    def n_requests(self) -> int:
        return self.client.n_requests

    @property
    def n_cached(self) -> int:
        return self.client.n_cached

    @property
    def n_rejected(self) -> int:
        return self.client.n_rejected

    def _complete(self, bodies: list[dict], desc: str,
                  usable: Callable[[dict], bool] = lambda response: True) -> list[dict | RequestRejected]:
        """The replies to ``bodies`` (a ``RequestRejected`` where the server refused one); only
        replies for which ``usable`` holds (a verdict) are cached."""
        self.n_calls += len(bodies)
        return self.client.complete_many(bodies, desc=desc, usable=usable)

    def compare(self, record: dict, a: str, b: str) -> float:
        return self.compare_many([(record, a, b)])[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.client!r})"
