"""Stage ``annotate``: the oracle turns K responses per prompt into at most one preference pair.

Pairwise judges play the knockout tournament (``inpo.pairs.knockout_rounds``), all prompts'
tournaments in lockstep so that each round is one batch for the judge; scalar reward judges
take best vs worst. SPPO (``pairing=sppo``, which the workflow sets for ``algo=sppo``) judges every
pair of each prompt's answers, all prompts in one batch, and keeps the highest and lowest win rate
(``inpo.pairs.self_play_pair``), recorded with the pair. ``pairing=random`` draws the pairs INPO's
analysis assumes (two answers of pi_t, the winner drawn with the oracle's probability). The numbers of comparisons and oracle
calls are recorded. Answers the sampler cut at its length limit are kept
(``mask_truncated_completions`` leaves them out, ``missing_eos_penalty`` lowers their reward), and
each pair records how its two answers ended, for ``logps`` and ``train``.

    python -m inpo.annotate samples=results/iter1/samples.jsonl output=results/iter1/pairs.jsonl \
        stats=results/iter1/annotation.json
"""

from __future__ import annotations

import zlib
from typing import Callable, Sequence

import numpy as np
from omegaconf import DictConfig, OmegaConf

from .config import hydra_app
from .judges import Comparison, RewardJudge, make_judge, sigmoid
from .pairs import best_vs_worst, knockout_rounds, play_tournaments, self_play_pair
from .records import SAMPLE, cut_counts, read_jsonl, write_json, write_jsonl

PAIRINGS = ("auto", "knockout", "best_vs_worst", "sppo", "random")
# A sample record's per-answer fields: a pair carries its two answers' values as chosen_*/rejected_*.
ANSWER_FIELDS = ("id", "prompt", "responses", "finish_reasons", "stop_tokens", "prompt_truncated")


# (chosen index, rejected index, the pair's oracle fields: ``preference`` = P(chosen > rejected), and
# for SPPO ``chosen_winrate``/``rejected_winrate``), or no pair
Pick = tuple[int, int, dict[str, float]] | None
CompareMany = Callable[[Sequence[Comparison]], list[float]]  # a judge's compare_many


def knockout_pairs(compare_many: CompareMany, samples: list[dict], candidates: list[list[int]]) -> list[Pick]:
    """Every prompt's knockout tournament among its ``candidates`` (indices into its responses),
    round by round, each round one ``compare_many`` batch."""
    tournaments = [knockout_rounds(len(c)) if len(c) >= 2 else None for c in candidates]
    playing = [k for k, t in enumerate(tournaments) if t is not None]

    def judge_round(matches):
        return compare_many([(samples[playing[k]], samples[playing[k]]["responses"][candidates[playing[k]][i]],
                              samples[playing[k]]["responses"][candidates[playing[k]][j]]) for k, (i, j) in matches])

    picked: list[Pick] = [None] * len(samples)
    for k, t in zip(playing, play_tournaments([tournaments[k] for k in playing], judge_round)):
        if t is not None:
            picked[k] = (candidates[k][t.chosen], candidates[k][t.rejected], {"preference": t.preference})
    return picked


def sppo_pairs(compare_many: CompareMany, samples: list[dict], candidates: list[list[int]]) -> list[Pick]:
    """SPPO's pair of each prompt (``inpo.pairs.self_play_pair``): every pair a < b of its
    ``candidates`` judged, K(K-1)/2 comparisons for K candidates, all prompts in one ``compare_many``
    batch."""
    matches = [(k, a, b) for k, c in enumerate(candidates) for a in range(len(c)) for b in range(a + 1, len(c))]
    answers = compare_many([(samples[k], samples[k]["responses"][candidates[k][a]],
                             samples[k]["responses"][candidates[k][b]]) for k, a, b in matches])
    if len(answers) != len(matches):
        raise ValueError(f"asked the judge for {len(matches)} comparisons, got {len(answers)} results")
    matrices = [[[0.5] * len(c) for _ in c] for c in candidates]
    for (k, a, b), p in zip(matches, answers):
        matrices[k][a][b], matrices[k][b][a] = p, 1.0 - p
    picked: list[Pick] = []
    for indices, matrix in zip(candidates, matrices):
        pair = self_play_pair(matrix) if len(indices) >= 2 else None
        picked.append(None if pair is None else (
            indices[pair.chosen], indices[pair.rejected],
            {"preference": matrix[pair.chosen][pair.rejected], "chosen_winrate": pair.chosen_winrate,
             "rejected_winrate": pair.rejected_winrate}))
    return picked


