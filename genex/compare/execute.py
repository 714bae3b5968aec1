"""Many episodes: checks before anything runs, then the process pool, inline, batched or Ray executors, and resume."""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterator, Sequence

from genex.io import atomic_write_bytes

from .config import COPY_LAST, CompareConfig, EpisodeKey
from .episode import checkpoint_dirs, run_episode
from .store import (
    append_row,
    check_resumable,
    checkpoint_digests,
    family_of,
    load_rows,
    move_aside,
    read_run_json,
)

from .faults import FAULT_ENV, raise_injected

log = logging.getLogger(__name__)


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("MUJOCO_GL", "egl")


def _first_attempt(marker: str) -> bool:
    """True once, for whoever creates ``marker`` (atomically); writes this process's pid into it."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    return True


def _dies_after_first_step(cfg: CompareConfig) -> CompareConfig:
    """A copy of ``cfg`` whose first env (the episode's real one) ends the process after its first step."""
    import copy

    cfg, make_env, made = copy.copy(cfg), cfg.make_env, []

    def make(env_id: str) -> Any:
        env = make_env(env_id)
        if not made:
            made.append(env)
            step = env.step

            def step_then_die(action: Any) -> Any:
                step(action)
                os._exit(1)

            env.step = step_then_die
        return env

    cfg.make_env = make  # type: ignore[method-assign]  (on this copy only)
    return cfg


def _worker(cfg: CompareConfig, key: EpisodeKey, out: str, fault: str | None = None) -> dict[str, Any]:
    _worker_init()  # Ray workers have no initializer; a second call in a pool worker is a no-op
    raise_injected(fault, key)
    for spec in (fault or "").split(","):
        if not spec:
            continue
        mode, seed, marker = spec.split(":", 2)
        if int(seed) != key.seed:
            continue
        if mode == "exit" and _first_attempt(marker):
            return run_episode(_dies_after_first_step(cfg), key, out)
        if mode == "exit-late" and _first_attempt(marker):
            run_episode(cfg, key, out)
            os._exit(1)
    return run_episode(cfg, key, out)


#: how often Ray reruns an episode whose worker process died (killed, out of memory, node lost); an exception
#: raised by the episode itself is not retried: it surfaces once, as it would inline
RAY_MAX_RETRIES = 2


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ImportError("executor='ray' needs Ray: pip install 'genex[ray]'") from e
    return ray


#: the executors of :func:`compare`
EXECUTORS = ("process", "inline", "batched", "ray")


def _check_executor(executor: str) -> None:
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose process, inline, batched or ray")
    if executor == "ray":
        _import_ray()


def _ray_results(cfg: CompareConfig, todo: Sequence[EpisodeKey], out: Path, workers: int,
                 fault: str | None) -> Iterator[dict[str, Any]]:
    """Episodes as Ray tasks, one CPU each. Uses the Ray the caller already initialised (left running), else
    the cluster named by ``RAY_ADDRESS``, else a private local instance with ``workers`` CPUs; either of the
    last two is shut down (disconnected) when the episodes are done, have failed or are interrupted."""
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        if os.environ.get("RAY_ADDRESS"):  # a running cluster: it has its own CPUs
            ray.init(include_dashboard=False, log_to_driver=False)
        else:  # "local": never attach to a stray `ray start` cluster (it would refuse num_cpus anyway)
            ray.init(address="local", num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
    pending: list[Any] = []
    try:
        remote = ray.remote(num_cpus=1, max_retries=RAY_MAX_RETRIES, retry_exceptions=False)(_worker)
        pending = [remote.remote(cfg, k, str(out), fault) for k in todo]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])  # each task's row is yielded once, however often a dead worker made it rerun
    finally:
        if started:
            ray.shutdown()
        else:  # someone else's Ray: stop our episodes still queued or running (interrupt, error), leave the rest
            for ref in pending:
                ray.cancel(ref, force=True)


