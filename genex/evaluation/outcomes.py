"""Outcome tests: does an imagined future show the agent that really comes?

:func:`agent_sightings` asks a policy whether a fact shows in some frame of each imagined sample of a window and
of its real future; :func:`outcome_agreement` turns that into the per-group share of samples showing the hidden
agent, the samples' outcome disagreement ``2 p (1 - p) S / (S - 1)`` and the real futures' share, as
``genex eval-world-model --policy`` reports them (windows and groups: :mod:`genex.evaluation.windows`).

Importing this module loads neither torch nor a world model.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .windows import HIDDEN_FACT, Window

__all__ = ["agent_sightings", "outcome_agreement"]


def agent_sightings(samples: np.ndarray, window: Window, fact: str, policy: Any, prompt: str) -> tuple[np.ndarray, bool]:
    """Does ``policy`` see ``fact`` in some frame? ``(bool[S] per imagined sample, bool for the real future)``.

    ``samples`` is one window's imagined futures, ``uint8[S, T, H, W, 3]``; the real future is ``window.truth``.
    A frame shows the fact when the policy's P(yes) is above 0.5.
    """
    from genex.policy.data import fact_question
    from genex.policy.protocol import PolicyQuestion, TaggedImage

    question = [PolicyQuestion(fact, fact_question(fact), ("yes", "no"))]
    t = len(window.truth)

    def shows(frames: np.ndarray, imagined: bool) -> np.ndarray:  # bool[len(frames)], sample-major frames
        r = policy.answer([TaggedImage(np.ascontiguousarray(x), step=window.t0 + 1 + j % t, imagined=imagined,
                                       sample=j // t) for j, x in enumerate(frames)], prompt, question)
        return np.asarray(r.per_image[fact])[:, 0] > 0.5

    seen = shows(samples.reshape(-1, *samples.shape[2:]), True).reshape(len(samples), -1).any(1)
    return seen, bool(shows(window.truth, False).any())


def outcome_agreement(pred: np.ndarray, windows: Sequence[Window], env_ids: Sequence[str], policy: Any,
                      prompts: Mapping[str, str]) -> dict[str, Any]:
    """Do the imagined futures agree on whether the hidden agent shows up? (see :mod:`genex.world_model.evaluate`, "outcome")

    ``pred`` is ``uint8[N, S, T, H, W, 3]`` (``S >= 2``), ``env_ids[i]`` the env of ``windows[i]``, ``policy``
    any :class:`~genex.policy.protocol.Policy` and ``prompts`` its instruction per env id. Windows without a
    group are skipped. Returns, per group ``g``: ``outcome_seen_g`` (mean share of samples showing the agent),
    ``outcome_disagreement_g`` (mean chance that two samples differ) and ``outcome_split_g`` (share of
    windows whose samples do not all agree).
    """
    n, s = pred.shape[:2]
    if s < 2:
        raise ValueError(f"outcome agreement needs at least 2 samples per window, got {s}")
    if len(windows) != n or len(env_ids) != n:
        raise ValueError(f"{n} imagined windows, {len(windows)} windows and {len(env_ids)} env ids")
    share = {}
    for i, w in enumerate(windows):
        if not w.group:
            continue
        fact = HIDDEN_FACT[env_ids[i].split("/")[-1].removesuffix("-v0")]
        seen, real = agent_sightings(pred[i], w, fact, policy, prompts[env_ids[i]])
        share.setdefault(w.group, []).append((float(seen.mean()), float(real)))
    out: dict[str, Any] = {"outcome_samples": int(s)}
    for g, v in share.items():
        p, real = np.array(v).T
        out[f"outcome_seen_real_{g}"] = float(real.mean())
        disagree = 2 * p * (1 - p) * s / (s - 1)
        out[f"outcome_seen_{g}"] = float(p.mean())
        out[f"outcome_disagreement_{g}"] = float(disagree.mean())
        out[f"outcome_split_{g}"] = float((disagree > 0).mean())
        out[f"windows_{g}"] = len(v)
    return out
