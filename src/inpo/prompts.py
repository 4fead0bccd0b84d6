"""Stage ``prompts``: write a prompt set, from the embedded default's synthetic task (a fresh
training set per iteration, or the held-out evaluation set) or from a dataset of prompts (a
Hugging Face hub name such as ``RLHFlow/iterative-prompt-v1-iter1-20K``, or a local JSON, JSONL
or Parquet file).

    python -m inpo.prompts output=results/prompts/train_iter1.jsonl split=train iteration=1
    python -m inpo.prompts output=prompts.jsonl dataset.path=RLHFlow/iterative-prompt-v1-iter1-20K
"""

from __future__ import annotations

from typing import Any, Mapping

from omegaconf import DictConfig

from .config import hydra_app, stage_seed
from .records import RecordError, write_jsonl
from .task import make_prompts

LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def load_rows(path: str, split: str):
    """The rows of a hub dataset or a local file (the ``datasets`` library reads both)."""
    from datasets import load_dataset

    suffix = next((s for s in LOCAL_FORMATS if path.endswith(s)), None)
    try:
        if suffix:
            return load_dataset(LOCAL_FORMATS[suffix], data_files=path, split="train")
        return load_dataset(path, split=split)
    except (FileNotFoundError, ConnectionError) as err:
        raise FileNotFoundError(f"dataset.path={path!r} could not be loaded (a local file, or a hub dataset "
                                f"this machine can reach): {err}") from None


def prompt_record(row: Mapping[str, Any], index: int, source: Mapping[str, Any], id_prefix: str) -> dict:
    """``{id, prompt[, messages]}`` from one dataset row: ``messages_field`` (chat turns ending with
    the user's) or ``prompt_field`` (one user message); ``id_field`` if set, else prefix + index."""
    where = f"dataset {source['path']!r}, row {index}"
    if source.get("messages_field"):
        turns = row.get(source["messages_field"])
        if not turns or not isinstance(turns, list) or turns[-1].get("role") != "user":
            raise RecordError(f"{where}: {source['messages_field']!r} must be a list of chat turns ending with a user turn")
        record = {"prompt": turns[-1]["content"]}
        if len(turns) > 1:
            record["messages"] = [{"role": t["role"], "content": t["content"]} for t in turns]
    else:
        text = row.get(source["prompt_field"])
        if not isinstance(text, str) or not text.strip():
            raise RecordError(f"{where}: {source['prompt_field']!r} must be a non-empty string")
        record = {"prompt": text}
    row_id = row.get(source["id_field"]) if source.get("id_field") else None
    return {"id": str(row_id) if row_id is not None else f"{id_prefix}-{index:06d}", **record}


def dataset_prompts(source: Mapping[str, Any], n_prompts: int | None, id_prefix: str) -> list[dict]:
    rows = load_rows(str(source["path"]), source["split"])
    if n_prompts is not None:
        rows = rows.select(range(min(n_prompts, len(rows))))
    records = [prompt_record(row, i, source, id_prefix) for i, row in enumerate(rows)]
    if not records:
        raise RecordError(f"dataset {source['path']!r} has no rows")
    if len({r["id"] for r in records}) != len(records):
        raise RecordError(f"dataset {source['path']!r}: {source['id_field']!r} has repeated values; ids must be unique")
    return records


def run(cfg: DictConfig) -> list[dict]:
    if cfg.n_prompts is not None and cfg.n_prompts < 1:
        raise ValueError(f"n_prompts must be >= 1 (or null: the whole dataset), got {cfg.n_prompts}")
    if cfg.split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {cfg.split!r}")
    split = f"{cfg.split}{cfg.iteration}" if cfg.split == "train" else cfg.split
    if cfg.dataset.path:
        records = dataset_prompts(cfg.dataset, cfg.n_prompts, split)
    else:
        if cfg.n_prompts is None:
            raise ValueError("n_prompts must be set for the synthetic task")
        seed = stage_seed(cfg.seed, f"prompts-{cfg.split}", cfg.iteration if cfg.split == "train" else 0)
        records = make_prompts(cfg.n_prompts, seed, split=split, min_items=cfg.task.min_items, max_items=cfg.task.max_items)
    write_jsonl(cfg.output, records)
    return records


@hydra_app("prompts")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
