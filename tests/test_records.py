import json
import os

import pytest

from inpo.records import (PAIR, PROMPT, SAMPLE, SCORED_PAIR, RecordError, read_json, read_jsonl, write_json, write_jsonl,
                          write_text)
from sample_records import finished


def test_round_trip_keeps_extra_fields(tmp_path):
    records = [{"id": "a", "prompt": "p", "chosen": "x", "rejected": "y", "items": [1, 2]}]
    write_jsonl(tmp_path / "pairs.jsonl", records)
    assert read_jsonl(tmp_path / "pairs.jsonl", PAIR) == records


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"id": "a", "prompt": "p", "chosen": "x", "rejected": "y"}', '{"id": "b", "prompt": "p"'], r"pairs.jsonl:2: not valid JSON"),
        (['{"id": "a", "prompt": "p", "chosen": "x"}'], r"pairs.jsonl:1: missing field 'rejected'"),
        (['{"id": "a", "prompt": 3, "chosen": "x", "rejected": "y"}'], r"pairs.jsonl:1: field 'prompt' must be a string"),
        (['[1, 2]'], r"pairs.jsonl:1: a record must be a JSON object"),
        (['{"id": "a", "prompt": "p", "chosen": "x", "rejected": "y"}'] * 2, r"pairs.jsonl:2: duplicate id 'a' \(first on line 1\)"),
        ([], r"pairs.jsonl: no records"),
    ],
)
def test_malformed_lines_are_named_by_file_and_line(tmp_path, lines, message):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordError, match=message):
        read_jsonl(path, PAIR)


def test_numbers_are_checked_and_booleans_are_not_numbers(tmp_path):
    record = {"id": "a", "prompt": "p", "chosen": "x", "rejected": "y", "ref_chosen_logp": -1.5,
              "ref_rejected_logp": -2, "prev_chosen_logp": -1.0, "prev_rejected_logp": True}
    write_jsonl(tmp_path / "s.jsonl", [record])
    with pytest.raises(RecordError, match="'prev_rejected_logp' must be a finite number, got True"):
        read_jsonl(tmp_path / "s.jsonl", SCORED_PAIR)


SCORED_LINE = ('{"id": "a", "prompt": "p", "chosen": "x", "rejected": "y", "ref_chosen_logp": %s, '
               '"ref_rejected_logp": -2.0, "prev_chosen_logp": -1.0, "prev_rejected_logp": -2.0}')


@pytest.mark.parametrize("number, shown", [("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf"), ("1e400", "inf")])
def test_non_finite_numbers_are_named_by_file_and_line(tmp_path, number, shown):
    path = tmp_path / "scored.jsonl"
    path.write_text(SCORED_LINE % "-1.5" + "\n" + SCORED_LINE.replace('"a"', '"b"') % number + "\n")
    with pytest.raises(RecordError) as error:
        read_jsonl(path, SCORED_PAIR)
    assert str(error.value) == f"{path}:2: field 'ref_chosen_logp' must be a finite number, got {shown}"


