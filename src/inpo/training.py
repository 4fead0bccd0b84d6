"""The training loop shared by SFT and preference optimization, built on accelerate.

The same code runs on a CPU, one GPU (bf16) or many (``accelerate launch``). AdamW with a
cosine schedule and linear warm-up, gradient accumulation and clipping, epochs, a progress
bar, a metrics log (JSON Lines, and the trackers of ``report_to``), and checkpoints at
optimizer-step boundaries so that a killed job resumes where it stopped. Every random draw of a
training (the example order, dropout masks) derives from its seed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from accelerate import Accelerator
from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers
from accelerate.utils import DistributedType, set_seed
from omegaconf import DictConfig, OmegaConf
from packaging import version
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm
from transformers import PretrainedConfig, get_cosine_schedule_with_warmup

from .batching import token_budget_batches
from .modeling import save_policy
from .optim import OptimSettings
from .records import follow_umask



@dataclass(frozen=True)
class Objective:
    """What ``fit`` minimizes, in parts that make the loss of an optimizer step the same however its
    examples are split into micro-batches and packed:

        step loss = sum over its micro-batches b of loss_sum(b) / sum over its examples e of weight(e)

    ``collate``: examples -> a micro-batch. ``loss_sum``: (model, micro-batch) -> (the sum of its
    examples' loss terms, a scalar tensor; metrics, each summed over its examples like the loss, so
    that the step's value is their sum over the step divided by its weight). ``weight``: an example's
    count in the step's denominator (1 for a mean over pairs; its response tokens for a mean over
    tokens). ``length``: the tokens an example takes, the unit of ``optim.max_tokens``.
    """

    collate: Callable[[list], Any]
    loss_sum: Callable[[torch.nn.Module, Any], tuple[torch.Tensor, dict[str, float]]]
    weight: Callable[[Any], float] = lambda example: 1.0
    length: Callable[[Any], int] = lambda example: 1


class EpochShuffle(Sampler[int]):
    """A permutation of the dataset that depends only on (seed, epoch), so a resumed run sees
    the same batches as an uninterrupted one."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())


class NonFiniteLossError(FloatingPointError):
    pass


def resolve_trackers(report_to: str | Sequence[str] | None) -> list[str]:
    """The trackers a stage's ``report_to`` setting names.

    ``auto`` is TensorBoard when it is installed, else none: the default, which runs anywhere.
    ``none``, null or ``[]`` is none. Otherwise a name or a list of names, each a tracker accelerate
    supports and whose package is installed: a tracker asked for by name is never skipped.
    Raises ValueError naming ``report_to`` for an unknown name, ImportError saying what to install.
    """
    installed = {tracker.value for tracker in get_available_trackers()}
    if report_to == "auto":
        return ["tensorboard"] if "tensorboard" in installed else []
    if report_to is None or report_to == "none":
        return []
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    supported = sorted(LOGGER_TYPE_TO_CLASS)
    unknown = [name for name in names if name not in supported]
    if unknown:
        raise ValueError(f"report_to: unknown tracker(s) {unknown}; use auto, none, or a list of {supported}")
    missing = [name for name in names if name not in installed]
    if missing:
        raise ImportError(f"report_to names {missing}, not installed here: pip install {' '.join(missing)} "
                          f"(or leave them out of report_to)")
    return list(dict.fromkeys(names))


def tracker_values(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``settings`` flattened to dotted names with scalar values (lists as JSON), the form every
    tracker's hyperparameter table takes (TensorBoard's takes no nesting, no lists)."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            flat.update(tracker_values(value, f"{prefix}{key}."))
        else:
            is_scalar = value is None or isinstance(value, (bool, int, float, str))
            flat[prefix + key] = value if is_scalar else json.dumps(value)
    return flat


def tracked_settings(cfg: DictConfig, keys: Sequence[str]) -> dict[str, Any]:
    """The values of a stage config's ``keys``, resolved, as plain data: what it shows its trackers."""
    return {key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
            for key in keys}


def make_accelerator(settings: OptimSettings, work_dir: str | os.PathLike, description: str = "train", *,
                     report_to: str | Sequence[str] | None = "auto", tracked: Mapping[str, Any] | None = None) -> Accelerator:
    """The Accelerator of a training run (precision, accumulation, the trackers of ``report_to``:
    see ``resolve_trackers``), with its trackers started (those that write files, under ``work_dir``).

    ``tracked`` is what the trackers record as the run's configuration: the caller passes only the
    stage's own settings, never the environment or a whole config that could hold a credential (a
    tracker such as wandb uploads it).
    """
    trackers = resolve_trackers(report_to)  # before any work: a bad name fails at once
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(
        gradient_accumulation_steps=1,  # fit accumulates a step's micro-batches itself (their number varies)
        mixed_precision=settings.resolved_precision(),
        log_with=trackers or None,
        project_dir=str(work_dir),
    )
    if trackers:
        accelerator.init_trackers(description, config=tracker_values(tracked) if tracked else None)
    return accelerator


