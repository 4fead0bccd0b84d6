"""AlpacaEval 2.0 (tatsu-lab/alpaca_eval, the ``alpaca-eval`` package): its annotator, files and scores.

The official annotator is read from the installed package at run time, never restated here:
``annotator(name)`` loads ``alpaca_eval/evaluators_configs/<name>/configs.yaml`` (default
``weighted_alpaca_eval_gpt4_turbo``) and the prompt template it names; ``judge_request`` builds
the chat request exactly as the package's ``openai_completions`` does (template filled by
``alpaca_eval.utils.make_prompts``, stripped, turned into messages by ``prompt_to_chatml``;
``model_name``, ``max_tokens``, ``temperature``, ``logprobs``, ``top_logprobs`` from the config,
``top_p`` from the package's request defaults); ``parse_preference`` is the config's completion
parser (``logprob_parser``: preference = 2 - P(m) over the labels ``m``/``M`` among the first
token's top log-probs, NaN when neither is there). ``switched_outputs`` is the package's own
per-instruction random order (``RandomSwitchTwoColumnsProcessor``, seeded by the instruction
and seed 0), and identical outputs are a draw (1.5) without asking, as ``PairwiseAnnotator``
does. A reply without a verdict (a refusal, an error) is no annotation: preference null,
left out of every figure and counted (``n_missing``), as AlpacaEval drops it.

Formats, all JSON lists with one record per instruction:

- ``model_outputs.json``: ``instruction``, ``output``, ``generator`` and (optionally)
  ``dataset``; what ``alpaca_eval --model_outputs`` reads. The reference outputs of AlpacaEval
  2.0 are the same format (``results/gpt4_1106_preview/model_outputs.json``).
- ``annotations.json``: ``instruction``, ``output_1`` = the reference's output, ``generator_1``,
  ``dataset``, ``output_2`` = the model's output, ``generator_2``, ``annotator``, ``preference``
  in [1, 2] (2: the model's output wins; a weighted annotator such as
  ``weighted_alpaca_eval_gpt4_turbo`` writes 1 + the judge's probability of output_2; a draw is
  1.5, or 0 in old files; null: no annotation), ``price_per_example``, ``time_per_example``,
  ``raw_completion``.

Scores, as ``alpaca_eval.metrics.get_winrate`` (formulas in ``inpo.length_control``), with
y_i = preference_i - 1 over the records whose preference is valid::

    win_rate = 100 mean(y),   standard_error = 100 std(y; ddof=1) / sqrt(n),
    n_wins = #{y > 1/2},  n_wins_base = #{y < 1/2},  n_draws = #{y = 1/2}

The length-controlled win rate (``lc_variant`` in the figures says which one):

- ``alpaca_eval:length_controlled_v1``, the leaderboard's: the package's own
  ``get_length_controlled_winrate`` (GLM with the per-instruction difficulty and the
  gamed-baseline regularization), given AlpacaEval's ``df_gamed.csv`` (the instruction
  difficulty and the gamed baselines' annotations, from the Hugging Face hub dataset
  ``tatsu-lab/alpaca_eval``; ``python -m inpo.benchmarks.download alpaca_eval_2`` fetches it).
  Instructions are identified by their position in the 805 (the difficulty's index), so the
  annotations must be in the reference file's order; missing annotations keep their position.
- ``inpo:length_only`` without that file: ``inpo.length_control.length_controlled_win_rate`` on
  character lengths, the GLM with only the length term (no difficulty, no regularization). It
  is not the leaderboard's figure (on the official annotation files it reads 32.4 for claude-2.1
  where the leaderboard says 25.3; see the README).
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..length_control import length_controlled_win_rate, official_to_probability, raw_win_rate
from ..records import RecordError, read_json, write_json

REFERENCE_GENERATOR = "gpt4_1106_preview"  # AlpacaEval 2.0's baseline
ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"  # AlpacaEval 2.0's annotator
LC_GLM = "length_controlled_v1"  # the leaderboard's GLM in alpaca_eval.metrics.glm_winrate
OUTPUT_FIELDS = ("instruction", "output", "generator")
ANNOTATION_TEXT_FIELDS = ("instruction", "output_1", "output_2")


def package(module: str = "alpaca_eval"):
    """A module of the installed alpaca-eval package. Raises ImportError saying how to install it.
    (alpaca-eval 0.6.6 imports pkg_resources, deprecated in setuptools < 81 with a warning.)"""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        try:
            return importlib.import_module(module)
        except ImportError as err:
            raise ImportError(f"AlpacaEval 2.0 needs the alpaca-eval package ({err}); install the project "
                              f"with `pip install -e .` (it pins alpaca-eval and setuptools<81)") from None


@dataclass(frozen=True)
class Annotator:
    """An AlpacaEval annotator as its ``configs.yaml`` defines it (read by ``annotator``)."""

    name: str
    config_file: Path
    prompt_template: str  # the template text, placeholders {instruction}, {output_1}, {output_2}
    model: str  # completions_kwargs.model_name
    request_settings: dict  # every other field of the chat request: max_tokens, temperature, top_p, ...
    parse: Callable[[dict], list]  # the completion parser with its configured kwargs

    def request(self, instruction: str, output_1: str, output_2: str) -> dict:
        """The chat-completions body (without ``model``) the package sends for this comparison."""
        utils, openai = package("alpaca_eval.utils"), package("alpaca_eval.decoders.openai")
        import pandas as pd

        example = pd.DataFrame([{"instruction": instruction, "output_1": output_1, "output_2": output_2}])
        [prompt], _ = utils.make_prompts(example, self.prompt_template)
        if not openai._requires_chatml(self.model):
            raise ValueError(f"{self.config_file}: model {self.model!r} is a completion model; "
                             f"only chat models (sent as ChatML messages) are supported")
        return {"messages": utils.prompt_to_chatml(prompt.strip()), **self.request_settings}


def annotator(name: str = ANNOTATOR) -> Annotator:
    """The package's annotator ``name`` (a folder of ``alpaca_eval/evaluators_configs``), with its
    prompt template and parser, as ``alpaca_eval.annotators.PairwiseAnnotator`` loads them.
    Raises ValueError for an annotator this project cannot send (not one OpenAI chat request per
    comparison), naming the config file."""
    constants, utils = package("alpaca_eval.constants"), package("alpaca_eval.utils")
    parsers, openai = package("alpaca_eval.completion_parsers"), package("alpaca_eval.decoders.openai")
    config_file = Path(constants.EVALUATORS_CONFIG_DIR) / name / "configs.yaml"
    if not config_file.is_file():
        raise ValueError(f"alpaca-eval has no annotator {name!r} ({config_file} does not exist)")
    config = utils.load_configs(config_file)[name]
    if config.get("fn_completions") != "openai_completions" or config.get("batch_size", 1) != 1:
        raise ValueError(f"{config_file}: {name} uses {config.get('fn_completions')!r} with batch_size "
                         f"{config.get('batch_size', 1)}; only openai_completions with batch_size 1 is supported")
    kwargs = dict(config["completions_kwargs"])
    model = kwargs.pop("model_name")
    # the request defaults openai_completions adds (top_p=1.0 in 0.6.6) unless the config sets them
    helper = inspect.signature(openai._openai_completion_helper).parameters
    settings = {k: helper[k].default for k in ("top_p", "temperature") if helper[k].default is not None}
    settings.update(kwargs)
    template = utils.read_or_return(config["prompt_template"], relative_to=config_file.parents[1])
    parser = getattr(parsers, config["fn_completion_parser"])
    parser_kwargs = config.get("completion_parser_kwargs") or {}
    return Annotator(name, config_file, template, model, settings, lambda completion: parser(completion, **parser_kwargs))


def parse_preference(annotator: Annotator, response) -> float:
    """The annotator's preference in [1, 2] for output_2 over output_1 as presented, or NaN when
    the reply gives none (a refusal, a parse error, a rejected request), as the package's
    ``SingleAnnotator._parse_completions`` makes of it. ``response``: a chat completion."""
    try:
        [preference] = annotator.parse(response["choices"][0])
        preference = float(preference)
    except Exception:  # the package logs any parser failure and records no annotation
        return math.nan
    return preference if 1.0 <= preference <= 2.0 else math.nan


def switched_outputs(instructions: Sequence[str], seed: int = 0) -> list[bool]:
    """Whether AlpacaEval shows the model's output first (as ``m``) for each instruction: the
    package's ``RandomSwitchTwoColumnsProcessor`` of ``PairwiseAnnotator``, seeded by the
    instruction and the annotator's seed (0 by default)."""
    processors = package("alpaca_eval.processors")
    import pandas as pd

    processor = processors.RandomSwitchTwoColumnsProcessor(
        two_columns_to_switch=["output_1", "output_2"], random_seed_columns=["instruction"],
        _switch_column="is_switched_outputs", seed=seed)
    frame = pd.DataFrame({"instruction": list(instructions), "output_1": "", "output_2": ""})
    return [bool(x) for x in processor.preprocess(frame)["is_switched_outputs"]] if len(frame) else []


