"""The project's DPO train step against TRL's ``DPOTrainer``, side by side, on identical batches.

    python benchmarks/vs_trl.py [OUTPUT_DIR] [--pairs 40] [--repeats 3]        (or: make bench-trl)

Set-up (not timed): a random Llama (on a CPU: ~43M parameters, hidden 384, 8 layers, untied, a
32000-word vocabulary; on a GPU: a Llama-3.2-1B shape, hidden 2048, 16 layers, tied embeddings,
~1.04B parameters, trained in bf16 autocast) saved once as a model folder, and ``--pairs``
chat-like preference pairs of random words (seeded): prompts of 16-200 words, answers of 8-250
(on a GPU 16-512 and 8-508, so that a sequence reaches 1024 tokens), one token a word. TRL 1.16
installs into the project's own venv if it is missing (requirements/trl.txt; pip leaves every
package already there at its version, see ``ensure_trl``).

Then ``--repeats`` rounds, interleaved (inpo, TRL, inpo, TRL, ...), each measurement in a fresh
process, so that its peak memory is its own. Both sides train the same model folder on the same
batches: 8 pairs a batch, in dataset order (TRL: ``train_sampling_strategy="sequential"``), each
batch one forward over its 8 chosen + 8 rejected sequences (TRL: right-padded to the batch's
longest; inpo: in the train stage's ``packing`` layout, by default all in one padding-free row with
per-sequence attention, ``inpo.attention``; ``--also-padded`` adds inpo right-padded as a third side), the DPO loss (sigmoid, beta 0.1) against reference log-probs computed before timing, dropout off,
no gradient checkpointing, AdamW (torch's fused kernel), constant learning rate, gradient
clipping at 1.0, one optimizer step a batch, one epoch. The parent checks that every side saw the
same batches (sequences and real tokens of each) and prints their losses.

Timed, on each side, from after the optimizer is made to after the last optimizer step (on a
GPU with a synchronize at both ends):
- inpo (``project_steps``): per batch (after the packing check, not timed), ``inpo.training.step_batches`` (the train stage's collate:
  packing or padding into tensors), the copy to the device, ``accumulate_step`` (forward, chunked LM
  head, loss, metrics, ``accelerator.backward``), clipping, ``optimizer.step()``, ``zero_grad()``.
- TRL: ``trainer.train()`` from its ``on_train_begin`` callback (after the dataloader, optimizer and
  scheduler are made) to its ``on_step_end`` callback of the last step: the DataLoader and
  ``DataCollatorForPreference``, ``training_step`` (forward with TRL's fused LM head and its
  metrics, backward), clipping, optimizer and scheduler steps, ``zero_grad``, its per-step
  bookkeeping. Not timed: tokenization and the reference log-probs (both done in ``__init__``),
  ``train()``'s final summary.

Printed: real (non-padding) tokens of chosen + rejected sequences (prompt + answer), counted from
the batches each side computed (attention masks; packed ``sequence_ids``), per second of wall time and per CPU-second
(``time.process_time``, all threads of the process); peak memory (on a CPU the process's peak
RSS, ``ru_maxrss`` at its end, set-up included; on a GPU ``torch.cuda.max_memory_allocated``
over the timed region); the padding fraction (padding or filler positions / all positions computed). Each
with min and median over the repeats and the ratio inpo / TRL of the medians. The machine (CPU
model, cores, GPU) and the versions head the output.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from side_by_side import interleaved, median_ratio, print_table

REPO = Path(__file__).resolve().parent.parent
TRL_REQUIREMENTS = REPO / "requirements" / "trl.txt"
VOCABULARY_SIZE = 32_000
BATCH_PAIRS = 8
BETA = 0.1
MAX_GRAD_NORM = 1.0
SEED = 0
# ~43M parameters (24.6M of them the untied embeddings)
CPU_ARCHITECTURE = {"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 8, "num_attention_heads": 6,
                    "num_key_value_heads": 6, "max_position_embeddings": 2048, "tie_word_embeddings": False}
# Llama 3.2 1B's shape with a 32000-word vocabulary: ~1.04B parameters
GPU_ARCHITECTURE = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
                    "num_key_value_heads": 8, "max_position_embeddings": 2048, "tie_word_embeddings": True}


# ---------------------------------------------------------------------------------------------
# Set-up: the model folder and the pairs, shared by both sides


def preference_pairs(n: int, prompt_words: tuple[int, int], answer_words: tuple[int, int], seed: int = SEED) -> list[dict]:
    """``n`` pairs ``{"prompt", "chosen", "rejected"}`` of random words, lengths uniform in the
    given inclusive ranges (one token a word under the word tokenizer)."""
    rng = np.random.default_rng(seed)

    def words(low: int, high: int) -> str:
        return " ".join(f"w{w}" for w in rng.integers(0, VOCABULARY_SIZE, rng.integers(low, high + 1)))

    return [{"prompt": words(*prompt_words), "chosen": words(*answer_words), "rejected": words(*answer_words)}
            for _ in range(n)]


def make_setup(out: Path, args: argparse.Namespace, device: torch.device) -> dict:
    from inpo.modeling import build_llama, save_policy
    from inpo.tiny_models import build_tokenizer

    gpu = device.type == "cuda"
    prompt_words = tuple(args.prompt_words or ((16, 512) if gpu else (16, 200)))
    answer_words = tuple(args.answer_words or ((8, 508) if gpu else (8, 250)))
    tokenizer = build_tokenizer([f"w{i}" for i in range(VOCABULARY_SIZE)], add_bos=False)
    model = build_llama(tokenizer, GPU_ARCHITECTURE if gpu else CPU_ARCHITECTURE, seed=SEED)
    parameters = sum(p.numel() for p in model.parameters())
    save_policy(model, tokenizer, out / "policy")
    del model
    pairs = preference_pairs(args.pairs, prompt_words, answer_words)
    (out / "pairs.json").write_text(json.dumps(pairs))
    return {"parameters": parameters, "prompt_words": prompt_words, "answer_words": answer_words}


def load_model(policy: Path, model_dtype: str, device: torch.device, gradient_checkpointing: bool):
    """The same model, loaded the same way, for both sides."""
    from inpo.modeling import load_policy

    model, tokenizer = load_policy(policy, dtype=model_dtype, device=device)
    model.config.use_cache = False
    if gradient_checkpointing:
        getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
    return model, tokenizer


def precision(device: torch.device) -> str:
    """bf16 autocast on a GPU that has it (the train stage's ``mixed_precision: auto``), else full precision."""
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "no"


# ---------------------------------------------------------------------------------------------
# The project's side. Only these two functions know the train stage's interface; swap their
# internals when it changes (packing, token-budget micro-batches).


def project_examples(model, tokenizer, pairs: list[dict], mixed_precision: str) -> list[dict]:
    """The train stage's examples for ``pairs`` (token ids as ``inpo.modeling.encode_pairs``
    makes them), with the reference log-probs of the untrained ``model`` (dropout off, no grad),
    as the ``logps`` stage stores them. Not timed."""
    from inpo.logps import score_sequences
    from inpo.modeling import encode_pairs

    encoded, _ = encode_pairs(tokenizer, pairs)
    sequences = [e[side] for e in encoded for side in ("chosen", "rejected")]
    model.eval()
    with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=mixed_precision == "bf16"):
        scores = score_sequences(model, sequences, tokenizer.pad_token_id, batch_size=2 * BATCH_PAIRS,
                                 chunk_size=1024, desc="reference log-probs")
    return [{"chosen": e["chosen"]["ids"], "rejected": e["rejected"]["ids"],
             "response_start": e["chosen"]["response_start"],
             # DPO (algo.loss=dpo) regularizes towards pi_t, the "prev" log-probs: here pi_t = pi_ref
             "logps": [scores[2 * i], scores[2 * i + 1], scores[2 * i], scores[2 * i + 1]]}
            for i, e in enumerate(encoded)]