DROPOUT_MODULES = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d, torch.nn.AlphaDropout,
                   torch.nn.FeatureAlphaDropout)


def _zero_config_dropout(config: PretrainedConfig, prefix: str = "") -> dict[str, float]:
    changed = {}
    for name, value in list(vars(config).items()):
        if isinstance(value, PretrainedConfig):  # e.g. a multimodal model's text_config
            changed.update(_zero_config_dropout(value, f"{prefix}{name}."))
        elif "dropout" in name and isinstance(value, float) and value != 0:
            changed[prefix + name] = value
            setattr(config, name, 0.0)
    return changed


def disable_dropout(model: torch.nn.Module) -> dict[str, float]:
    """Turn every dropout of a Hugging Face ``model`` (peft-wrapped or not) off, as TRL's
    ``disable_dropout`` and more: p = 0 on every dropout module (peft's ``lora_dropout`` included),
    and 0 in every float attribute named ``*dropout*`` of a module (Llama's attention reads its
    ``attention_dropout`` in forward, not a module's p) or of the config and its sub-configs (some
    models read the config in forward).

    Returns the config values it changed, by dotted name (``fit``'s ``saved_config``).
    """
    for module in model.modules():
        if isinstance(module, DROPOUT_MODULES):
            module.p = 0.0
        for name, value in list(vars(module).items()):
            if "dropout" in name and isinstance(value, float):
                setattr(module, name, 0.0)
    return _zero_config_dropout(model.config)