def _check_strings(record, fields: Iterable[str], where: str, index: int) -> None:
    if not isinstance(record, dict):
        raise RecordError(f"{where}: record {index} is not a JSON object")
    for name in fields:
        if name not in record:
            raise RecordError(f"{where}: record {index} lacks {name!r}")
        if not isinstance(record[name], str):
            raise RecordError(f"{where}: record {index}: {name!r} must be a string, got {record[name]!r:.60}")


def read_reference_outputs(path: str | os.PathLike) -> list[dict]:
    """The official reference outputs (``model_outputs.json`` format, with ``dataset``)."""
    records = read_json(path)
    if not isinstance(records, list) or not records:
        raise RecordError(f"{path}: expected a non-empty JSON list of reference outputs")
    for index, record in enumerate(records):
        _check_strings(record, (*OUTPUT_FIELDS, "dataset"), str(path), index)
    return records


def model_outputs(instructions: Sequence[str], outputs: Sequence[str], generator: str,
                  *, datasets: Sequence[str] | None = None) -> list[dict]:
    """AlpacaEval ``model_outputs.json`` records: one ``{dataset, instruction, output, generator}``
    per instruction (``dataset`` only when ``datasets`` is given)."""
    if len(instructions) != len(outputs) or (datasets is not None and len(datasets) != len(outputs)):
        raise ValueError(f"{len(instructions)} instructions, {len(outputs)} outputs"
                         + ("" if datasets is None else f" and {len(datasets)} datasets") + ": they must match")
    records = [{"instruction": i, "output": o, "generator": generator} for i, o in zip(instructions, outputs)]
    if datasets is not None:
        records = [{"dataset": d, **r} for d, r in zip(datasets, records)]
    fields = OUTPUT_FIELDS if datasets is None else (*OUTPUT_FIELDS, "dataset")
    for index, record in enumerate(records):
        _check_strings(record, fields, "model outputs", index)
    return records


