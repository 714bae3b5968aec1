"""How far to believe imagination: the *fidelity* of a world model + policy pair, measured on held-out video.

An imagined future that shows no pedestrian is evidence against one only if the
world model would have shown one that was coming. So, for each probed fact,
on held-out recorded episodes (never seen in training):

* **recall**: over windows where the fact is *not* visible in the last context
  frame but *becomes* visible in the real future within ``horizon`` steps (under
  the recorded actions), the share of imagined samples in which the policy sees it
  (``P(visible) > 0.5`` in any imagined frame);
* **false alarm**: over windows where the fact stays out of view for the whole
  real future, the share of imagined samples in which the policy sees it anyway.

:class:`~genex.planners.ImaginePlanner` (``fidelity=...``) then reads imagined
frames through probes whose detect rate is shrunk towards their false-alarm
rate by the recall: ``detect' = fa' + recall * (detect - fa')`` with
``fa' = max(fa, false alarm)``; with ``recall = 0`` imagination carries no
evidence at all, and the planner falls back to what it sees for real. Since the
rates are rates of the event ``P(visible) > 0.5``, the planner feeds them that
event, not P itself (``imagined_reading="hard"``, the default).
The oracle world model needs no calibration (recall 1 by construction).

``genex measure-fidelity`` writes the result as ``fidelity.json`` next to
the world-model checkpoint, where ``genex compare`` picks it up: pooled over all
recordings (``facts``) and per env (``by_env``). A planner reads its own env's
numbers where they were measured: one model can know a fact in one app (the
settings a tab's name holds) and not in another that shares the fact's name
(the files a folder was dealt at random).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from genex.envs.spec import Probe

from .windows import label_window

__all__ = ["measure_fidelity", "choose_windows", "pool_fidelity", "fidelity_key", "apply_fidelity", "load_fidelity", "weights_sha256",
           "policy_sha256", "StaleFidelityError", "FIDELITY_FILE", "SEEN_P"]

FIDELITY_FILE = "fidelity.json"
#: an imagined sample shows a fact when the policy's ``P(visible)`` exceeds this: the event whose recall and
#: false-alarm rates :func:`measure_fidelity` counts, and the one the imagining planners read them for
SEEN_P = 0.5
log = logging.getLogger(__name__)


def apply_fidelity(probes: Sequence[Probe], fidelity: Mapping[str, Mapping[str, float]] | None) -> tuple[Probe, ...]:
    """The probes to read *imagined* frames with (see the module docstring); unknown facts are dropped."""
    if fidelity is None:
        return tuple(probes)
    out = []
    for p in probes:
        f = fidelity.get(p.fact)
        if f is None:
            continue  # never measured: no evidence from imagination about this fact
        fa = max(p.false_alarm, float(f.get("false_alarm", 0.0)))
        detect = fa + float(f.get("recall", 0.0)) * (p.detect - fa)
        if detect - fa > 1e-3:
            out.append(replace(p, detect=min(detect, 1.0), false_alarm=fa))
    return tuple(out)


class StaleFidelityError(ValueError):
    """``fidelity.json`` was measured on other weights than the checkpoint's, or through another policy."""


def weights_sha256(world_model_dir: str | Path) -> str | None:
    """The SHA-256 of a checkpoint's weights, as its ``config.json`` records it (None if it records none)."""
    path = Path(world_model_dir) / "config.json"
    return json.loads(path.read_text()).get("sha256") if path.exists() else None


def policy_sha256(policy_dir: str | Path) -> str | None:
    """The SHA-256 of a policy checkpoint folder's weights (``*.safetensors``; None if it has none).

    One weights file: that file's SHA-256 (what ``sha256sum`` prints); several: the SHA-256 of their
    names and hashes in name order.
    """
    from genex.io import sha256_file, sha256_files

    files = sorted(Path(policy_dir).glob("*.safetensors"))
    if len(files) <= 1:
        return sha256_file(files[0]) if files else None
    return sha256_files(files)


