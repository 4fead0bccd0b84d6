"""inpo.resume: a killed run's lock is removed only when no process of the workflow is alive."""

import subprocess
import sys
import time

from inpo.resume import live_workflow_processes, stale_lock, working_directory


def test_a_lock_is_stale_only_when_no_workflow_process_runs_in_the_folder(tmp_path):
    locks = tmp_path / ".snakemake/locks"
    locks.mkdir(parents=True)
    assert not stale_lock(tmp_path), "no lock at all"
    (locks / "0.output.lock").write_text("results/x\n")
    # a stage of a run still going on: its lock is not stale
    stage = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", "inpo.train"], cwd=tmp_path)
    try:
        deadline = time.time() + 10
        while not live_workflow_processes(tmp_path) and time.time() < deadline:
            time.sleep(0.05)
        assert [p.pid for p in live_workflow_processes(tmp_path)] == [stage.pid]
        assert not stale_lock(tmp_path)
    finally:
        stage.kill()
        stage.wait()
    assert stale_lock(tmp_path)
    # a process elsewhere does not hold this folder's lock
    elsewhere = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "snakemake"], cwd=tmp_path.parent)
    try:
        assert stale_lock(tmp_path)
    finally:
        elsewhere.kill()
        elsewhere.wait()


def test_the_working_directory_is_snakemakes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert working_directory(["--cores", "all"]) == tmp_path.resolve()
    assert working_directory(["-d", "runs", "--cores", "1"]) == (tmp_path / "runs").resolve()
    assert working_directory(["--directory=runs"]) == (tmp_path / "runs").resolve()
