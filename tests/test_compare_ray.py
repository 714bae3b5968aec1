"""`genex compare --executor ray` on a real local Ray instance (2 CPUs): the same rows as inline, no row lost
or duplicated when a worker process dies mid-run, genuine errors not retried, interrupted runs resumable,
and a Ray the comparison started is shut down again."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

import genex.compare as comparison
from genex.compare import execute
from genex.compare import compare, load_rows

from test_compare import small_cfg

ray = pytest.importorskip("ray")

#: fields that are measurements of the machine, not of the episode: they differ between any two runs
TIMINGS = ("wall_seconds", "seconds_per_decision", "world_model_seconds", "policy_seconds")


def cfg():
    return small_cfg(episodes=3)  # SettingsTabs-v0, react and oracle-imagine, seeds 300-302: 6 episodes


def by_key(rows):
    """Rows keyed by (env, planner, seed), timings dropped; fails on a duplicated key."""
    keyed = {}
    for r in rows:
        k = (r["env"], r["planner"], int(r["seed"]))
        assert k not in keyed, f"episode {k} appears twice"
        keyed[k] = {f: v for f, v in r.items() if f not in TIMINGS}
    return keyed


def assert_complete(out: Path, reference):
    """episodes.jsonl holds every episode exactly once, equal to the reference run in every non-timing field,
    and every episode's trace is on disk."""
    written = by_key(load_rows(out / "episodes.jsonl"))
    assert written == reference
    for env, planner, seed in reference:
        trace = json.loads((out / "traces" / env.split("/")[-1] / planner / f"seed_{seed}.json").read_text())
        assert len(trace["decisions"]) == reference[(env, planner, seed)]["decisions"]


def ray_processes() -> list[str]:
    """Command lines of this process's descendants that belong to Ray (raylet, gcs_server, workers, ...)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "ray" in cmd:
            found.append(f"{pid}: {cmd[:120]}")
    return found


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The rows of an inline (in-process, unfaulted) run of cfg()."""
    rows = compare(cfg(), tmp_path_factory.mktemp("inline"), executor="inline", progress=False)
    keyed = by_key(rows)
    assert len(keyed) == 6
    return keyed


def wait_for_no_ray_processes():
    deadline = time.monotonic() + 20  # raylet, gcs_server and the workers exit within a few seconds of shutdown
    while ray_processes() and time.monotonic() < deadline:
        time.sleep(0.25)
    assert ray_processes() == []


def test_ray_rows_equal_inline_and_the_runner_shuts_down_its_ray(reference, tmp_path, monkeypatch):
    """No Ray running: compare starts a private local one with `workers` CPUs and shuts it down at the end,
    also when interrupted (Ctrl-C after two rows); the rerun resumes without duplicating a row."""
    assert not ray.is_initialized()
    real_append, appended = execute.append_row, []

    def append_then_interrupt(path, row):
        real_append(path, row)
        appended.append(row)
        if len(appended) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(execute, "append_row", append_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        compare(cfg(), tmp_path, executor="ray", workers=2, progress=False)
    assert not ray.is_initialized()
    wait_for_no_ray_processes()
    before = (tmp_path / "episodes.jsonl").read_text()
    assert len(by_key(load_rows(tmp_path / "episodes.jsonl"))) == 2
    monkeypatch.setattr(execute, "append_row", real_append)
    rows = compare(cfg(), tmp_path, executor="ray", workers=2, progress=False)
    assert by_key(rows) == reference
    assert_complete(tmp_path, reference)
    assert (tmp_path / "episodes.jsonl").read_text().startswith(before)  # the two finished rows were kept
    assert not ray.is_initialized()
    wait_for_no_ray_processes()


@pytest.fixture(scope="module")
def local_ray():
    """A Ray the caller started: compare uses it (no second ray.init) and leaves it running."""
    assert not ray.is_initialized()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_killed_workers_lose_and_duplicate_no_row(local_ray, reference, tmp_path, monkeypatch):
    """Two worker processes die: the first attempt of a seed-301 episode right after its first real env step
    (mid-episode), the first attempt of a seed-300 episode after its episode ran (trace written) but before its
    row came back. Ray reruns both tasks on fresh workers; every row is written exactly once."""
    mid, late = tmp_path / "killed-mid-episode", tmp_path / "killed-after-episode"
    monkeypatch.setenv(comparison.FAULT_ENV, f"exit:301:{mid},exit-late:300:{late}")
    rows = compare(cfg(), tmp_path / "run", executor="ray", workers=2, progress=False)
    for marker in (mid, late):
        dead = int(marker.read_text())  # a worker did die
        with pytest.raises(ProcessLookupError):
            os.kill(dead, 0)
    assert by_key(rows) == reference
    assert_complete(tmp_path / "run", reference)
    assert ray.is_initialized()  # the caller's Ray is left running


def test_a_genuine_error_surfaces_once_and_the_interrupted_run_resumes(local_ray, reference, tmp_path,
                                                                       monkeypatch):
    """An exception in an episode is not retried (retry_exceptions=False): compare raises it, keeps the rows
    it has, cancels the rest and leaves the caller's Ray running; a rerun only runs the missing episodes."""
    marker = tmp_path / "attempts"
    out = tmp_path / "run"
    monkeypatch.setenv(comparison.FAULT_ENV, f"raise:302:{marker}")
    with pytest.raises(RuntimeError, match="injected error"):
        compare(cfg(), out, executor="ray", workers=2, progress=False)
    attempts = [line.split()[0] for line in marker.read_text().splitlines()]  # slugs of the failed attempts
    assert attempts and len(attempts) == len(set(attempts))  # each failing episode ran once: no retry
    partial = load_rows(out / "episodes.jsonl") if (out / "episodes.jsonl").exists() else []
    kept = {f"SettingsTabs-v0/{r['planner']}/seed_{r['seed']}" for r in partial}
    assert len(partial) < 6 and not kept & set(attempts)  # no row of a failed episode
    before = (out / "episodes.jsonl").read_text() if partial else ""
    monkeypatch.delenv(comparison.FAULT_ENV)
    rows = compare(cfg(), out, executor="ray", workers=2, progress=False)
    assert by_key(rows) == reference
    assert_complete(out, reference)
    assert (out / "episodes.jsonl").read_text().startswith(before)  # finished episodes were not rerun
    assert compare(cfg(), out, executor="ray", workers=2, progress=False) and by_key(
        load_rows(out / "episodes.jsonl")) == reference  # nothing left to do: nothing appended
    assert ray.is_initialized()


def test_without_ray_installed_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'genex\[ray\]'"):
        compare(cfg(), tmp_path / "run", executor="ray", workers=2, progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written
