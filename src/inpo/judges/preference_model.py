"""A pairwise preference model as judge: a causal LM reads the prompt and two responses and names
the better one, in the format of RLHFlow/pair-preference-model-LLaMA3-8B.

For the prompt x and responses y_A, y_B shown in that order:

    context = [user: x] rendered by ``context_template`` (RLHFlow's plain "<turn> user" format)
    turn    = template.format(context, y_A, y_B)
    text    = chat template of [user: turn] with the generation prompt, BOS removed
    p(y_A, y_B) = softmax(l_A / T, l_B / T)[0] = sigmoid((l_A - l_B) / T)

where l_A, l_B are the next-token logits of the labels "A", "B" after ``text``. As in RLHFlow's
published usage the model reads no BOS token; Llama-3's original chat template always ends with
the assistant header, which ``add_generation_prompt`` writes for the templates that do not.
``compare`` = (p(a, b) + 1 - p(b, a)) / 2 averages out the position bias.

The helpers below (loading, option checks, batching, truncation) are shared with ``reward_model``.
"""

from __future__ import annotations

import string
from typing import Any, Callable, Mapping, Sequence

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from inpo.judges import Comparison, Judge
from inpo.logprobs import pad_sequences
from inpo.modeling import default_device

TEMPLATE = "[CONTEXT] {context} [RESPONSE A] {response_a} [RESPONSE B] {response_b} \n"
CONTEXT_TEMPLATE = (
    "\n{% for message in messages %}{% if loop.index0 % 2 == 0 %}\n\n<turn> user\n {{ message['content'] }}"
    "{% else %}\n\n<turn> assistant\n {{ message['content'] }}{% endif %}{% endfor %}\n\n\n"
)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Options every model judge takes; ``model`` has no default.
MODEL_OPTIONS = {"model": None, "batch_size": 8, "max_length": None, "dtype": "auto", "trust_remote_code": False}


