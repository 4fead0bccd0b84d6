"""What the Snakemake workflow asks of Python while it plans jobs: the checks of its config that
the JSON schema cannot express, and each job's command line.

``check_workflow_config`` runs before any job (``workflow/rules/common.smk``). It checks every
name against the config groups of the checkout's ``conf/`` (with a "did you mean"), that local
paths exist, that the results folder can be written into a rule's file patterns, and composes
every stage's Hydra config with its ``overrides:`` the way its jobs will, so a misspelled key or
a bad training setting stops the workflow with one message instead of failing (and deleting the
job's old outputs) later.

``hydra_command`` builds a stage's arguments: each value in Hydra's override grammar, each
argument quoted for the shell, so any folder name a user can type reaches the stage intact.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .sweep import grid_judges

# Each stage is the Hydra app inpo.<stage> with conf/<stage>.yaml.
STAGES = ("prompts", "sft", "sample", "annotate", "logps", "train", "evaluate", "report")
# Overrides that change how a stage reports, never what it computes: left out of Snakemake's
# params rerun trigger, so changing them reruns nothing.
NO_RESULT_KEYS = ("hydra.verbose", "hydra.job_logging", "hydra.hydra_logging", "hydra/job_logging",
                  "hydra/hydra_logging", "optim.checkpoint_every")
# Hub names are "name" or "org/name"; anything else that names a file is a local path.
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
_FILE_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".arrow")


class WorkflowConfigError(ValueError):
    """A workflow setting that cannot run; the message names the key, the value and what is valid."""


# --- command lines -------------------------------------------------------------------------------

def hydra_value(value: Any) -> str:
    """``value`` in Hydra's override grammar.

    Strings of word characters and ``./+-`` stay bare (Hydra types ``0`` as an int); any other
    string is single-quoted with Hydra's escapes (a quote as ``\\'``, backslashes before a quote or
    at the end doubled), so spaces, quotes, ``=``, ``,``, ``~`` and non-ASCII pass intact. Lists
    become ``[a,b]``. Raises WorkflowConfigError for ``${``, which Hydra would resolve as an
    interpolation.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    text = str(value)
    if re.fullmatch(r"[\w./+-]+", text):
        return text
    if "${" in text:
        raise WorkflowConfigError(f"{text!r}: '${{' would be read by Hydra as an interpolation; rename it")
    text = re.sub(r"\\+(?='|$)", lambda m: m.group(0) * 2, text)
    return "'" + text.replace("'", "\\'") + "'"


def split_overrides(overrides: Iterable[str]) -> tuple[list[str], list[str]]:
    """(overrides that can change a result, those that cannot: logging, checkpoint frequency)."""
    tracked, untracked = [], []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        (untracked if key.startswith(NO_RESULT_KEYS) else tracked).append(override)
    return tracked, untracked


def hydra_command(settings: Mapping[str, Any], overrides: Sequence[str] = ()) -> str:
    """A stage's arguments, ``key=value`` for each setting then the user's ``overrides`` (which win),
    each quoted for the shell."""
    args = [f"{key}={hydra_value(value)}" for key, value in settings.items()] + list(overrides)
    return " ".join(shlex.quote(a) for a in args)


class Untracked:
    """A rule parameter that Snakemake's params rerun trigger ignores (it records only values of
    builtin types); in a shell line it reads as its text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


# --- checks ------------------------------------------------------------------------------------

def is_local_path(name: str) -> bool:
    """Whether a model or dataset name is a path here rather than a Hugging Face hub name."""
    return (os.path.exists(name) or name.startswith(("/", ".", "~")) or name.endswith(_FILE_SUFFIXES)
            or not _HUB_NAME.fullmatch(name))


def options(conf_dir: Path, group: str) -> list[str]:
    """The options of a config group: the files conf/<group>/*.yaml."""
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def _unknown(key: str, value: str, valid: Sequence[str]) -> WorkflowConfigError:
    guess = difflib.get_close_matches(value, valid, n=1)
    hint = f" (did you mean {guess[0]!r}?)" if guess else ""
    return WorkflowConfigError(f"{key}: unknown value {value!r}{hint}; valid: {', '.join(valid)}")


def _check_names(config: Mapping[str, Any], conf_dir: Path) -> None:
    sweep = config.get("sweep") or {}
    for key, group in (("algo", "algo"), ("judge", "judge"), ("eval_judge", "judge"), ("sampler", "sampler")):
        valid = options(conf_dir, group)
        swept = grid_judges(sweep.get(key, [])) if key == "judge" else sweep.get(key, [])
        for source, values in ((key, [config[key]]), (f"sweep.{key}", swept)):
            for value in values:
                if str(value) not in valid:
                    raise _unknown(source, str(value), valid)
    benchmarks = [b for b in options(conf_dir, "eval") if b != "heldout"]
    for name in config["evaluations"]:
        if name not in ["heldout", *benchmarks]:
            raise _unknown("evaluations", name, ["heldout", *benchmarks])
    for stage in config.get("overrides") or {}:
        if stage not in [*STAGES, *benchmarks]:
            raise _unknown("overrides", stage, [*STAGES, *benchmarks])


def _check_paths(config: Mapping[str, Any]) -> None:
    results = config["results"]
    bad = sorted({c for c in results if c in "{}" or not c.isprintable()})
    if bad:
        raise WorkflowConfigError(f"results={results!r}: a folder name cannot hold {' or '.join(map(repr, bad))} "
                                  f"(Snakemake reads braces as wildcards); choose another name")
    hydra_value(results)  # raises for '${'
    reference = config["reference"]
    if reference != "sft" and is_local_path(reference) and not os.path.isdir(reference):
        raise WorkflowConfigError(f"reference={reference!r}: no such model folder (a local path; a hub name is "
                                  f"'name' or 'org/name')")
    if reference != "sft" and not is_local_path(reference) and _hub_offline() and not _cached_model(reference):
        raise WorkflowConfigError(f"reference={reference!r}: not a folder here, and as a hub name not in the local "
                                  f"Hugging Face cache while HF_HUB_OFFLINE is set; download it first "
                                  f"(huggingface-cli download {reference}) or give its folder")
    if config["train_prompts"] != "synthetic":
        for t, dataset in enumerate(config["train_prompts"], start=1):
            if is_local_path(dataset) and not os.path.exists(dataset):
                raise WorkflowConfigError(f"train_prompts[{t - 1}] (iteration {t}): no such file {dataset!r}")
    accelerate = config.get("accelerate_config")
    if accelerate and not os.path.isfile(accelerate):
        raise WorkflowConfigError(f"accelerate_config={accelerate!r}: no such file; see conf/accelerate/")


def _hub_offline() -> bool:
    """Whether the Hugging Face libraries are told not to reach the hub (as they read HF_HUB_OFFLINE)."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def _cached_model(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(name, "config.json"), str)


def _check_settings(config: Mapping[str, Any]) -> None:
    prompts = config["train_prompts"]
    if prompts != "synthetic" and len(prompts) < config["iterations"]:
        raise WorkflowConfigError(f"train_prompts lists {len(prompts)} datasets for iterations={config['iterations']}: "
                                  f"one per iteration")
    if "heldout" in config["evaluations"] and config["reference"] != "sft":
        raise WorkflowConfigError(
            f"evaluations: heldout judges the embedded task's answers with the synthetic oracle, so it needs "
            f"reference=sft; with reference={config['reference']} evaluate on benchmarks (conf/eval/)")
    if config["max_length"] and config["max_prompt_length"] and config["max_prompt_length"] >= config["max_length"]:
        raise WorkflowConfigError(f"max_prompt_length={config['max_prompt_length']} must be below "
                                  f"max_length={config['max_length']}")
    algos = (config.get("sweep") or {}).get("algo", [config["algo"]])
    annotate = (config.get("overrides") or {}).get("annotate", [])
    pairing = [o for o in annotate if o.split("=", 1)[0].lstrip("+~") == "pairing"]
    if "sppo" in algos and pairing:
        raise WorkflowConfigError(f"overrides.annotate: {pairing[0]} would apply to SPPO's pairs too, which need "
                                  f"pairing=sppo (the workflow sets each chain's pairing: sppo for algo=sppo, else auto)")


def stage_selections(config: Mapping[str, Any]) -> dict[str, list[list[str]]]:
    """For each stage (and benchmark), the config-group choices its jobs make: one list per variant."""
    sweep = config.get("sweep") or {}
    return {
        "prompts": [[]], "sft": [[]], "logps": [[]], "report": [[]],
        "sample": [[f"sampler={config['sampler']}"]],
        "annotate": [[f"judge={j}"] for j in grid_judges(sweep.get("judge", [config["judge"]]))],
        "train": [[f"algo={a}"] for a in dict.fromkeys(sweep.get("algo", [config["algo"]]))],
        "evaluate": [[f"judge={config['eval_judge']}"]],
        **{b: [[f"eval={b}", f"sampler={config['sampler']}"]] for b in config["evaluations"] if b != "heldout"},
    }


def _check_stage_configs(config: Mapping[str, Any], conf_dir: Path) -> None:
    """Compose every stage's config with its overrides as its jobs will, and check its optim settings."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from .batching import packing_mode
    from .optim import OptimSettings
    from .sampler_settings import check_n

    overrides = config.get("overrides") or {}
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir.resolve())):
        for stage, variants in stage_selections(config).items():
            extra = list(overrides.get(stage, []))
            for selection in variants:
                where = f"overrides.{stage}={extra}" if extra else f"conf/{stage}.yaml"
                try:
                    # the sample jobs get the workflow's n_samples, before the user's overrides
                    settings = [f"n_samples={config['n_samples']}"] if stage == "sample" else []
                    cfg = compose(config_name=stage if stage in STAGES else "evaluate", overrides=selection + settings + extra)
                    if "optim" in cfg:
                        OptimSettings(**OmegaConf.to_container(cfg.optim))
                    if "packing" in cfg:
                        packing_mode(cfg.packing, None)
                    if stage in ("sample", "evaluate"):
                        check_n(cfg.sampler.temperature, cfg.n_samples)
                except (HydraException, OmegaConfBaseException, ValueError, TypeError) as err:
                    raise WorkflowConfigError(f"{where}: {err}".replace("\n", " ")) from None


def benchmark_inputs(config: Mapping[str, Any], conf_dir: str | os.PathLike) -> dict[str, list[str]]:
    """For each benchmark in ``evaluations``, the files its job reads besides the policy, as its
    config composes with the workflow's overrides: its judge's config file and every ``eval.*`` or
    ``judge.*`` path that exists now (question and reference files, Arena-Hard's judge_config.yaml,
    AlpacaEval's df_gamed.csv). As rule inputs they make Snakemake rerun a benchmark whose files
    changed or appeared (an LC win rate computed before df_gamed.csv was fetched is not kept); a
    required file still missing is named by the job itself, with the command that fetches it."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    conf_dir = Path(conf_dir)
    overrides = config.get("overrides") or {}
    inputs = {}
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir.resolve())):
        for benchmark in (b for b in config["evaluations"] if b != "heldout"):
            [selection] = stage_selections(config)[benchmark]
            cfg = compose(config_name="evaluate", overrides=selection + list(overrides.get(benchmark, [])),
                          return_hydra_config=True)
            files = [str(conf_dir / "judge" / f"{cfg.hydra.runtime.choices['judge']}.yaml")]
            for group in ("eval", "judge"):
                values = OmegaConf.to_container(cfg[group], resolve=False).values()
                files += [v for v in values if isinstance(v, str) and "${" not in v and "://" not in v and Path(v).is_file()]
            inputs[benchmark] = files
    return inputs


def check_workflow_config(config: Mapping[str, Any], conf_dir: str | os.PathLike) -> None:
    """Raise WorkflowConfigError, naming the setting, the value and the valid ones, for what the
    schema cannot check: names of config-group options (algo, judge, eval_judge, sampler,
    evaluations, sweep values, the stages under ``overrides:``), local paths that must exist
    (reference, train_prompts, accelerate_config), characters the results folder cannot hold,
    settings that contradict each other, and every stage's config composed with its overrides."""
    conf_dir = Path(conf_dir)
    _check_names(config, conf_dir)
    _check_settings(config)
    _check_paths(config)
    _check_stage_configs(config, conf_dir)
