"""Run planners on held-out episodes and summarise them honestly: ``genex compare``.

Output folder::

    run.json                     the settings and the digests of the checkpoints used (a rerun with other
                                 settings or other weights into the same folder is refused)
    episodes.jsonl               one row per finished episode, appended and flushed (fsync) as it ends
    traces/<env>/<planner>/seed_<seed>.json     every DecisionTrace of the episode (atomic write)
    frames/<env>/<planner>/seed_<seed>.npz      real and imagined frames (``--save-frames`` only)
    summary.md, summary.csv      mean and 95% CI per (env, planner)
    bars.png, compute.png        success / collision bars with CIs; success vs imagined frames per decision

A rerun with the same ``--out`` skips the episodes already in
``episodes.jsonl`` (a torn last line from a kill is ignored), so an
interrupted comparison resumes where it stopped. Episodes run in worker
processes (``spawn``; one torch thread each) or on Ray (``executor="ray"``).

Planners only ever see :func:`genex.envs.spec.public_info`; hidden truth is
read here, after the fact, for the metrics.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from genex.io import atomic_write_bytes

__all__ = ["CompareConfig", "EpisodeKey", "run_episode", "compare", "load_rows", "summarise", "write_summary",
           "METRICS", "gap_shares", "format_gap_shares", "GAP_REFERENCES"]

log = logging.getLogger(__name__)

#: summary columns: (row key, label, kind) -- "rate" columns are proportions
METRICS: tuple[tuple[str, str, str], ...] = (
    ("success", "success", "rate"),
    ("collision", "collision / irreversible error", "rate"),
    ("return", "return", "mean"),
    ("steps", "real steps", "mean"),
    ("brier", "belief Brier", "mean"),
    ("log_loss", "belief log loss", "mean"),
    ("imagined_per_decision", "imagined frames / decision", "mean"),
    ("seconds_per_decision", "s / decision", "mean"),
)


#: ``--world-model`` value for the copy-last-frame baseline (the floor: imagination that shows nothing new)
COPY_LAST = "copy-last"

#: settings added after runs were made, with the value that reproduces what those runs did
SETTINGS_BEFORE: dict[str, Any] = {"memory": 1, "decision": "table"}


@dataclass(frozen=True)
class EpisodeKey:
    env: str
    planner: str
    seed: int

    @property
    def slug(self) -> str:
        return f"{self.env.split('/')[-1].replace(':', '_')}/{self.planner}/seed_{self.seed}"


@dataclass
class CompareConfig:
    envs: list[str]
    planners: list[str]
    episodes: int = 20
    seed: int = 200_000  # held out: world-model and policy data use seeds 0.. and 100000..
    samples: int = 4
    horizon: int = 8
    trust: float = 0.7
    imagine_every: int = 1
    imagined_reading: str = "hard"  # "soft": feed P itself into the fidelity rates (the behaviour before 2026-11-26)
    memory: int = 1  # real frames whose sightings the belief keeps (planners.base.BeliefPlanner)
    decision: str = "auto"  # "plan" | "table" | "auto": plan where the env draws hypotheses (planners.plans)
    fidelity: bool = True  # read learned imagination through the world model's fidelity.json when it has one
    world_model: str | None = None  # checkpoint folder (default: the shipped one for the env family)
    policy: str | None = None  # tiny checkpoint folder (default: shipped)
    save_frames: bool = False
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    # foreign (non-genex) envs: "module:attribute" of a genex.envs.foreign.TaskSpec, and the frame size to adapt to
    task_spec: str | None = None
    image_size: int | None = None

    def make_env(self, env_id: str) -> Any:
        """Env ``env_id`` as the planners get it (foreign envs adapted: genex.envs.foreign.make_env)."""
        from genex.envs.foreign import make_env

        return make_env(env_id, self.env_kwargs, self.task_spec, self.image_size)

    def keys(self) -> list[EpisodeKey]:
        return [EpisodeKey(e, p, self.seed + i) for e in self.envs for i in range(self.episodes) for p in self.planners]


# ---------------------------------------------------------------------------------------------- one episode
class _Models:
    """Per-process cache: checkpoints are loaded once per worker, not once per episode."""

    def __init__(self) -> None:
        self.cache: dict[tuple[str, str], Any] = {}

    def get(self, kind: str, path: str, env: Any) -> Any:
        key = (kind, path)
        if key not in self.cache:
            if kind == "policy":
                from genex.policy import make_policy

                self.cache[key] = make_policy("tiny", checkpoint=path)
            elif path == COPY_LAST:
                from genex.world_model import CopyLastFrameWorldModel

                self.cache[key] = CopyLastFrameWorldModel()
            else:
                from genex.world_model import load_world_model

                self.cache[key] = load_world_model(path, env=env, device="cpu")
        return self.cache[key]

    def fidelity(self, wm_dir: str, env_id: str, env_kwargs: dict[str, Any], policy_dir: str) -> Any:
        """The world model's fidelity for one env as read by one policy; read (and warned about) once per worker."""
        from genex.planners.calibration import load_fidelity

        key = ("fidelity", json.dumps([wm_dir, env_id, env_kwargs, policy_dir], sort_keys=True, default=str))
        if key not in self.cache:
            self.cache[key] = load_fidelity(wm_dir, env_id=env_id, env_kwargs=env_kwargs, policy_dir=policy_dir)
        return self.cache[key]


