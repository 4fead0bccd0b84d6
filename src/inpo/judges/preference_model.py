r"""A pairwise preference model as judge: a causal LM reads a conversation and two responses to it
and names the better one, in the format of RLHFlow/pair-preference-model-LLaMA3-8B.

For the conversation x = ``inpo.modeling.conversation(record)`` (every turn, ending with the user
turn the responses answer) and responses y_A, y_B shown in that order:

    context = "\n" + "".join("\n<turn> " + role + "\n " + content for each turn of x) + "\n"
    turn    = template.format(context, y_A, y_B)
    text    = chat template of [user: turn] with the generation prompt, BOS removed
    p(y_A, y_B) = softmax(l_A / T, l_B / T)[0] = sigmoid((l_A - l_B) / T)

where l_A, l_B are the next-token logits of the labels "A", "B" after ``text``. As in RLHFlow's
published usage the model reads no BOS token; Llama-3's original chat template always ends with
the assistant header, which ``add_generation_prompt`` writes for the templates that do not.
``compare`` = (p(a, b) + 1 - p(b, a)) / 2 averages out the position bias.

``context`` is ``context_template`` as Hugging Face's chat templating renders it (trim_blocks drops
the newline after each tag, Jinja the template's last one). That is RLHFlow's plain format: the
model card's ``tokenizer_plain.chat_template``, also in RLHFlow/RLHF-Reward-Modeling
pair-pm/README.md, whose training example reads "[CONTEXT] \n\n<turn> user\n PROMPT\n [RESPONSE A]".
Their template labels turns "user" and "assistant" by position (``loop.index0 % 2``), which is
right only for their data: pair-pm/process_pair_data.py keeps only conversations whose roles
alternate user, assistant, ... from a user turn, so the model never saw a system turn.
``CONTEXT_TEMPLATE`` labels each turn by its ``role`` instead: on such conversations it renders
exactly as theirs, and a system turn (which a position count would call "user", shifting every
later label) is kept as "<turn> system", so that the judge reads the instructions the policy
answered, as the reward model judge does through Llama-3's chat template.
"""

from __future__ import annotations

import string
from typing import Any, Sequence

import torch
from transformers import AutoModelForCausalLM

from inpo.judges import Comparison, Judge
from inpo.judges.hf_models import MODEL_OPTIONS, check_batching, check_options, fit_responses, load_model, run_batches
from inpo.modeling import conversation

TEMPLATE = "[CONTEXT] {context} [RESPONSE A] {response_a} [RESPONSE B] {response_b} \n"
# Labels by role, not position, so a system turn does not shift the user/assistant labels (module doc).
CONTEXT_TEMPLATE = (
    "\n{% for message in messages %}\n\n<turn> {{ message['role'] }}\n {{ message['content'] }}{% endfor %}\n\n\n"
)


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
        """What the model reads with ``a`` shown as response A after the record's conversation, ending
        where it answers."""
        context = self.tokenizer.apply_chat_template(conversation(record), chat_template=self.context_template,
                                                     tokenize=False)
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