def random_pairs(compare_many: CompareMany, samples: list[dict], candidates: list[list[int]], seed: int) -> list[Pick]:
    """The pairs of INPO's analysis (DESIGN.md section 2; the INPO paper's loss has the mirror-descent
    step as its minimizer when y, y' ~ pi_t and y wins with probability P(y > y')): two of each prompt's
    ``candidates`` drawn uniformly, judged once (both orders, one ``compare_many`` batch for all
    prompts), the winner drawn with that probability. Each prompt's draws come from a generator seeded
    by ``seed``, its id and its text, so reruns and resumed runs pick the same pairs."""
    draws = [np.random.default_rng(zlib.crc32(f"{seed}/{r['id']}/{r['prompt']}".encode())) for r in samples]
    matches = [(k, *draws[k].choice(c, size=2, replace=False).tolist()) for k, c in enumerate(candidates) if len(c) >= 2]
    answers = compare_many([(samples[k], samples[k]["responses"][a], samples[k]["responses"][b]) for k, a, b in matches])
    picked: list[Pick] = [None] * len(samples)
    for (k, a, b), p in zip(matches, answers):
        first_wins = draws[k].random() < p
        picked[k] = (a, b, {"preference": p}) if first_wins else (b, a, {"preference": 1.0 - p})
    return picked


def best_vs_worst_pairs(judge, samples: list[dict], candidates: list[list[int]], missing_eos_penalty: float | None) -> list[Pick]:
    """Highest vs lowest reward among each prompt's ``candidates``, with all rewards in one
    ``judge.rewards_many`` batch; an answer cut at the length limit loses ``missing_eos_penalty``."""
    rewards = iter(judge.rewards_many([(r, r["responses"][i]) for r, c in zip(samples, candidates) for i in c]))
    picked: list[Pick] = []
    for record, indices in zip(samples, candidates):
        r = [next(rewards) - (missing_eos_penalty or 0.0) * (record["finish_reasons"][i] == "length") for i in indices]
        pair = best_vs_worst(r) if len(r) >= 2 else None
        # A scalar reward implies the Bradley-Terry preference sigmoid(r_w - r_l).
        picked.append(None if pair is None else
                      (indices[pair[0]], indices[pair[1]], {"preference": sigmoid(r[pair[0]] - r[pair[1]])}))
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
    if cfg.missing_eos_penalty is not None and pairing != "best_vs_worst":
        raise ValueError(f"missing_eos_penalty={cfg.missing_eos_penalty} lowers rewards, but pairing is {pairing} "
                         f"(judge.kind={cfg.judge.kind!r}); with a pairwise judge use mask_truncated_completions=true")
    samples = read_jsonl(cfg.samples, SAMPLE)
    for record in samples:
        if len(record["responses"]) < 2:
            raise ValueError(f"{cfg.samples}: record {record['id']!r} has {len(record['responses'])} responses; pairs need >= 2")
    candidates = [[i for i, reason in enumerate(r["finish_reasons"]) if reason == "stop" or not cfg.mask_truncated_completions]
                  for r in samples]
    without_two = sum(len(c) < 2 for c in candidates)
    candidates = [c if len(c) >= 2 else [] for c in candidates]  # no pair, so nothing to judge
    asked = []  # the size of each batch of comparisons put to the judge

    def compare_many(comparisons: Sequence[Comparison]) -> list[float]:
        asked.append(len(comparisons))
        return judge.compare_many(comparisons)

    if pairing == "best_vs_worst":
        picked = best_vs_worst_pairs(judge, samples, candidates, cfg.missing_eos_penalty)
    else:
        picked = (sppo_pairs(compare_many, samples, candidates) if pairing == "sppo" else
                  random_pairs(compare_many, samples, candidates, cfg.seed) if pairing == "random" else
                  knockout_pairs(compare_many, samples, candidates))
    pairs = []
    for record, choice in zip(samples, picked):
        if choice is None:
            continue
        chosen, rejected, oracle = choice
        extra = {k: v for k, v in record.items() if k not in ANSWER_FIELDS}
        pairs.append({
            "id": record["id"], "prompt": record["prompt"],
            "chosen": record["responses"][chosen], "rejected": record["responses"][rejected],
            "chosen_index": chosen, "rejected_index": rejected, **oracle,
            **{f"{side}_{field}": record[f"{field}s"][index] for side, index in (("chosen", chosen), ("rejected", rejected))
               for field in ("finish_reason", "stop_token")},
            **extra,
        })
    if not pairs:
        raise ValueError(f"{cfg.samples}: the oracle kept no pair out of {len(samples)} prompts")
    counts = cut_counts(samples)
    stats = {"judge": cfg.judge.kind, "pairing": pairing, "prompts": len(samples), "pairs": len(pairs),
             "dropped": len(samples) - len(pairs), "oracle_calls": judge.n_calls,
             # pairs compared, each in both presentation orders (a judge averages them): K(K-1) per prompt for sppo
             "comparisons": 2 * sum(asked),
             # how the answers ended (inpo.sampling) and what that did to the pairs
             "responses": sum(len(r["responses"]) for r in samples),
             "responses_cut": counts["answers_cut"], "prompts_truncated": counts["prompts_truncated"],
             "mask_truncated_completions": cfg.mask_truncated_completions,
             "missing_eos_penalty": cfg.missing_eos_penalty,
             "prompts_without_two_finished": without_two,
             "chosen_cut": sum(p["chosen_finish_reason"] == "length" for p in pairs),
             "rejected_cut": sum(p["rejected_finish_reason"] == "length" for p in pairs)}
    write_jsonl(cfg.output, pairs)
    write_json(cfg.stats, stats)
    return stats


@hydra_app("annotate")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