_MODELS = _Models()


def _checkpoint_dirs(cfg: CompareConfig, planner: str, family: str) -> tuple[str, str | None]:
    """The policy folder a planner loads for an env family, and its world-model folder (learned ones only)."""
    from genex.planners import PLANNERS, default_checkpoint

    _, wm_kind, policy_kind = PLANNERS[planner]
    pol = cfg.policy if (cfg.policy and policy_kind == "tiny") else str(
        default_checkpoint("policy" if policy_kind == "tiny" else "reference", family))
    wm = (cfg.world_model or str(default_checkpoint("world_model", family))) if wm_kind == "learned" else None
    return pol, wm


def _build(cfg: CompareConfig, key: EpisodeKey, env: Any) -> Any:
    from genex.planners import PLANNERS, env_family, make_planner

    _, wm_kind, _ = PLANNERS[key.planner]
    pol_path, wm_dir = _checkpoint_dirs(cfg, key.planner, env_family(env))
    policy = _MODELS.get("policy", pol_path, env)
    wm, oracle_env = None, None
    fidelity = None
    if wm_dir is not None:
        wm = _MODELS.get("world_model", wm_dir, env)
        if hasattr(wm, "bind"):
            wm.bind(env)
        # this env's own numbers where they were measured, as read by this planner's policy
        fidelity = _MODELS.fidelity(wm_dir, key.env, cfg.env_kwargs, pol_path) if cfg.fidelity else None
    elif wm_kind in ("oracle", "posterior"):  # a private simulator: the live env is never touched
        oracle_env = cfg.make_env(key.env)
    kwargs = dict(samples=cfg.samples, horizon=cfg.horizon, trust=cfg.trust, memory=cfg.memory,
                  save_frames=cfg.save_frames, seed=key.seed, decision=None if cfg.decision == "auto" else cfg.decision)
    if wm_kind is not None:
        kwargs["imagine_every"] = cfg.imagine_every
        kwargs["imagined_reading"] = cfg.imagined_reading
        kwargs["fidelity"] = fidelity
    return make_planner(key.planner, env, policy=policy, world_model=wm, oracle_env=oracle_env, **kwargs), oracle_env


def _score_belief(belief: dict[str, list[float]], answers: dict[str, int]) -> tuple[float, float]:
    """Brier and log loss of one decision's belief, averaged over the questions."""
    from genex.belief import brier_score, log_loss

    scores = [(brier_score([p], [answers[qid]]), log_loss([p], [answers[qid]], eps=1e-6)) for qid, p in belief.items()]
    return float(np.mean([b for b, _ in scores])), float(np.mean([ll for _, ll in scores]))


