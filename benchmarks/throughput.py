"""One INPO iteration (sample -> annotate -> logps -> train) on a random Llama of about 0.5B
parameters, with a 32K-word vocabulary: sampling and training throughput and peak GPU memory.

The policy is random, so its answers run to ``--max-new-tokens`` (no EOS): generation is timed
at full length. A tiny random pairwise preference model (conf/tiny_models.yaml) judges the pairs,
so the model-judge path runs too. On a GPU everything is bf16 (training: bf16 autocast).

    python benchmarks/throughput.py [OUTPUT_DIR] [--size 0.5b|tiny] [--prompts 256] [--samples 8]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from inpo import annotate, logps, prompts, sample, train
from inpo.config import load_config
from inpo.modeling import build_llama, conversation, encode, save_policy
from inpo.records import read_jsonl
from inpo.tiny_models import build_tokenizer, run as build_tiny_model

VOCABULARY_SIZE = 32_000
SIZES = {  # LlamaConfig fields; 0.5b: 24 x 16.8M per layer + 2 x 32.8M embeddings = 0.47B parameters
    "0.5b": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
             "num_key_value_heads": 16, "max_position_embeddings": 2048, "tie_word_embeddings": False},
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 4, "max_position_embeddings": 512, "tie_word_embeddings": False},
}


def timed(stage, config_name: str, overrides: list[str]) -> dict:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    stage.run(load_config(config_name, overrides))
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {"seconds": time.perf_counter() - start, "peak_gpu_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", nargs="?", default="results/benchmark_throughput")
    parser.add_argument("--size", choices=sorted(SIZES), default="0.5b")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--train-batch", type=int, default=8, help="pairs per micro-batch")
    args = parser.parse_args()
    out = Path(args.output)
    tokenizer = build_tokenizer([f"w{i}" for i in range(VOCABULARY_SIZE)], add_bos=False)
    model = build_llama(tokenizer, SIZES[args.size], seed=0)
    parameters = sum(p.numel() for p in model.parameters())
    save_policy(model, tokenizer, out / "policy")
    del model
    build_tiny_model(load_config("tiny_models", ["kind=pair_preference", f"output={out}/judge"]))
    policy = out / "policy"

    prompts.run(load_config("prompts", [f"output={out}/prompts.jsonl", f"n_prompts={args.prompts}"]))
    stats = {"sample": timed(sample, "sample", [
        f"policy={policy}", f"prompts={out}/prompts.jsonl", f"output={out}/samples.jsonl", f"n_samples={args.samples}",
        f"sampler.max_new_tokens={args.max_new_tokens}", "sampler.batch_size=256"])}
    samples = read_jsonl(out / "samples.jsonl")
    generated = sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for s in samples for r in s["responses"])
    stats["annotate"] = timed(annotate, "annotate", [
        f"samples={out}/samples.jsonl", f"output={out}/pairs.jsonl", f"stats={out}/annotation.json",
        "judge=pair_preference_llama3", f"judge.model={out}/judge", "judge.batch_size=64", "judge.max_length=null"])
    stats["logps"] = timed(logps, "logps", [f"pairs={out}/pairs.jsonl", f"ref_policy={policy}", f"policy={policy}",
                                            f"output={out}/scored.jsonl", "batch_size=32"])
    stats["train"] = timed(train, "train", [f"pairs={out}/scored.jsonl", f"policy={policy}", f"output={out}/iter1/policy",
                                            f"work_dir={out}/iter1", "optim.epochs=1", f"optim.batch_size={args.train_batch}",
                                            "optim.learning_rate=5e-7", "gradient_checkpointing=true"])
    pairs = read_jsonl(out / "scored.jsonl")
    # tokens of chosen + rejected, prompt included (what the forward and backward passes process)
    trained = sum(len(encode(tokenizer, conversation(p), p[side])["ids"]) for p in pairs for side in ("chosen", "rejected"))
    summary = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "torch": torch.__version__,
        "parameters": parameters, "prompts": args.prompts, "samples": args.samples, "pairs": len(pairs),
        "sampling_tokens_per_s": generated / stats["sample"]["seconds"],
        "training_tokens_per_s": trained / stats["train"]["seconds"], "stages": stats,
    }
    (out / "throughput.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
