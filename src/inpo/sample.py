"""Stage ``sample``: K responses per prompt from pi_t.

    python -m inpo.sample policy=results/sft/model prompts=results/prompts/train_iter1.jsonl \
        output=results/iter1/samples.jsonl
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from .config import hydra_app, stage_seed
from .records import PROMPT, read_jsonl, write_jsonl
from .sampling import make_sampler


def run(cfg: DictConfig) -> list[dict]:
    if cfg.n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {cfg.n_samples}")
    prompts = read_jsonl(cfg.prompts, PROMPT)
    sampler = make_sampler(cfg.policy, OmegaConf.to_container(cfg.sampler, resolve=True))
    responses = sampler.generate(
        [p["prompt"] for p in prompts], cfg.n_samples, seed=stage_seed(cfg.seed, "sample", cfg.iteration)
    )
    records = [{**p, "responses": r} for p, r in zip(prompts, responses)]
    write_jsonl(cfg.output, records)
    return records


@hydra_app("sample")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
