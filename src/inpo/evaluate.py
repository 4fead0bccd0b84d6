"""Stage ``evaluate``: the policy answers the held-out prompts, the judge compares each answer
with the baseline's answer to the same prompt, and ``metrics.json`` records:

- ``win_rate``: mean over prompts x of w_x = mean_i P(a_{x,i} > b_{x,i}) (the judge's
  order-averaged probability, as AlpacaEval's weighted win rate), and ``standard_error``
  = std_x(w_x) / sqrt(n) (prompts are the independent units);
- ``length_controlled_winrate`` and ``lc_standard_error``: AlpacaEval 2.0's length-controlled
  win rate (``inpo.length_control``), fitted on every (answer, baseline answer) comparison with
  lengths in tokens; absent when it cannot be fitted (e.g. no length difference at all);
- ``mean_length``: response length in tokens;
- for judges that see responses through enumerable features (the synthetic oracle):
  the feature distribution of the policy and its ``duality_gap`` in the unregularized game,
  2 max_f (M pi)(f) - 1, where M is the judge's preference matrix over features.

    python -m inpo.evaluate policy=results/iter1/policy prompts=results/prompts/eval.jsonl \
        baseline=results/eval/baseline.jsonl output_dir=results/eval/iter1
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from .config import hydra_app, stage_seed
from .game import duality_gap
from .judges import make_judge
from .length_control import length_controlled_win_rate, raw_win_rate
from .modeling import conversation
from .records import PROMPT, SAMPLE, read_jsonl, write_json, write_jsonl
from .sampling import make_sampler
from .task import describe_distribution


def length_controlled(judgments: list[dict]) -> dict:
    """The length-controlled win rate of the judgments (as a fraction, like ``win_rate``), if it can be fitted."""
    preferences = np.array([j["preference"] for j in judgments])
    delta = np.array([j["length"] - j["baseline_length"] for j in judgments])
    if delta.std() == 0 or preferences.min() == preferences.max():
        return {}
    fit = length_controlled_win_rate(preferences, [j["length"] for j in judgments], [j["baseline_length"] for j in judgments])
    return {"length_controlled_winrate": fit["length_controlled_winrate"] / 100, "lc_standard_error": fit["lc_standard_error"] / 100}


def feature_summary(judge, records: list[dict], answers: list[list[str]]) -> dict:
    """Feature distribution and duality gap of the answers, for judges that expose their features."""
    flat_records = [r for r, a in zip(records, answers) for _ in a]
    flat_answers = [x for a in answers for x in a]
    pi = judge.feature_distribution(flat_records, flat_answers)
    return {"duality_gap": duality_gap(judge.preference_matrix(), pi), **describe_distribution(pi),
            "feature_distribution": pi.tolist()}


def run(cfg: DictConfig) -> dict:
    if cfg.n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {cfg.n_samples}")
    prompts = read_jsonl(cfg.prompts, PROMPT)
    baseline = {r["id"]: r["responses"] for r in read_jsonl(cfg.baseline, SAMPLE)}
    missing = [p["id"] for p in prompts if p["id"] not in baseline]
    if missing:
        raise ValueError(f"{cfg.baseline}: no baseline answers for {len(missing)} prompts (first: {missing[0]!r})")
    judge = make_judge(**OmegaConf.to_container(cfg.judge, resolve=True))
    sampler = make_sampler(cfg.policy, OmegaConf.to_container(cfg.sampler, resolve=True))
    answers = sampler.generate([conversation(p) for p in prompts], cfg.n_samples,
                               seed=stage_seed(cfg.seed, "evaluate", cfg.iteration), desc="evaluate")

    def length(text: str) -> int:
        return len(sampler.tokenizer(text, add_special_tokens=False)["input_ids"])

    comparisons = [(prompt, answer, baseline[prompt["id"]][i % len(baseline[prompt["id"]])])
                   for prompt, mine in zip(prompts, answers) for i, answer in enumerate(mine)]
    preferences = judge.compare_many(comparisons)
    judgments = [{"id": f"{prompt['id']}/{i % cfg.n_samples}", "prompt_id": prompt["id"], "preference": p,
                  "length": length(answer), "baseline_length": length(reference)}
                 for i, ((prompt, answer, reference), p) in enumerate(zip(comparisons, preferences))]
    per_prompt = np.reshape(preferences, (len(prompts), cfg.n_samples)).mean(axis=1)
    # prompts are the independent units: the win rate's standard error is over per-prompt means
    mean, se = (value / 100 for value in raw_win_rate(per_prompt))
    metrics = {
        "iteration": cfg.iteration, "win_rate": mean, "standard_error": se,
        **length_controlled(judgments), "n_prompts": len(prompts), "n_samples": cfg.n_samples,
        "mean_length": float(np.mean([j["length"] for j in judgments])), "judge": cfg.judge.kind,
        "judge_calls": judge.n_calls,
    }
    if hasattr(judge, "feature_distribution"):
        metrics.update(feature_summary(judge, prompts, answers))
    out = Path(cfg.output_dir)
    write_jsonl(out / "answers.jsonl", [{**p, "responses": a} for p, a in zip(prompts, answers)])
    write_jsonl(out / "judgments.jsonl", judgments)
    write_json(out / "metrics.json", metrics)
    return metrics


@hydra_app("evaluate")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