def run_episode(cfg: CompareConfig, key: EpisodeKey, out: str | Path | None = None) -> dict[str, Any]:
    """Run one episode; returns its JSONL row (and writes its traces/frames under ``out``)."""
    import genex.envs  # noqa: F401  (registers the envs)
    from genex.envs.foreign import declared
    from genex.envs.spec import public_info

    t_start = time.perf_counter()
    env = cfg.make_env(key.env)
    oracle_env = None
    try:
        planner, oracle_env = _build(cfg, key, env)
        obs, info = env.reset(seed=key.seed)
        if oracle_env is not None:
            oracle_env.reset(seed=key.seed)
        planner.reset(env, seed=key.seed)
        answers = dict(info.get("answers", {}))
        conditions = episode_conditions(info)
        traces, ret, steps, done = [], 0.0, 0, False
        while not done:
            action, trace = planner.act(obs, public_info(info))
            if trace is not None:
                traces.append(trace)
            obs, reward, terminated, truncated, info = env.step(action)
            ret += float(reward)
            steps += 1
            done = bool(terminated or truncated)
    finally:
        env.close()
        if oracle_env is not None:
            oracle_env.close()
    wall = time.perf_counter() - t_start
    scores = [_score_belief(t.belief, answers) for t in traces if t.belief and answers]
    n_dec = max(1, len(traces))
    # outcomes the env reports; None where it reports none (a foreign env without a declared task): "n/a", not 0%
    reported = [k for k in ("collisions", "irreversible_errors") if k in info]
    collisions = sum(int(info[k]) for k in reported) if reported else None
    task = getattr(planner, "task", None)
    row = {
        "env": key.env, "planner": key.planner, "seed": key.seed,
        "success": bool(info["success"]) if "success" in info else None,
        "collision": None if collisions is None else collisions > 0, "collisions": collisions,
        "fell_back": bool(getattr(task, "generic", False)),  # no declared task: the policy chose the actions
        "return": round(ret, 4), "steps": steps, "decisions": len(traces),
        "brier": round(float(np.mean([s[0] for s in scores])), 5) if scores else None,
        "log_loss": round(float(np.mean([s[1] for s in scores])), 5) if scores else None,
        "first_brier": round(scores[0][0], 5) if scores else None,
        "imagined_frames": int(sum(t.imagined_frames for t in traces)),
        "imagined_per_decision": round(sum(t.imagined_frames for t in traces) / n_dec, 3),
        "policy_images": int(sum(t.policy_images for t in traces)),
        "seconds_per_decision": round(sum(t.seconds.get("total", 0.0) for t in traces) / n_dec, 5),
        "world_model_seconds": round(sum(t.seconds.get("world_model", 0.0) for t in traces), 4),
        "policy_seconds": round(sum(t.seconds.get("policy", 0.0) for t in traces), 4),
        "wall_seconds": round(wall, 3), "answers": answers, "conditions": conditions,
    }
    if out is not None:
        out = Path(out)
        names = {q.id: list(q.answers) for q in declared(env, "questions", ()) or ()}
        # the options expected costs are listed for (actions or choices)
        body = {"key": asdict(key), "answers": answers, "answer_names": names,
                "option_names": list(task.action_names) if task is not None else [],
                "decisions": [t.to_json() for t in traces]}
        atomic_write_bytes(out / "traces" / f"{key.slug}.json", json.dumps(body).encode())
        if cfg.save_frames:
            import io

            arrays = {}
            for t in traces:
                for name, arr in (t.frames or {}).items():
                    arrays[f"step_{t.step:04d}/{name}"] = arr
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            atomic_write_bytes(out / "frames" / f"{key.slug}.npz", buf.getvalue())
    return row


def episode_conditions(info: dict[str, Any]) -> dict[str, Any]:
    """The categorical hidden facts of an episode (``info["hidden"]`` at reset: e.g. the crosswalk's ``cue``
    and ``occluder``), kept in its row for breakdowns (``summarise(rows, by=...)``). Recorded by the runner
    after the fact; planners never see them."""
    return {k: v for k, v in dict(info.get("hidden", {})).items() if isinstance(v, (bool, str, int))}


def fill_conditions(rows: Sequence[dict[str, Any]], env_kwargs: dict[str, Any] | None = None) -> None:
    """Add ``conditions`` to rows written before the runner recorded them, by resetting the env with the
    row's seed (episodes are deterministic given the seed)."""
    import gymnasium as gym

    import genex.envs  # noqa: F401

    envs: dict[str, Any] = {}
    cache: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        for r in rows:
            if "conditions" in r:
                continue
            k = (r["env"], int(r["seed"]))
            if k not in cache:
                if r["env"] not in envs:
                    envs[r["env"]] = gym.make(r["env"], **(env_kwargs or {}))
                _, info = envs[r["env"]].reset(seed=k[1])
                cache[k] = episode_conditions(info)
            r["conditions"] = cache[k]
    finally:
        for e in envs.values():
            e.close()


# ---------------------------------------------------------------------------------------------- many episodes
def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("MUJOCO_GL", "egl")


#: test-only fault injection: ``<mode>:<seed>:<marker path>``, several joined by ``,``. Read by the driver and
#: handed to every worker (a Ray worker does not see environment variables set after Ray started); ignored
#: inline. Modes, for the episodes of ``seed``:
#: ``exit``: the first attempt's worker process dies (``os._exit``) right after the episode's first real step;
#: ``exit-late``: the first attempt runs its whole episode (traces written), then dies before the row is
#: returned. The marker file, created exclusively (with the dying pid), lets the retries live.
#: ``raise``: every attempt raises (a genuine error: not retried); each appends ``<slug> <pid>`` to the marker.
FAULT_ENV = "GENEX_TEST_FAULT"


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
    for spec in (fault or "").split(","):
        if not spec:
            continue
        mode, seed, marker = spec.split(":", 2)
        if int(seed) != key.seed:
            continue
        if mode == "raise":
            with open(marker, "a") as f:
                f.write(f"{key.slug} {os.getpid()}\n")
            raise RuntimeError(f"{FAULT_ENV}: injected error in {key.slug}")
        if mode == "exit" and _first_attempt(marker):
            return run_episode(_dies_after_first_step(cfg), key, out)
        if mode == "exit-late" and _first_attempt(marker):
            run_episode(cfg, key, out)
            os._exit(1)
    return run_episode(cfg, key, out)