def load_fidelity(world_model_dir: str | Path | None, env_id: str | None = None,
                  env_kwargs: Mapping[str, Any] | None = None,
                  policy_dir: str | Path | None = None) -> dict[str, dict[str, float]] | None:
    """``fidelity.json`` of a world-model checkpoint folder, or None if it has none.

    With ``env_id`` (and the env's options), the numbers measured on that env's recordings, if the file has
    them (``by_env``); otherwise the pooled ones, with a warning when other envs were measured on their own.

    Raises :class:`StaleFidelityError` when the file names other weights than the checkpoint's (retrained
    weights copied over an old folder), or, given the ``policy_dir`` that will read the imagined frames,
    another policy's weights than the one it was measured through: recall and false alarm are properties of
    the pair, and stale numbers would silently switch imagination on or off. (Files written before the
    policy's hash was recorded are not checked against it.)
    """
    if world_model_dir is None:
        return None
    path = Path(world_model_dir) / FIDELITY_FILE
    if not path.exists():
        return None
    body = json.loads(path.read_text())
    measured, current = body.get("world_model_sha256"), weights_sha256(world_model_dir)
    if measured is not None and current is not None and measured != current:
        raise StaleFidelityError(
            f"{path} was measured on weights {measured[:12]}..., but {world_model_dir} holds {current[:12]}...; "
            f"re-run `genex measure-fidelity --world-model {world_model_dir} ...` (its command is in the "
            "file), or pass --no-fidelity to take imagination at face value")
    measured_policy = body.get("policy_sha256")
    if policy_dir is not None and measured_policy is not None:
        reader = policy_sha256(policy_dir)
        if reader is not None and reader != measured_policy:
            raise StaleFidelityError(
                f"{path} was measured through the policy weights {measured_policy[:12]}... ({body.get('policy')}), "
                f"but the planner reads imagined frames with {policy_dir} ({reader[:12]}...); re-run `genex "
                f"measure-fidelity --world-model {world_model_dir} --policy {policy_dir} ...` (the file holds "
                "the command), or pass --no-fidelity to take imagination at face value")
    by_env = body.get("by_env", {})
    key = fidelity_key(env_id, env_kwargs) if env_id is not None else None
    if key in by_env:
        return dict(by_env[key])  # this env's own numbers only: a fact it never measured carries no evidence
    if by_env and env_id is not None:
        log.warning("%s has no fidelity measured on %s; reading the numbers pooled over %s", path, key, sorted(by_env))
    return body["facts"]