def write_model_outputs(path: str | os.PathLike, records: Sequence[dict]) -> None:
    """Write ``model_outputs.json`` atomically."""
    for index, record in enumerate(records):
        _check_strings(record, OUTPUT_FIELDS, str(path), index)
    write_json(path, list(records))


def annotation(instruction: str, reference: str, output: str, preference: float | None, *, generator: str,
               annotator: str, raw_completion=None, reference_generator: str = REFERENCE_GENERATOR,
               dataset: str | None = None, price_per_example: float | None = None,
               time_per_example: float | None = None) -> dict:
    """One ``annotations.json`` record: the judge compared ``reference`` (output_1) with the model's
    ``output`` (output_2); ``preference`` in [1, 2], 2 meaning the model's output wins, or None /
    NaN for no annotation (written as null)."""
    missing = preference is None or (isinstance(preference, float) and math.isnan(preference))
    if not missing and (isinstance(preference, bool) or not isinstance(preference, (int, float)) or not 1 <= preference <= 2):
        raise ValueError(f"preference must be a number in [1, 2] (1.5 for a draw) or None, got {preference!r}")
    record = {"instruction": instruction, "output_1": reference, "generator_1": reference_generator,
              "dataset": dataset, "output_2": output, "generator_2": generator, "annotator": annotator,
              "preference": None if missing else float(preference), "price_per_example": price_per_example,
              "time_per_example": time_per_example, "raw_completion": raw_completion}
    _check_strings(record, (*ANNOTATION_TEXT_FIELDS, "generator_1", "generator_2", "annotator"), "annotation", 0)
    return record


