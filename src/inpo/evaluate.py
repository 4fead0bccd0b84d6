"""Stage ``evaluate``: the policy answers an evaluation's prompts, a judge compares its answers
with a baseline's, and ``metrics.json`` records the scores. The ``eval`` config group picks what:

- ``heldout`` (the embedded default): the held-out prompts against the SFT model's answers;
- ``alpaca_eval_2``: AlpacaEval 2.0's 805 instructions against GPT-4 Turbo's reference outputs,
  judged by the weighted API judge; writes ``model_outputs.json`` and ``annotations.json`` in
  AlpacaEval's formats, and scores them (``inpo.benchmarks.alpaca_eval``);
- ``arena_hard_v0.1``: Arena-Hard's 500 questions against gpt-4-0314's answers, each judged in
  both orders; writes ``model_answer/<model>.jsonl`` and ``model_judgment/<judge>/<model>.jsonl``
  in arena-hard-auto's formats, and scores them (``inpo.benchmarks.arena_hard``);
- ``mt_bench``: MT-Bench's 80 two-turn questions, each turn graded 1-10 by GPT-4 with FastChat's
  single-answer prompts; writes ``model_answer/<model>.jsonl`` and
  ``model_judgment/<judge model>_single.jsonl`` in FastChat's formats, and scores them
  (``inpo.benchmarks.mt_bench``).

The held-out evaluation's ``metrics.json`` has:

- ``win_rate``: mean over prompts x of w_x = mean_i P(a_{x,i} > b_{x,i}) (the judge's
  order-averaged probability, as AlpacaEval's weighted win rate), and ``standard_error``
  = std_x(w_x) / sqrt(n) (prompts are the independent units);
- ``length_controlled_winrate`` and ``lc_standard_error``: AlpacaEval 2.0's length-controlled
  win rate (``inpo.length_control``), fitted on every (answer, baseline answer) comparison with
  lengths in tokens; null, with the reason as ``lc_missing``, when it cannot be fitted (e.g. no
  length difference at all);
- ``mean_length``: response length in tokens;
- ``answers_cut``: answers that hit the length limit (finish reason ``length``), and
  ``prompts_truncated``: prompts cut to ``sampler.max_prompt_length`` (the benchmarks' metrics too);
- for judges that see responses through enumerable features (the synthetic oracles): the
  feature distribution of the policy and its game metrics (``inpo.game_metrics``), each with a
  bootstrap standard error over prompts (``<name>_se``): ``duality_gap`` in the unregularized
  game, 2 max_f (M pi)(f) - 1, where M is the judge's preference matrix over features; with
  pi_ref's answers (``game.reference_answers``) and ``game.tau``, the regularized
  ``duality_gap_tau``, ``kl_to_nash`` = KL(pi*_tau || pi) and ``nash_distribution``; with pi_t's
  answers and the step iteration t approximates (``game.previous_answers``, ``game.step``), the
  exact-OMD shadow's distances ``shadow_tv`` and ``shadow_kl``. ``game_missing`` lists what
  could not be computed and why.

    python -m inpo.evaluate policy=results/iter1/policy prompts=results/prompts/eval.jsonl \
        baseline=results/eval/baseline.jsonl output_dir=results/eval/iter1
    python -m inpo.evaluate eval=alpaca_eval_2 policy=RLHFlow/LLaMA3-SFT output_dir=results/eval/sft_alpaca
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from .benchmarks import alpaca_eval
from .benchmarks import arena_hard
from .benchmarks import mt_bench
from .config import hydra_app, stage_seed
from .game_metrics import Step, answer_cells, game_metrics
from .judges import make_judge
from .length_control import length_controlled_win_rate, raw_win_rate
from .modeling import conversation
from .records import PROMPT, SAMPLE, cut_counts, read_jsonl, write_json, write_jsonl
from .sampling import make_sampler
from .task import describe_distribution

log = logging.getLogger(__name__)


def length_controlled(judgments: list[dict]) -> dict:
    """The length-controlled win rate of the judgments (as a fraction, like ``win_rate``); None,
    with the reason as ``lc_missing``, when the GLM cannot be fitted."""
    preferences = np.array([j["preference"] for j in judgments])
    delta = np.array([j["length"] - j["baseline_length"] for j in judgments])
    reason = ("no length difference between answers and baseline" if delta.std() == 0 else
              "every comparison has the same preference" if preferences.min() == preferences.max() else None)
    if reason is None:
        try:
            fit = length_controlled_win_rate(preferences, [j["length"] for j in judgments], [j["baseline_length"] for j in judgments])
            return {"length_controlled_winrate": fit["length_controlled_winrate"] / 100,
                    "lc_standard_error": fit["lc_standard_error"] / 100}
        except (ValueError, RuntimeError) as err:
            reason = str(err)
    return {"length_controlled_winrate": None, "lc_standard_error": None, "lc_missing": f"the GLM cannot be fitted: {reason}"}


def answers_by_prompt(path: str, prompts: list[dict]) -> list[list[str]]:
    """The answers an earlier evaluation (its ``answers.jsonl``) gave to ``prompts``, in their order;
    ValueError naming the file if a prompt has none."""
    answers = {r["id"]: r["responses"] for r in read_jsonl(path, SAMPLE)}
    missing = [p["id"] for p in prompts if p["id"] not in answers]
    if missing:
        raise ValueError(f"{path}: no answers to {len(missing)} of the evaluation prompts (first: {missing[0]!r}); "
                         f"it must be an evaluation of the same prompts")
    return [answers[p["id"]] for p in prompts]


def game_summary(cfg: DictConfig, judge, prompts: list[dict], answers: list[list[str]]) -> dict:
    """Feature distribution and game metrics (``inpo.game_metrics``) of the answers, for judges that
    expose their features; the regularized ones need pi_ref's answers and tau (``cfg.game``), the
    shadow pi_t's answers and the step. What is left out, and why, is recorded as ``game_missing``."""
    M = judge.preference_matrix()
    policy = answer_cells(judge, prompts, answers)
    pi = np.bincount(policy.ravel(), minlength=len(M)) / policy.size
    game = cfg.game

    def cells(path: str) -> np.ndarray:
        return answer_cells(judge, prompts, answers_by_prompt(path, prompts))

    reference = policy if game.policy_is_reference else (cells(game.reference_answers) if game.reference_answers else None)
    step = Step(game.step.eta, game.step.tau) if game.step.eta is not None else None
    previous = cells(game.previous_answers) if game.previous_answers and step is not None else None
    missing = [reason for reason, absent in [
        ("regularized metrics: no pi_ref answers (game.reference_answers)", reference is None),
        ("regularized metrics: no game.tau", game.tau is None),
        ("shadow: no mirror-descent step (game.step.eta) for this algorithm", step is None and not game.policy_is_reference),
        ("shadow: no pi_t answers (game.previous_answers)", step is not None and previous is None)] if absent]
    try:
        metrics = game_metrics(M, policy, reference_cells=reference,
                               tau=game.tau, previous_cells=previous, step=step, pseudocount=game.pseudocount,
                               bootstrap=game.bootstrap, seed=stage_seed(cfg.seed, "game-bootstrap", cfg.iteration))
    except RuntimeError as err:  # the Nash policy could not be computed: the plain gap only, and why
        metrics = game_metrics(M, policy, bootstrap=game.bootstrap,
                               seed=stage_seed(cfg.seed, "game-bootstrap", cfg.iteration))
        missing.append(f"regularized metrics: {err}")
    return {**metrics, **describe_distribution(pi), "feature_distribution": pi.tolist(),
            **({"game_missing": missing} if missing else {})}


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
    if hasattr(judge, "feature_cells"):
        metrics.update(game_summary(cfg, judge, prompts, answers))
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
    """AlpacaEval 2.0: answers, the official annotator's verdicts (one per instruction, the two
    outputs in AlpacaEval's own seeded order), official files, and the scores (in percent). A
    reply without a verdict is no annotation (null), counted in ``n_missing``. The LC win rate is
    AlpacaEval's own when ``eval.gamed_baselines`` (df_gamed.csv) exists, else the length-only
    GLM; ``lc_variant`` says which."""
    judge = api_judge(cfg, "alpaca_eval_api")
    references = alpaca_eval.read_reference_outputs(benchmark_file(cfg.eval.reference_outputs, "alpaca_eval_2"))
    references = references[: cfg.eval.limit] if cfg.eval.limit else references
    instructions = [r["instruction"] for r in references]
    outputs, cut = benchmark_answers(cfg, instructions)
    generator, out = generator_name(cfg), Path(cfg.output_dir)
    alpaca_eval.write_model_outputs(out / "model_outputs.json", alpaca_eval.model_outputs(
        instructions, outputs, generator, datasets=[r.get("dataset") for r in references]))
    annotations = alpaca_eval.annotate(judge, references, outputs, generator)
    alpaca_eval.write_annotations(out / "annotations.json", annotations)
    gamed = cfg.eval.gamed_baselines if cfg.eval.gamed_baselines and Path(cfg.eval.gamed_baselines).is_file() else None
    if gamed is None:
        log.warning("%s: no AlpacaEval df_gamed.csv, so the length-controlled win rate is the length-only GLM, not "
                    "the leaderboard's (fetch it: python -m inpo.benchmarks.download alpaca_eval_2 %s)",
                    cfg.eval.gamed_baselines, Path(str(cfg.eval.gamed_baselines)).parent)
    scores = alpaca_eval.score_annotations(annotations, gamed_baselines=gamed)
    metrics = {"benchmark": cfg.eval.name, "iteration": cfg.iteration, "generator": generator, **scores, **cut,
               "annotator": judge.annotator.name, "judge_model": judge.client.model,
               "judge_requests": judge.n_requests, "judge_cached": judge.n_cached, "judge_rejected": judge.n_rejected}
    write_json(out / "metrics.json", metrics)
    return metrics


