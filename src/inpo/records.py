"""Record files: JSON Lines with a stable ``id`` per record, validated on read, written atomically.

Kinds of record (fields every record of the kind must have, with their JSON types):

- prompt:       id, prompt
- sample:       id, prompt, responses (K strings), finish_reasons and stop_tokens (K each: how
                each answer ended, ``stop`` at that token or ``length`` with null when cut at the
                limit), prompt_truncated (the prompt was cut to max_prompt_length)
- pair:         id, prompt, chosen, rejected            (TRL's field names); annotated pairs add
                chosen_/rejected_finish_reason and _stop_token (absent: finished answers), and
                SPPO's (annotate pairing=sppo) chosen_/rejected_winrate
- scored pair:  a pair plus ref/prev chosen/rejected summed log-probs
- answer:       id, prompt, response                    (evaluation answers)

Any record may have ``messages``, the chat turns its response answers (a list of objects with
string ``role`` and ``content``), checked where present. Other extra fields (a task's metadata,
indices, oracle probabilities) travel along untouched.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Hashable, Iterable, Iterator, Mapping, get_args, get_origin


class ChatTurn:
    """The field type of a chat message: a JSON object with string ``role`` and ``content``."""


# Field types: a JSON type, T | None (null allowed), ChatTurn, or list[T] for a list whose every item is a T.
PROMPT = {"id": str, "prompt": str}
SAMPLE = {"id": str, "prompt": str, "responses": list[str], "finish_reasons": list[str], "stop_tokens": list[str | None],
          "prompt_truncated": bool}
PAIR = {"id": str, "prompt": str, "chosen": str, "rejected": str}
SCORED_PAIR = {
    **PAIR,
    "ref_chosen_logp": float,
    "ref_rejected_logp": float,
    "prev_chosen_logp": float,
    "prev_rejected_logp": float,
}
ANSWER = {"id": str, "prompt": str, "response": str}
# Fields any record may have, checked where present: every stage that prompts a model reads
# ``messages`` (inpo.modeling.conversation).
OPTIONAL = {"messages": list[ChatTurn], **{f"{side}_{field}": kind for side in ("chosen", "rejected")
                                         for field, kind in (("finish_reason", str), ("stop_token", str | None),
                                                             ("winrate", float))}}

_JSON_TYPE_NAMES = {str: "a string", list: "a list", float: "a finite number", int: "an integer", dict: "an object",
                    bool: "true or false", str | None: "a string or null", list[str]: "a list of strings",
                    list[str | None]: "a list of strings or nulls",
                    list[ChatTurn]: "a list of chat turns (objects with string role and content)"}


class RecordError(ValueError):
    """A record file that cannot be used; the message names the file and line."""


def _matches(value: Any, kind: type) -> bool:
    if kind is bool or isinstance(value, bool):  # a JSON true/false is no number
        return kind is bool and isinstance(value, bool)
    if kind is float:
        # Python's json reads NaN and Infinity (and 1e400 as inf); no field of ours can hold them
        return isinstance(value, (int, float)) and math.isfinite(value)
    if kind is ChatTurn:
        return isinstance(value, dict) and isinstance(value.get("role"), str) and isinstance(value.get("content"), str)
    return isinstance(value, kind)


def _field_problem(value: Any, kind: Any) -> str | None:
    """Why ``value`` is not of ``kind`` (a field type), e.g. "must be a string, got 3"; None if it is."""
    if get_origin(kind) is list:
        if not isinstance(value, list):
            return f"must be {_JSON_TYPE_NAMES[kind]}, got {value!r:.60}"
        bad = next((i for i, item in enumerate(value) if not _matches(item, get_args(kind)[0])), None)
        return None if bad is None else f"must be {_JSON_TYPE_NAMES[kind]}, item {bad} is {value[bad]!r:.60}"
    return None if _matches(value, kind) else f"must be {_JSON_TYPE_NAMES[kind]}, got {value!r:.60}"


def _record_problem(record: dict, fields: Mapping[str, Any]) -> str | None:
    """What is wrong with a record that must have ``fields`` (and may have ``OPTIONAL``), or None."""
    missing = next((name for name in fields if name not in record), None)
    if missing is not None:
        return f"missing field {missing!r}"
    for name, kind in [*fields.items(), *OPTIONAL.items()]:
        problem = _field_problem(record[name], kind) if name in record else None
        if problem:
            return f"field {name!r} {problem}"
    return None


def sample_problem(record: dict) -> str | None:
    """What is inconsistent in a sample record's answers (read with ``SAMPLE``'s field types), or None."""
    n = len(record["responses"])
    if len(record["finish_reasons"]) != n or len(record["stop_tokens"]) != n:
        return (f"{n} responses but {len(record['finish_reasons'])} finish_reasons and "
                f"{len(record['stop_tokens'])} stop_tokens")
    for i, (reason, stop) in enumerate(zip(record["finish_reasons"], record["stop_tokens"])):
        if (reason, stop is None) not in (("stop", False), ("length", True)):
            return f"response {i}: finish_reason {reason!r} with stop_token {stop!r} (want 'stop' with a token, or 'length' with null)"
    return None


def cut_counts(samples: Iterable[Mapping]) -> dict[str, int]:
    """Of sample records (or the samplers' answer fields): ``answers_cut``, the answers cut at the
    length limit (finish reason ``length``), and ``prompts_truncated``, the prompts cut to
    max_prompt_length."""
    samples = list(samples)
    return {"answers_cut": sum(reason == "length" for s in samples for reason in s["finish_reasons"]),
            "prompts_truncated": sum(s["prompt_truncated"] for s in samples)}


def _decode(data: bytes, path: Path, first_line: int = 1) -> str:
    """``data`` (from line ``first_line`` of ``path`` on) as UTF-8; a bad byte is a RecordError
    naming its line and its column in bytes."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = first_line + data.count(b"\n", 0, err.start)
        column = err.start - data.rfind(b"\n", 0, err.start)
        raise RecordError(f"{path}:{line}: not UTF-8 (byte 0x{data[err.start]:02x} at column {column})") from None


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """(line number, record) of each non-blank line of a JSON Lines file.

    Raises RecordError, naming file and line, for a missing file, a line that is not UTF-8 or
    not valid JSON, or a record that is not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path}: no such file")
    with path.open("rb") as f:  # bytes, decoded line by line, so that a bad byte's line is known
        for number, raw in enumerate(f, start=1):
            line = _decode(raw, path, number)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise RecordError(f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(record, dict):
                raise RecordError(f"{path}:{number}: a record must be a JSON object, got {type(record).__name__}")
            yield number, record


def iter_jsonl_keyed(path: str | os.PathLike, key: Callable[[dict, str], Hashable],
                     what: str) -> Iterator[tuple[str, Hashable, dict]]:
    """(``file:line``, key, record) of each line of ``iter_jsonl``, each key at most once:
    ``key(record, where)`` reads the record's key (raising RecordError naming ``where`` when it
    has none); a repeated key raises RecordError naming both lines and ``what`` the key is."""
    seen: dict = {}
    for number, record in iter_jsonl(path):
        where = f"{path}:{number}"
        value = key(record, where)
        if value in seen:
            raise RecordError(f"{where}: duplicate {what} {value!r} (first on line {seen[value]})")
        seen[value] = number
        yield where, value, record


def read_jsonl(path: str | os.PathLike, fields: Mapping[str, Any] | None = None, *, allow_empty: bool = False) -> list[dict]:
    """Read a JSON Lines file, checking every record has ``fields`` with the right types and a unique id
    (and, for ``SAMPLE``, consistent answers: ``sample_problem``).

    Raises RecordError naming file and line (``iter_jsonl``'s errors, a missing field, a field
    of the wrong type, a non-finite number, a repeated id) or the file (no records, unless
    ``allow_empty``).
    """
    fields = fields or {"id": str}
    records, seen = [], {}
    for number, record in iter_jsonl(path):
        problem = _record_problem(record, fields) or (sample_problem(record) if fields is SAMPLE else None)
        if problem:
            raise RecordError(f"{path}:{number}: {problem}")
        if record["id"] in seen:
            raise RecordError(f"{path}:{number}: duplicate id {record['id']!r} (first on line {seen[record['id']]})")
        seen[record["id"]] = number
        records.append(record)
    if not records and not allow_empty:
        raise RecordError(f"{path}: no records")
    return records


def current_umask() -> int:
    """The process's umask (os has no getter: set it, then restore it at once)."""
    mask = os.umask(0o022)  # for that instant a common, safe value
    os.umask(mask)
    return mask