def annotate(judge, references: Sequence[dict], outputs: Sequence[str], generator: str) -> list[dict]:
    """``annotations.json`` records of the model's ``outputs`` against the ``references``
    (reference-output records) by ``judge`` (an ``inpo.judges.alpaca_eval.AlpacaEvalJudge``),
    as AlpacaEval's ``PairwiseAnnotator`` makes them: each pair shown in the package's seeded
    order (``switched_outputs``), the verdict mapped back to output_2 = the model's (a switched
    preference x becomes 3 - x), identical outputs a draw, no verdict a null preference."""
    instructions = [r["instruction"] for r in references]
    switched = switched_outputs(instructions)
    items = [(r["instruction"], o, r["output"]) if flip else (r["instruction"], r["output"], o)
             for r, o, flip in zip(references, outputs, switched)]
    annotations = []
    for r, o, flip, (p2, reply) in zip(references, outputs, switched, judge.preference_many(items)):
        preference = 1 + p2  # as shown; NaN stays NaN
        annotations.append(annotation(
            r["instruction"], r["output"], o, 3 - preference if flip else preference, generator=generator,
            annotator=judge.annotator.name, raw_completion={"error": str(reply)} if isinstance(reply, Exception) else reply,
            reference_generator=r["generator"], dataset=r.get("dataset")))
    return annotations


def _check_annotation(record, where: str, index: int) -> None:
    _check_strings(record, ANNOTATION_TEXT_FIELDS, where, index)
    if "preference" not in record:
        raise RecordError(f"{where}: record {index} lacks 'preference'")


def write_annotations(path: str | os.PathLike, records: Sequence[dict]) -> None:
    """Write ``annotations.json`` atomically."""
    for index, record in enumerate(records):
        _check_annotation(record, str(path), index)
    write_json(path, list(records))


@contextmanager
def _gamed_baselines(path: str | os.PathLike):
    """AlpacaEval's GLM fetches ``df_gamed.csv`` from the hub inside ``_get_featurized_data``; hand
    it the downloaded copy instead (and nothing else: any other hub file is an error)."""
    glm = package("alpaca_eval.metrics.glm_winrate")
    fetch = glm.hf_hub_download

    def local(repo_id, filename, repo_type=None, **_):
        if (repo_id, filename, repo_type) != ("tatsu-lab/alpaca_eval", "df_gamed.csv", "dataset"):
            raise RuntimeError(f"alpaca-eval asked for {repo_type} {repo_id}/{filename}, which is not available offline")
        return str(path)

    glm.hf_hub_download = local
    try:
        yield glm
    finally:
        glm.hf_hub_download = fetch


def official_length_controlled(records: Sequence[dict], gamed_baselines: str | os.PathLike) -> dict:
    """AlpacaEval's leaderboard LC win rate (``length_controlled_v1``) of one model's annotations,
    computed by the package's own ``get_length_controlled_winrate`` with ``gamed_baselines``
    (``df_gamed.csv``). ``records``: all of the model's annotations in the reference order (a
    record's position is its instruction index); those without a valid preference are left out
    but keep the others' positions. Returns ``length_controlled_winrate`` and
    ``lc_standard_error`` in percent."""
    import pandas as pd

    if not Path(gamed_baselines).is_file():
        raise FileNotFoundError(f"{gamed_baselines}: no such file (AlpacaEval's df_gamed.csv)")
    frame = pd.DataFrame([{k: r.get(k) for k in ("instruction", "output_1", "output_2", "generator_1",
                                                 "generator_2", "annotator", "preference")} for r in records])
    valid = [official_to_probability(r.get("preference")) is not None for r in records]
    frame = frame[valid].astype({"preference": float})
    import sklearn

    sklearn_config = sklearn.get_config()
    try:
        with _gamed_baselines(gamed_baselines) as glm, warnings.catch_warnings():
            # alpaca-eval 0.6.6 passes sklearn's deprecated `penalty`: the fit is unchanged, the warning is noise
            warnings.filterwarnings("ignore", message=".*penalty.*", category=FutureWarning)
            warnings.filterwarnings("ignore", message="Inconsistent values: penalty", category=UserWarning)
            figures = glm.get_length_controlled_winrate(frame, glm_name=LC_GLM, save_weights_dir=None,
                                                        is_warn_extreme_changes=False)
    finally:
        sklearn.set_config(**sklearn_config)  # it switches on metadata routing for the whole process
    return {"length_controlled_winrate": float(figures["length_controlled_winrate"]),
            "lc_standard_error": float(figures["lc_standard_error"])}


