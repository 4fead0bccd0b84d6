"""Where the Hydra configs live, and the two ways to load them (app and tests)."""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Callable, Sequence

import hydra
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

# The configs are the repository's top-level conf/ (a workflow repo, installed editable);
# INPO_CONF_DIR points elsewhere for a copy of them.
CONF_DIR = Path(os.environ.get("INPO_CONF_DIR", Path(__file__).resolve().parents[2] / "conf"))


def hydra_app(config_name: str) -> Callable:
    """``@hydra_app("train")`` is ``@hydra.main`` on conf/<config_name>.yaml."""
    return hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)


def load_config(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose conf/<config_name>.yaml with Hydra overrides, outside of an app (tests, notebooks)."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name=config_name, overrides=list(overrides))


def stage_seed(seed: int, stage: str, iteration: int = 0) -> int:
    """A seed for one stage of one iteration, derived from the configured seed (stable across runs)."""
    return zlib.crc32(f"{seed}/{stage}/{iteration}".encode()) & 0x7FFFFFFF
