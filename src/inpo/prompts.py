"""Stage ``prompts``: write a prompt set (a fresh training set per iteration, or the held-out
evaluation set) of the embedded default's synthetic task.

    python -m inpo.prompts output=results/prompts/train_iter1.jsonl split=train iteration=1
"""

from __future__ import annotations

from omegaconf import DictConfig

from .config import hydra_app, stage_seed
from .records import write_jsonl
from .task import make_prompts


def run(cfg: DictConfig) -> list[dict]:
    if cfg.n_prompts < 1:
        raise ValueError(f"n_prompts must be >= 1, got {cfg.n_prompts}")
    if cfg.split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {cfg.split!r}")
    seed = stage_seed(cfg.seed, f"prompts-{cfg.split}", cfg.iteration if cfg.split == "train" else 0)
    split = f"{cfg.split}{cfg.iteration}" if cfg.split == "train" else cfg.split
    records = make_prompts(cfg.n_prompts, seed, split=split, min_items=cfg.task.min_items, max_items=cfg.task.max_items)
    write_jsonl(cfg.output, records)
    return records


@hydra_app("prompts")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