def _records(records_or_path, where: str) -> list[dict]:
    records = read_json(records_or_path) if isinstance(records_or_path, (str, os.PathLike)) else list(records_or_path)
    if not isinstance(records, list):
        raise RecordError(f"{where}: expected a JSON list of annotation records")
    for index, record in enumerate(records):
        _check_annotation(record, where, index)
    return records


def score_annotations(records_or_path: str | os.PathLike | Sequence[dict], *,
                      gamed_baselines: str | os.PathLike | None = None) -> dict:
    """AlpacaEval's leaderboard figures of one model's annotations (a file or its records):
    ``win_rate``, ``standard_error`` (percent), ``n_wins``, ``n_wins_base``, ``n_draws``,
    ``n_total`` (annotated instructions), ``n_missing`` (records without a valid preference,
    left out), ``avg_length`` (characters), and the length-controlled ``length_controlled_winrate``
    and ``lc_standard_error`` with ``lc_variant`` (module docstring: the official one when
    ``gamed_baselines`` is given, else the length-only GLM, None with the reason in
    ``lc_missing`` when it cannot be fitted)."""
    where = str(records_or_path) if isinstance(records_or_path, (str, os.PathLike)) else "annotations"
    records = _records(records_or_path, where)
    kept = [(official_to_probability(r["preference"]), r) for r in records]
    kept = [(y, r) for y, r in kept if y is not None]
    generators = {r.get("generator_2") for r in records} - {None}
    if len(generators) > 1:
        raise RecordError(f"{where}: annotations of several models ({sorted(generators)}): score one model at a time")
    y = np.array([p for p, _ in kept], dtype=float)
    model_lengths = np.array([len(r["output_2"]) for _, r in kept], dtype=float)
    try:
        win_rate, standard_error = raw_win_rate(y)
    except ValueError as err:
        raise RecordError(f"{where}: {err} ({len(records) - len(kept)} of {len(records)} records have no valid "
                          f"preference)") from None
    result = {"win_rate": win_rate, "standard_error": standard_error,
              "n_wins": int((y > 0.5).sum()), "n_wins_base": int((y < 0.5).sum()), "n_draws": int((y == 0.5).sum()),
              "n_total": int(y.size), "n_missing": len(records) - len(kept), "avg_length": int(model_lengths.mean())}
    if generators:
        result["generator"] = generators.pop()
    if gamed_baselines is not None:
        return {**result, **official_length_controlled(records, gamed_baselines), "lc_variant": f"alpaca_eval:{LC_GLM}"}
    try:
        fit = length_controlled_win_rate(y, model_lengths, [len(r["output_1"]) for _, r in kept])
    except (ValueError, RuntimeError) as err:  # no fit when e.g. every output has the reference's length or always wins
        return {**result, "length_controlled_winrate": None, "lc_standard_error": None, "lc_variant": "inpo:length_only",
                "lc_missing": f"the GLM cannot be fitted: {err}"}
    return {**result, "length_controlled_winrate": fit["length_controlled_winrate"],
            "lc_standard_error": fit["lc_standard_error"], "lc_variant": "inpo:length_only"}
