"""Score official benchmark files; prints one JSON object on stdout.

    python -m inpo.score alpaca_eval results/eval/annotations.json [--gamed-baselines data/alpaca_eval_2/df_gamed.csv]
    python -m inpo.score arena_hard model_judgment/gpt-4-1106-preview/my-model.jsonl \
        [--baseline gpt-4-0314] [--rounds 100] [--seed 0] [--weight 3]
    python -m inpo.score mt_bench model_judgment/gpt-4_single.jsonl

- ``alpaca_eval``: AlpacaEval 2.0's leaderboard figures of one model's ``annotations.json``:
  ``win_rate``, ``standard_error``, counts and, where the GLM can be fitted,
  ``length_controlled_winrate`` with ``lc_variant``: the leaderboard's with ``--gamed-baselines``
  (AlpacaEval's df_gamed.csv), else the length-only GLM (``inpo.benchmarks.alpaca_eval.score_annotations``).
- ``arena_hard``: the Arena-Hard v0.1 score against the baseline and its 95% bootstrap interval
  ``ci`` (``inpo.benchmarks.arena_hard.score``). Several judgment files (models) are scored
  together, as arena-hard-auto scores a judge's directory: the output is then
  ``{"baseline": ..., "models": {model: {...}}}``; for one model its figures with ``model``.
- ``mt_bench``: the MT-Bench score (mean rating, per turn and overall, judgments without a rating
  left out and counted) of FastChat single-answer judgment files, per model as FastChat's
  ``show_result.py --mode single`` (``inpo.benchmarks.mt_bench.score``): for one model its
  figures with ``model``, for several ``{"models": {model: {...}}}``.

Unusable input: a one-line message on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from .benchmarks import alpaca_eval, arena_hard, mt_bench


def _arena_hard(args: argparse.Namespace) -> dict:
    judgments = [j for path in args.judgments for j in arena_hard.read_judgments(path)]
    scores = arena_hard.score(judgments, baseline=args.baseline, weight=args.weight,
                              n_rounds=args.rounds, seed=args.seed)
    if len(scores) == 1:
        (model, figures), = scores.items()
        return {"model": model, **figures}
    baseline = next(iter(scores.values()))["baseline"]
    return {"baseline": baseline, "models": {m: {k: v for k, v in f.items() if k != "baseline"} for m, f in scores.items()}}


def _mt_bench(args: argparse.Namespace) -> dict:
    judgments = [j for path in args.judgments for j in mt_bench.read_judgments(path)]
    models = sorted({str(j.get("model")) for j in judgments})
    scores = {m: mt_bench.score([j for j in judgments if str(j.get("model")) == m]) for m in models}
    if len(scores) == 1:
        (model, figures), = scores.items()
        return {"model": model, **figures}
    return {"models": scores}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m inpo.score", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="benchmark", required=True)
    a = sub.add_parser("alpaca_eval", help="AlpacaEval 2.0 win rates of an annotations.json")
    a.add_argument("annotations", help="official annotations.json of one model")
    a.add_argument("--gamed-baselines", default=None,
                   help="AlpacaEval's df_gamed.csv, for the leaderboard's length-controlled win rate")
    h = sub.add_parser("arena_hard", help="Arena-Hard v0.1 score of model_judgment files")
    h.add_argument("judgments", nargs="+", help="model_judgment/<judge>/<model>.jsonl file(s)")
    h.add_argument("--baseline", default=None,
                   help=f"baseline model (default: the judgments' 'baseline' field, else {arena_hard.BASELINE})")
    h.add_argument("--rounds", type=int, default=100, help="bootstrap resamples (default: 100)")
    h.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    h.add_argument("--weight", type=int, default=3, help="battles counted for a strong verdict (default: 3)")
    m = sub.add_parser("mt_bench", help="MT-Bench score of FastChat single-answer judgment files")
    m.add_argument("judgments", nargs="+", help="model_judgment/<judge model>_single.jsonl file(s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.benchmark == "alpaca_eval":
            result = alpaca_eval.score_annotations(args.annotations, gamed_baselines=args.gamed_baselines)
        elif args.benchmark == "mt_bench":
            result = _mt_bench(args)
        else:
            result = _arena_hard(args)
    except (OSError, ValueError) as err:  # RecordError is a ValueError
        print(f"inpo.score {args.benchmark}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