def project_steps(model, tokenizer, batches: list[list[dict]], *, learning_rate: float, mixed_precision: str,
                  packing: str = "auto", on_start=None, on_batch=None) -> None:
    """One optimizer step per batch of train-stage examples, as ``inpo.training.fit`` steps (accelerate,
    ``step_batches`` and ``accumulate_step``, fused AdamW, clipping) with ``preference_objective``
    (DPO, beta 0.1) in the train stage's ``packing`` layout, without fit's checkpoints, log and
    scheduler. ``on_start()`` is called once the optimizer is made and prepared, right before the
    first batch (where the timing starts, as TRL's ``on_train_begin``); ``on_batch(step, loss)``
    after each step, with the step's collated micro-batches and its loss."""
    from accelerate import Accelerator
    from omegaconf import OmegaConf

    from inpo.logprobs import set_up_packing
    from inpo.optim import OptimSettings
    from inpo.train import preference_objective
    from inpo.training import accumulate_step, disable_dropout, step_batches

    disable_dropout(model)
    examples = [e for batch in batches for e in batch]
    layout = set_up_packing(model, packing, [e[side] for e in examples for side in ("chosen", "rejected")],
                            [e["response_start"] for e in examples for _ in range(2)], tokenizer.pad_token_id)
    objective = preference_objective(OmegaConf.create({"loss": "dpo", "beta": BETA}), tokenizer.pad_token_id, layout)
    settings = OptimSettings(learning_rate=learning_rate, batch_size=BATCH_PAIRS)
    accelerator = Accelerator(mixed_precision=mixed_precision)
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.0}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=learning_rate, fused=True)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    if on_start:
        on_start()
    for examples in batches:
        step = step_batches(examples, objective, settings)
        step["micro_batches"] = [{k: v.to(accelerator.device) for k, v in b.items()} for b in step["micro_batches"]]
        metrics = accumulate_step(accelerator, model, objective, step)  # prepare() wrapped the forward in the autocast
        accelerator.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad()
        if on_batch:
            on_batch(step, metrics["loss"])