@pytest.mark.parametrize(
    "fields, extra, message",
    [
        (SAMPLE, '"responses": ["a", 3]', "field 'responses' must be a list of strings, item 1 is 3"),
        (SAMPLE, '"responses": "a b"', "field 'responses' must be a list of strings, got 'a b'"),
        (SAMPLE, '"responses": ["a", null]', "field 'responses' must be a list of strings, item 1 is None"),
        (SAMPLE, '"stop_tokens": [3]', "field 'stop_tokens' must be a list of strings or nulls, item 0 is 3"),
        (SAMPLE, '"prompt_truncated": 0', "field 'prompt_truncated' must be true or false, got 0"),
        (SAMPLE, '"finish_reasons": ["length"]',
         "response 0: finish_reason 'length' with stop_token '<eos>' (want 'stop' with a token, or 'length' with null)"),
        (SAMPLE, '"stop_tokens": [null]',
         "response 0: finish_reason 'stop' with stop_token None (want 'stop' with a token, or 'length' with null)"),
        (SAMPLE, '"finish_reasons": ["stop", "stop"]', "1 responses but 2 finish_reasons and 1 stop_tokens"),
        (PAIR, '"chosen_stop_token": 1', "field 'chosen_stop_token' must be a string or null, got 1"),
        (PROMPT, '"messages": [{"role": "user", "content": 3}]',
         "field 'messages' must be a list of chat turns (objects with string role and content), "
         "item 0 is {'role': 'user', 'content': 3}"),
        (PROMPT, '"messages": "hi"',
         "field 'messages' must be a list of chat turns (objects with string role and content), got 'hi'"),
    ],
)
def test_list_items_are_checked_and_named(tmp_path, fields, extra, message):
    path = tmp_path / "samples.jsonl"
    good = json.dumps({"prompt": "p", "chosen": "x", "rejected": "y", **finished(["x"])})[1:-1]
    path.write_text('{"id": "a", %s}\n{"id": "b", %s, %s}\n' % (good, good, extra))  # the last value of a key wins
    with pytest.raises(RecordError) as error:
        read_jsonl(path, fields)
    assert str(error.value) == f"{path}:2: {message}"


def test_chat_turns_and_lists_of_strings_pass(tmp_path):
    record = {"id": "a", "prompt": "p", **finished(["x", ""]),
              "messages": [{"role": "user", "content": "p"}, {"role": "assistant", "content": "x", "name": "m"}]}
    write_jsonl(tmp_path / "s.jsonl", [record])
    assert read_jsonl(tmp_path / "s.jsonl", SAMPLE) == [record]


def test_a_byte_that_is_not_utf8_is_named_by_file_line_and_column(tmp_path):
    path = tmp_path / "pairs.jsonl"
    good = '{"id": "%s", "prompt": "p", "chosen": "x", "rejected": "y"}\n'
    path.write_bytes((good % "a" + good % "b").encode() + b'{"id": "abc\xff", "prompt": "p"}\n')
    with pytest.raises(RecordError) as error:
        read_jsonl(path, PAIR)
    assert str(error.value) == f"{path}:3: not UTF-8 (byte 0xff at column 12)"
    path.write_bytes(b'{"id": "\xc3\xa9\xc3"}\n')  # a character cut short after a whole one: columns count bytes
    with pytest.raises(RecordError) as error:
        read_jsonl(path, PAIR)
    assert str(error.value) == f"{path}:1: not UTF-8 (byte 0xc3 at column 11)"


def test_read_json_names_a_byte_that_is_not_utf8(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_bytes(b'{\n "a": "\xff"\n}\n')
    with pytest.raises(RecordError) as error:
        read_json(path)
    assert str(error.value) == f"{path}:2: not UTF-8 (byte 0xff at column 8)"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)], ids=oct)
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_jsonl(tmp_path / "r.jsonl", [{"id": "a"}])
        write_json(tmp_path / "m.json", {"a": 1})
        write_text(tmp_path / "t.md", "text")
        write_jsonl(tmp_path / "r.jsonl", [{"id": "b"}])  # replacing a file too
    finally:
        os.umask(old)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()} == {
        "r.jsonl": oct(mode), "m.json": oct(mode), "t.md": oct(mode)}


def test_missing_file_is_named(tmp_path):
    with pytest.raises(RecordError, match="nope.jsonl: no such file"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"id": "old"}])

    def broken():
        yield {"id": "new"}
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(path, broken())
    assert read_jsonl(path) == [{"id": "old"}]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_json_round_trip_and_bad_json(tmp_path):
    write_json(tmp_path / "m.json", {"win_rate": 0.5})
    assert read_json(tmp_path / "m.json") == {"win_rate": 0.5}
    (tmp_path / "bad.json").write_text("{\n oops")
    with pytest.raises(RecordError, match=r"bad.json:2: not valid JSON"):
        read_json(tmp_path / "bad.json")
