"""LLM judges over an OpenAI-compatible chat API: AlpacaEval 2.0's weighted judge and Arena-Hard v0.1's.

``AlpacaEvalJudge`` (``weighted_alpaca_eval_gpt4_turbo``): one request per order shows the
instruction and two outputs labelled ``m`` (output 1) and ``M`` (output 2) and asks for the
better label in one token; with l_m, l_M their log-probs among the first token's top log-probs,

    P(output 2 better) = exp(l_M) / (exp(l_m) + exp(l_M)) = sigmoid(l_M - l_m)

(other tokens ignored, a label missing from the top log-probs has probability 0). When neither
label is there, the sampled token decides (``M`` 1, ``m`` 0), and any other reply is a draw, 1/2.

``ArenaHardJudge``: the judge writes its own answer, compares assistants A and B with it and ends
with a verdict among [[A>>B]], [[A>B]], [[A=B]], [[B>A]], [[B>>A]]; each question is two games,
A = baseline then A = the answer. ``games_many`` returns the games for Arena-Hard's scorer; for
``compare`` this project maps a verdict to P(A wins) = 1, 3/4, 1/2, 1/4, 0 (no verdict: 1/2),
its own choice: the official score is computed from the verdicts, not from this number.

Both average P over the two presentation orders and send temperature-0 requests through one
``ChatClient`` (concurrency, retries, cache: see ``api_client``). ``n_calls`` counts requests
asked, cached or not; ``n_requests``/``n_cached`` are the client's HTTP requests and cache hits.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from inpo.benchmarks.arena_hard import parse_verdict
from inpo.judges import Comparison, Judge, sigmoid
from inpo.judges.api_client import ApiError, ChatClient

LABELS = ("m", "M")  # output 1, output 2: AlpacaEval's labels, one token in GPT-4's vocabulary

ALPACA_SYSTEM = (
    "You judge the outputs of large language models. Given an instruction and the outputs of two "
    "models, you pick the output that a careful human reader would prefer. Your picks rank models "
    "against each other, so be accurate and fair."
)
ALPACA_USER = """Two AI models were given the same instruction. Read the instruction and both outputs, \
then decide which output is better: more helpful, accurate and relevant to the instruction, as a \
thoughtful person would judge it. The order of the outputs says nothing about their quality.

<instruction>
{instruction}
</instruction>

<output model="m">
{output_1}
</output>

<output model="M">
{output_2}
</output>

Answer with the identifier of the model whose output is better: the single character m or M, with \
nothing before or after it."""

ARENA_SYSTEM = """You are an impartial judge. You will see a user prompt and the answers of two AI \
assistants, A and B, and you must decide whose answer is better.

First write your own answer to the prompt; do this before judging either assistant.

Then compare each assistant's answer with yours, pointing out and correcting any mistakes or \
inaccurate information. Judge whether each answer is helpful (it really answers the prompt or \
follows its instructions; when the prompt is ambiguous or open to several readings, asking the \
user for clarification is better than answering on assumptions), relevant (every part bears on \
what was asked) and concise (clear, without padding or needless length). Where it matters, weigh \
creativity and novelty too, and name any important information an answer leaves out.

After your explanation, give exactly one final verdict, using one of these labels:

1. Assistant A is much better: [[A>>B]]
2. Assistant A is slightly better: [[A>B]]
3. A tie, about equally good: [[A=B]]
4. Assistant B is slightly better: [[B>A]]
5. Assistant B is much better: [[B>>A]]

For example: "Final verdict: assistant B is slightly better [[B>A]]"."""
ARENA_USER = """[User prompt]
{question}

