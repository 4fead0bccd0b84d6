"""Stage ``annotate``: the oracle turns K responses per prompt into at most one preference pair.

Pairwise judges play the knockout tournament (``inpo.pairs.knockout_rounds``), all prompts'
tournaments in lockstep so that each round is one batch for the judge; scalar reward judges
take best vs worst. The number of oracle calls is recorded.

    python -m inpo.annotate samples=results/iter1/samples.jsonl output=results/iter1/pairs.jsonl \
        stats=results/iter1/annotation.json
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from .config import hydra_app
from .judges import RewardJudge, make_judge, sigmoid
from .pairs import best_vs_worst, knockout_rounds, play_tournaments
from .records import SAMPLE, read_jsonl, write_json, write_jsonl

PAIRINGS = ("auto", "knockout", "best_vs_worst")


def knockout_pairs(judge, samples: list[dict]) -> list[tuple[int, int, float] | None]:
    """Every prompt's knockout tournament, round by round, each round one ``judge.compare_many`` batch."""
    tournaments = [knockout_rounds(len(r["responses"])) for r in samples]

    def judge_round(matches):
        return judge.compare_many([(samples[k], samples[k]["responses"][i], samples[k]["responses"][j]) for k, (i, j) in matches])

    results = play_tournaments(tournaments, judge_round)
    return [None if t is None else (t.chosen, t.rejected, t.preference) for t in results]


def best_vs_worst_pairs(judge, samples: list[dict]) -> list[tuple[int, int, float] | None]:
    """Highest vs lowest reward per prompt, with all rewards in one ``judge.rewards_many`` batch."""
    rewards = iter(judge.rewards_many([(r, text) for r in samples for text in r["responses"]]))
    picked = []
    for record in samples:
        r = [next(rewards) for _ in record["responses"]]
        pair = best_vs_worst(r)
        # A scalar reward implies the Bradley-Terry preference sigmoid(r_w - r_l).
        picked.append(None if pair is None else (pair[0], pair[1], sigmoid(r[pair[0]] - r[pair[1]])))
    return picked


def run(cfg: DictConfig) -> dict:
    if cfg.pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {PAIRINGS}, got {cfg.pairing!r}")
    judge = make_judge(**OmegaConf.to_container(cfg.judge, resolve=True))
    pairing = cfg.pairing
    if pairing == "auto":
        pairing = "best_vs_worst" if isinstance(judge, RewardJudge) else "knockout"
    if pairing == "best_vs_worst" and not isinstance(judge, RewardJudge):
        raise ValueError(f"pairing=best_vs_worst needs a reward judge; judge.kind={cfg.judge.kind!r} only compares")
    samples = read_jsonl(cfg.samples, SAMPLE)
    for record in samples:
        if len(record["responses"]) < 2:
            raise ValueError(f"{cfg.samples}: record {record['id']!r} has {len(record['responses'])} responses; pairs need >= 2")
    picked = (best_vs_worst_pairs if pairing == "best_vs_worst" else knockout_pairs)(judge, samples)
    pairs = []
    for record, choice in zip(samples, picked):
        if choice is None:
            continue
        chosen, rejected, preference = choice
        extra = {k: v for k, v in record.items() if k not in ("responses", "id", "prompt")}
        pairs.append({
            "id": record["id"], "prompt": record["prompt"],
            "chosen": record["responses"][chosen], "rejected": record["responses"][rejected],
            "chosen_index": chosen, "rejected_index": rejected, "preference": preference, **extra,
        })
    if not pairs:
        raise ValueError(f"{cfg.samples}: the oracle kept no pair out of {len(samples)} prompts")
    stats = {"judge": cfg.judge.kind, "pairing": pairing, "prompts": len(samples), "pairs": len(pairs),
             "dropped": len(samples) - len(pairs), "oracle_calls": judge.n_calls}
    write_jsonl(cfg.output, pairs)
    write_json(cfg.stats, stats)
    return stats


@hydra_app("annotate")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
