"""Stage ``train``: minimize the preference loss (INPO by default; DPO, IPO or SPPO as baselines)
over the scored pairs, starting from pi_t, and save pi_{t+1}. INPO's eta of iteration t follows
``algo.eta_schedule`` (``inpo.schedules``); SPPO's pairs must carry win rates (annotate pairing=sppo).

    python -m inpo.train pairs=results/iter1/scored_pairs.jsonl policy=results/sft/model \
        output=results/iter1/policy work_dir=results/iter1/train algo.eta=0.05 algo.tau=0.0167

Runs on a CPU, a GPU (bf16) or many (``accelerate launch -m inpo.train ...``); a killed job
resumes from ``work_dir/checkpoint``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate.utils import DistributedType, set_seed
from omegaconf import DictConfig, OmegaConf

from .config import hydra_app, stage_seed
from .batching import packing_mode
from .logprobs import collate_sequences, sequence_logps, set_up_packing
from .losses import dpo_loss, inpo_loss, ipo_loss, sppo_loss
from .lora import apply_lora
from .modeling import encode_pairs, load_policy
from .records import SCORED_PAIR, read_jsonl, write_json
from .optim import OptimSettings
from .schedules import check_eta_schedule, eta_at
from .training import Objective, disable_dropout, finish_training, fit, make_accelerator, tracked_settings

LOSSES = ("inpo", "dpo", "ipo", "sppo")
# What a scored pair must carry besides its log-probs, by loss: SPPO's win rates, which annotate
# records with pairing=sppo (and logps copies).
PAIR_TARGETS = {"sppo": ("chosen_winrate", "rejected_winrate")}


def check_algo(algo: DictConfig) -> None:
    """Reject bad algorithm settings before any work, naming the setting."""
    if algo.loss not in LOSSES:
        raise ValueError(f"algo.loss must be one of {LOSSES}, got {algo.loss!r}")
    if algo.loss == "inpo":
        try:
            check_eta_schedule(algo.eta, algo.tau, algo.eta_schedule)
        except ValueError as err:
            raise ValueError(f"algo: {err}") from None
    elif not algo.beta > 0:
        raise ValueError(f"algo.beta must be > 0, got {algo.beta}")


def iteration_algo(algo: DictConfig, t: int) -> DictConfig:
    """The algorithm settings of iteration t: INPO's eta is its schedule's eta_t (``inpo.schedules.eta_at``)."""
    if algo.loss != "inpo":
        return algo
    return OmegaConf.merge(algo, {"eta": eta_at(algo.eta, algo.eta_schedule, t)})


def check_pair_targets(pairs: list[dict], algo: DictConfig, path: str) -> None:
    """The scored pairs must carry what the loss reads besides log-probs (``PAIR_TARGETS``)."""
    for pair in pairs:
        missing = [f for f in PAIR_TARGETS.get(algo.loss, ()) if f not in pair]
        if missing:
            raise ValueError(f"{path}: pair {pair['id']!r} has no {missing[0]} field: the pairs were not annotated "
                             f"with pairing=sppo, and algo.loss={algo.loss} needs each answer's win rate")


def encode_scored_pairs(tokenizer, pairs: list[dict], targets: tuple[str, ...] = (),
                        **truncation) -> tuple[list[dict], dict[str, int]]:
    """Training examples (chosen and rejected token ids, the stored log-probs followed by the pairs'
    ``targets`` fields, e.g. SPPO's win rates) and the counts of ``inpo.modeling.encode_pairs``: the
    same tokens the ``logps`` stage scored."""
    encoded, counts = encode_pairs(tokenizer, pairs, **truncation)
    examples = [{
        "chosen": e["chosen"]["ids"], "rejected": e["rejected"]["ids"], "response_start": e["chosen"]["response_start"],
        "logps": [pair["ref_chosen_logp"], pair["ref_rejected_logp"], pair["prev_chosen_logp"], pair["prev_rejected_logp"],
                  *(pair[f] for f in targets)],
    } for pair, e in zip(pairs, encoded)]
    return examples, counts


def preference_objective(algo: DictConfig, pad_id: int, layout: str = "rows") -> Objective:
    """The preference loss of ``algo`` (an iteration's settings, ``iteration_algo``) as ``fit``'s Objective:
    a mean over pairs, each micro-batch one forward over its chosen and rejected sequences (2B of them)
    in ``layout`` (``inpo.logprobs.collate_sequences``). A pair's length is its chosen plus rejected tokens."""

    def collate(examples: list[dict]) -> dict:
        batch = collate_sequences([e["chosen"] for e in examples] + [e["rejected"] for e in examples],
                                  [e["response_start"] for e in examples] * 2, pad_id, layout)
        batch["logps"] = torch.tensor([e["logps"] for e in examples], dtype=torch.float32)
        return batch

    def loss_sum(model, batch):
        logps = sequence_logps(model, batch)
        chosen, rejected = logps.chunk(2)
        ref_c, ref_r, prev_c, prev_r, *targets = batch["logps"].unbind(-1)
        if algo.loss == "inpo":
            losses = inpo_loss(chosen, rejected, ref_c, ref_r, prev_c, prev_r, eta=algo.eta, tau=algo.tau)
        elif algo.loss == "sppo":
            # SPPO's log-ratios are against pi_t too; targets = the win rates Phat(y_w), Phat(y_l)
            losses = sppo_loss(chosen, rejected, prev_c, prev_r, *targets, beta=algo.beta)
        else:
            # The iterative baselines regularize towards the current iterate pi_t.
            losses = (dpo_loss if algo.loss == "dpo" else ipo_loss)(chosen, rejected, prev_c, prev_r, beta=algo.beta)
        margin = ((chosen - prev_c) - (rejected - prev_r)).detach()
        return losses.sum(), {"logratio_margin": margin.sum().item(), "accuracy": (margin > 0).sum().item()}

    return Objective(collate, loss_sum, length=lambda e: len(e["chosen"]) + len(e["rejected"]))


def check_truncation(pairs: list[dict], cfg: DictConfig, path: str) -> None:
    """The pairs' stored log-probs must be of the token sequences this run trains on."""
    for key in ("max_length", "max_prompt_length"):
        stored = pairs[0].get(key)
        if stored != cfg[key]:
            raise ValueError(f"{path}: its log-probs were computed with {key}={stored}, but train has {key}={cfg[key]}; "
                             f"set the same value for both stages")


def run(cfg: DictConfig) -> dict:
    check_algo(cfg.algo)
    packing_mode(cfg.packing, None)  # an unknown mode fails here, before any work
    settings = OptimSettings(**cfg.optim)
    pairs = read_jsonl(cfg.pairs, SCORED_PAIR)
    check_truncation(pairs, cfg, cfg.pairs)
    check_pair_targets(pairs, cfg.algo, cfg.pairs)
    algo = iteration_algo(cfg.algo, cfg.iteration)
    description = f"train iter {cfg.iteration}"
    accelerator = make_accelerator(settings, cfg.work_dir, description, report_to=cfg.report_to, tracked=tracked_settings(
        cfg, ["pairs", "policy", "output", "work_dir", "iteration", "seed", "algo", "optim", "lora", "model_dtype",
              "max_length", "max_prompt_length", "gradient_checkpointing", "disable_dropout", "packing"]))
    # Setting the model up draws from the global RNGs (LoRA's initial A, any weight the checkpoint
    # lacks): seeded, from a stream of its own (fit seeds the training's).
    set_seed(stage_seed(cfg.seed, "train-setup", cfg.iteration))
    model, tokenizer = load_policy(cfg.policy, dtype=cfg.model_dtype, trust_remote_code=cfg.trust_remote_code)
    if cfg.gradient_checkpointing:
        # transformers 5 calls it activation_checkpointing_enable; older versions have only the other name
        getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
        model.config.use_cache = False
    if cfg.lora.enabled:
        model = apply_lora(model, cfg.lora)
        if cfg.gradient_checkpointing:
            model.enable_input_require_grads()
    # The stored pi_ref/pi_t log-probs were computed without dropout (stage logps); with it on, the
    # policy's are noisy against them (at pi_t the INPO loss is then not (1/(2 eta))^2). The saved
    # policy keeps its config's dropout rates: they are settings of whoever trains it next.
    dropout_rates = disable_dropout(model) if cfg.disable_dropout else {}
    examples, counts = encode_scored_pairs(tokenizer, pairs, PAIR_TARGETS.get(algo.loss, ()), max_length=cfg.max_length,
                                           max_prompt_length=cfg.max_prompt_length)
    layout = set_up_packing(model, cfg.packing, [e[side] for e in examples for side in ("chosen", "rejected")],
                            [e["response_start"] for e in examples for _ in range(2)], tokenizer.pad_token_id,
                            check=accelerator.distributed_type not in (DistributedType.DEEPSPEED, DistributedType.FSDP))
    summary = fit(model, examples, preference_objective(algo, tokenizer.pad_token_id, layout), settings,
                  seed=stage_seed(cfg.seed, "train", cfg.iteration), work_dir=cfg.work_dir,
                  output=cfg.output, tokenizer=tokenizer, description=description, accelerator=accelerator,
                  setup={"algo": OmegaConf.to_container(algo), "policy": str(cfg.policy),
                         "lora": OmegaConf.to_container(cfg.lora), "model_dtype": cfg.model_dtype,
                         "disable_dropout": cfg.disable_dropout, "packing": layout},
                  saved_config=dropout_rates)
    # the settings this iteration trained with: INPO's eta is eta_t of its eta_schedule
    summary.update(pairs=len(pairs), **counts, algo=OmegaConf.to_container(algo))
    if accelerator.is_main_process:
        write_json(Path(cfg.work_dir) / "train_summary.json", summary)
    finish_training(cfg.work_dir, accelerator)
    return summary


@hydra_app("train")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
