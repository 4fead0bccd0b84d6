"""Running the real workflow in tests: a copy of its files, Snakemake as a user runs it, and the jobs a
dry run plans."""

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TINY = ["--configfile", "tests/data/workflow_tiny.yaml"]
POINT = "sweep/algo~inpo/judge~synthetic_preference/seed~0/eta~0.2/tau~0.0667"  # the default experiment
SHARED = "shared/seed~0/judge~synthetic_preference"


def copy_workflow(folder: Path) -> Path:
    """The workflow's files in ``folder``, so that a test may edit its configs (the stages read the
    copy's conf/: the Snakefile passes it)."""
    for name in ("Snakefile", "workflow", "conf", "tests/data"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, folder / name)
    return folder


def snakemake(*args, workdir: Path, command=SNAKEMAKE) -> subprocess.CompletedProcess:
    """Snakemake on the tiny workflow config in ``workdir``, on two cores."""
    env = {k: v for k, v in os.environ.items() if k != "INPO_CONF_DIR"}
    return subprocess.run([*command, "--cores", "2", *TINY, *args], cwd=workdir, capture_output=True, text=True,
                          timeout=900, env=env)


def planned(*args, workdir: Path) -> Counter:
    """How many jobs of each rule a dry run plans."""
    dry = snakemake("-n", *args, workdir=workdir)
    assert dry.returncode == 0, dry.stdout[-2000:] + dry.stderr[-2000:]
    return Counter(re.findall(r"^(?:local)?rule (\w+):", dry.stdout, re.M))
