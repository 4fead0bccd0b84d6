def eval_folder(chain, t, benchmark=None):
    """Where an evaluation of the policy after iteration t writes (chain sft/reference, t = 0: pi_ref)."""
    return f"{R}/{chain}/eval/{benchmark}/iter{t}" if benchmark else f"{R}/{chain}/eval/iter{t}"


BASELINE = f"{R}/eval/baseline/samples.jsonl"
REFERENCE_ANSWERS = f"{eval_folder('sft', 0)}/answers.jsonl"


def previous_answers(chain, t):
    """The answers of pi_t, the policy iteration t started from (pi_1 = pi_ref: the SFT model's evaluation)."""
    return f"{eval_folder('sft' if int(t) == 1 else chain, int(t) - 1)}/answers.jsonl"


def game_settings(chain, t):
    """The game metrics' settings of a held-out evaluation (inpo.game_metrics): every policy is measured in
    the tau-regularized game with pi_ref the SFT model (the workflow's tau), and pi_{t+1} against the exact
    mirror-descent step from pi_t that its algorithm approximates (the shadow)."""
    if chain == "sft":
        return {"game.tau": config["tau"], "game.policy_is_reference": True}
    point = parse_point(chain.split("/", 1)[1])
    step = algorithm_step(point["algo"], eta=step_size(point, int(t)) if "eta" in point else None,
                          tau=point.get("tau"), beta=point.get("beta"))
    return {"game.tau": config["tau"], "game.reference_answers": REFERENCE_ANSWERS,
            "game.previous_answers": previous_answers(chain, t) if step else None,
            "game.step.eta": step.eta if step else None, "game.step.tau": step.tau if step else None}


if HELDOUT:

    rule baseline_answers:
        """The SFT model's answers to the held-out prompts: what every policy is compared with."""
        input:
            conf("sample", "sampler/hf"),
            policy=f"{R}/sft/model",
            prompts=prompts_file("eval"),
        output:
            BASELINE,
        params:
            # iteration=0 keeps these samples' seed apart from every training iteration's
            args=hydra_args("sample", os.path.dirname(BASELINE), policy=f"{R}/sft/model", prompts=prompts_file("eval"),
                            output=BASELINE, n_samples=config["n_eval_samples"], iteration=0, seed=config["seed"]),
            untracked=untracked_args("sample"),
        log:
            f"{R}/logs/baseline_answers.log",
        benchmark:
            f"{R}/benchmarks/baseline_answers.tsv"
        shell:
            "{STAGE_ENV} {PYTHON} -m inpo.sample {params.args} {params.untracked} > {log:q} 2>&1"


    rule evaluate:
        """Win rate against the SFT answers, mean length, duality gap of the policy after iteration t (chain sft: the SFT model)."""
        input:
            conf("evaluate", f"judge/{config['eval_judge']}", "sampler/hf"),
            policy=lambda wc: evaluated_policy(wc.chain, wc.t),
            prompts=prompts_file("eval"),
            baseline=BASELINE,
            # pi_ref's and pi_t's answers, for the game metrics (game_settings)
            game=lambda wc: [v for k, v in game_settings(wc.chain, wc.t).items() if k.endswith("_answers") and v],
        output:
            metrics=f"{eval_folder('{chain}', '{t}')}/metrics.json",
            answers=f"{eval_folder('{chain}', '{t}')}/answers.jsonl",
        params:
            args=lambda wc: hydra_args(
                "evaluate", eval_folder(wc.chain, wc.t), policy=evaluated_policy(wc.chain, wc.t), prompts=prompts_file("eval"),
                baseline=BASELINE, output_dir=eval_folder(wc.chain, wc.t), judge=config["eval_judge"],
                n_samples=config["n_eval_samples"], iteration=wc.t, seed=config["seed"], **game_settings(wc.chain, wc.t)),
            untracked=untracked_args("evaluate"),
        log:
            f"{R}/logs/{{chain}}/eval/iter{{t}}.log",
        benchmark:
            f"{R}/benchmarks/{{chain}}/eval/iter{{t}}.tsv"
        shell:
            "{STAGE_ENV} {PYTHON} -m inpo.evaluate {params.args} {params.untracked} > {log:q} 2>&1"


# each benchmark's judge config and data files (inpo.workflow_config.benchmark_inputs), composed once
BENCHMARK_INPUTS = benchmark_inputs(config, CONF_DIR)


rule benchmark:
    """A benchmark (conf/eval/<benchmark>.yaml) of pi_ref (chain reference, iteration 0) or of pi_{t+1}: the
    policy's answers, the judge's verdicts in the benchmark's official format, and its scores."""
    input:
        lambda wc: conf("evaluate", f"eval/{wc.benchmark}", f"sampler/{config['sampler']}"),
        lambda wc: BENCHMARK_INPUTS[wc.benchmark],
        policy=lambda wc: model_input(evaluated_policy(wc.chain, wc.t)),
    output:
        metrics=f"{eval_folder('{chain}', '{t}', '{benchmark}')}/metrics.json",
    params:
        # overrides: the workflow config's `overrides: {<benchmark>: [...]}`
        args=lambda wc: hydra_args(
            wc.benchmark, eval_folder(wc.chain, wc.t, wc.benchmark), eval=wc.benchmark,
            policy=evaluated_policy(wc.chain, wc.t), output_dir=eval_folder(wc.chain, wc.t, wc.benchmark),
            # the benchmark's own generation settings (eval.generation): its questions are never cut
            sampler=config["sampler"], iteration=wc.t, seed=config["seed"]),
        untracked=lambda wc: untracked_args(wc.benchmark),
    log:
        f"{R}/logs/{{chain}}/eval/{{benchmark}}/iter{{t}}.log",
    benchmark:
        f"{R}/benchmarks/{{chain}}/eval/{{benchmark}}/iter{{t}}.tsv"
    shell:
        "{STAGE_ENV} {PYTHON} -m inpo.evaluate {params.args} {params.untracked} > {log:q} 2>&1"
