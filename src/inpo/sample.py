"""Stage ``sample``: K responses per prompt from pi_t, optionally one shard of the prompts.

    python -m inpo.sample policy=results/sft/model prompts=results/prompts/train_iter1.jsonl \
        output=results/iter1/samples.jsonl
    python -m inpo.sample ... shard=3 n_shards=8 output=.../shards/3.jsonl   # one of 8 jobs
    python -m inpo.shards merge .../samples.jsonl .../shards/*.jsonl           # then merge them
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf

from .config import hydra_app, stage_seed
from .modeling import conversation
from .records import PROMPT, cut_counts, read_jsonl, write_jsonl
from .sampling import make_sampler
from .shards import shard_bounds

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> list[dict]:
    prompts = read_jsonl(cfg.prompts, PROMPT)
    start, stop = shard_bounds(len(prompts), cfg.shard, cfg.n_shards)
    prompts = prompts[start:stop]
    sampler = make_sampler(cfg.policy, OmegaConf.to_container(cfg.sampler, resolve=True), cfg.n_samples)
    answers = sampler.generate([conversation(p) for p in prompts], cfg.n_samples,
                               seed=stage_seed(cfg.seed, "sample", cfg.iteration), offset=start,
                               desc=f"sample {cfg.shard + 1}/{cfg.n_shards}" if cfg.n_shards > 1 else "sample")
    records = [{**p, **a} for p, a in zip(prompts, answers)]
    write_jsonl(cfg.output, records)
    counts = cut_counts(records)
    log.info("%d prompts, %d answers; %d answers cut at the length limit, %d prompts cut to max_prompt_length",
             len(records), len(records) * cfg.n_samples, counts["answers_cut"], counts["prompts_truncated"])
    return records


@hydra_app("sample")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
