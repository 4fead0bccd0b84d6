"""How the time of the ``logps`` and ``train`` stages grows with the number of preference pairs.

    python benchmarks/scaling.py [OUTPUT_DIR] [--pairs 64 128 256 512] [--repeats 1]
        [--hidden 384] [--layers 8] [--prompt-words 16 200] [--answer-words 8 250]

Set-up (not timed), with the helpers of ``vs_trl.py``: a random Llama over the 32000-word word
tokenizer (by default vs_trl's CPU model: 43.5M parameters, hidden 384, 8 layers, untied; ``--hidden``
and ``--layers`` resize it, with 4 x hidden in the MLP and one attention head per 64 hidden units),
saved once as a model folder, and one pool of max(``--pairs``) chat-like pairs of random words
(seeded; prompts of 16-200 words, answers of 8-250, one token a word). Each size N takes the first
N pairs of that pool, so every smaller size is a prefix of every larger one; they are written as
the JSONL the ``logps`` stage reads (``inpo.records.PAIR``: id, prompt, chosen, rejected).

Measured, for each repeat and size in turn (sizes interleaved within a repeat), each stage as the
real stage in a fresh process, on whatever device the stage picks by itself:
- logps: ``python -m inpo.logps pairs=<N pairs> ref_policy=<model> policy=<model> output=<scored>``
  (pi_t = pi_ref, so one scoring pass; the stage's defaults otherwise, conf/logps.yaml).
- train: ``python -m inpo.train pairs=<scored, from the logps run just before> policy=<model>
  work_dir=... output=... optim.epochs=1 report_to=none`` (INPO, conf/train.yaml's defaults
  otherwise: 64 pairs a step, so N / 64 optimizer steps).
Both with ``hydra.run.dir`` in the output folder. Every measurement gets a fresh folder, so that
train never resumes from an earlier run's checkpoint.

Each timed region is the whole stage process, from ``subprocess.run`` to its exit: Python
start-up and imports, Hydra, loading the model, the work (tokenizing, scoring or training),
writing the outputs (the scored JSONL; the checkpoint, log, summary and the saved policy). Wall
seconds are ``time.perf_counter`` around it; CPU seconds are the child's user + system time, all
its threads (``resource.getrusage(RUSAGE_CHILDREN)`` before and after, the difference).

Printed: the machine, versions and settings, then one Markdown table per stage, by size: wall and
CPU seconds (min and median over the repeats), the real tokens of the N pairs (chosen + rejected
sequences, prompt + answer, as ``inpo.modeling.encode_pairs`` makes them), the per-pair cost
(median CPU-s per 100 pairs) and its ratio to the smallest size's (1.00 = linear growth; above 1,
faster than linear). Then a least-squares line, CPU-s = intercept + slope x pairs, over every
measurement: the slope is the marginal cost, and a constant cost per process (start-up, model
load, saving) shows as the intercept, which also pulls the per-pair ratio below 1 as N grows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import vs_trl
from side_by_side import interleaved

REPO = vs_trl.REPO
STAGES = ("logps", "train")


# ---------------------------------------------------------------------------------------------
# Set-up: the model folder and the pairs


def architecture(hidden: int, layers: int) -> dict:
    """vs_trl's CPU model, resized: 4 x hidden in the MLP, one head per 64 hidden units (384: 6 heads)."""
    heads = max(1, hidden // 64)
    if hidden % heads:
        raise SystemExit(f"--hidden {hidden} is not a multiple of its {heads} attention heads (use a multiple of 64)")
    return {**vs_trl.CPU_ARCHITECTURE, "hidden_size": hidden, "intermediate_size": 4 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": heads}


def make_setup(out: Path, args: argparse.Namespace) -> dict:
    """The model folder ``out/policy`` and ``out/pairs-N.jsonl`` per size N (prefixes of one pool)."""
    from inpo.modeling import build_llama, encode_pairs, save_policy
    from inpo.records import PAIR, write_jsonl
    from inpo.tiny_models import build_tokenizer

    tokenizer = build_tokenizer([f"w{i}" for i in range(vs_trl.VOCABULARY_SIZE)], add_bos=False)
    model = build_llama(tokenizer, architecture(args.hidden, args.layers), seed=vs_trl.SEED)
    parameters = sum(p.numel() for p in model.parameters())
    save_policy(model, tokenizer, out / "policy")
    del model
    pool = vs_trl.preference_pairs(max(args.pairs), tuple(args.prompt_words), tuple(args.answer_words))
    pool = [{"id": f"pair-{i}", **pair} for i, pair in enumerate(pool)]
    assert all(set(pair) == set(PAIR) for pair in pool)
    encoded, _ = encode_pairs(tokenizer, pool)
    pair_tokens = [len(e["chosen"]["ids"]) + len(e["rejected"]["ids"]) for e in encoded]
    tokens = {}
    for n in args.pairs:
        write_jsonl(out / f"pairs-{n}.jsonl", pool[:n])
        tokens[n] = sum(pair_tokens[:n])
    return {"parameters": parameters, "tokens": tokens}


# ---------------------------------------------------------------------------------------------
# Measuring one stage process


def child_cpu_seconds() -> float:
    """User + system seconds of the terminated, waited-for children so far (their threads included)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_stage(stage: str, overrides: list[str], run_dir: Path) -> dict:
    """``python -m inpo.<stage> <overrides> hydra.run.dir=<run_dir>``: its wall and CPU seconds."""
    command = [sys.executable, "-m", f"inpo.{stage}", *overrides, f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cpu, wall = child_cpu_seconds(), time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - wall, child_cpu_seconds() - cpu
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)}\nfailed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return {"wall_s": wall, "cpu_s": cpu}


def measure(n: int, out: Path):
    """A function of the repeat that runs logps, then train on its output, for the first ``n`` pairs."""

    def run(repeat: int) -> dict:
        folder = out / "runs" / f"pairs{n}-repeat{repeat}"
        shutil.rmtree(folder, ignore_errors=True)  # fresh: train must not resume from an earlier run
        policy, scored, work = out / "policy", folder / "scored.jsonl", folder / "train"
        result = {
            "logps": run_stage("logps", [f"pairs={out / f'pairs-{n}.jsonl'}", f"ref_policy={policy}",
                                         f"policy={policy}", f"output={scored}"], folder / "logps"),
            "train": run_stage("train", [f"pairs={scored}", f"policy={policy}", f"work_dir={work}",
                                         f"output={work / 'policy'}", "optim.epochs=1", "report_to=none"], work),
        }
        print(f"  repeat {repeat}, {n} pairs: " + ", ".join(
            f"{stage} {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} CPU-s" for stage, r in result.items()),
            file=sys.stderr, flush=True)
        return result

    return run


# ---------------------------------------------------------------------------------------------
# Report


def least_squares(x: list[float], y: list[float]) -> tuple[float, float, float]:
    """(slope, intercept, R^2) of y = intercept + slope x."""
    slope, intercept = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    residual = np.asarray(y) - (intercept + slope * np.asarray(x))
    total = np.asarray(y) - np.mean(y)
    r2 = 1 - float(residual @ residual) / float(total @ total) if float(total @ total) > 0 else float("nan")
    return float(slope), float(intercept), r2


def print_stage_table(stage: str, results: dict[int, list[dict]], tokens: dict[int, int]) -> None:
    """One Markdown table of the stage by size (side_by_side.print_table's style: min and median)."""
    sizes = sorted(results)
    per_pair = {n: 100 * statistics.median(r[stage]["cpu_s"] for r in results[n]) / n for n in sizes}
    print(f"| {stage}: pairs | real tokens | wall s (min) | wall s (median) | CPU-s (min) | CPU-s (median) "
          f"| CPU-s / 100 pairs | per-pair cost vs {sizes[0]} pairs |")
    print("|---|---|---|---|---|---|---|---|")
    for n in sizes:
        wall = [r[stage]["wall_s"] for r in results[n]]
        cpu = [r[stage]["cpu_s"] for r in results[n]]
        print(f"| {n} | {tokens[n]} | {min(wall):.2f} | {statistics.median(wall):.2f} | {min(cpu):.2f} "
              f"| {statistics.median(cpu):.2f} | {per_pair[n]:.2f} | {per_pair[n] / per_pair[sizes[0]]:.2f} |")
    points = [(n, r[stage]) for n in sizes for r in results[n]]
    for what, key in (("CPU-s", "cpu_s"), ("wall s", "wall_s")):
        slope, intercept, r2 = least_squares([n for n, _ in points], [r[key] for _, r in points])
        print(f"{stage} least squares over {len(points)} measurements: {what} = {intercept:.2f} + "
              f"{100 * slope:.3f} x (pairs / 100), R^2 {r2:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", nargs="?", default="results/benchmark_scaling")
    parser.add_argument("--pairs", type=int, nargs="+", default=[64, 128, 256, 512], metavar="N",
                        help="the sizes (default: 64 128 256 512); each the first N pairs of one pool")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=384, help="hidden size (default 384, vs_trl's CPU model)")
    parser.add_argument("--layers", type=int, default=8, help="decoder layers (default 8)")
    parser.add_argument("--prompt-words", type=int, nargs=2, default=[16, 200], metavar=("MIN", "MAX"))
    parser.add_argument("--answer-words", type=int, nargs=2, default=[8, 250], metavar=("MIN", "MAX"))
    args = parser.parse_args()
    args.pairs = sorted(set(args.pairs))
    if args.pairs[0] < 1 or args.repeats < 1:
        parser.error("--pairs and --repeats must be >= 1")

    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    setup = make_setup(out, args)
    results = interleaved({n: measure(n, out) for n in args.pairs}, args.repeats)
    (out / "scaling.json").write_text(json.dumps({"args": vars(args), "setup": setup,
                                                  "results": {str(n): r for n, r in results.items()}}, indent=2))

    import transformers

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"Stage time against pairs, on {vs_trl.machine(device)}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}; "
          f"{setup['parameters'] / 1e6:.1f}M-parameter random Llama (hidden {args.hidden}, {args.layers} layers) "
          f"on the stages' default device ({device}); pairs {' '.join(map(str, args.pairs))} (prefixes of one pool; "
          f"prompts {args.prompt_words[0]}-{args.prompt_words[1]} words, answers "
          f"{args.answer_words[0]}-{args.answer_words[1]}); logps: conf/logps.yaml, pi_t = pi_ref; "
          f"train: conf/train.yaml, optim.epochs=1, report_to=none; {args.repeats} repeat(s), sizes interleaved, "
          f"each stage a fresh process, timed whole (start-up, model load, work, outputs)")
    for stage in STAGES:
        print()
        print_stage_table(stage, results, setup["tokens"])


if __name__ == "__main__":
    main()
