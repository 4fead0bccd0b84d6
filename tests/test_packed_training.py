"""A training step's loss and gradient do not depend on how its examples are packed and split into
micro-batches, and a run with token-budget micro-batches resumes exactly."""

import pytest
import torch
from accelerate import Accelerator
from omegaconf import OmegaConf
from transformers import LlamaConfig, LlamaForCausalLM

from inpo.attention import SEGMENT_ATTENTION
from inpo.logprobs import attention_implementation
from inpo.optim import OptimSettings
from inpo.train import preference_objective
from inpo.training import NonFiniteLossError, Objective, accumulate_step, fit, latest_checkpoint, step_batches

VOCAB = 61


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(config).double()


def pairs(n=7, seed=3):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        prompt = torch.randint(1, VOCAB, (int(torch.randint(2, 12, (1,), generator=g)),), generator=g).tolist()
        answers = [torch.randint(1, VOCAB, (int(torch.randint(1, 15, (1,), generator=g)),), generator=g).tolist()
                   for _ in range(2)]
        logps = (-torch.rand(4, generator=g, dtype=torch.float64) * 20).tolist()
        out.append({"chosen": prompt + answers[0], "rejected": prompt + answers[1], "response_start": len(prompt),
                    "logps": logps})
    return out


def step_gradient(model, objective, examples, settings):
    """(metrics, gradient) of one optimizer step over all ``examples``, as fit computes them."""
    model.zero_grad()
    step = step_batches(examples, objective, settings)
    metrics = accumulate_step(Accelerator(cpu=True), model, objective, step)
    return metrics, [p.grad.clone() for p in model.parameters()], [len(b["logps"]) for b in step["micro_batches"]]


@pytest.mark.parametrize("loss", ["inpo", "dpo"])
def test_step_loss_is_the_mean_over_pairs_however_packed(model, loss):
    algo = OmegaConf.create({"loss": loss, "eta": 0.2, "tau": 0.05, "beta": 0.1})
    examples = pairs()
    big = OptimSettings(learning_rate=1.0, batch_size=len(examples))
    want_metrics, want_grad, sizes = step_gradient(model, preference_objective(algo, 0, "padded"), examples, big)
    assert sizes == [7]
    # an independent computation of the mean loss: the pairs one at a time, padded
    single = OptimSettings(learning_rate=1.0, batch_size=1)
    one_by_one = [step_gradient(model, preference_objective(algo, 0, "padded"), [e], single)[0]["loss"] for e in examples]
    assert want_metrics["loss"] == pytest.approx(sum(one_by_one) / len(examples), rel=1e-6)
    for layout in ("segments", "rows", "single_row", "padded"):
        budget = OptimSettings(learning_rate=1.0, batch_size=3, gradient_accumulation_steps=3, max_tokens=70)
        with attention_implementation(model, SEGMENT_ATTENTION if layout == "segments" else None):
            metrics, grad, sizes = step_gradient(model, preference_objective(algo, 0, layout), examples, budget)
        assert len(set(sizes)) > 1 and sum(sizes) == len(examples)  # unequal micro-batches
        assert metrics["loss"] == pytest.approx(want_metrics["loss"], rel=1e-6)
        assert metrics["accuracy"] == pytest.approx(want_metrics["accuracy"])
        for g, w in zip(grad, want_grad):
            torch.testing.assert_close(g, w, atol=1e-6, rtol=1e-5)


def test_step_batches_cut_longest_first_by_the_budget():
    objective = Objective(collate=lambda examples: examples, loss_sum=None, length=len)
    examples = ["a" * n for n in (3, 9, 2, 5, 4)]
    step = step_batches(examples, objective, OptimSettings(learning_rate=1.0, batch_size=2, max_tokens=9))
    assert step["micro_batches"] == [["a" * 9], ["a" * 5, "a" * 4], ["a" * 3, "a" * 2]]
    assert step["weight"] == 5 and step["tokens"] == 23
    plain = step_batches(examples, objective, OptimSettings(learning_rate=1.0, batch_size=2))
    assert [len(b) for b in plain["micro_batches"]] == [2, 2, 1] and plain["micro_batches"][0] == examples[:2]


class Linear(torch.nn.Linear):  # saved like a Hugging Face model, as fit does at the end
    def save_pretrained(self, path, **_):
        path.mkdir(parents=True, exist_ok=True)


class Tokenizer:
    def save_pretrained(self, path):
        pass


def budget_fit(tmp_path, fail_at_call=None):
    """fit a linear model on examples of unequal lengths, micro-batches cut by a token budget; the
    loss turns NaN at the ``fail_at_call``-th micro-batch, as a job killed there."""
    torch.manual_seed(0)
    model = Linear(4, 1)
    g = torch.Generator().manual_seed(5)
    examples = [{"x": torch.randn(4, generator=g), "length": int(n)} for n in torch.randint(1, 9, (23,), generator=g)]
    calls = []

    def loss_sum(m, batch):
        calls.append(1)
        loss = (m(batch["x"]).squeeze(-1) - 1).pow(2).sum()
        return (loss * float("nan") if len(calls) == fail_at_call else loss), {}

    objective = Objective(collate=lambda b: {"x": torch.stack([e["x"] for e in b])}, loss_sum=loss_sum,
                          length=lambda e: e["length"])
    settings = OptimSettings(learning_rate=0.05, epochs=2, batch_size=3, gradient_accumulation_steps=2, max_tokens=10,
                             checkpoint_every=2, log_every=1)
    summary = fit(model, examples, objective, settings, seed=1, work_dir=tmp_path, output=tmp_path / "model",
                  tokenizer=Tokenizer())
    return summary, model.weight.detach().clone(), len(calls)


def test_token_budget_training_resumes_exactly(tmp_path):
    summary, straight, calls = budget_fit(tmp_path / "straight")
    assert calls > summary["steps"]  # several micro-batches a step
    with pytest.raises(NonFiniteLossError):
        budget_fit(tmp_path / "killed", fail_at_call=calls // 2)
    stopped_at = int((latest_checkpoint(tmp_path / "killed" / "checkpoints").name).split("-")[1])
    assert 0 < stopped_at < summary["steps"]
    resumed, weights, _ = budget_fit(tmp_path / "killed")
    assert resumed["resumed_from_step"] == stopped_at and resumed["steps"] == summary["steps"]
    torch.testing.assert_close(weights, straight, atol=0, rtol=0)
