"""One episode: build the planner with its checkpoints (cached per worker), run it, score it, write its traces."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from genex.io import atomic_write_bytes

from .config import COPY_LAST, CompareConfig, EpisodeKey


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
        from genex.evaluation.fidelity import load_fidelity

        key = ("fidelity", json.dumps([wm_dir, env_id, env_kwargs, policy_dir], sort_keys=True, default=str))
        if key not in self.cache:
            self.cache[key] = load_fidelity(wm_dir, env_id=env_id, env_kwargs=env_kwargs, policy_dir=policy_dir)
        return self.cache[key]


_MODELS = _Models()


def checkpoint_dirs(cfg: CompareConfig, planner: str, family: str) -> tuple[str, str | None]:
    """The policy folder a planner loads for an env family, and its world-model folder (learned ones only)."""
    from genex.planners import PLANNERS, default_checkpoint

    _, wm_kind, policy_kind = PLANNERS[planner]
    pol = cfg.policy if (cfg.policy and policy_kind == "tiny") else str(
        default_checkpoint("policy" if policy_kind == "tiny" else "reference", family))
    wm = (cfg.world_model or str(default_checkpoint("world_model", family))) if wm_kind == "learned" else None
    return pol, wm


def _build(cfg: CompareConfig, key: EpisodeKey, env: Any, models: Any = None) -> Any:
    from genex.planners import PLANNERS, env_family, make_planner

    models = _MODELS if models is None else models

    _, wm_kind, _ = PLANNERS[key.planner]
    pol_path, wm_dir = checkpoint_dirs(cfg, key.planner, env_family(env))
    policy = models.get("policy", pol_path, env)
    wm, oracle_env = None, None
    fidelity = None
    if wm_dir is not None:
        wm = models.get("world_model", wm_dir, env)
        if hasattr(wm, "bind"):
            wm.bind(env)
        # this env's own numbers where they were measured, as read by this planner's policy
        fidelity = models.fidelity(wm_dir, key.env, cfg.env_kwargs, pol_path) if cfg.fidelity else None
    elif wm_kind in ("oracle", "posterior"):  # a private simulator: the live env is never touched
        oracle_env = cfg.make_env(key.env)
    kwargs: dict[str, Any] = dict(save_frames=cfg.save_frames, seed=key.seed)
    if wm_kind is not None:
        kwargs["fidelity"] = fidelity
    return make_planner(key.planner, env, policy=policy, world_model=wm, oracle_env=oracle_env, options=cfg.options,
                        **kwargs), oracle_env


def _score_belief(belief: dict[str, list[float]], answers: dict[str, int]) -> tuple[float, float]:
    """Brier and log loss of one decision's belief, averaged over the questions."""
    from genex.belief import brier_score, log_loss

    scores = [(brier_score([p], [answers[qid]]), log_loss([p], [answers[qid]], eps=1e-6)) for qid, p in belief.items()]
    return float(np.mean([b for b, _ in scores])), float(np.mean([ll for _, ll in scores]))


def run_episode(cfg: CompareConfig, key: EpisodeKey, out: str | Path | None = None, *,
                models: Any = None) -> dict[str, Any]:
    """Run one episode; returns its JSONL row (and writes its traces/frames under ``out``).

    ``models``: where the planner's policy and world model come from (``get(kind, path, env)`` and
    ``fidelity(...)``); default: this process' cache, loading each checkpoint once. The batched executor passes
    proxies that batch the calls of several episodes."""
    import genex.envs  # noqa: F401  (registers the envs)
    from genex.envs.foreign import declared
    from genex.envs.spec import public_info

    t_start = time.perf_counter()
    env = cfg.make_env(key.env)
    oracle_env = None
    try:
        planner, oracle_env = _build(cfg, key, env, models)
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
    and ``occluder``), kept in its row for breakdowns (``summarize(rows, by=...)``). Recorded by the runner
    after the fact; planners never see them."""
    return {k: v for k, v in dict(info.get("hidden", {})).items() if isinstance(v, (bool, str, int))}
