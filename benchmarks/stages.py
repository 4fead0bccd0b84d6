"""One INPO iteration of the embedded default, stage by stage, timed, on whatever device is present.

On a GPU the models load in bf16 and training uses bf16 autocast; the table gives each stage's
wall time and the peak GPU memory.

    python benchmarks/stages.py [OUTPUT_DIR] [--prompts N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from inpo import annotate, evaluate, logps, prompts, sample, sft, train
from inpo.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", nargs="?", default="results/benchmark_stages")
    parser.add_argument("--prompts", type=int, default=1024)
    args = parser.parse_args()
    out = Path(args.output)
    sft_model = out / "sft" / "model"
    steps = [
        ("sft", sft, [f"output={sft_model}", f"work_dir={out}/sft"]),
        ("prompts", prompts, [f"output={out}/train.jsonl", f"n_prompts={args.prompts}"]),
        ("eval prompts", prompts, [f"output={out}/eval.jsonl", "split=eval", "n_prompts=256"]),
        ("baseline answers", sample, [f"policy={sft_model}", f"prompts={out}/eval.jsonl", f"output={out}/baseline.jsonl",
                                      "n_samples=4", "iteration=0"]),
        ("sample", sample, [f"policy={sft_model}", f"prompts={out}/train.jsonl", f"output={out}/samples.jsonl"]),
        ("annotate", annotate, [f"samples={out}/samples.jsonl", f"output={out}/pairs.jsonl", f"stats={out}/annotation.json"]),
        ("logps", logps, [f"pairs={out}/pairs.jsonl", f"ref_policy={sft_model}", f"policy={sft_model}",
                          f"output={out}/scored.jsonl"]),
        ("train", train, [f"pairs={out}/scored.jsonl", f"policy={sft_model}", f"output={out}/iter1/policy",
                          f"work_dir={out}/iter1"]),
        ("evaluate", evaluate, [f"policy={out}/iter1/policy", f"prompts={out}/eval.jsonl", f"baseline={out}/baseline.jsonl",
                                f"output_dir={out}/eval1", "iteration=1"]),
    ]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    rows = []
    for name, stage, overrides in steps:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        stage.run(load_config(stage.__name__.rsplit(".", 1)[1], overrides))
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else float("nan")
        rows.append({"stage": name, "seconds": round(seconds, 2), "peak_gpu_mib": round(peak, 1)})
    metrics = json.loads((out / "eval1" / "metrics.json").read_text())
    print(f"device: {device}, torch {torch.__version__}")
    print(f"{'stage':<18}{'seconds':>9}{'peak GPU MiB':>14}")
    for row in rows:
        print(f"{row['stage']:<18}{row['seconds']:>9.2f}{row['peak_gpu_mib']:>14.1f}")
    print(f"after one iteration: win rate {metrics['win_rate']:.3f} ± {metrics['standard_error']:.3f}, "
          f"duality gap {metrics['duality_gap']:.3f}, share correct {metrics['share_correct']:.3f}")
    (out / "stages.json").write_text(json.dumps({"device": device, "stages": rows, "metrics": metrics}, indent=2))


if __name__ == "__main__":
    main()
