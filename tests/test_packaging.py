"""environment.yml and pyproject.toml declare the same dependencies."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda package name -> PyPI name


def split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", requirement.strip()).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def test_conda_environment_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(split(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"])
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(split(d) for d in environment["dependencies"] if isinstance(d, str) and not d.startswith(("python", "pip")))
    # packages conda does not have come from pip inside the environment; flags (-e .) are not packages
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    conda |= dict(split(d) for d in pip if not d.startswith("-"))
    assert {CONDA_NAMES.get(name, name): spec for name, spec in conda.items()} == wanted
    python = next(d for d in environment["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert split(python)[1] == project["requires-python"]
