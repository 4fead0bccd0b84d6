"""A sequence-classification reward model as judge, in the way of sfairXC/FsfairX-LLaMA3-RM-v0.1:

    r(y | x) = the model's single logit on [*x, assistant: y] in the tokenizer's chat template

where x = ``inpo.modeling.conversation(record)``, every turn (system turns included) ending with
the user turn y answers. The model card scores a whole multi-turn ``chat`` this way, and
RLHFlow/Online-RLHF annotate_data/get_rewards.py appends the response to the prompt's messages.
The chat text has its BOS removed and tokenizing adds it back, as in the model card's pipeline
(exactly one BOS whether or not the template writes one). The preference is Bradley-Terry,
P(a > b | x) = sigmoid(r(a) - r(b)) (``RewardJudge``).

The model pools its logits at the rightmost token that is not ``pad_token_id``; batches are padded
on the left, so that token is the one an unpadded run would pool.
"""

from __future__ import annotations

from typing import Any, Sequence

from transformers import AutoModelForSequenceClassification

from inpo.judges import RewardJudge
from inpo.judges.hf_models import MODEL_OPTIONS, check_batching, check_options, fit_responses, load_model, run_batches
from inpo.modeling import conversation


class RewardModelJudge(RewardJudge):
    """r(y | x) from a one-label sequence-classification model (kind ``reward_model``).

    ``n_calls`` counts sequences run: one per reward.
    """

    def __init__(self, model, tokenizer, *, batch_size: int = 8, max_length: int | None = None) -> None:
        if model.config.num_labels != 1:
            raise ValueError(f"reward model {model.config.name_or_path!r} has {model.config.num_labels} labels; "
                             "a reward model has one")
        check_batching(batch_size, max_length)
        # The model scores the rightmost token that is not pad_token_id. A config without one was
        # never batched and scores the last token; BOS, which never ends a sequence, then pads.
        if model.config.pad_token_id is None:
            bos = tokenizer.bos_token_id
            model.config.pad_token_id = tokenizer.pad_token_id if bos is None else bos
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = int(batch_size)
        self.max_length = None if max_length is None else int(max_length)
        self.n_calls = 0

    @classmethod
    def from_config(cls, **options: Any) -> "RewardModelJudge":
        """Options: ``model`` (hub name or folder), ``batch_size``, ``max_length`` (tokens per sequence;
        null: no limit), ``dtype`` (auto: bfloat16 on CUDA, float32 on CPU) and ``trust_remote_code``."""
        settings = check_options("reward_model", options, MODEL_OPTIONS)
        model, tokenizer = load_model(AutoModelForSequenceClassification, settings.pop("model"),
                                      dtype=settings.pop("dtype"), trust_remote_code=settings.pop("trust_remote_code"))
        return cls(model, tokenizer, **settings)

    def text(self, record: dict, response: str) -> str:
        """The record's conversation and [assistant: response] in the chat template, BOS removed."""
        chat = [*conversation(record), {"role": "assistant", "content": response}]
        text = self.tokenizer.apply_chat_template(chat, tokenize=False)
        return text.replace(self.tokenizer.bos_token, "") if self.tokenizer.bos_token else text

    def encode(self, record: dict, response: str) -> list[int]:
        """Token ids of ``text`` with the tokenizer's special tokens; over ``max_length`` the response is cut."""
        def ids(response_: str) -> list[int]:
            return self.tokenizer(self.text(record, response_))["input_ids"]

        return fit_responses(ids, [response], self.tokenizer, self.max_length, f"prompt {record.get('id')!r}")

    def scores(self, input_ids, attention_mask, position_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits[:, 0]

    def rewards_many(self, items: Sequence[tuple[dict, str]]) -> list[float]:
        """r(y | x) for each (record, response), in batches of ``batch_size`` sequences."""
        sequences = [self.encode(record, text) for record, text in items]
        rewards = run_batches(sequences, self.scores, batch_size=self.batch_size, pad_id=self.model.config.pad_token_id,
                              device=self.model.device, desc="reward model")
        self.n_calls += len(sequences)
        return rewards.tolist()

    def reward(self, record: dict, text: str) -> float:
        return self.rewards_many([(record, text)])[0]
