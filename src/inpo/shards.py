"""Sharding a prompt set over jobs (so a cluster samples on many GPUs at once) and merging back.

    python -m inpo.shards merge OUTPUT.jsonl SHARD_0.jsonl SHARD_1.jsonl ...
"""

from __future__ import annotations

import argparse
import sys

from .records import SAMPLE, RecordError, read_jsonl, write_jsonl


def shard_bounds(n: int, shard: int, n_shards: int) -> tuple[int, int]:
    """[start, stop) of shard ``shard`` of ``n`` items split into ``n_shards`` contiguous blocks whose
    sizes differ by at most one (the first n mod n_shards blocks have one more)."""
    if n_shards < 1 or not 0 <= shard < n_shards:
        raise ValueError(f"need n_shards >= 1 and 0 <= shard < n_shards, got shard={shard}, n_shards={n_shards}")
    size, extra = divmod(n, n_shards)
    start = shard * size + min(shard, extra)
    return start, start + size + (shard < extra)


def merge(output: str, shards: list[str]) -> int:
    """Concatenate sample shards in the given order into ``output``; ids must not repeat."""
    records, seen = [], {}
    for path in shards:
        for record in read_jsonl(path, SAMPLE, allow_empty=True):
            if record["id"] in seen:
                raise RecordError(f"{path}: id {record['id']!r} is also in {seen[record['id']]}; shards overlap")
            seen[record["id"]] = path
            records.append(record)
    if not records:
        raise RecordError(f"the shards {shards} hold no record")
    write_jsonl(output, records)
    return len(records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inpo.shards", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    merging = commands.add_parser("merge", help="concatenate sample shards, in order")
    merging.add_argument("output")
    merging.add_argument("shards", nargs="+")
    args = parser.parse_args(argv)
    try:
        n = merge(args.output, args.shards)
    except (RecordError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"merged {len(args.shards)} shards, {n} records -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
