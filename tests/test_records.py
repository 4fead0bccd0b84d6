import pytest

from inpo.records import PAIR, SCORED_PAIR, RecordError, read_json, read_jsonl, write_json, write_jsonl


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
    with pytest.raises(RecordError, match="'prev_rejected_logp' must be a number"):
        read_jsonl(tmp_path / "s.jsonl", SCORED_PAIR)


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