def fidelity_key(env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> str:
    """The ``by_env`` key of an env: its id, plus its options when it has any (another layout is another env)."""
    return env_id if not env_kwargs else f"{env_id} {json.dumps(dict(env_kwargs), sort_keys=True)}"


def _kinds(window: tuple, facts: Sequence[str], horizon: int) -> dict[str, str]:
    """Per fact: "pos" (comes into view within the horizon), "neg" (stays out of view), or absent (in view in the
    window's last context frame): :func:`~genex.evaluation.windows.label_window` with one context frame."""
    ep, names, _, t = window[:4]
    kinds = {}
    for f in facts:
        if f in names:
            label = label_window(ep.visible[:, names.index(f)], t, context=1, horizon=horizon)
            if label != "in_view":
                kinds[f] = "pos" if label == "comes" else "neg"
    return kinds


def choose_windows(kinds: Sequence[Mapping[str, str]], max_windows: int, seed: int) -> list[int]:
    """The windows :func:`measure_fidelity` reads, in order, from each window's ``{fact: "pos" | "neg"}``: every
    window where a fact comes into view (rare, and what matters; up to half of ``max_windows``), then windows
    where the facts stay out of view to fill, each drawn at random with ``seed``."""
    rng = np.random.default_rng(seed)
    pos = [i for i, k in enumerate(kinds) if "pos" in k.values()]
    neg = [i for i, k in enumerate(kinds) if k and "pos" not in k.values()]
    pos = list(rng.permutation(pos)[:max(1, max_windows // 2)]) if pos else []
    neg = list(rng.permutation(neg)[:max(0, max_windows - len(pos))]) if neg else []
    return sorted(pos + neg)


def measure_fidelity(world_model: Any, policy: Any, data_dirs: Sequence[str | Path], facts: Sequence[str],
                     horizon: int = 8, samples: int = 4, context: int = 4, stride: int = 2,
                     max_windows: int = 400, seed: int = 0, progress: bool = True,
                     by_env: bool = False) -> dict[str, Any]:
    """Recall and false-alarm rate of imagined facts per fact; see the module docstring.

    Returns ``{fact: {"recall", "false_alarm", "positives", "negatives"}}`` pooled over ``data_dirs``, or with
    ``by_env`` the same per env (:func:`fidelity_key` of the recordings' env id and options), ``{key: {fact:
    ...}}`` (facts an env never showed come or stay away are left out of its entry). Recorded GUI labels of
    the clicks after a window's first are dropped (:func:`~genex.world_model.actions.without_hindsight`).
    """
    import gymnasium as gym
    from tqdm.auto import tqdm

    import genex.envs  # noqa: F401
    from genex.policy.data import fact_question
    from genex.policy.protocol import PolicyQuestion, TaggedImage
    from genex.recording import iter_episodes, read_manifest
    from genex.world_model.actions import without_hindsight
    from genex.world_model.data import require_action_labels

    cfg = getattr(world_model, "cfg", None)  # a diffusion model's config (click_text needs labelled recordings)

    stats: dict[str, dict[str, dict[str, list[float]]]] = {}  # env id -> fact -> kind -> per-window rates
    windows = []
    for d in data_dirs:
        m = read_manifest(d)
        env = gym.make(m.env_id, **m.env_kwargs)
        prompt = getattr(env.unwrapped, "instruction", "")
        env.close()
        names = list(m.facts)  # the columns of Episode.visible
        for ep in iter_episodes(d):
            if cfg is not None:
                require_action_labels(cfg, ep, d)
            # driving actions are ints, GUI actions click/type dicts: the world model encodes either
            acts = [int(a) if isinstance(a, (int, np.integer)) else a for a in ep.actions]
            instruction = str(ep.meta.get("instruction") or prompt)  # GUI instructions differ per episode
            for t in range(context - 1, len(acts) - horizon + 1, stride):
                windows.append((ep, names, acts, t, instruction, fidelity_key(m.env_id, m.env_kwargs)))
    labelled = [(w, _kinds(w, facts, horizon)) for w in windows]
    chosen = [labelled[i] for i in choose_windows([k for _, k in labelled], max_windows, seed)]
    questions = [PolicyQuestion(f, fact_question(f), ("yes", "no")) for f in facts]
    for i, ((ep, names, acts, t, prompt, env_id), kinds) in enumerate(tqdm(chosen, disable=not progress,
                                                                            desc="fidelity")):
        ctx = ep.frames[t - context + 1:t + 1]
        frames = world_model.imagine(ctx, without_hindsight(acts[t:t + horizon]), num_samples=samples,
                                     seed=seed + i)  # uint8[S, T, H, W, 3]
        flat = frames.reshape((-1,) + frames.shape[2:])
        r = policy.answer([TaggedImage(np.ascontiguousarray(x), step=t + 1, imagined=True) for x in flat], prompt,
                          questions)
        for f, kind in kinds.items():
            seen = (r.per_image[f][:, 0].reshape(samples, -1) > SEEN_P).any(axis=1)
            stats.setdefault(env_id, {}).setdefault(f, {"pos": [], "neg": []})[kind].append(float(seen.mean()))
    per_env = {e: {f: _rates(s) for f, s in per.items()} for e, per in stats.items()}
    return per_env if by_env else pool_fidelity(per_env, facts)


def pool_fidelity(per_env: Mapping[str, Mapping[str, Mapping[str, float]]],
                  facts: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per-env fidelity pooled over envs: each rate weighted by its number of windows (as if measured at once)."""
    out = {}
    for f in facts:
        rows = [per[f] for per in per_env.values() if f in per]
        pos, neg = sum(r["positives"] for r in rows), sum(r["negatives"] for r in rows)
        out[f] = {"recall": sum(r["recall"] * r["positives"] for r in rows) / pos if pos else 0.0,
                  "false_alarm": sum(r["false_alarm"] * r["negatives"] for r in rows) / neg if neg else 1.0,
                  "positives": pos, "negatives": neg}
    return out


def _rates(s: Mapping[str, list[float]]) -> dict[str, float]:
    """Recall and false alarm from per-window shares (no positives: recall 0; no negatives: false alarm 1)."""
    return {"recall": float(np.mean(s["pos"])) if s["pos"] else 0.0,
            "false_alarm": float(np.mean(s["neg"])) if s["neg"] else 1.0,
            "positives": len(s["pos"]), "negatives": len(s["neg"])}
