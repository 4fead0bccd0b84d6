"""Fetch a benchmark's official public files (standard library only).

    python -m inpo.benchmarks.download alpaca_eval_2 data/alpaca_eval_2
    python -m inpo.benchmarks.download arena_hard_v0.1 data/arena-hard-v0.1
    python -m inpo.benchmarks.download mt_bench data/mt_bench

Files (``FILES``: where each goes in DEST <- its URL, host first), from GitHub's raw files and the
Hugging Face hub; ``--base-url`` points at a mirror that serves them as ``<mirror>/<host>/<path>``:

- ``alpaca_eval_2``: ``reference_outputs_gpt4_1106_preview.json`` (AlpacaEval 2.0's 805
  instructions and reference outputs, tatsu-lab/alpaca_eval ``results/gpt4_1106_preview/model_outputs.json``)
  and ``df_gamed.csv`` (the hub dataset tatsu-lab/alpaca_eval: the per-instruction difficulty
  and the gamed baselines' annotations, which AlpacaEval's length-controlled win rate needs);
- ``arena_hard_v0.1``: ``question.jsonl``, ``model_answer/gpt-4-0314.jsonl`` (the baseline's
  answers) and ``judge_config.yaml`` (the v0.1 judgment settings, at commit 3071ef9; arena-hard-auto's
  main branch now holds v2.0's);
- ``mt_bench``: FastChat's ``question.jsonl``, ``reference_answer/gpt-4.jsonl`` and ``judge_prompts.jsonl``.

One progress line per file on stderr; files already in DEST are skipped; each file appears only
when complete (written under a temporary name, then renamed). When a file cannot be fetched
(e.g. no internet), one message lists every file still missing with its URL and destination, so
it can be fetched by hand, and the exit status is 2.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import sys
import urllib.request
from pathlib import Path

from ..records import atomic_file

BASE_URL = "https://"
GITHUB, HUB = "raw.githubusercontent.com", "huggingface.co"
FILES = {  # benchmark -> {path in DEST: host/path of its URL under the base URL}
    "alpaca_eval_2": {
        "reference_outputs_gpt4_1106_preview.json":
            f"{GITHUB}/tatsu-lab/alpaca_eval/main/results/gpt4_1106_preview/model_outputs.json",
        "df_gamed.csv": f"{HUB}/datasets/tatsu-lab/alpaca_eval/resolve/main/df_gamed.csv",
    },
    "arena_hard_v0.1": {
        "question.jsonl": f"{GITHUB}/lmarena/arena-hard-auto/main/data/arena-hard-v0.1/question.jsonl",
        "model_answer/gpt-4-0314.jsonl":
            f"{GITHUB}/lmarena/arena-hard-auto/main/data/arena-hard-v0.1/model_answer/gpt-4-0314.jsonl",
        "judge_config.yaml": f"{GITHUB}/lmarena/arena-hard-auto/3071ef9/config/judge_config.yaml",
    },
    "mt_bench": {
        "question.jsonl": f"{GITHUB}/lm-sys/FastChat/main/fastchat/llm_judge/data/mt_bench/question.jsonl",
        "reference_answer/gpt-4.jsonl":
            f"{GITHUB}/lm-sys/FastChat/main/fastchat/llm_judge/data/mt_bench/reference_answer/gpt-4.jsonl",
        "judge_prompts.jsonl": f"{GITHUB}/lm-sys/FastChat/main/fastchat/llm_judge/data/judge_prompts.jsonl",
    },
}


class DownloadError(RuntimeError):
    """Some files could not be fetched; the message says which, from where and to where."""


def plan(benchmark: str, dest: str | os.PathLike, base_url: str = BASE_URL) -> list[tuple[str, Path]]:
    """(URL, destination) of every file of the benchmark."""
    if benchmark not in FILES:
        raise ValueError(f"unknown benchmark {benchmark!r}; known: {sorted(FILES)}")
    root = base_url if base_url.endswith("//") else base_url.rstrip("/") + "/"
    return [(f"{root}{remote}", Path(dest) / local) for local, remote in FILES[benchmark].items()]


def fetch(url: str, path: Path, timeout: float = 60.0) -> int:
    """Download ``url`` to ``path`` atomically; returns the number of bytes. Raises OSError (or
    http.client.HTTPException) when it cannot be fetched whole; ``path`` is then left as it was."""
    # atomic_file makes the folder: only once the server answers
    with urllib.request.urlopen(url, timeout=timeout) as response, atomic_file(path, "wb", suffix=".part") as f:
        shutil.copyfileobj(response, f)
        size = f.tell()
        expected = response.headers.get("Content-Length")
        if expected is not None and int(expected) != size:
            raise OSError(f"{url}: the connection closed after {size} of {expected} bytes")
    return size


def download(benchmark: str, dest: str | os.PathLike, *, base_url: str = BASE_URL, timeout: float = 60.0) -> list[Path]:
    """Fetch the benchmark's files into ``dest``, skipping those already there; returns their paths."""
    files = plan(benchmark, dest, base_url)
    for position, (url, path) in enumerate(files):
        if path.exists():
            print(f"{path}: already there, skipped", file=sys.stderr)
            continue
        print(f"{path} <- {url} ...", end=" ", file=sys.stderr, flush=True)
        try:
            size = fetch(url, path, timeout)
        except (OSError, http.client.HTTPException) as err:  # URLError and timeouts are OSErrors
            print("failed", file=sys.stderr)
            missing = [(u, p) for u, p in files[position:] if not p.exists()]
            listing = "\n".join(f"  {u}\n    -> {p}" for u, p in missing)
            raise DownloadError(f"cannot fetch the {benchmark} files ({err}). Fetch these by hand "
                                f"(URL -> where to put it), then run again:\n{listing}") from None
        print(f"{size:,} bytes", file=sys.stderr)
    return [path for _, path in files]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m inpo.benchmarks.download", description=__doc__.split("\n\n")[0])
    p.add_argument("benchmark", choices=sorted(FILES))
    p.add_argument("dest", help="directory for the benchmark's files")
    p.add_argument("--base-url", default=BASE_URL, help="a mirror serving the files as <mirror>/<host>/<path> (default: the hosts themselves)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server (default: 60)")
    args = p.parse_args(argv)
    try:
        download(args.benchmark, args.dest, base_url=args.base_url, timeout=args.timeout)
    except DownloadError as err:
        print(f"inpo.benchmarks.download: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
