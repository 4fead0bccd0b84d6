"""Stage ``evaluate``: the policy answers an evaluation's prompts, a judge compares its answers
with a baseline's, and ``metrics.json`` records the scores. The ``eval`` config group picks what:

- ``heldout`` (the embedded default): the held-out prompts against the SFT model's answers;
- ``alpaca_eval_2``: AlpacaEval 2.0's 805 instructions against GPT-4 Turbo's reference outputs,
  judged by the weighted API judge; writes ``model_outputs.json`` and ``annotations.json`` in
  AlpacaEval's formats, and scores them (``inpo.benchmarks.alpaca_eval``);
- ``arena_hard_v0.1``: Arena-Hard's 500 questions against gpt-4-0314's answers, each judged in
  both orders; writes ``model_answer/<model>.jsonl`` and ``model_judgment/<judge>/<model>.jsonl``
  in arena-hard-auto's formats, and scores them (``inpo.benchmarks.arena_hard``).

The held-out evaluation's ``metrics.json`` has:

- ``win_rate``: mean over prompts x of w_x = mean_i P(a_{x,i} > b_{x,i}) (the judge's
  order-averaged probability, as AlpacaEval's weighted win rate), and ``standard_error``
  = std_x(w_x) / sqrt(n) (prompts are the independent units);
- ``length_controlled_winrate`` and ``lc_standard_error``: AlpacaEval 2.0's length-controlled
  win rate (``inpo.length_control``), fitted on every (answer, baseline answer) comparison with
  lengths in tokens; absent when it cannot be fitted (e.g. no length difference at all);
- ``mean_length``: response length in tokens;
- ``answers_cut``: answers that hit the length limit (finish reason ``length``), and
  ``prompts_truncated``: prompts cut to ``sampler.max_prompt_length`` (the benchmarks' metrics too);
- for judges that see responses through enumerable features (the synthetic oracle):
  the feature distribution of the policy and its ``duality_gap`` in the unregularized game,
  2 max_f (M pi)(f) - 1, where M is the judge's preference matrix over features.

    python -m inpo.evaluate policy=results/iter1/policy prompts=results/prompts/eval.jsonl \
        baseline=results/eval/baseline.jsonl output_dir=results/eval/iter1
    python -m inpo.evaluate eval=alpaca_eval_2 policy=RLHFlow/LLaMA3-SFT output_dir=results/eval/sft_alpaca
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from .benchmarks import alpaca_eval
from .benchmarks import arena_hard
from .config import hydra_app, stage_seed
from .game import duality_gap
from .judges import make_judge
from .length_control import length_controlled_win_rate, raw_win_rate
from .modeling import conversation
from .records import PROMPT, SAMPLE, cut_counts, read_jsonl, write_json, write_jsonl
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


def evaluate_heldout(cfg: DictConfig) -> dict:
    if cfg.prompts is None or cfg.baseline is None:
        raise ValueError("eval=heldout needs prompts=<held-out prompts JSONL> and baseline=<the baseline's samples JSONL>")
    prompts = read_jsonl(cfg.prompts, PROMPT)
    baseline = {r["id"]: r["responses"] for r in read_jsonl(cfg.baseline, SAMPLE)}
    missing = [p["id"] for p in prompts if not baseline.get(p["id"])]  # absent, or no responses
    if missing:
        raise ValueError(f"{cfg.baseline}: no baseline answers for {len(missing)} prompts (first: {missing[0]!r})")
    judge = make_judge(**OmegaConf.to_container(cfg.judge, resolve=True))
    sampler = make_sampler(cfg.policy, OmegaConf.to_container(cfg.sampler, resolve=True), cfg.n_samples)
    generated = sampler.generate([conversation(p) for p in prompts], cfg.n_samples,
                                 seed=stage_seed(cfg.seed, "evaluate", cfg.iteration), desc="evaluate")
    answers = [g["responses"] for g in generated]

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
        "judge_calls": judge.n_calls, **cut_counts(generated),
    }
    if hasattr(judge, "feature_distribution"):
        metrics.update(feature_summary(judge, prompts, answers))
    out = Path(cfg.output_dir)
    write_jsonl(out / "answers.jsonl", [{**p, **g} for p, g in zip(prompts, generated)])
    write_jsonl(out / "judgments.jsonl", judgments)
    write_json(out / "metrics.json", metrics)
    return metrics


def benchmark_file(path: str, benchmark: str) -> str:
    """A benchmark file the config names, or one clear error saying how to get it."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file; fetch the {benchmark} files with "
                                f"`python -m inpo.benchmarks.download {benchmark} {Path(path).parent}` "
                                f"(or point eval.* at your copy)")
    return path


def benchmark_answers(cfg: DictConfig, prompts: list[str]) -> tuple[list[str], dict]:
    """One answer per benchmark prompt from the policy, and ``cut_counts``. The benchmark's
    ``eval.generation`` (its official or the authors' settings) overrides the sampler config; its
    questions are never cut, and its ``max_length`` keeps the training samples' cap off the answers."""
    options = {**OmegaConf.to_container(cfg.sampler, resolve=True), **OmegaConf.to_container(cfg.eval.generation, resolve=True)}
    sampler = make_sampler(cfg.policy, options)
    generated = sampler.generate(prompts, 1, seed=stage_seed(cfg.seed, cfg.eval.name, cfg.iteration), desc=cfg.eval.name)
    return [g["responses"][0] for g in generated], cut_counts(generated)