def follow_umask(files: Iterable[Path]) -> None:
    """Give ``files`` the mode ``open`` would give them under the umask. safetensors writes its
    files 0600 whatever the umask, which would hide models from the group on a shared cluster."""
    mode = 0o666 & ~current_umask()
    for file in files:
        file.chmod(mode)


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", suffix: str = ".tmp") -> Iterator[IO]:
    """A new file beside ``path``, opened with ``mode`` ("w" UTF-8 text, or "wb"), renamed to
    ``path`` when the block ends and removed if it raises: ``path`` is either the old file or
    the complete new one. The file gets the permissions of the umask, as ``open`` gives them
    (``tempfile.mkstemp``'s 0600 would hide results from the group on a shared cluster).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}{suffix}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # O_EXCL: never another's file
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_jsonl(path: str | os.PathLike, records: Iterable[Mapping]) -> None:
    """Write records one per line; the file appears only when complete (temporary name, then rename)."""
    with atomic_file(path) as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file (a table, a report) atomically."""
    with atomic_file(path) as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write one JSON document atomically, indented for people to read."""
    with atomic_file(path) as f:
        f.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """One JSON document. Raises RecordError naming the file (missing) or the file and line (not
    UTF-8, not valid JSON)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RecordError(f"{path}: no such file") from None
    try:
        return json.loads(_decode(data, path))
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