SIDES = {"inpo", "TRL", "inpo padded"}
PACKING = {"inpo padded": "padded"}  # the inpo packing a side runs with, if not --packing


def measure_inpo(args: argparse.Namespace, device: torch.device) -> dict:
    model, tokenizer = load_model(Path(args.setup) / "policy", args.model_dtype, device, args.gradient_checkpointing)
    pairs = json.loads((Path(args.setup) / "pairs.json").read_text())
    examples = project_examples(model, tokenizer, pairs, precision(device))
    batches = [examples[i:i + BATCH_PAIRS] for i in range(0, len(examples), BATCH_PAIRS)]
    seen = []
    timer = Timer(device)
    project_steps(model, tokenizer, batches, learning_rate=args.lr, mixed_precision=precision(device),
                  packing=args.packing, on_start=timer.start,
                  on_batch=lambda step, loss: seen.append((step_shape(step["micro_batches"]), loss)))
    timer.stop()
    return timer.result(seen)


def step_shape(micro_batches: list[dict]) -> tuple[int, int, int]:
    """(sequences, real tokens, positions computed) of a step's micro-batches, padded or packed."""
    sequences = tokens = positions = 0
    for b in micro_batches:
        real = b["sequence_ids"] >= 0 if "sequence_ids" in b else b["attention_mask"].bool()
        sequences += int(b["sequence_ids"].max()) + 1 if "sequence_ids" in b else b["attention_mask"].shape[0]
        tokens += int(real.sum())
        positions += real.numel()
    return sequences, tokens, positions


# ---------------------------------------------------------------------------------------------
# TRL's side


