"""The run folder: ``episodes.jsonl`` (appended, fsync'd, torn tails skipped), ``run.json`` (settings and the
digests of the checkpoints used) and what may resume into it."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .config import COPY_LAST, CompareConfig, EpisodeKey
from .episode import checkpoint_dirs

log = logging.getLogger(__name__)


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


def append_row(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _folder_digest(folder: str | Path, with_fidelity: bool) -> str:
    """SHA-256 over a checkpoint folder's weights (and its ``fidelity.json`` when the planners read it)."""
    from genex.io import sha256_files

    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors")) + ([folder / "fidelity.json"] if with_fidelity else [])
    return sha256_files([f for f in files if f.exists()])


def sampling_config_digest(folder: str | Path) -> str | None:
    """SHA-256 of what a world-model folder's imagination samples with: the ``"model"`` and ``"sampler"`` sections
    of its ``config.json``, merged into one flat object (None without a config or a ``"model"`` section).

    A checkpoint saved before the sampler split has no ``"sampler"`` section (its ``"model"`` section holds the
    sampling fields), so its digest is the one recorded in runs before the split: they still resume.
    """
    import hashlib

    path = Path(folder) / "config.json"
    try:
        meta = json.loads(path.read_text())
        model, sampler = meta.get("model"), meta.get("sampler") or {}
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(model, dict) or not isinstance(sampler, dict):
        return None
    return hashlib.sha256(json.dumps({**model, **sampler}, sort_keys=True).encode()).hexdigest()


def family_of(env_id: str) -> str:
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
        family = family_of(env_id)
        for name in cfg.planners:
            try:
                pol, wm = checkpoint_dirs(cfg, name, family)
            except FileNotFoundError:
                continue  # no such checkpoint: the episode itself will say so
            # one folder per (kind, family) in a config: hash each once, not once per planner that loads it
            if f"{PLANNERS[name][2]}:{family}" not in out:
                out[f"{PLANNERS[name][2]}:{family}"] = _folder_digest(pol, with_fidelity=False)
            if wm == COPY_LAST:
                out[f"world_model:{family}"] = COPY_LAST
            elif wm is not None and f"world_model:{family}" not in out:
                out[f"world_model:{family}"] = _folder_digest(wm, with_fidelity=cfg.fidelity)
                # the sampler config (steps, snap, min_changed_pixels) with the model config: same weights, other
                # imagination. A key of its own, so runs recorded before it existed still resume
                sampling = sampling_config_digest(wm)
                if sampling is not None:
                    out[f"world_model_config:{family}"] = sampling
    return out


def check_resumable(out: Path, old: dict[str, Any], settings: dict[str, Any], checkpoints: dict[str, str]) -> None:
    """Raise ``ValueError`` when the run in ``out`` (its ``run.json`` is ``old``) used other settings or weights."""
    # a setting (or planner option) added to genex after that run started takes its default (what the run did is
    # unknown otherwise); the planner options are compared one by one, named options.<name>
    defaults = asdict(CompareConfig(envs=[], planners=[]))
    recorded = dict(old.get("settings", {}))
    if "options" not in recorded and any(k in recorded for k in _FLAT_OPTIONS):
        raise ValueError(f"{out} holds a comparison written by an older genex (planner options recorded as "
                         "separate settings); use another --out (or --restart-stale)")
    recorded_options = {**defaults["options"], **recorded.get("options", {})}
    diff = sorted([k for k in settings if k != "options" and recorded.get(k, defaults[k]) != settings[k]]
                  + [f"options.{k}" for k, v in settings.get("options", {}).items() if recorded_options.get(k) != v])
    if diff:
        raise ValueError(f"{out} holds a comparison with other settings ({', '.join(diff)} differ); "
                         "use another --out (or --restart-stale) to compare under new settings")
    old_ck = old.get("checkpoints") or {}
    changed = sorted(k for k in checkpoints if k in old_ck and old_ck[k] != checkpoints[k])
    if changed:
        raise ValueError(f"{out} holds episodes run with other weights or sampler ({', '.join(changed)} changed since); "
                         "resuming would mix two models in one table: use another --out (or --restart-stale)")


#: settings of a run.json from before the planner options became one mapping (``options``): such runs are refused
_FLAT_OPTIONS = ("samples", "horizon", "trust", "imagine_every", "imagined_reading", "memory", "decision")


#: the fields of a row that say how an episode went (not how long it took)
OUTCOME_FIELDS = ("success", "collision", "steps", "return", "decisions")


def runs_differ(a: str | Path, b: str | Path) -> dict[str, Any]:
    """The episodes two run folders both hold whose outcome (:data:`OUTCOME_FIELDS`) or whose traces' decisions
    differ: the check that a setting which should not matter (e.g. the batched executor's ``B``) did not."""
    a, b = Path(a), Path(b)
    ra = {(r["env"], r["planner"], int(r["seed"])): r for r in load_rows(a / "episodes.jsonl")}
    rb = {(r["env"], r["planner"], int(r["seed"])): r for r in load_rows(b / "episodes.jsonl")}
    keys = sorted(set(ra) & set(rb))

    def decisions(folder: Path, key: tuple[str, str, int]) -> list[int]:
        trace = json.loads((folder / "traces" / f"{EpisodeKey(*key).slug}.json").read_text())
        return [d["decision"] for d in trace["decisions"]]

    outcome = [k for k in keys if any(ra[k].get(f) != rb[k].get(f) for f in OUTCOME_FIELDS)]
    decided = [k for k in keys if decisions(a, k) != decisions(b, k)]
    return {"episodes": len(keys), "outcome_differs": len(outcome), "decisions_differ": len(decided),
            "share_outcome": round(len(outcome) / max(1, len(keys)), 4),
            "share_decisions": round(len(decided) / max(1, len(keys)), 4),
            "which": [f"{k[0].split('/')[-1]} seed {k[2]}" for k in sorted(set(outcome) | set(decided))]}


def read_run_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); use another --out (or --restart-stale)") from e


def move_aside(out: Path) -> Path:
    """Rename folder ``out`` to a free ``<out>.stale-<UTC time>[-n]`` beside it; returns the new path."""
    out = out.resolve()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    aside, n = out.with_name(f"{out.name}.stale-{stamp}"), 1
    while aside.exists():  # a second restart within the same second
        aside, n = out.with_name(f"{out.name}.stale-{stamp}-{n}"), n + 1
    out.rename(aside)
    return aside
