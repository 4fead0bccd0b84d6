"""AlpacaEval 2.0 files (tatsu-lab/alpaca_eval, alpaca-eval 0.6.6) and their scores.

Formats, all JSON lists with one record per instruction:

- ``model_outputs.json``: ``instruction``, ``output``, ``generator`` and (optionally)
  ``dataset``; what ``alpaca_eval --model_outputs`` reads. The reference outputs of AlpacaEval
  2.0 are the same format (``results/gpt4_1106_preview/model_outputs.json``).
- ``annotations.json``: ``instruction``, ``output_1`` = the reference's output, ``generator_1``,
  ``dataset``, ``output_2`` = the model's output, ``generator_2``, ``annotator``, ``preference``
  in [1, 2] (2: the model's output wins; a weighted annotator such as
  ``weighted_alpaca_eval_gpt4_turbo`` writes 1 + the judge's probability of output_2; a draw is
  1.5, or 0 in old files), ``price_per_example``, ``time_per_example``, ``raw_completion``.

Scores, as ``alpaca_eval.metrics.get_winrate`` (formulas in ``inpo.length_control``), with
y_i = preference_i - 1 over the records whose preference is valid::

    win_rate = 100 mean(y),   standard_error = 100 std(y; ddof=1) / sqrt(n),
    n_wins = #{y > 1/2},  n_wins_base = #{y < 1/2},  n_draws = #{y = 1/2}

and the length-controlled win rate of ``inpo.length_control.length_controlled_win_rate`` on
character lengths (AlpacaEval's ``str.len()``). That is the unpenalized GLM without AlpacaEval's
per-instruction difficulty (which lives only on the Hugging Face hub), so it does not reproduce
the leaderboard's ``length_controlled_winrate`` exactly; the raw figures do, to rounding.
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np

from ..length_control import (
    length_controlled_win_rate,
    official_to_probability,
    raw_win_rate,
    read_alpaca_eval_annotations,
)
from ..records import RecordError, read_json, write_json

REFERENCE_GENERATOR = "gpt4_1106_preview"  # AlpacaEval 2.0's baseline
OUTPUT_FIELDS = ("instruction", "output", "generator")
ANNOTATION_TEXT_FIELDS = ("instruction", "output_1", "output_2")


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


def annotation(instruction: str, reference: str, output: str, preference: float, *, generator: str,
               annotator: str, raw_completion=None, reference_generator: str = REFERENCE_GENERATOR,
               dataset: str | None = None, price_per_example: float | None = None,
               time_per_example: float | None = None) -> dict:
    """One ``annotations.json`` record: the judge compared ``reference`` (output_1) with the model's
    ``output`` (output_2); ``preference`` in [1, 2], 2 meaning the model's output wins."""
    if isinstance(preference, bool) or not isinstance(preference, (int, float)) or not 1 <= preference <= 2:
        raise ValueError(f"preference must be a number in [1, 2] (1.5 for a draw), got {preference!r}")
    record = {"instruction": instruction, "output_1": reference, "generator_1": reference_generator,
              "dataset": dataset, "output_2": output, "generator_2": generator, "annotator": annotator,
              "preference": float(preference), "price_per_example": price_per_example,
              "time_per_example": time_per_example, "raw_completion": raw_completion}
    _check_strings(record, (*ANNOTATION_TEXT_FIELDS, "generator_1", "generator_2", "annotator"), "annotation", 0)
    return record


def _check_annotation(record, where: str, index: int) -> None:
    _check_strings(record, ANNOTATION_TEXT_FIELDS, where, index)
    if "preference" not in record:
        raise RecordError(f"{where}: record {index} lacks 'preference'")


def write_annotations(path: str | os.PathLike, records: Sequence[dict]) -> None:
    """Write ``annotations.json`` atomically."""
    for index, record in enumerate(records):
        _check_annotation(record, str(path), index)
    write_json(path, list(records))


def _columns(records: Sequence[dict], where: str) -> dict[str, np.ndarray]:
    """In-memory records as ``read_alpaca_eval_annotations`` reads a file (invalid preferences dropped)."""
    kept = []
    for index, record in enumerate(records):
        _check_annotation(record, where, index)
        y = official_to_probability(record["preference"])
        if y is not None:
            kept.append((y, len(record["output_2"]), len(record["output_1"]), record.get("generator_2")))
    y, model_lengths, baseline_lengths, generators = zip(*kept) if kept else ((),) * 4
    return {"preferences": np.array(y, dtype=float), "model_lengths": np.array(model_lengths, dtype=float),
            "baseline_lengths": np.array(baseline_lengths, dtype=float), "generator_2": np.array(generators, dtype=object)}


def score_annotations(records_or_path: str | os.PathLike | Sequence[dict]) -> dict:
    """AlpacaEval's leaderboard figures of one model's annotations (a file or its records):
    ``win_rate``, ``standard_error`` (percent), ``n_wins``, ``n_wins_base``, ``n_draws``,
    ``n_total``, ``avg_length`` (characters) and, where the GLM can be fitted,
    ``length_controlled_winrate`` and ``lc_standard_error`` (module docstring)."""
    if isinstance(records_or_path, (str, os.PathLike)):
        where, data = str(records_or_path), read_alpaca_eval_annotations(records_or_path)
    else:
        where, data = "annotations", _columns(records_or_path, "annotations")
    generators = {g for g in data["generator_2"] if g is not None}
    if len(generators) > 1:
        raise RecordError(f"{where}: annotations of several models ({sorted(generators)}): score one model at a time")
    y = data["preferences"]
    try:
        win_rate, standard_error = raw_win_rate(y)
    except ValueError as err:
        raise RecordError(f"{where}: {err}") from None
    result = {"win_rate": win_rate, "standard_error": standard_error,
              "n_wins": int((y > 0.5).sum()), "n_wins_base": int((y < 0.5).sum()), "n_draws": int((y == 0.5).sum()),
              "n_total": int(y.size), "avg_length": int(data["model_lengths"].mean())}
    if generators:
        result["generator"] = generators.pop()
    try:  # the GLM has no fit when e.g. every output has the reference's length or always wins
        fit = length_controlled_win_rate(y, data["model_lengths"], data["baseline_lengths"])
    except (ValueError, RuntimeError):
        return result
    return {**result, "length_controlled_winrate": fit["length_controlled_winrate"],
            "lc_standard_error": fit["lc_standard_error"]}