def load_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of ``episodes.jsonl``; a torn (partially written) last line is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("skipping a torn line in %s (an interrupted run)", path)
    return rows


def _append(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


#: how often Ray reruns an episode whose worker process died (killed, out of memory, node lost); an exception
#: raised by the episode itself is not retried: it surfaces once, as it would inline
RAY_MAX_RETRIES = 2


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ImportError("executor='ray' needs Ray: pip install 'genex[ray]'") from e
    return ray


def _check_executor(executor: str) -> None:
    if executor not in ("process", "inline", "ray"):
        raise ValueError(f"unknown executor {executor!r}; choose process, inline or ray")
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


def _folder_digest(folder: str | Path, with_fidelity: bool) -> str:
    """SHA-256 over a checkpoint folder's weights (and its ``fidelity.json`` when the planners read it)."""
    from genex.io import sha256_files

    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors")) + ([folder / "fidelity.json"] if with_fidelity else [])
    return sha256_files([f for f in files if f.exists()])


def _model_config_digest(folder: str | Path) -> str | None:
    """SHA-256 of the ``"model"`` section of a world-model folder's ``config.json`` (None without one)."""
    import hashlib

    path = Path(folder) / "config.json"
    try:
        model = json.loads(path.read_text()).get("model")
    except (OSError, ValueError):
        return None
    if model is None:
        return None
    return hashlib.sha256(json.dumps(model, sort_keys=True).encode()).hexdigest()


def _family_of(env_id: str) -> str:
    """``env_family``'s answer for a genex env id, without making the env."""
    from genex.envs import GUI_ENV_IDS

    return "gui" if env_id in GUI_ENV_IDS else "driving"


def checkpoint_digests(cfg: CompareConfig) -> dict[str, str]:
    """``{"<kind>:<family>": digest}`` of every checkpoint the planners of ``cfg`` load.

    Stored in ``run.json``: resuming a folder whose episodes came from other weights would mix two models
    in one table, so :func:`compare` refuses it.
    """
    from genex.planners import PLANNERS

    out: dict[str, str] = {}
    for env_id in cfg.envs:
        family = _family_of(env_id)
        for name in cfg.planners:
            try:
                pol, wm = _checkpoint_dirs(cfg, name, family)
            except FileNotFoundError:
                continue  # no such checkpoint: the episode itself will say so
            # one folder per (kind, family) in a config: hash each once, not once per planner that loads it
            if f"{PLANNERS[name][2]}:{family}" not in out:
                out[f"{PLANNERS[name][2]}:{family}"] = _folder_digest(pol, with_fidelity=False)
            if wm == COPY_LAST:
                out[f"world_model:{family}"] = COPY_LAST
            elif wm is not None and f"world_model:{family}" not in out:
                out[f"world_model:{family}"] = _folder_digest(wm, with_fidelity=cfg.fidelity)
                # the model config holds the sampler (steps, snap, min_changed_pixels): same weights, other
                # imagination. A key of its own, so runs recorded before it existed still resume
                sampling = _model_config_digest(wm)
                if sampling is not None:
                    out[f"world_model_config:{family}"] = sampling
    return out


def check_fidelity(cfg: CompareConfig) -> None:
    """Raise :class:`~genex.planners.calibration.StaleFidelityError` before any episode runs when a learned
    planner of ``cfg`` would read a ``fidelity.json`` measured on other world-model weights or through another
    policy (the workers would fail on every episode)."""
    from genex.planners import PLANNERS
    from genex.planners.calibration import load_fidelity

    if not cfg.fidelity:
        return
    for env_id in cfg.envs:
        family = _family_of(env_id)
        for name in cfg.planners:
            if PLANNERS[name][1] != "learned":
                continue
            try:
                pol, wm = _checkpoint_dirs(cfg, name, family)
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
    if any(PLANNERS[p][1] == "posterior" for p in cfg.planners):
        able = posterior_env_ids()
        unable = [e for e in cfg.envs if e not in able]
        if unable:
            raise ValueError(f"posterior-imagine needs an env that draws hypotheses of its hidden state; "
                             f"{', '.join(unable)} cannot. Envs that can: {', '.join(able)}")
    if cfg.decision not in ("auto", "plan", "table"):
        raise ValueError(f"decision must be auto, plan or table, got {cfg.decision!r}")
    if cfg.decision == "plan":  # the plan rule draws the same hypotheses as the posterior model
        unable = [e for e in cfg.envs if e not in posterior_env_ids()]
        if unable:
            raise ValueError(f"--decision plan needs envs that draw hypotheses of their hidden state; "
                             f"{', '.join(unable)} cannot (use --decision auto or table)")


def _check_resumable(out: Path, old: dict[str, Any], settings: dict[str, Any], checkpoints: dict[str, str]) -> None:
    """Raise ``ValueError`` when the run in ``out`` (its ``run.json`` is ``old``) used other settings or weights."""
    # settings added since that run: what the code did then (SETTINGS_BEFORE), else their defaults
    defaults = {**asdict(CompareConfig(envs=[], planners=[])), **SETTINGS_BEFORE}
    diff = sorted(k for k in settings if old.get("settings", {}).get(k, defaults[k]) != settings[k])
    if diff:
        raise ValueError(f"{out} holds a comparison with other settings ({', '.join(diff)} differ); "
                         "use another --out (or --restart-stale) to compare under new settings")
    old_ck = old.get("checkpoints") or {}
    changed = sorted(k for k in checkpoints if k in old_ck and old_ck[k] != checkpoints[k])
    if changed:
        raise ValueError(f"{out} holds episodes run with other weights or sampler ({', '.join(changed)} changed since); "
                         "resuming would mix two models in one table: use another --out (or --restart-stale)")


def _read_run_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); use another --out (or --restart-stale)") from e