def check_options(kind: str, options: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict:
    """``defaults`` updated with ``options``: an unknown option or a missing ``model`` is an error."""
    unknown = set(options) - set(defaults)
    if unknown:
        raise ValueError(f"judge {kind} takes options {sorted(defaults)}, got unknown {sorted(unknown)}")
    settings = {**defaults, **options}
    if not settings["model"]:
        raise ValueError(f"judge {kind} needs `model`: a hub name or a Hugging Face model folder")
    return settings


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` is bfloat16 on CUDA and float32 elsewhere."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def load_model(auto_class, name: str, *, dtype: str = "auto", trust_remote_code: bool = False):
    """(model, tokenizer) from a hub name or folder, in eval mode on the default device.

    A tokenizer without a pad token pads with EOS (padding is masked, so any id does).
    """
    device = default_device()
    torch_dtype = resolve_dtype(dtype, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
        model = auto_class.from_pretrained(name, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"judge model {str(name)!r} could not be loaded: not a model folder or hub name, "
                                f"or not reachable ({err})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def check_batching(batch_size: int, max_length: int | None) -> None:
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_length is not None and int(max_length) < 1:
        raise ValueError(f"max_length must be >= 1 or null (no limit), got {max_length}")


def run_batches(sequences: Sequence[Sequence[int]], forward: Callable[..., torch.Tensor], *, batch_size: int,
                pad_id: int, device: torch.device, desc: str) -> torch.Tensor:
    """``forward(input_ids, attention_mask, position_ids)`` over ``sequences``; rows in input order, float32.

    Sequences run longest first (little padding within a batch, and memory peaks at once),
    left-padded so that each ends at the last position, with positions counted from its first
    token so that padding does not change the result.
    """
    if not sequences:
        return torch.empty(0)
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    rows: list[torch.Tensor | None] = [None] * len(sequences)
    with torch.inference_mode():
        for batch in tqdm(batches, desc=desc, unit="batch", disable=len(batches) < 2):
            padded = pad_sequences([sequences[i] for i in batch], [0] * len(batch), pad_id, side="left")
            mask = padded["attention_mask"].to(device)
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            out = forward(padded["input_ids"].to(device), mask, position_ids).float().cpu()
            for i, row in zip(batch, out):
                rows[i] = row
    return torch.stack(rows)


def truncate_text(tokenizer, text: str, n_tokens: int) -> str:
    """The prefix of ``text`` made of its first ``n_tokens`` tokens (cut at a token boundary)."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return text if len(offsets) <= n_tokens else text[: offsets[n_tokens][0]]


def cut_responses(tokenizer, responses: Sequence[str], excess: int, where: str) -> list[str]:
    """Shorten the responses by ``excess`` tokens in all, the longest first.

    Response i keeps min(n_i, c) tokens, c the largest cap with sum_i min(n_i, c) <= sum_i n_i - excess.
    """
    lengths = [len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses]
    target = sum(lengths) - excess
    if target < 0:
        raise ValueError(f"{where}: the prompt and template alone exceed max_length; raise max_length")
    cap = max(c for c in range(max(lengths) + 1) if sum(min(n, c) for n in lengths) <= target)
    return [truncate_text(tokenizer, r, cap) for r in responses]


def fit_responses(encode: Callable[..., list[int]], responses: Sequence[str], tokenizer, max_length: int | None,
                  where: str) -> list[int]:
    """``encode(*responses)``, with the responses cut until it has at most ``max_length`` tokens.

    Only the responses are cut, so the end of the sequence, where the judge reads its answer, stays.
    """
    ids = encode(*responses)
    while max_length is not None and len(ids) > max_length:
        responses = cut_responses(tokenizer, responses, len(ids) - max_length, where)
        ids = encode(*responses)
    return ids


def label_token_id(tokenizer, label: str) -> int:
    """The id of ``label``, which must encode to exactly one known token."""
    ids = tokenizer.encode(str(label), add_special_tokens=False)
    if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
        raise ValueError(f"label {label!r} of `tokens` must encode to exactly one known token of the judge's "
                         f"tokenizer, got ids {ids}")
    return ids[0]


def check_template(template: str) -> str:
    fields = {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    if fields != {"context", "response_a", "response_b"}:
        raise ValueError(f"template must use exactly the fields {{context}}, {{response_a}}, {{response_b}}, "
                         f"got {sorted(fields)}")
    return template


class PairPreferenceJudge(Judge):
    """P(a > b | x) from a pairwise preference LM (kind ``pair_preference_lm``); see the module doc.

    ``n_calls`` counts sequences run: two per comparison, one per presentation order.
    """

    def __init__(self, model, tokenizer, *, template: str = TEMPLATE, context_template: str = CONTEXT_TEMPLATE,
                 tokens: Sequence[str] = ("A", "B"), temperature: float = 1.0, batch_size: int = 8,
                 max_length: int | None = None) -> None:
        tokens = list(tokens)
        if len(tokens) != 2 or tokens[0] == tokens[1]:
            raise ValueError(f"tokens must be two different labels (response A, response B), got {tokens}")
        if not float(temperature) > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        check_batching(batch_size, max_length)
        self.model, self.tokenizer = model, tokenizer
        self.template = check_template(template)
        self.context_template = context_template
        self.token_ids = [label_token_id(tokenizer, t) for t in tokens]
        self.temperature = float(temperature)
        self.batch_size = int(batch_size)
        self.max_length = None if max_length is None else int(max_length)
        self.n_calls = 0

    @classmethod
    def from_config(cls, **options: Any) -> "PairPreferenceJudge":
        """Options: ``model`` (hub name or folder), ``template``, ``context_template``, ``tokens``,
        ``temperature``, ``batch_size``, ``max_length`` (tokens per sequence; null: no limit),
        ``dtype`` (auto: bfloat16 on CUDA, float32 on CPU) and ``trust_remote_code``."""
        defaults = {**MODEL_OPTIONS, "template": TEMPLATE, "context_template": CONTEXT_TEMPLATE,
                    "tokens": ("A", "B"), "temperature": 1.0}
        settings = check_options("pair_preference_lm", options, defaults)
        model, tokenizer = load_model(AutoModelForCausalLM, settings.pop("model"), dtype=settings.pop("dtype"),
                                      trust_remote_code=settings.pop("trust_remote_code"))
        return cls(model, tokenizer, **settings)

    def text(self, record: dict, a: str, b: str) -> str:
        """What the model reads with ``a`` shown as response A, ending where it answers."""
        context = self.tokenizer.apply_chat_template([{"role": "user", "content": record["prompt"]}],
                                                     chat_template=self.context_template, tokenize=False)
        turn = self.template.format(context=context, response_a=a, response_b=b)
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": turn}], tokenize=False,
                                                  add_generation_prompt=True)
        return text.replace(self.tokenizer.bos_token, "") if self.tokenizer.bos_token else text

    def encode(self, record: dict, a: str, b: str) -> list[int]:
        """Token ids of ``text``; over ``max_length`` tokens the responses are cut, the longest first."""
        def ids(a_: str, b_: str) -> list[int]:
            return self.tokenizer(self.text(record, a_, b_), add_special_tokens=False)["input_ids"]

        return fit_responses(ids, [a, b], self.tokenizer, self.max_length, f"prompt {record.get('id')!r}")

    def label_logits(self, input_ids, attention_mask, position_ids) -> torch.Tensor:
        """[batch, 2]: the next-token logits of the two labels at the last position."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         logits_to_keep=1)
        return out.logits[:, -1, self.token_ids]

    def preferences(self, comparisons: Sequence[Comparison]) -> list[float]:
        """p(a, b) for each (record, a, b), ``a`` shown first: sigmoid((l_A - l_B) / T), one sequence each."""
        sequences = [self.encode(*c) for c in comparisons]
        logits = run_batches(sequences, self.label_logits, batch_size=self.batch_size,
                             pad_id=self.tokenizer.pad_token_id, device=self.model.device, desc="pair preference")
        self.n_calls += len(sequences)
        if not sequences:
            return []
        return torch.sigmoid((logits[:, 0] - logits[:, 1]) / self.temperature).tolist()

    def compare_many(self, comparisons: Sequence[Comparison]) -> list[float]:
        """(p(a, b) + 1 - p(b, a)) / 2 for each (record, a, b), both orders of all of them in one batch."""
        n = len(comparisons)
        p = self.preferences([*comparisons, *((record, b, a) for record, a, b in comparisons)])
        return [0.5 * (p[i] + 1.0 - p[n + i]) for i in range(n)]

    def compare(self, record: dict, a: str, b: str) -> float:
        return self.compare_many([(record, a, b)])[0]