def measure_trl(args: argparse.Namespace, device: torch.device) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    model, tokenizer = load_model(Path(args.setup) / "policy", args.model_dtype, device, args.gradient_checkpointing)
    pairs = json.loads((Path(args.setup) / "pairs.json").read_text())
    # TRL's conversational format; its chat template renders the same tokens as inpo.modeling.encode
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": p["prompt"]}],
                                  "chosen": [{"role": "assistant", "content": p["chosen"]}],
                                  "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs])
    seen = []
    timer = Timer(device)

    class Timed(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            timer.start()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == state.max_steps:
                timer.stop()

    class RecordingDPOTrainer(DPOTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            seen.append((step_shape([inputs]), float((result[0] if return_outputs else result).detach())))
            return result

    config = DPOConfig(
        output_dir=str(Path(args.setup) / "trl_output"), seed=SEED,
        per_device_train_batch_size=BATCH_PAIRS, num_train_epochs=1, train_sampling_strategy="sequential",
        learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=MAX_GRAD_NORM, optim="adamw_torch_fused",
        beta=BETA, loss_type=["sigmoid"], precompute_ref_log_probs=True, max_length=None, disable_dropout=True,
        gradient_checkpointing=args.gradient_checkpointing, bf16=precision(device) == "bf16",
        report_to="none", logging_strategy="no", save_strategy="no", eval_strategy="no", disable_tqdm=True,
    )
    trainer = RecordingDPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                                  callbacks=[Timed()])
    check_same_tokens(trainer.train_dataset, pairs, tokenizer)
    trainer.train()
    return timer.result(seen)


def check_same_tokens(trl_dataset, pairs: list[dict], tokenizer) -> None:
    """TRL's tokenization of the pairs is the project's: else the two sides train on different sequences."""
    from inpo.modeling import encode_pairs

    encoded, _ = encode_pairs(tokenizer, pairs)
    for row, e in zip(trl_dataset, encoded):
        for side in ("chosen", "rejected"):
            if row["prompt_ids"] + row[f"{side}_ids"] != e[side]["ids"] or len(row["prompt_ids"]) != e[side]["response_start"]:
                raise RuntimeError(f"TRL tokenized a pair's {side} sequence differently from inpo.modeling.encode_pairs")


# ---------------------------------------------------------------------------------------------
# Measuring one side in its own process


class Timer:
    """Wall and CPU seconds of a region (a GPU synchronized at both ends), and the peak memory."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def result(self, seen: list) -> dict:
        """The measurement, with the steps seen: (sequences, real tokens, positions computed) each, and the losses."""
        batches = [list(shape) for shape, _ in seen]
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        return {"wall_s": self.wall, "cpu_s": self.cpu, "peak_bytes": peak, "rss_peak_before_bytes": self.peak_before,
                "batches": batches, "losses": [float(loss) for _, loss in seen]}


def run_child(side: str, args: argparse.Namespace, out: Path):
    """A function of the repeat that measures ``side`` in a fresh process and returns its result."""

    def run(repeat: int) -> dict:
        result_file = out / f"{side}-{repeat}.json"
        command = [sys.executable, str(Path(__file__).resolve()), str(out), "--child", side, "--setup", str(out),
                   "--result", str(result_file), "--lr", str(args.lr), "--model-dtype", args.model_dtype,
                   "--packing", PACKING.get(side, args.packing)]
        if args.gradient_checkpointing:
            command.append("--gradient-checkpointing")
        env = {**os.environ, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"the {side} measurement (repeat {repeat}) failed:\n{done.stderr[-4000:]}")
        result = json.loads(result_file.read_text())
        tokens = sum(b[1] for b in result["batches"])
        print(f"  repeat {repeat} {side}: {tokens / result['wall_s']:.1f} tokens/s, {result['wall_s']:.1f} s",
              file=sys.stderr, flush=True)
        return result

    return run


# ---------------------------------------------------------------------------------------------
# The parent: install, set up, measure, report


def ensure_trl() -> None:
    """Install TRL (requirements/trl.txt) into this environment if it is missing, holding every
    package already installed at its version (a constraints file of the environment's own pins):
    pip fails rather than move torch or transformers. TRL 1.16 needs nothing more than the project
    has, so it shares the project's venv and both sides run the same torch and transformers."""
    if importlib.util.find_spec("trl") is not None:
        return
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                            text=True, check=True).stdout
    pins = [line for line in frozen.splitlines() if "==" in line and " @ " not in line]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(pins) + "\n")
    start = time.perf_counter()
    print(f"installing TRL ({TRL_REQUIREMENTS.relative_to(REPO)}) into {sys.prefix} ...", file=sys.stderr, flush=True)
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-r", str(TRL_REQUIREMENTS), "-c", f.name],
                       check=True)
    finally:
        os.unlink(f.name)
    print(f"installed TRL in {time.perf_counter() - start:.0f} s", file=sys.stderr)