def evaluate_arena_hard(cfg: DictConfig) -> dict:
    """Arena-Hard v0.1: answers, two judge games per question (both orders), official files, and
    the score against the baseline with its 95% bootstrap interval (in percent)."""
    judge = api_judge(cfg, "arena_hard_api")
    if judge.config["baseline_model"] != cfg.eval.baseline_model:
        raise ValueError(f"{cfg.judge.judge_config} judges against baseline_model {judge.config['baseline_model']!r}, "
                         f"but eval.baseline_model is {cfg.eval.baseline_model!r}")
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
    judge_model = judge.client.model
    judgments = [arena_hard.judgment_record(q, generator, cfg.eval.baseline_model, judge_model, g)
                 for q, g in zip(questions, games)]
    write_jsonl(out / "model_judgment" / judge_model / f"{generator}.jsonl", judgments)
    result = arena_hard.score(judgments, baseline=cfg.eval.baseline_model, n_rounds=cfg.eval.bootstrap_rounds,
                                     seed=cfg.seed)[generator]
    metrics = {"benchmark": cfg.eval.name, "iteration": cfg.iteration, "generator": generator, "score": result["score"],
               "ci_lower": result["ci"][0], "ci_upper": result["ci"][1], "ci": result["ci"],
               **{k: v for k, v in result.items() if k.startswith("n_")}, **cut, "judge_model": judge_model,
               "judge_requests": judge.n_requests, "judge_cached": judge.n_cached, "judge_rejected": judge.n_rejected}
    write_json(out / "metrics.json", metrics)
    return metrics


