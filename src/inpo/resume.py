"""Run the workflow so that a killed run goes on where it stopped: one command after any kill.

    python -m inpo.resume --cores all [any other snakemake arguments]      (what `make run` runs)

A Snakemake run killed outright (SIGKILL, a closed terminal, a power cut) leaves its lock in
``.snakemake/locks`` and marks the jobs it was running as incomplete, so a plain rerun stops with
a LockException and then asks for ``--rerun-incomplete``. This command uses Snakemake's own
mechanisms for both: it runs ``snakemake --unlock`` when the lock is stale, that is when no process
of a Snakemake run or of an inpo stage is alive in the working directory (a live one keeps its
lock, and Snakemake refuses to start as it should), and then runs Snakemake with
``--rerun-incomplete``. The incomplete jobs rerun; ``train`` resumes from its last checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import psutil

# Command lines of processes that may still write into a working directory.
_WORKFLOW_PROCESSES = ("snakemake", "inpo.")


def working_directory(args: Sequence[str]) -> Path:
    """The folder Snakemake works in: ``--directory``/``-d`` if given, else the current one."""
    for i, arg in enumerate(args):
        if arg in ("-d", "--directory") and i + 1 < len(args):
            return Path(args[i + 1]).resolve()
        if arg.startswith("--directory="):
            return Path(arg.split("=", 1)[1]).resolve()
    return Path.cwd().resolve()


def live_workflow_processes(workdir: Path) -> list[psutil.Process]:
    """Processes other than this one and its ancestors that run Snakemake or an inpo stage in ``workdir``."""
    own = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    alive = []
    for process in psutil.process_iter(["pid", "cmdline", "cwd"]):
        info = process.info
        if info["pid"] in own or not info["cmdline"] or not info["cwd"]:
            continue
        if Path(info["cwd"]) == workdir and any(k in arg for arg in info["cmdline"] for k in _WORKFLOW_PROCESSES):
            alive.append(process)
    return alive


def stale_lock(workdir: Path) -> bool:
    """Whether ``workdir`` holds a Snakemake lock that no live process owns."""
    locks = workdir / ".snakemake" / "locks"
    return locks.is_dir() and any(locks.iterdir()) and not live_workflow_processes(workdir)


def main(args: Sequence[str]) -> int:
    snakemake = [sys.executable, "-m", "snakemake", *args]
    workdir = working_directory(args)
    if stale_lock(workdir):
        print(f"inpo.resume: {workdir}/.snakemake/locks is left by a killed run (no Snakemake or inpo process runs "
              f"there): snakemake --unlock", file=sys.stderr)
        subprocess.run([*snakemake, "--unlock"], stdout=subprocess.DEVNULL)  # on failure, the run below says why
    return subprocess.run([*snakemake, "--rerun-incomplete"]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
