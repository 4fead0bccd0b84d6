"""Stage ``annotate``: the oracle turns K responses per prompt into at most one preference pair.

Pairwise judges play the knockout tournament (``inpo.pairs.knockout_pair``); scalar reward
judges take best vs worst. The number of oracle calls is recorded.

    python -m inpo.annotate samples=results/iter1/samples.jsonl output=results/iter1/pairs.jsonl \
        stats=results/iter1/annotation.json
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from .config import hydra_app
from .judges import RewardJudge, make_judge, sigmoid
from .pairs import best_vs_worst, knockout_pair
from .records import SAMPLE, read_jsonl, write_json, write_jsonl

PAIRINGS = ("auto", "knockout", "best_vs_worst")


def choose_pair(judge, record: dict, pairing: str) -> tuple[int, int, float] | None:
    """(chosen index, rejected index, P(chosen > rejected)) for one prompt's responses, or None."""
    responses = record["responses"]
    if pairing == "best_vs_worst":
        rewards = [judge.reward(record, r) for r in responses]
        picked = best_vs_worst(rewards)
        if picked is None:
            return None
        # A scalar reward implies the Bradley-Terry preference sigmoid(r_w - r_l).
        return picked[0], picked[1], sigmoid(rewards[picked[0]] - rewards[picked[1]])
    result = knockout_pair(len(responses), lambda i, j: judge.compare(record, responses[i], responses[j]))
    return None if result is None else (result.chosen, result.rejected, result.preference)


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
    pairs = []
    for record in tqdm(samples, desc="annotate", unit="prompt"):
        if len(record["responses"]) < 2:
            raise ValueError(f"{cfg.samples}: record {record['id']!r} has {len(record['responses'])} responses; pairs need >= 2")
        picked = choose_pair(judge, record, pairing)
        if picked is None:
            continue
        chosen, rejected, preference = picked
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