def _iter_results(cfg: CompareConfig, todo: Sequence[EpisodeKey], out: Path, workers: int,
                  executor: str) -> Iterator[dict[str, Any]]:
    _check_executor(executor)
    fault = os.environ.get(FAULT_ENV) or None
    if not todo:
        return
    if executor == "ray":
        yield from _ray_results(cfg, todo, out, workers, fault)
    elif executor == "batched" and workers > 1:  # processes of batch_episodes episodes each, one torch thread
        from .batching import batched_process_results

        yield from batched_process_results(cfg, todo, out, cfg.batch_episodes, workers, fault)
    elif executor == "batched":  # this process, one torch thread
        from .batching import batched_results

        yield from batched_results(cfg, todo, out, cfg.batch_episodes, 1,
                                   fault=(lambda k: raise_injected(fault, k)) if fault else None)
    elif executor == "process" and workers > 1:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_worker_init) as ex:
            futures = [ex.submit(_worker, cfg, k, str(out), fault) for k in todo]
            try:
                for fut in as_completed(futures):
                    yield fut.result()
            finally:  # interrupted or failed: do not run the queued episodes before returning
                for fut in futures:
                    fut.cancel()
    else:
        _worker_init()  # one torch thread, as in the workers: small models lose more to thread sync than they gain
        for k in todo:
            yield run_episode(cfg, k, out)  # no fault injection here: `exit` would end the caller's process


def check_fidelity(cfg: CompareConfig) -> None:
    """Raise :class:`~genex.evaluation.fidelity.StaleFidelityError` before any episode runs when a learned
    planner of ``cfg`` would read a ``fidelity.json`` measured on other world-model weights or through another
    policy (the workers would fail on every episode)."""
    from genex.planners import PLANNERS
    from genex.evaluation.fidelity import load_fidelity

    if not cfg.fidelity:
        return
    for env_id in cfg.envs:
        family = family_of(env_id)
        for name in cfg.planners:
            if PLANNERS[name][1] != "learned":
                continue
            try:
                pol, wm = checkpoint_dirs(cfg, name, family)
            except FileNotFoundError:
                continue  # the episode itself will say so
            if wm == COPY_LAST:
                continue
            load_fidelity(wm, env_id=env_id, env_kwargs=cfg.env_kwargs, policy_dir=pol)


def check_envs_support_planners(cfg: CompareConfig) -> None:
    """Raise ``ValueError`` before any episode runs when a planner of ``cfg`` cannot run on one of its envs."""
    from genex.envs.foreign import is_genex_env
    from genex.planners import PLANNERS, posterior_env_ids

    foreign = [e for e in cfg.envs if not is_genex_env(e)]
    simulators = [p for p in cfg.planners if PLANNERS[p][1] in ("oracle", "posterior")]
    if foreign and simulators:
        raise ValueError(f"{', '.join(simulators)} imagine with the env's own simulator (snapshot/restore), which only "
                         f"genex envs offer; {', '.join(foreign)} cannot")
    if not foreign and (cfg.task_spec is not None or cfg.image_size is not None):
        raise ValueError("--task-spec and --image-size adapt foreign envs; genex envs declare their own")
    for env_id in foreign:  # bad options, a bad spec or frames planners cannot read: one error now, not one per episode
        cfg.make_env(env_id).close()
    able = posterior_env_ids()  # the envs that draw hypotheses of their hidden state
    unable = [e for e in cfg.envs if e not in able]
    if "particle" in cfg.planners and unable:  # belief-space MPC over the env's own hypotheses: fail now, not mid-run
        raise ValueError(f"particle plans over the hypotheses an env draws of its hidden state; {', '.join(unable)} "
                         f"cannot. Envs that can: {', '.join(able)}")
    if any(PLANNERS[p][1] == "posterior" for p in cfg.planners) and unable:
        raise ValueError(f"posterior-imagine needs an env that draws hypotheses of its hidden state; "
                         f"{', '.join(unable)} cannot. Envs that can: {', '.join(able)}")
    if cfg.options.decision == "plan" and unable:  # the plan rule draws the same hypotheses as the posterior model
        raise ValueError(f"--decision plan needs envs that draw hypotheses of their hidden state; "
                         f"{', '.join(unable)} cannot (use --decision auto or table)")