[Start of assistant A's answer]
{answer_a}
[End of assistant A's answer]

[Start of assistant B's answer]
{answer_b}
[End of assistant B's answer]"""

VERDICT_SCORES = {"A>>B": 1.0, "A>B": 0.75, "A=B": 0.5, "B>A": 0.25, "B>>A": 0.0}  # P(A wins), the project's map


def _first_choice(response: dict) -> dict:
    try:
        return response["choices"][0]
    except (KeyError, IndexError, TypeError):
        raise ApiError(f"a chat completion without choices: {str(response)[:300]}") from None


def label_preference(response: dict) -> float:
    """P(output 2 better) = sigmoid(l_M - l_m) from the first token's top log-probs, see the module doc."""
    choice = _first_choice(response)
    tokens = ((choice.get("logprobs") or {}).get("content") or [{}])[0].get("top_logprobs") or []
    logprobs = {t["token"]: t["logprob"] for t in tokens if t.get("token") in LABELS}
    if logprobs:
        return sigmoid(logprobs.get(LABELS[1], float("-inf")) - logprobs.get(LABELS[0], float("-inf")))
    sampled = ((choice.get("message") or {}).get("content") or "").strip()
    return {LABELS[0]: 0.0, LABELS[1]: 1.0}.get(sampled, 0.5)


def _is_int(low: int, high: float = float("inf")) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _is_number(low: float) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= low


def _is_name(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


# option -> (check, what it must be); the client's options are shared by both judges
OPTION_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "base_url": (lambda v: isinstance(v, str) and v.startswith(("http://", "https://")), "an http(s) URL"),
    "model": (_is_name, "a model name"),
    "api_key_env": (lambda v: v is None or _is_name(v), "an environment variable name, or null for no auth"),
    "max_concurrency": (_is_int(1), "an integer >= 1"),
    "max_retries": (_is_int(0), "an integer >= 0"),
    "initial_backoff_s": (_is_number(0), "a number >= 0"),
    "max_backoff_s": (_is_number(0), "a number >= 0"),
    "timeout_s": (_is_number(1e-3), "a number of seconds > 0"),
    "cache": (lambda v: v is None or _is_name(v), "a file path, or null for no cache file"),
    "top_logprobs": (_is_int(1, 20), "an integer from 1 to 20"),
    "max_tokens": (_is_int(1), "an integer >= 1"),
}
CLIENT_OPTIONS = ("base_url", "model", "api_key_env", "max_concurrency", "max_retries", "initial_backoff_s",
                  "max_backoff_s", "timeout_s", "cache")


class ApiJudge(Judge):
    """A judge whose verdicts come from a ``ChatClient``; subclasses name their own ``OPTIONS``."""

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
        missing = [name for name in ("base_url", "model") if name not in options]
        if missing:
            raise ValueError(f"judge {cls.__name__} needs options {missing}")
        for name, value in options.items():
            check, expected = OPTION_RULES[name]
            if not check(value):
                raise ValueError(f"judge {cls.__name__}: option {name} must be {expected}, got {value!r}")
        client_options = {name: options.pop(name) for name in CLIENT_OPTIONS if name in options}
        client_options["cache_path"] = client_options.pop("cache", None)
        return cls(ChatClient(**client_options), **options)

    @property
    def n_requests(self) -> int:
        return self.client.n_requests

    @property
    def n_cached(self) -> int:
        return self.client.n_cached

    def _complete(self, bodies: list[dict], desc: str) -> list[dict]:
        self.n_calls += len(bodies)
        return self.client.complete_many(bodies, desc=desc)

    def compare(self, record: dict, a: str, b: str) -> float:
        return self.compare_many([(record, a, b)])[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.client!r})"


class AlpacaEvalJudge(ApiJudge):
    """AlpacaEval 2.0's weighted judge: the label log-probs give P(output 2 better), see the module doc."""

    OPTIONS = ("top_logprobs",)

    def __init__(self, client: ChatClient, top_logprobs: int = 5):
        super().__init__(client)
        self.top_logprobs = top_logprobs

    def request(self, instruction: str, output_1: str, output_2: str) -> dict:
        user = ALPACA_USER.format(instruction=instruction, output_1=output_1, output_2=output_2)
        return {"messages": [{"role": "system", "content": ALPACA_SYSTEM}, {"role": "user", "content": user}],
                "temperature": 0, "max_tokens": 1, "logprobs": True, "top_logprobs": self.top_logprobs}

    def preference_many(self, items: Sequence[tuple[str, str, str]]) -> list[tuple[float, dict]]:
        """(P(output_2 better), the response) for each (instruction, output_1, output_2), in that one order."""
        responses = self._complete([self.request(*item) for item in items], desc="alpaca_eval judge")
        return [(label_preference(response), response) for response in responses]

    def compare_many(self, comparisons: Sequence[Comparison]) -> list[float]:
        """P(a > b) = (P(a better | a first) + P(a better | b first)) / 2 = ((1 - p2(a, b)) + p2(b, a)) / 2."""
        items = [item for record, a, b in comparisons for item in ((record["prompt"], a, b), (record["prompt"], b, a))]
        p2 = [p for p, _ in self.preference_many(items)]
        return [0.5 * ((1.0 - p2[2 * i]) + p2[2 * i + 1]) for i in range(len(comparisons))]


class ArenaHardJudge(ApiJudge):
    """Arena-Hard v0.1's judge: two games per question, verdict labels, see the module doc."""

    OPTIONS = ("max_tokens",)

    def __init__(self, client: ChatClient, max_tokens: int = 4096):
        super().__init__(client)
        self.max_tokens = max_tokens

    def request(self, user_prompt: str) -> dict:
        return {"messages": [{"role": "system", "content": ARENA_SYSTEM}, {"role": "user", "content": user_prompt}],
                "temperature": 0, "max_tokens": self.max_tokens}

    def games_many(self, items: Sequence[tuple[str, str, str]]) -> list[list[dict]]:
        """For each (question, baseline_answer, answer): game 1 with A = baseline, game 2 with A = answer.

        A game is {"prompt", "judgment" (the reply), "score" (its verdict label or None)}.
        """
        prompts = [ARENA_USER.format(question=question, answer_a=first, answer_b=second)
                   for question, baseline, answer in items
                   for first, second in ((baseline, answer), (answer, baseline))]
        responses = self._complete([self.request(prompt) for prompt in prompts], desc="arena_hard judge")
        games = []
        for prompt, response in zip(prompts, responses):
            judgment = (_first_choice(response).get("message") or {}).get("content") or ""
            games.append({"prompt": prompt, "judgment": judgment, "score": parse_verdict(judgment)})
        return [games[2 * i: 2 * i + 2] for i in range(len(items))]

    def compare_many(self, comparisons: Sequence[Comparison]) -> list[float]:
        """P(a > b) with b as the baseline: ((1 - s(game 1)) + s(game 2)) / 2, s = ``VERDICT_SCORES`` (None: 1/2)."""
        games = self.games_many([(record["prompt"], b, a) for record, a, b in comparisons])
        return [0.5 * ((1.0 - VERDICT_SCORES.get(g1["score"], 0.5)) + VERDICT_SCORES.get(g2["score"], 0.5))
                for g1, g2 in games]
