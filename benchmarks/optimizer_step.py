"""AdamW's step time, torch's default (for-each) implementation against its fused kernel, side by side.

The parameters are those of a random Llama-shaped model (default: vocabulary 32000, hidden 512,
8 layers, 66M parameters with the untied embeddings), with random gradients, in the parameter
groups ``inpo.training.fit`` makes (weight decay on matrices only); each optimizer steps its own
copy. The timings are interleaved (default, fused, default, ...) so that the machine's noise hits
both alike; the table gives each one's seconds per step, min and median over the repeats, and
their ratio.

    python benchmarks/optimizer_step.py [--steps 5] [--repeats 3] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from side_by_side import interleaved, median_ratio, print_table


def timed_steps(optimizer: torch.optim.Optimizer, steps: int, device: torch.device) -> float:
    """Seconds per optimizer step, averaged over ``steps`` steps."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps per timing (default: 5)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timings of each optimizer (default: 3)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    args = parser.parse_args()
    device = torch.device(args.device)
    config = LlamaConfig(vocab_size=32000, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                         num_hidden_layers=args.layers, num_attention_heads=8, num_key_value_heads=8)
    optimizers = {}
    for name, options in (("default", {}), ("fused", {"fused": True})):
        # each optimizer steps its own copy of the parameters, as in a training run
        torch.manual_seed(0)
        params = list(LlamaForCausalLM(config).to(device).parameters())
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.01},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
        optimizers[name] = torch.optim.AdamW(groups, lr=1e-4, **options)
        optimizers[name].step()  # the first step allocates the moments
    seconds = interleaved({name: lambda _, o=optimizer: timed_steps(o, args.steps, device)
                           for name, optimizer in optimizers.items()}, args.repeats)
    n_params = sum(p.numel() for p in params)
    print(f"AdamW step, {n_params / 1e6:.1f}M parameters on {device} ({torch.get_num_threads()} threads), "
          f"{args.repeats} x {args.steps} steps, torch {torch.__version__}")
    print_table("implementation", "s/step", seconds, digits=4)
    print(f"fused is {median_ratio(seconds, 'default', 'fused'):.1f}x faster (median over median)")


if __name__ == "__main__":
    main()
