"""Stage ``sft``: build the embedded default's tokenizer and tiny Llama from a config and train
it on generated demonstrations of mixed quality; the result is pi_ref = pi_1.

    python -m inpo.sft output=results/sft/model work_dir=results/sft
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from .config import hydra_app, stage_seed
from .batching import packing_mode
from .logprobs import collate_sequences, sequence_logps, set_up_packing
from .modeling import build_llama, build_word_tokenizer, encode, end_of_turn_token
from .records import write_json
from .task import VOCABULARY, TaskConfig, make_demonstration, make_prompts
from .optim import OptimSettings
from .training import Objective, finish_training, fit, make_accelerator, tracked_settings


def task_config(cfg: DictConfig) -> TaskConfig:
    fields = OmegaConf.to_container(cfg.task, resolve=True)
    fields.pop("name", None)
    return TaskConfig(**fields)


def sft_objective(pad_id: int, layout: str = "rows") -> Objective:
    """Mean negative log-likelihood per response token of an optimizer step:
    -sum_i logp(y_i | x_i) / sum_i |y_i| over its examples, however they are split and packed."""

    def collate(examples: list[dict]) -> dict:
        return collate_sequences([e["ids"] for e in examples], [e["response_start"] for e in examples], pad_id, layout)

    def loss_sum(model, batch):
        return -sequence_logps(model, batch).sum(), {}

    return Objective(collate, loss_sum, weight=lambda e: len(e["ids"]) - e["response_start"], length=lambda e: len(e["ids"]))


def run(cfg: DictConfig) -> dict:
    task = task_config(cfg)
    settings = OptimSettings(**cfg.optim)
    packing_mode(cfg.packing, None)  # an unknown mode fails here, before any work
    if cfg.n_demonstrations < 1:
        raise ValueError(f"n_demonstrations must be >= 1, got {cfg.n_demonstrations}")
    seed = stage_seed(cfg.seed, "sft")
    tokenizer = build_word_tokenizer(VOCABULARY)
    model = build_llama(tokenizer, OmegaConf.to_container(cfg.model.architecture), seed)

    prompts = make_prompts(cfg.n_demonstrations, seed, split="sft", min_items=task.min_items, max_items=task.max_items)
    rng = np.random.default_rng(seed)
    demos = [make_demonstration(p["items"], rng, task.p_correct, task.style_probs, task.verbosity_probs) for p in prompts]
    end_of_turn = end_of_turn_token(tokenizer)  # demonstrations are finished answers
    examples = [encode(tokenizer, p["prompt"], demo, stop_token=end_of_turn) for p, demo in zip(prompts, demos)]

    accelerator = make_accelerator(settings, cfg.work_dir, "sft", report_to=cfg.report_to, tracked=tracked_settings(
        cfg, ["output", "work_dir", "seed", "n_demonstrations", "task", "model", "optim", "packing"]))
    layout = set_up_packing(model, cfg.packing, [e["ids"] for e in examples], [e["response_start"] for e in examples],
                            tokenizer.pad_token_id)
    summary = fit(model, examples, sft_objective(tokenizer.pad_token_id, layout), settings, seed=seed, work_dir=cfg.work_dir,
                  output=cfg.output, tokenizer=tokenizer, description="sft", accelerator=accelerator,
                  setup={"model": OmegaConf.to_container(cfg.model), "packing": layout})
    if accelerator.is_main_process:
        write_json(Path(cfg.work_dir) / "sft_summary.json", summary)
    finish_training(cfg.work_dir, accelerator)
    return summary


@hydra_app("sft")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