GREEDY_BELOW = 1e-4  # FastChat's gen_model_answer.py: temperature < 1e-4 means do_sample=False


def mt_bench_temperatures(cfg: DictConfig, questions: list[dict]) -> list[float]:
    """Each question's sampling temperature: ``eval.temperatures[category]`` (FastChat's
    temperature_config), else ``eval.default_temperature``; 0 (greedy) below ``GREEDY_BELOW``."""
    if "temperature" in cfg.eval.generation:
        raise ValueError("eval=mt_bench samples each question at its category's temperature: set "
                         "eval.temperatures.<category> (or eval.default_temperature), not eval.generation.temperature")
    table = OmegaConf.to_container(cfg.eval.temperatures, resolve=True)
    temperatures = []
    for q in questions:
        key = f"eval.temperatures.{q['category']}" if q["category"] in table else "eval.default_temperature"
        t = table.get(q["category"], cfg.eval.default_temperature)
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t >= 0:
            raise ValueError(f"{key} must be a number >= 0, got {t!r}")
        temperatures.append(0.0 if t < GREEDY_BELOW else float(t))
    return temperatures


def mt_bench_answers(cfg: DictConfig, questions: list[dict]) -> tuple[list[list[str]], dict]:
    """The policy's answers to both turns of each question, and ``cut_counts`` over all of them.

    As FastChat's ``gen_model_answer.py``: turn 2's prompt is [user: turn 1, assistant: the
    policy's own answer to turn 1, user: turn 2], both turns of a question are sampled at its
    category's temperature (``mt_bench_temperatures``) and ``eval.generation`` (max_new_tokens
    1024) overrides the sampler config. The model is loaded once: the questions are grouped by
    temperature (three groups with FastChat's table) and, since both samplers read their
    ``temperature`` at each ``generate`` call, it is set per group; each group answers turn 1 of
    its questions in one ``generate`` call, then turn 2 in another. Seeds: ``stage_seed(seed,
    "<eval.name>/turn<t>", iteration)``, with the position of the group's first question in the
    grouped order as the offset (vLLM: a distinct seed per question)."""
    temperatures = mt_bench_temperatures(cfg, questions)
    groups: dict[float, list[int]] = {}
    for i, t in enumerate(temperatures):
        groups.setdefault(t, []).append(i)
    options = {**OmegaConf.to_container(cfg.sampler, resolve=True), **OmegaConf.to_container(cfg.eval.generation, resolve=True),
               "temperature": temperatures[0]}
    sampler = make_sampler(cfg.policy, options)
    answers: list[list[str]] = [[] for _ in questions]
    generated, offset = [], 0
    for t, members in groups.items():
        sampler.temperature = t
        for turn in (1, 2):
            prompts = [[{"role": "user", "content": questions[i]["turns"][0]}] if turn == 1 else
                       [{"role": "user", "content": questions[i]["turns"][0]},
                        {"role": "assistant", "content": answers[i][0]},
                        {"role": "user", "content": questions[i]["turns"][1]}] for i in members]
            out = sampler.generate(prompts, 1, seed=stage_seed(cfg.seed, f"{cfg.eval.name}/turn{turn}", cfg.iteration),
                                   desc=f"{cfg.eval.name} turn {turn} (temperature {t})", offset=offset)
            for i, record in zip(members, out):
                answers[i].append(record["responses"][0])
            generated.extend(out)
        offset += len(members)
    return answers, cut_counts(generated)