def _move_aside(out: Path) -> Path:
    """Rename folder ``out`` to a free ``<out>.stale-<UTC time>[-n]`` beside it; returns the new path."""
    out = out.resolve()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    aside, n = out.with_name(f"{out.name}.stale-{stamp}"), 1
    while aside.exists():  # a second restart within the same second
        aside, n = out.with_name(f"{out.name}.stale-{stamp}-{n}"), n + 1
    out.rename(aside)
    return aside


def compare(cfg: CompareConfig, out: str | Path, workers: int | None = None, executor: str = "process",
            progress: bool = True, stale: str = "error") -> list[dict[str, Any]]:
    """Run every (env, planner, seed) of ``cfg`` not yet in ``out/episodes.jsonl``; returns all rows.

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
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("envs", "planners", "episodes", "save_frames")}
    run_path = out / "run.json"
    checkpoints = checkpoint_digests(cfg)
    check_fidelity(cfg)
    old = None
    if run_path.exists():
        try:
            old = _read_run_json(run_path)
            if stale == "restart" and old.get("checkpoints") is None:  # unknown weights made them: do not mix
                raise ValueError(f"{out} does not record the checkpoints its episodes used")
            _check_resumable(out, old, settings, checkpoints)
        except ValueError as e:  # other settings or weights, or an unreadable run.json
            if stale != "restart":
                raise
            aside = _move_aside(out)
            out.mkdir(parents=True)
            old = None
            log.warning("%s; moved it to %s and started over", str(e).split(";")[0], aside)
    if old is not None:
        old_ck = old.get("checkpoints")
        if old_ck is None:
            log.warning("%s does not record the checkpoints its episodes used; resuming assumes they are unchanged",
                        out)
        else:
            checkpoints = {**old_ck, **checkpoints}
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
            _append(path, row)
            rows.append(row)
            bar.update(1)
            bar.set_postfix_str(f"{row['planner']} {row['env'].split('/')[-1]} seed {row['seed']}")
    finally:
        results.close()  # now, not at garbage collection: stops the workers (and a Ray we started) on errors
        bar.close()
    wanted = {(k.env, k.planner, k.seed) for k in cfg.keys()}
    return [r for r in rows if (r["env"], r["planner"], int(r["seed"])) in wanted]


# ---------------------------------------------------------------------------------------------- summaries
def _ci(values: Sequence[float], rate: bool) -> tuple[float, float]:
    """Mean and 95% CI half-width (Wilson-style for rates is overkill at our n; normal approx)."""
    x = np.asarray([v for v in values if v is not None], np.float64)
    if len(x) == 0:
        return float("nan"), float("nan")
    m = float(x.mean())
    if len(x) < 2:
        return m, float("nan")
    sd = math.sqrt(m * (1 - m)) if rate else float(x.std(ddof=1))
    return m, 1.96 * sd / math.sqrt(len(x))


def _condition_keys(by: str) -> list[str]:
    return [k.strip() for k in by.split(",") if k.strip()]


def _condition(row: dict[str, Any], keys: Sequence[str]) -> str:
    vals = [str(row.get("conditions", {}).get(k, "n/a")) for k in keys]
    return vals[0] if len(keys) == 1 else ", ".join(f"{k}={v}" for k, v in zip(keys, vals))


def summarise(rows: Iterable[dict[str, Any]], by: str | None = None) -> list[dict[str, Any]]:
    """One dict per (env, planner): ``n`` and ``<metric>``/``<metric>_ci`` for every metric in :data:`METRICS`.

    ``by``: also split by the value of that hidden condition (``row["conditions"][by]``, see
    :func:`fill_conditions`), given as ``condition`` in each dict ("n/a" where the env has no such fact);
    several comma-separated conditions split by their combinations.
    """
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    keys = None if by is None else _condition_keys(by)
    for r in rows:
        cond = "" if keys is None else _condition(r, keys)
        groups.setdefault((r["env"], r["planner"], cond), []).append(r)
    out = []
    for (env, planner, cond), rs in groups.items():
        s: dict[str, Any] = {"env": env, "planner": planner, "n": len(rs)}
        if by is not None:
            s["condition"] = cond
        for key, _, kind in METRICS:
            vals = [float(r[key]) if r.get(key) is not None else None for r in rs]
            s[key], s[f"{key}_ci"] = _ci(vals, kind == "rate")
        out.append(s)
    return out


def gap_closed(summary: Sequence[dict[str, Any]], metric: str = "success", planner: str = "imagine",
               low: str = "react", high: str = "oracle-imagine") -> dict[str, float]:
    """Per env: ``(planner - low) / (high - low)`` of ``metric`` (the share of the react→oracle gap closed)."""
    by = {(s["env"], s["planner"]): s[metric] for s in summary}
    res = {}
    for env in sorted({s["env"] for s in summary}):
        if all((env, p) in by for p in (planner, low, high)):
            gap = by[(env, high)] - by[(env, low)]
            res[env] = float("nan") if abs(gap) < 1e-9 else (by[(env, planner)] - by[(env, low)]) / gap
    return res


def _common_seeds(rows: Sequence[dict[str, Any]], env: str, planners: Sequence[str]) -> set[int]:
    """The seeds of ``env`` that every one of ``planners`` ran."""
    sets = [{int(r["seed"]) for r in rows if r["env"] == env and r["planner"] == p} for p in planners]
    return set.intersection(*sets) if sets else set()


def paired_gap_closed(rows: Sequence[dict[str, Any]], metric: str = "success", planner: str = "imagine",
                      low: str = "react", high: str = "oracle-imagine") -> tuple[dict[str, float], dict[str, int]]:
    """:func:`gap_closed` on the seeds every one of the three planners ran (a fair, paired comparison)."""
    gaps, ns = {}, {}
    for env in sorted({r["env"] for r in rows}):
        common = _common_seeds(rows, env, (planner, low, high))
        if not common:
            continue
        sub = [r for r in rows if r["env"] == env and int(r["seed"]) in common and r["planner"] in (planner, low, high)]
        gaps.update(gap_closed(summarise(sub), metric, planner, low, high))
        ns[env] = len(common)
    return gaps, ns


#: the references of the gap shares: the fair upper bound first (the primary figure), then the privileged one
GAP_REFERENCES = ("posterior-imagine", "oracle-imagine")


def gap_shares(rows: Sequence[dict[str, Any]], metrics: Sequence[str] = ("success", "return"),
               low: str = "react", highs: Sequence[str] = GAP_REFERENCES) -> list[dict[str, Any]]:
    """For every (env, planner): the share of the ``low -> high`` gap of each metric it closes, per reference.

    ``react -> posterior-imagine`` (imagination as good as a perfect world model trained on video, which knows
    nothing privileged) is the gap that counts; ``react -> oracle-imagine`` (the live simulator, true hidden
    agents included) is beside it. Each share, and the gap it divides by, is computed on the seeds the planner,
    ``low`` and that reference all ran. Keys: ``env``, ``planner``, and per reference ``h`` and metric ``m``:
    ``"<m>:<h>"`` (the share, NaN without a gap), ``"<m>:<h>:gap"`` (reference minus ``low`` on those seeds),
    ``"<m>:<h>:ci"`` (the gap's paired 95% half-width, NaN under 2 seeds) and ``"<m>:<h>:n"`` (common seeds).
    """
    planners = list(dict.fromkeys(r["planner"] for r in rows))
    out = []
    for env in sorted({r["env"] for r in rows}):
        env_rows = [r for r in rows if r["env"] == env]
        for planner in planners:
            row: dict[str, Any] = {"env": env, "planner": planner}
            for high in highs:
                common = _common_seeds(env_rows, env, (planner, low, high))
                if not common:
                    continue
                paired = [r for r in env_rows if int(r["seed"]) in common and r["planner"] in (low, high)]
                for m in metrics:
                    shares, ns = paired_gap_closed(env_rows, m, planner, low, high)
                    if env not in shares:
                        continue
                    per_seed = {(r["planner"], int(r["seed"])): float(r[m]) for r in paired}
                    diff = [per_seed[(high, sd)] - per_seed[(low, sd)] for sd in sorted(common)]
                    gap, half = _mean_ci(diff)
                    row[f"{m}:{high}"], row[f"{m}:{high}:n"] = shares[env], ns[env]
                    row[f"{m}:{high}:gap"], row[f"{m}:{high}:ci"] = gap, half
            if len(row) > 2 and planner != low:
                out.append(row)
    return out


def format_gap_shares(shares: Sequence[dict[str, Any]], metrics: Sequence[str] = ("success", "return"),
                      highs: Sequence[str] = GAP_REFERENCES) -> str:
    """Markdown table of :func:`gap_shares`: one column per metric and reference, the primary one first.

    A share is printed only where the gap is resolved (its paired 95% CI excludes 0); a share of a gap within
    noise (e.g. 1 seed in 30) says nothing, so the cell shows the gap and "within noise" instead."""
    if not shares:
        return ""
    cols = [(m, h) for m in metrics for h in highs]
    head = "| env | planner | " + " | ".join(f"{m}: react → {h}" for m, h in cols) + " |"
    lines = [head, "|" + "---|" * (2 + len(cols))]
    for s in shares:
        cells = []
        for m, h in cols:
            key = f"{m}:{h}"
            if key not in s:
                cells.append("n/a")
            elif math.isnan(s[key]):
                cells.append(f"– (no gap, n={s[key + ':n']})")
            else:
                gap, half = s[key + ":gap"], s.get(key + ":ci", float("nan"))
                pts = m in ("success", "collision")
                if not math.isnan(half) and abs(gap) <= half:
                    spread = f"{100 * gap:+.0f} ± {100 * half:.0f} pts" if pts else f"{gap:+.2f} ± {half:.2f}"
                    cells.append(f"– (gap {spread}: within noise, n={s[key + ':n']})")
                else:
                    size = f"{100 * gap:+.0f} pts" if pts else f"{gap:+.2f}"
                    cells.append(f"{100 * s[key]:.0f}% (gap {size}, n={s[key + ':n']})")
        lines.append(f"| {s['env'].split('/')[-1]} | {s['planner']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean_ci(x: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% CI half-width (normal approximation; NaN half-width below 2 values)."""
    a = np.asarray(x, dtype=float)
    if a.size == 0:
        return float("nan"), float("nan")
    half = float(1.96 * a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else float("nan")
    return float(a.mean()), half


def paired_against(rows: Sequence[dict[str, Any]], baseline: str = "react") -> list[dict[str, Any]]:
    """Each planner against ``baseline`` on the seeds both ran, per env: a paired comparison.

    Per (env, planner): ``n`` common seeds; successes and irreversible errors (collisions) of each, and on how
    many seeds only one of the two errs; real steps on the seeds **both** solve (``both``): each one's mean,
    the mean paired difference (planner - baseline) with its 95% CI, and the seeds with fewer / more steps;
    ``steps_diff_all``: the same difference over every common seed (a failed episode counts its steps, i.e.
    usually the step limit). A CI that excludes 0 is what "fewer real steps" has to mean.
    """
    by: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["env"], r["planner"]), {})[int(r["seed"])] = r
    out = []
    for (env, planner), mine in sorted(by.items()):
        base = by.get((env, baseline))
        if planner == baseline or base is None:
            continue
        common = sorted(set(mine) & set(base))
        if not common:
            continue
        a, b = [mine[s] for s in common], [base[s] for s in common]
        both = [(x["steps"], y["steps"]) for x, y in zip(a, b) if x["success"] and y["success"]]
        diff, diff_ci = _mean_ci([x - y for x, y in both])
        diff_all, diff_all_ci = _mean_ci([x["steps"] - y["steps"] for x, y in zip(a, b)])
        out.append({
            "env": env, "planner": planner, "baseline": baseline, "n": len(common),
            "success": sum(bool(x["success"]) for x in a), "baseline_success": sum(bool(y["success"]) for y in b),
            "errors": sum(bool(x["collision"]) for x in a), "baseline_errors": sum(bool(y["collision"]) for y in b),
            "errors_only_planner": sum(bool(x["collision"]) and not y["collision"] for x, y in zip(a, b)),
            "errors_only_baseline": sum(bool(y["collision"]) and not x["collision"] for x, y in zip(a, b)),
            "both": len(both), "steps": _mean_ci([x for x, _ in both])[0],
            "baseline_steps": _mean_ci([y for _, y in both])[0],
            "steps_diff": diff, "steps_diff_ci": diff_ci,
            "fewer": sum(x < y for x, y in both), "more": sum(x > y for x, y in both),
            "steps_diff_all": diff_all, "steps_diff_all_ci": diff_all_ci,
        })
    return out