def _set_config_values(config: PretrainedConfig, values: Mapping[str, Any]) -> None:
    for dotted, value in values.items():
        *parents, name = dotted.split(".")
        target = config
        for parent in parents:
            target = getattr(target, parent)
        setattr(target, name, value)


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The checkpoint folder named by ``checkpoints/latest``, if any."""
    pointer = checkpoints / "latest"
    return checkpoints / pointer.read_text().strip() if pointer.exists() else None


def _save_checkpoint(accelerator: Accelerator, checkpoints: Path, progress: dict) -> None:
    """Save ``checkpoints/step-N`` and only then point ``checkpoints/latest`` at it (an atomic
    rename), so a job killed at any moment leaves a complete checkpoint to resume from."""
    name = f"step-{progress['step']:07d}"
    tmp = checkpoints / f"{name}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()  # every process has written its part (e.g. its RNG state) before the rename
    if accelerator.is_main_process:
        follow_umask(tmp.rglob("*.safetensors"))
        (tmp / "progress.json").write_text(json.dumps(progress))
        os.replace(tmp, checkpoints / name)
        (checkpoints / "latest.tmp").write_text(name)
        os.replace(checkpoints / "latest.tmp", checkpoints / "latest")
        for old in checkpoints.glob("step-*"):
            if old.name != name:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()


def training_fingerprint(settings: OptimSettings, seed: int, examples: Sequence[Any], setup: Any) -> str:
    """A digest of everything that determines a training run, stored in its checkpoints."""
    digest = hashlib.sha256(json.dumps({"settings": asdict(settings), "seed": seed, "setup": setup}, sort_keys=True,
                                       default=str).encode())
    for example in examples:
        digest.update(json.dumps(example, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _trim_log(log_path: Path, last_step: int) -> dict[str, float]:
    """Drop log lines written after the checkpoint we resume from (they will be written again), and
    a line torn by a kill; return the metrics of the last line kept (the run's latest window)."""
    kept = []
    if log_path.exists():
        for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # only the line being written when the job was killed can be torn
            if record["step"] <= last_step:
                kept.append(record)
        log_path.write_text("".join(json.dumps(record) + "\n" for record in kept))
    return {k: v for k, v in kept[-1].items() if k not in ("step", "epoch")} if kept else {}


def finish_training(work_dir: str | os.PathLike, accelerator: Accelerator) -> None:
    """Delete a finished training's ``work_dir/checkpoints`` (the main process, once every process is
    done) and end the accelerate run (trackers, process group). A stage calls it after writing all of
    its job's outputs, so that a job killed before then resumes from its last checkpoint instead of
    step 0."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(Path(work_dir) / "checkpoints", ignore_errors=True)
    accelerator.end_training()


def use_fused_adamw(settings: OptimSettings, accelerator: Accelerator) -> bool:
    """Whether AdamW runs torch's fused kernel: ``optim.fused``, on a device torch has one for (CPU
    and CUDA since torch 2.4), and not under DeepSpeed, which steps its own optimizer. The fused
    kernel does the same update in one pass over the parameters (benchmarks/optimizer_step.py times both)."""
    return (settings.fused and accelerator.device.type in ("cpu", "cuda")
            and accelerator.distributed_type != DistributedType.DEEPSPEED
            and version.parse(torch.__version__).release >= (2, 4))


def step_batches(examples: Sequence[Any], objective: Objective, settings: OptimSettings) -> dict:
    """The micro-batches of one optimizer step's ``examples`` (collated), its weight and its tokens.

    Without ``optim.max_tokens``: groups of ``optim.batch_size`` in the given order. With it: the
    examples longest first, cut into groups of at most ``max_tokens`` tokens and ``batch_size``
    examples (an example over the budget alone), so that similar lengths share a micro-batch.
    An example is never split.
    """
    lengths = [objective.length(e) for e in examples]
    if settings.max_tokens is None:
        groups = [list(range(i, min(i + settings.batch_size, len(examples)))) for i in range(0, len(examples), settings.batch_size)]
    else:
        order = sorted(range(len(examples)), key=lambda i: -lengths[i])
        groups = [[order[j] for j in group] for group in
                  token_budget_batches([lengths[i] for i in order], settings.max_tokens, settings.batch_size)]
    return {"micro_batches": [objective.collate([examples[i] for i in group]) for group in groups],
            "weight": float(sum(objective.weight(e) for e in examples)), "tokens": sum(lengths)}


def accumulate_step(accelerator: Accelerator, model: torch.nn.Module, objective: Objective, step_batch: Mapping[str, Any]) -> dict[str, float]:
    """Forward and backward passes over the micro-batches of one optimizer step (``step_batches``),
    leaving in the parameters' gradients the gradient of the step loss (``Objective``). Gradients are
    reduced across processes, and DeepSpeed steps, only after the last micro-batch. Returns the step's
    loss, metrics and tokens. Raises NonFiniteLossError, naming the micro-batch, on a loss that is
    not finite (before its backward pass).
    """
    micro_batches = step_batch["micro_batches"]
    sums = {"loss": 0.0}
    for m, micro_batch in enumerate(micro_batches):
        accelerator.sync_gradients = m == len(micro_batches) - 1
        with contextlib.nullcontext() if accelerator.sync_gradients else accelerator.no_sync(model):
            loss, metrics = objective.loss_sum(model, micro_batch)
            if not torch.isfinite(loss.detach()).all():
                raise NonFiniteLossError(f"non-finite loss ({loss.item()}) in micro-batch {m}")
            accelerator.backward(loss / step_batch["weight"])
        for key, value in {"loss": loss.item(), **metrics}.items():
            sums[key] = sums.get(key, 0.0) + float(value)
    return {**{key: value / step_batch["weight"] for key, value in sums.items()}, "tokens": step_batch["tokens"]}


def fit(
    model: torch.nn.Module,
    examples: Sequence[Any],
    objective: Objective,
    settings: OptimSettings,
    *,
    seed: int,
    work_dir: str | os.PathLike,
    output: str | os.PathLike,
    tokenizer,
    description: str = "train",
    setup: Any = None,
    accelerator: Accelerator | None = None,
    saved_config: Mapping[str, Any] | None = None,
) -> dict:
    """Minimize ``objective`` over ``examples``, save the model with ``tokenizer`` as a Hugging Face
    folder at ``output``, and return a summary.

    An optimizer step takes ``optim.batch_size x optim.gradient_accumulation_steps`` examples (per
    process) in a shuffled order; ``step_batches`` splits them into micro-batches, whose gradients
    add up to that of the step's loss (``Objective``): the mean over its examples however they
    were split. ``work_dir`` holds ``checkpoints/`` and ``train_log.jsonl``. A checkpoint is resumed
    from only if it was made by the same training: the same settings, seed, examples and ``setup``
    (anything else the caller wants to count, e.g. the algorithm's config); otherwise training starts
    afresh. The checkpoints stay until the caller has written all its outputs and calls
    ``finish_training``: a job killed before then resumes instead of starting over (a run that
    resumes from its last step only saves the model again). A non-finite loss stops training with
    NonFiniteLossError and leaves the last good checkpoint. Pass the ``accelerator`` made by
    ``make_accelerator`` before loading the model: under DeepSpeed ZeRO-3 the Accelerator must
    exist first, so that ``from_pretrained`` loads each rank's shard instead of the whole model.

    ``seed`` seeds the example order and the global RNGs (Python, NumPy, torch: dropout masks) at the
    start; a resumed run gets back the RNG states of its checkpoint, so it draws what an
    uninterrupted run would. ``saved_config``: config values (dotted names) the saved model gets in
    place of the training's own, e.g. the dropout rates ``disable_dropout`` zeroed.
    """
    work_dir = Path(work_dir)
    checkpoints, log_path = work_dir / "checkpoints", work_dir / "train_log.jsonl"
    accelerator = accelerator or make_accelerator(settings, work_dir, description)
    set_seed(seed)

    sampler = EpochShuffle(len(examples), seed)
    # one loader item is one optimizer step: its examples, split into micro-batches
    loader = DataLoader(list(examples), batch_size=settings.batch_size * settings.gradient_accumulation_steps,
                        sampler=sampler, collate_fn=lambda step: step_batches(step, objective, settings))
    # no weight decay on biases and norm weights
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.learning_rate, fused=use_fused_adamw(settings, accelerator),
    )
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * settings.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(settings.warmup_ratio * total_steps), total_steps)
    accelerator.register_for_checkpointing(scheduler)

    fingerprint = training_fingerprint(settings, seed, examples, setup)
    progress = {"epoch": 0, "batches_done": 0, "step": 0, "fingerprint": fingerprint}
    resumed_from = None
    last: dict[str, float] = {}  # the metrics of the latest log window
    checkpoint = latest_checkpoint(checkpoints)
    saved = json.loads((checkpoint / "progress.json").read_text()) if checkpoint is not None else {}
    if saved.get("fingerprint") == fingerprint:
        accelerator.load_state(str(checkpoint))
        progress = saved
        resumed_from = progress["step"]
        if accelerator.is_main_process:
            last = _trim_log(log_path, resumed_from)
            accelerator.print(f"[{description}] resuming from {checkpoint} at optimizer step {resumed_from}")
    elif accelerator.is_main_process:
        if checkpoint is not None:
            accelerator.print(f"[{description}] {checkpoint} is from another training setup: starting afresh")
        shutil.rmtree(checkpoints, ignore_errors=True)
        log_path.unlink(missing_ok=True)
    accelerator.wait_for_everyone()

    bar = tqdm(total=total_steps, initial=progress["step"], desc=description, disable=not accelerator.is_local_main_process)
    window: dict[str, list[float]] = {}
    model.train()
    for epoch in range(progress["epoch"], settings.epochs):
        # accelerate's loaders pass their own epoch counter to the sampler when iterated, and a
        # resumed (or skipping) loader's counter starts at 0: set it, or the order would differ.
        loader.set_epoch(epoch)
        skip = progress["batches_done"] if epoch == progress["epoch"] else 0
        batches = loader
        if skip:
            batches = accelerator.skip_first_batches(loader, skip)
            batches.set_epoch(epoch)
        for index, step_batch in enumerate(batches, start=skip):
            try:
                step_metrics = accumulate_step(accelerator, model, objective, step_batch)
            except NonFiniteLossError as err:
                raise NonFiniteLossError(
                    f"[{description}] {err} at epoch {epoch}, batch {index}; training stopped; "
                    f"the last good checkpoint is {latest_checkpoint(checkpoints) or 'none yet'}") from None
            if settings.max_grad_norm > 0:
                # under DeepSpeed the engine clips (its gradient_clipping) and may report no norm
                norm = accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
                if norm is not None:
                    step_metrics["grad_norm"] = float(norm)
            optimizer.step()
            optimizer.zero_grad()
            for key, value in step_metrics.items():
                window.setdefault(key, []).append(float(value))
            scheduler.step()
            end_of_epoch = index + 1 == steps_per_epoch
            progress = {"epoch": epoch, "batches_done": index + 1, "step": progress["step"] + 1, "fingerprint": fingerprint}
            if end_of_epoch:
                progress.update(epoch=epoch + 1, batches_done=0)
            bar.update(1)
            step = progress["step"]
            if step % settings.log_every == 0 or step == total_steps:
                last = {k: sum(v) / len(v) for k, v in window.items()}
                last["lr"] = scheduler.get_last_lr()[0]
                window = {}
                bar.set_postfix(loss=f"{last['loss']:.4g}")
                accelerator.log(last, step=step)
                if accelerator.is_main_process:
                    with log_path.open("a") as f:
                        f.write(json.dumps({"step": step, "epoch": epoch, **last}) + "\n")
            if step % settings.checkpoint_every == 0 or end_of_epoch:
                checkpoints.mkdir(exist_ok=True)
                _save_checkpoint(accelerator, checkpoints, progress)
    bar.close()
    accelerator.wait_for_everyone()
    if saved_config:
        _set_config_values(accelerator.unwrap_model(model).config, saved_config)
    save_policy(accelerator.unwrap_model(model), tokenizer, output, state_dict=accelerator.get_state_dict(model),
                save_function=accelerator.save, is_main_process=accelerator.is_main_process)
    parameters = sum(p.numel() for p in accelerator.unwrap_model(model).parameters())
    return {"steps": progress["step"], "total_steps": total_steps, "resumed_from_step": resumed_from,
            "parameters": parameters, "last_metrics": last}