def api_judge(cfg: DictConfig, kind: str):
    if cfg.judge.kind != kind:
        raise ValueError(f"eval={cfg.eval.name} needs a judge of kind {kind!r} (e.g. judge={cfg.eval.default_judge}), "
                         f"got judge.kind={cfg.judge.kind!r}")
    return make_judge(**OmegaConf.to_container(cfg.judge, resolve=True))


def generator_name(cfg: DictConfig) -> str:
    """The model's name in the official files: ``generator``, else the policy folder's name and the iteration."""
    return cfg.generator or f"{Path(str(cfg.policy)).name}-iter{cfg.iteration}"


def evaluate_alpaca_eval(cfg: DictConfig) -> dict:
    """AlpacaEval 2.0: answers, weighted judge verdicts (one per instruction, the two outputs in a
    seeded random order, as AlpacaEval does), official files, and the scores (in percent)."""
    judge = api_judge(cfg, "alpaca_eval_api")
    references = alpaca_eval.read_reference_outputs(benchmark_file(cfg.eval.reference_outputs, "alpaca_eval_2"))
    references = references[: cfg.eval.limit] if cfg.eval.limit else references
    instructions = [r["instruction"] for r in references]
    outputs, cut = benchmark_answers(cfg, instructions)
    generator, out = generator_name(cfg), Path(cfg.output_dir)
    alpaca_eval.write_model_outputs(out / "model_outputs.json", alpaca_eval.model_outputs(
        instructions, outputs, generator, datasets=[r.get("dataset") for r in references]))
    swapped = np.random.default_rng(stage_seed(cfg.seed, "alpaca_eval_order", cfg.iteration)).random(len(references)) < 0.5
    items = [(r["instruction"], o, r["output"]) if flip else (r["instruction"], r["output"], o)
             for r, o, flip in zip(references, outputs, swapped)]
    verdicts = judge.preference_many(items)
    annotations = [alpaca_eval.annotation(r["instruction"], r["output"], o, 1 + ((1 - p) if flip else p),
                                          generator=generator, annotator=cfg.judge.model, raw_completion=response,
                                          reference_generator=r["generator"], dataset=r.get("dataset"))
                   for r, o, flip, (p, response) in zip(references, outputs, swapped, verdicts)]
    alpaca_eval.write_annotations(out / "annotations.json", annotations)
    scores = alpaca_eval.score_annotations(annotations)
    metrics = {"benchmark": cfg.eval.name, "iteration": cfg.iteration, "generator": generator, **scores, **cut,
               "judge_requests": judge.n_requests, "judge_cached": judge.n_cached}
    write_json(out / "metrics.json", metrics)
    return metrics


def evaluate_arena_hard(cfg: DictConfig) -> dict:
    """Arena-Hard v0.1: answers, two judge games per question (both orders), official files, and
    the score against the baseline with its 95% bootstrap interval (in percent)."""
    judge = api_judge(cfg, "arena_hard_api")
    questions = arena_hard.read_questions(benchmark_file(cfg.eval.questions, "arena_hard_v0.1"))
    questions = questions[: cfg.eval.limit] if cfg.eval.limit else questions
    baseline = arena_hard.read_answers(benchmark_file(cfg.eval.baseline_answers, "arena_hard_v0.1"))
    missing = [q["uid"] for q in questions if q["uid"] not in baseline]
    if missing:
        raise ValueError(f"{cfg.eval.baseline_answers}: no baseline answer for {len(missing)} questions (first: {missing[0]!r})")
    answers, cut = benchmark_answers(cfg, [q["prompt"] for q in questions])
    generator, out = generator_name(cfg), Path(cfg.output_dir)
    arena_hard.write_answers(out / "model_answer" / f"{generator}.jsonl", [
        arena_hard.answer_record(q, a, generator, ans_id=hashlib.sha256(f"{generator}/{q['uid']}".encode()).hexdigest()[:22])
        for q, a in zip(questions, answers)])
    games = judge.games_many([(q["prompt"], baseline[q["uid"]], a) for q, a in zip(questions, answers)])
    judgments = [arena_hard.judgment_record(q, generator, cfg.eval.baseline_model, cfg.judge.model, g)
                 for q, g in zip(questions, games)]
    write_jsonl(out / "model_judgment" / cfg.judge.model / f"{generator}.jsonl", judgments)
    result = arena_hard.score(judgments, baseline=cfg.eval.baseline_model, n_rounds=cfg.eval.bootstrap_rounds,
                                     seed=cfg.seed)[generator]
    metrics = {"benchmark": cfg.eval.name, "iteration": cfg.iteration, "generator": generator, "score": result["score"],
               "ci_lower": result["ci"][0], "ci_upper": result["ci"][1], "ci": result["ci"],
               **{k: v for k, v in result.items() if k.startswith("n_")}, **cut,
               "judge_requests": judge.n_requests, "judge_cached": judge.n_cached}
    write_json(out / "metrics.json", metrics)
    return metrics


EVALUATIONS = {"heldout": evaluate_heldout, "alpaca_eval": evaluate_alpaca_eval, "arena_hard": evaluate_arena_hard}


def run(cfg: DictConfig) -> dict:
    if cfg.eval.kind not in EVALUATIONS:
        raise ValueError(f"eval.kind must be one of {sorted(EVALUATIONS)}, got {cfg.eval.kind!r}")
    return EVALUATIONS[cfg.eval.kind](cfg)


@hydra_app("evaluate")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
