"""Record files: JSON Lines with a stable ``id`` per record, validated on read, written atomically.

Kinds of record (fields every record of the kind must have, with their JSON types):

- prompt:       id, prompt
- sample:       id, prompt, responses (K strings)
- pair:         id, prompt, chosen, rejected            (TRL's field names)
- scored pair:  a pair plus ref/prev chosen/rejected summed log-probs
- answer:       id, prompt, response                    (evaluation answers)

Extra fields (a task's metadata, indices, oracle probabilities) travel along untouched.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

PROMPT = {"id": str, "prompt": str}
SAMPLE = {"id": str, "prompt": str, "responses": list}
PAIR = {"id": str, "prompt": str, "chosen": str, "rejected": str}
SCORED_PAIR = {
    **PAIR,
    "ref_chosen_logp": float,
    "ref_rejected_logp": float,
    "prev_chosen_logp": float,
    "prev_rejected_logp": float,
}
ANSWER = {"id": str, "prompt": str, "response": str}

_JSON_TYPE_NAMES = {str: "a string", list: "a list", float: "a number", int: "an integer", dict: "an object"}


class RecordError(ValueError):
    """A record file that cannot be used; the message names the file and line."""


def _matches(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind) and not isinstance(value, bool)


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """(line number, record) of each non-blank line of a JSON Lines file; errors name file and line."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path}: no such file")
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise RecordError(f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(record, dict):
                raise RecordError(f"{path}:{number}: a record must be a JSON object, got {type(record).__name__}")
            yield number, record


def read_jsonl(path: str | os.PathLike, fields: Mapping[str, type] | None = None, *, allow_empty: bool = False) -> list[dict]:
    """Read a JSON Lines file, checking every record has ``fields`` with the right types and a unique id."""
    fields = fields or {"id": str}
    records, seen = [], {}
    for number, record in iter_jsonl(path):
        for name, kind in fields.items():
            if name not in record:
                raise RecordError(f"{path}:{number}: missing field {name!r}")
            if not _matches(record[name], kind):
                raise RecordError(f"{path}:{number}: field {name!r} must be {_JSON_TYPE_NAMES[kind]}, got {record[name]!r:.60}")
        if record["id"] in seen:
            raise RecordError(f"{path}:{number}: duplicate id {record['id']!r} (first on line {seen[record['id']]})")
        seen[record["id"]] = number
        records.append(record)
    if not records and not allow_empty:
        raise RecordError(f"{path}: no records")
    return records


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_jsonl(path: str | os.PathLike, records: Iterable[Mapping]) -> None:
    """Write records one per line; the file appears only when complete (temporary name, then rename)."""
    _atomic_write(Path(path), lambda f: f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file (a table, a report) atomically."""
    _atomic_write(Path(path), lambda f: f.write(text))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write one JSON document atomically, indented for people to read."""
    _atomic_write(Path(path), lambda f: f.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n"))


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(f"{path}: no such file") from None
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