def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{cpu}, {os.cpu_count()} cores ({usable} usable, torch uses {torch.get_num_threads()} threads)"
    if device.type == "cuda":
        text += f"; GPU {torch.cuda.get_device_name(device)}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", nargs="?", default="results/benchmark_vs_trl")
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--prompt-words", type=int, nargs=2, metavar=("MIN", "MAX"),
                        help="prompt length range (default: 16 200 on a CPU, 16 512 on a GPU)")
    parser.add_argument("--answer-words", type=int, nargs=2, metavar=("MIN", "MAX"),
                        help="answer length range (default: 8 250 on a CPU, 8 508 on a GPU)")
    parser.add_argument("--model-dtype", default="float32", choices=["float32", "bfloat16"],
                        help="the weights' dtype (default float32; a GPU computes in bf16 autocast either way)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="on both sides (default: off on both)")
    parser.add_argument("--packing", default="auto", help="the train stage's packing for inpo (default auto: one packed row, segment attention)")
    parser.add_argument("--also-padded", action="store_true",
                        help="measure inpo with packing=padded too, as a third side (what packing gains)")
    parser.add_argument("--child", choices=sorted(SIDES), help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    if args.child:
        result = (measure_trl if args.child == "TRL" else measure_inpo)(args, device)
        Path(args.result).write_text(json.dumps(result))
        return

    ensure_trl()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    setup = make_setup(out, args, device)
    sides = ["inpo", "TRL"] + (["inpo padded"] if args.also_padded else [])
    results = interleaved({side: run_child(side, args, out) for side in sides}, args.repeats)

    # every side trains on the same steps: the same sequences and real tokens in each
    inpo_steps = [b[:2] for b in results["inpo"][0]["batches"]]
    for side, runs in results.items():
        for run in runs:
            if [b[:2] for b in run["batches"]] != inpo_steps:
                sys.exit(f"{side} trained on other batches than inpo: {run['batches']} vs {results['inpo'][0]['batches']}")
    tokens = sum(b[1] for b in inpo_steps)
    computed = {side: sum(b[2] for b in runs[0]["batches"]) for side, runs in results.items()}

    import accelerate
    import transformers
    import trl

    print(f"DPO train steps, inpo against TRL {trl.__version__}, on {machine(device)}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, accelerate {accelerate.__version__}; "
          f"{setup['parameters'] / 1e6:.1f}M-parameter random Llama ({args.model_dtype} weights, "
          f"{'bf16 autocast' if precision(device) == 'bf16' else 'no autocast'}) on {device}; "
          f"{args.pairs} pairs (prompts {setup['prompt_words'][0]}-{setup['prompt_words'][1]} words, answers "
          f"{setup['answer_words'][0]}-{setup['answer_words'][1]}), {len(inpo_steps)} batches of {BATCH_PAIRS} pairs, "
          f"{tokens} real tokens; inpo's packing={args.packing}; "
          f"{args.repeats} interleaved repeats, each in a fresh process")
    peak = "peak GPU memory (max_memory_allocated)" if device.type == "cuda" else "peak RSS"
    tables = [
        ("real tokens / s (wall)", lambda r: tokens / r["wall_s"], 1),
        ("real tokens / CPU-s", lambda r: tokens / r["cpu_s"], 1),
        (f"{peak}, MiB", lambda r: r["peak_bytes"] / 2**20, 0),
        ("padding fraction", None, 3),
    ]
    for unit, value, digits in tables:
        values = {side: [value(r) if value else 1 - tokens / computed[side] for r in runs] for side, runs in results.items()}
        print()
        print_table("trainer", unit, values, digits)
        print(f"inpo / TRL: {median_ratio(values, 'inpo', 'TRL'):.2f} (median over median)")
        if "inpo padded" in values:
            print(f"inpo / inpo padded: {median_ratio(values, 'inpo', 'inpo padded'):.2f}")
    before = {side: statistics.median(r["rss_peak_before_bytes"] for r in runs) / 2**20 for side, runs in results.items()}
    print(f"(peak RSS before the timed region, i.e. of the set-up: inpo {before['inpo']:.0f} MiB, "
          f"TRL {before['TRL']:.0f} MiB, medians)")
    print()
    for side, runs in results.items():
        print(f"{side} loss per step (repeat 0): {' '.join(f'{loss:.4f}' for loss in runs[0]['losses'])}")


if __name__ == "__main__":
    main()