def format_paired(paired: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`paired_against`."""
    if not paired:
        return "(no planner shares seeds with the baseline)"
    base = paired[0]["baseline"]
    lines = [f"| env | planner | seeds | success (vs {base}) | irreversible errors (vs {base}) | errs where {base} "
             f"does not / the reverse | seeds both solve | real steps there (vs {base}) | paired difference, "
             "95% CI | fewer / more steps | difference over all seeds, 95% CI |",
             "|" + "---|" * 11]

    def num(x: float, fmt: str) -> str:
        return "–" if math.isnan(x) else format(x, fmt)

    for p in paired:
        lines.append(
            f"| {p['env'].split('/')[-1]} | {p['planner']} | {p['n']} | {p['success']} ({p['baseline_success']}) | "
            f"{p['errors']} ({p['baseline_errors']}) | {p['errors_only_planner']} / {p['errors_only_baseline']} | "
            f"{p['both']} | {num(p['steps'], '.2f')} ({num(p['baseline_steps'], '.2f')}) | "
            f"{num(p['steps_diff'], '+.2f')} ± {num(p['steps_diff_ci'], '.2f')} | {p['fewer']} / {p['more']} | "
            f"{num(p['steps_diff_all'], '+.2f')} ± {num(p['steps_diff_all_ci'], '.2f')} |")
    return "\n".join(lines)


def format_table(summary: Sequence[dict[str, Any]], planners_order: Sequence[str] | None = None) -> str:
    order = {p: i for i, p in enumerate(planners_order or [])}
    split = any("condition" in s for s in summary)
    rows = sorted(summary, key=lambda s: (s["env"], s.get("condition", ""), order.get(s["planner"], 99), s["planner"]))
    head = "| env | " + ("condition | " if split else "") + "planner | n | " + " | ".join(label for _, label, _ in METRICS) + " |"
    lines = [head, "|" + "---|" * (3 + split + len(METRICS))]
    for s in rows:
        cells = []
        for key, _, kind in METRICS:
            m, ci = s[key], s[f"{key}_ci"]
            if math.isnan(m):
                cells.append("n/a")  # no episode reported it (e.g. a foreign env without success/collision info)
            elif kind == "rate":
                cells.append(f"{100 * m:.0f}% ± {100 * ci:.0f}" if not math.isnan(ci) else f"{100 * m:.0f}%")
            else:
                prec = 3 if key in ("brier", "log_loss", "seconds_per_decision") else 1
                cells.append(f"{m:.{prec}f} ± {ci:.{prec}f}" if not math.isnan(ci) else f"{m:.{prec}f}")
        cond = f"{s['condition']} | " if split else ""
        lines.append(f"| {s['env'].split('/')[-1]} | {cond}{s['planner']} | {s['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_csv(summary: Sequence[dict[str, Any]], path: Path, keys: Sequence[str]) -> None:
    import io

    fields = list(keys) + [k for key, _, _ in METRICS for k in (key, f"{key}_ci")]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    for s in summary:
        w.writerow({k: s[k] for k in fields})
    atomic_write_bytes(path, buf.getvalue().encode())


def write_summary(rows: Sequence[dict[str, Any]], out: str | Path, planners_order: Sequence[str] | None = None,
                  plots: bool = True, by: str | None = None) -> str:
    """Write ``summary.md``/``summary.csv`` (and plots) into ``out``; returns the Markdown table.

    ``by``: split every row by that hidden condition (:func:`summarise`) and write
    ``summary_by_<by>.md``/``.csv`` instead (no plots, no gap line).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if by is not None:
        fill_conditions(rows)
        summary = summarise(rows, by=by)
        text = format_table(summary, planners_order) + "\n"
        stem = "summary_by_" + "+".join(_condition_keys(by))
        atomic_write_bytes(out / f"{stem}.md", text.encode())
        _write_csv(summary, out / f"{stem}.csv", ["env", "condition", "planner", "n"])
        return text
    summary = summarise(rows)
    table = format_table(summary, planners_order)
    text = table + "\n"
    fell_back = sorted({(r["env"], r["planner"]) for r in rows if r.get("fell_back")})
    if fell_back:
        text += ("\nNo declared task (questions, costs, probes: a genex.envs.foreign.TaskSpec, --task-spec), so these "
                 "planners fell back to the policy's own actions and imagined nothing: "
                 + ", ".join(f"{p} on {e}" for e, p in fell_back) + ".\n")
    shares = format_gap_shares(gap_shares(rows))
    if shares:
        text += ("\nShare of the gap each planner closes, on the seeds it, react and the reference all ran. "
                 "react → posterior-imagine (the simulator with hidden agents drawn from what the real frames "
                 "showed: a perfect world model that knows nothing privileged) is the gap that counts; "
                 "react → oracle-imagine (the live simulator, true hidden agents included) is beside it. A share "
                 "is shown only where the gap's paired 95% CI excludes 0.\n\n"
                 + shares + "\n")
    atomic_write_bytes(out / "summary.md", text.encode())
    _write_csv(summary, out / "summary.csv", ["env", "planner", "n"])
    if plots and summary:
        from genex.viz import plot_comparison, plot_compute

        plot_comparison(summary, out / "bars.png", planners_order)
        plot_compute(summary, out / "compute.png", planners_order)
    return text