def evaluate_mt_bench(cfg: DictConfig) -> dict:
    """MT-Bench: answers to both turns (``mt_bench_answers``), one single-answer grade per turn
    by the judge (FastChat's prompt for the category and turn, with the reference answers where
    the category needs them), official files, and the score (``inpo.benchmarks.mt_bench.score``,
    ratings 1-10). A turn whose judge reply has no rating, or whose request the server rejected,
    is recorded with score -1, left out of the score as ``show_result.py`` does, and counted
    (``n_missing_ratings``; ``n_judge_errors`` of them had no reply)."""
    judge = api_judge(cfg, "mt_bench_api")
    questions = mt_bench.read_questions(benchmark_file(cfg.eval.questions, "mt_bench"))
    questions = questions[: cfg.eval.limit] if cfg.eval.limit else questions
    references = mt_bench.read_answers(benchmark_file(cfg.eval.reference_answers, "mt_bench"))
    prompts = mt_bench.read_judge_prompts(benchmark_file(cfg.eval.judge_prompts, "mt_bench"))
    missing = [q["question_id"] for q in questions
               if mt_bench.needs_reference(q["category"]) and len(references.get(q["question_id"], ())) < 2]
    if missing:
        raise ValueError(f"{cfg.eval.reference_answers}: no two-turn reference answer for {len(missing)} questions of "
                         f"categories {list(mt_bench.NEED_REF_CATS)} (first: {missing[0]!r})")
    answers, cut = mt_bench_answers(cfg, questions)
    generator, out = generator_name(cfg), Path(cfg.output_dir)
    mt_bench.write_records(out / "model_answer" / f"{generator}.jsonl",
                           [mt_bench.answer_record(q, a, generator) for q, a in zip(questions, answers)])
    items = mt_bench.grading_items(questions, answers, prompts, references)
    grades = judge.grade_many([(item["system_prompt"], item["user_prompt"]) for item in items])
    judge_model = judge.client.model
    judgments = [mt_bench.judgment_record(item, generator, judge_model, g["judgment"], g["score"])
                 for item, g in zip(items, grades)]
    mt_bench.write_records(out / "model_judgment" / f"{judge_model}_single.jsonl", judgments)
    scores = mt_bench.score(judgments)
    n_errors = sum(g["error"] is not None for g in grades)
    if scores["n_missing_ratings"]:
        log.warning("mt_bench: %d of %d judgments have no rating (%d without a reply to grade); they are left out of "
                    "the score and written with score -1", scores["n_missing_ratings"], len(judgments), n_errors)
    metrics = {"benchmark": cfg.eval.name, "iteration": cfg.iteration, "generator": generator, **scores,
               "n_questions": len(questions), "n_judge_errors": n_errors, **cut, "judge_model": judge_model,
               "judge_requests": judge.n_requests, "judge_cached": judge.n_cached, "judge_rejected": judge.n_rejected}
    write_json(out / "metrics.json", metrics)
    return metrics


EVALUATIONS = {"heldout": evaluate_heldout, "alpaca_eval": evaluate_alpaca_eval, "arena_hard": evaluate_arena_hard,
               "mt_bench": evaluate_mt_bench}


def run(cfg: DictConfig) -> dict:
    if cfg.eval.kind not in EVALUATIONS:
        raise ValueError(f"eval.kind must be one of {sorted(EVALUATIONS)}, got {cfg.eval.kind!r}")
    return EVALUATIONS[cfg.eval.kind](cfg)


@hydra_app("evaluate")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
