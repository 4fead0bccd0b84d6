"""How the training stages set a model and a run up: dropout off in train, the trackers of report_to."""

import json

import pytest
import torch
from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

from inpo import logps, sft, tiny_models, train
from inpo.config import load_config
from inpo.lora import apply_lora
from inpo.modeling import load_policy
from inpo.records import read_json, write_jsonl
from inpo.task import make_prompts, render_response
from inpo.training import DROPOUT_MODULES, disable_dropout, resolve_trackers

ETA = 0.2
INSTALLED = {tracker.value for tracker in get_available_trackers()}


@pytest.fixture(scope="module")
def dropout_policy(tmp_path_factory):
    """A tiny policy whose attention has dropout 0.3, and pairs scored by the logps stage with it as
    both pi_ref and pi_t (in eval mode, as logps always scores)."""
    root = tmp_path_factory.mktemp("dropout")
    tiny_models.run(load_config("tiny_models", ["kind=policy", f"output={root}/model", "+architecture.attention_dropout=0.3"]))
    records = make_prompts(8, seed=1, split="train1", min_items=2, max_items=4)
    write_jsonl(root / "pairs.jsonl", [{"id": r["id"], "prompt": r["prompt"], "chosen": render_response(sorted(r["items"]), 0, 1),
                                        "rejected": render_response(r["items"], 2, 0)} for r in records])
    logps.run(load_config("logps", [f"pairs={root}/pairs.jsonl", f"ref_policy={root}/model", f"policy={root}/model",
                                    f"output={root}/scored.jsonl"]))
    return root


def first_step(root, tmp_path, *overrides):
    """The metrics of the first optimizer step of train on all 8 pairs at once, and the work folder."""
    train.run(load_config("train", [f"pairs={root}/scored.jsonl", f"policy={root}/model", f"work_dir={tmp_path}",
                                    "optim.epochs=1", "optim.batch_size=8", "optim.log_every=1", f"algo.eta={ETA}",
                                    "algo.tau=0.0667", *overrides]))
    return json.loads((tmp_path / "train_log.jsonl").read_text().splitlines()[0])


@pytest.mark.parametrize("overrides", [[], ["lora.enabled=true", "lora.r=4", "lora.dropout=0.3"]], ids=["full", "lora"])
def test_at_pi_t_the_inpo_loss_is_its_target_exactly_with_dropout_in_the_model(dropout_policy, tmp_path, overrides):
    """At step 1 the policy is pi_t = pi_ref, so h = 0 and the loss is (1/(2 eta))^2, as the stored
    log-probs (eval mode) say, only if training runs without the model's dropout."""
    metrics = first_step(dropout_policy, tmp_path, *overrides)
    assert metrics["loss"] == pytest.approx((1 / (2 * ETA)) ** 2, abs=1e-5)
    assert metrics["logratio_margin"] == pytest.approx(0, abs=1e-5)
    # the saved policy keeps its config's dropout rate: a setting for whoever trains it next
    assert read_json(tmp_path / "policy" / "config.json")["attention_dropout"] == 0.3


def test_with_disable_dropout_false_the_model_trains_with_its_dropout(dropout_policy, tmp_path):
    metrics = first_step(dropout_policy, tmp_path, "disable_dropout=false")
    assert abs(metrics["loss"] - (1 / (2 * ETA)) ** 2) > 0.1


def test_disable_dropout_turns_off_loras_dropout_too(dropout_policy):
    """A LoRA policy in train mode computes what it computes in eval mode once its dropout (the
    base model's and the adapters') is off; with B != 0 the adapters' dropout would show."""
    model = apply_lora(load_policy(dropout_policy / "model")[0],
                       {"r": 4, "alpha": 8, "dropout": 0.3, "target_modules": "all-linear"})
    generator = torch.Generator().manual_seed(0)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.data = torch.randn(parameter.shape, generator=generator)
    ids = torch.tensor([[1, 5, 9, 12, 7, 3]])
    assert [m.p for m in model.modules() if isinstance(m, DROPOUT_MODULES)] == [0.3] * 14  # 7 linear layers in each of 2 decoder layers
    assert disable_dropout(model) == {"attention_dropout": 0.3}
    assert model.config.attention_dropout == 0.0
    assert all(m.p == 0 for m in model.modules() if isinstance(m, DROPOUT_MODULES))
    model.eval()
    expected = model(input_ids=ids).logits
    model.train()
    assert torch.equal(model(input_ids=ids).logits, expected)