def compare(cfg: CompareConfig, out: str | Path, workers: int | None = None, executor: str = "process",
            progress: bool = True, stale: str = "error") -> list[dict[str, Any]]:
    """Run every (env, planner, seed) of ``cfg`` not yet in ``out/episodes.jsonl``; returns all rows.

    ``executor``: ``"process"`` (``workers`` spawned processes, one torch thread each), ``"inline"`` (this
    process, one episode after the other), ``"batched"`` (``cfg.batch_episodes`` episodes in lockstep, their
    world-model and policy calls sent as one batch, in each of ``workers`` spawned processes with one torch
    thread, or in this process when ``workers`` is 1; :mod:`.batching`) or ``"ray"`` (one-CPU Ray tasks).

    ``stale``: what to do when ``out`` holds episodes run with other settings or other weights: ``"error"``
    (the default: raise, one table must not mix two models) or ``"restart"`` (move the old folder aside to
    ``<out>.stale-<UTC time>``, nothing is deleted, and start over).
    """
    from tqdm.auto import tqdm

    from genex.planners import PLANNERS

    bad = [p for p in cfg.planners if p not in PLANNERS]
    if bad:
        raise ValueError(f"unknown planner(s) {bad}; choose from {sorted(PLANNERS)}")
    check_envs_support_planners(cfg)
    if cfg.episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {cfg.episodes}")
    if stale not in ("error", "restart"):
        raise ValueError(f"stale must be 'error' or 'restart', got {stale!r}")
    _check_executor(executor)  # before anything is written: an unknown executor, or Ray not installed
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # batch_episodes is how episodes are run, not what they are (like workers): a run resumes with another B
    settings = {k: v for k, v in asdict(cfg).items()
                if k not in ("envs", "planners", "episodes", "save_frames", "batch_episodes")}
    run_path = out / "run.json"
    checkpoints = checkpoint_digests(cfg)
    check_fidelity(cfg)
    old = None
    if run_path.exists():
        try:
            old = read_run_json(run_path)
            if old.get("checkpoints") is None:  # unknown weights made them: do not mix
                raise ValueError(f"{out} does not record the checkpoints its episodes used; use another --out (or "
                                 "--restart-stale)")
            check_resumable(out, old, settings, checkpoints)
        except ValueError as e:  # other settings or weights, or an unreadable run.json
            if stale != "restart":
                raise
            aside = move_aside(out)
            out.mkdir(parents=True)
            old = None
            log.warning("%s; moved it to %s and started over", str(e).split(";")[0], aside)
    if old is not None:
        checkpoints = {**old["checkpoints"], **checkpoints}
    atomic_write_bytes(run_path, json.dumps({"settings": settings, "config": asdict(cfg), "checkpoints": checkpoints},
                                            indent=2).encode())
    path = out / "episodes.jsonl"
    rows = load_rows(path)
    if path.exists() and path.read_bytes()[-1:] not in (b"", b"\n"):  # drop a torn tail before appending
        atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in rows).encode())
    done = {(r["env"], r["planner"], int(r["seed"])) for r in rows}
    todo = [k for k in cfg.keys() if (k.env, k.planner, k.seed) not in done]
    if len(rows) and todo:
        log.info("resuming %s: %d episodes done, %d to go", out, len(done), len(todo))
    workers = workers if workers is not None else max(1, min(len(todo), (os.cpu_count() or 1)))
    bar = tqdm(total=len(todo), disable=not progress, desc="compare", unit="episode")
    results = _iter_results(cfg, todo, out, workers, executor)
    try:
        for row in results:
            append_row(path, row)
            rows.append(row)
            bar.update(1)
            bar.set_postfix_str(f"{row['planner']} {row['env'].split('/')[-1]} seed {row['seed']}")
    finally:
        results.close()  # now, not at garbage collection: stops the workers (and a Ray we started) on errors
        bar.close()
    wanted = {(k.env, k.planner, k.seed) for k in cfg.keys()}
    return [r for r in rows if (r["env"], r["planner"], int(r["seed"])) in wanted]