@pytest.mark.parametrize("stage", ["train", "sft"])
def test_an_unknown_tracker_is_refused_naming_report_to(dropout_policy, tmp_path, stage):
    if stage == "train":
        cfg = load_config("train", [f"pairs={dropout_policy}/scored.jsonl", f"policy={dropout_policy}/model",
                                    f"work_dir={tmp_path}", "report_to=[tensorboard,tensorbored]"])
    else:
        cfg = load_config("sft", [f"output={tmp_path}/model", f"work_dir={tmp_path}", "n_demonstrations=4",
                                  "report_to=[tensorbored]"])
    with pytest.raises(ValueError, match=r"^report_to: unknown tracker\(s\) \['tensorbored'\]; use auto, none, or a list of "):
        (train if stage == "train" else sft).run(cfg)
    assert not (tmp_path / "policy").exists() and not (tmp_path / "model").exists()


@pytest.mark.skipif(set(LOGGER_TYPE_TO_CLASS) <= INSTALLED, reason="every tracker accelerate supports is installed here")
def test_a_tracker_not_installed_is_refused_saying_what_to_install():
    name = sorted(set(LOGGER_TYPE_TO_CLASS) - INSTALLED)[0]
    with pytest.raises(ImportError, match=rf"^report_to names \['{name}'\], not installed here: pip install {name} "):
        resolve_trackers([name])


def test_report_to_none_and_auto():
    assert resolve_trackers("none") == resolve_trackers([]) == resolve_trackers(None) == []
    assert resolve_trackers("auto") == (["tensorboard"] if "tensorboard" in INSTALLED else [])


def test_tensorboard_logs_the_metrics_and_the_stage_settings_under_work_dir(dropout_policy, tmp_path):
    events = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                 reason="TensorBoard is not installed here")
    first_step(dropout_policy, tmp_path, "report_to=[tensorboard]")
    run = events.EventAccumulator(str(tmp_path / "train iter 1"))
    run.Reload()
    assert [(e.step, round(e.value, 4)) for e in run.Scalars("loss")] == [(1, (1 / (2 * ETA)) ** 2)]
    hparams = list((tmp_path / "train iter 1").rglob("hparams.yml"))
    assert len(hparams) == 1 and "algo.eta: 0.2" in hparams[0].read_text()


@pytest.mark.filterwarnings("ignore:`log_with=")  # accelerate's: no tracker installed, the test stands in for one
def test_trackers_get_only_the_stage_settings(dropout_policy, tmp_path, monkeypatch):
    """What a tracker records as the run's config (wandb uploads it): train's own settings, flat."""
    recorded = {}
    monkeypatch.setattr("inpo.training.resolve_trackers", lambda report_to: ["tensorboard"])
    monkeypatch.setattr("accelerate.Accelerator.init_trackers",
                        lambda self, project_name, config=None, init_kwargs=None: recorded.update(config))
    first_step(dropout_policy, tmp_path, "report_to=[tensorboard]")
    assert {key.split(".")[0] for key in recorded} == {
        "pairs", "policy", "output", "work_dir", "iteration", "seed", "algo", "optim", "lora", "model_dtype",
        "max_length", "max_prompt_length", "gradient_checkpointing", "disable_dropout", "packing"}
    assert recorded["algo.eta"] == ETA and recorded["work_dir"] == str(tmp_path)
    assert all(value is None or isinstance(value, (bool, int, float, str)) for value in recorded.values())


@pytest.fixture
def fresh_accelerator_state():
    """accelerate keeps one process-wide state: a test that changes its precision starts and ends clean."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_bf16_mixed_precision_trains_on_the_cpu(dropout_policy, tmp_path, monkeypatch, fresh_accelerator_state):
    """optim.mixed_precision=bf16 on a CPU: the forward runs under bf16 autocast (the projections
    compute in bf16) and the first step's loss is the fp32 one up to bf16 rounding."""
    from inpo import logprobs

    dtypes = []
    hidden_states = logprobs.final_hidden_states

    def recording(model, *args, **kwargs):
        if not model.training:  # the packing check before training runs outside autocast
            return hidden_states(model, *args, **kwargs)
        linear = next(m for m in logprobs.unwrapped(model).modules() if isinstance(m, torch.nn.Linear))
        handle = linear.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
        try:
            return hidden_states(model, *args, **kwargs)
        finally:
            handle.remove()

    monkeypatch.setattr(logprobs, "final_hidden_states", recording)
    metrics = first_step(dropout_policy, tmp_path, "optim.mixed_precision=bf16")
    assert set(dtypes) == {torch.bfloat16}
    assert metrics["loss"] == pytest.approx((1 / (2 * ETA)) ** 2, rel=0.2)
