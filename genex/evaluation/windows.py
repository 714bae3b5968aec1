"""Evaluation windows and their labelling, once.

A *window* of a recorded episode starts at step ``t0``: its context is ``frames[t0-K+1 .. t0]`` (the reset frame
repeated before the start), its actions ``actions[t0 .. t0+T-1]`` and its real future ``frames[t0+1 .. t0+T]``
(:class:`Window`, :func:`make_windows`).

Every measurement of how well imagination can be read sorts windows by whether something is *shown* (a fact is
visible, two counterfactual replays differ) in the context and over the horizon. :func:`label_window` is that
sorting, for all of them; each caller names the outcomes its own way:

* fidelity (:mod:`genex.evaluation.fidelity`): per fact, ``"comes"`` = ``"pos"``, ``"stays"`` = ``"neg"``, a fact
  in view now is not counted (one context frame, the calibration horizon);
* the eval-world-model diversity and outcome groups (:func:`hidden_group`): ``"in_view"`` = ``"resolved"``,
  ``"comes"`` = ``"unresolved"``, ``"stays"`` (only in the second half of an episode that never shows the hidden
  agent) = ``"resolved"``, anything else ``""`` (the whole context, the rest of the episode, memory of sightings
  before the context);
* the counterfactual replays (:func:`genex.evaluation.counterfactual.group_of`): ``"stays"`` = ``"settled"`` (checked
  first: no alternative within the horizon), ``"in_view"`` = ``"visible"``, ``"comes"`` = ``"uncertain"``.

Importing this module loads neither torch nor a world model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from genex.world_model.data import EpisodeData

__all__ = ["HIDDEN_FACT", "Label", "Window", "hidden_fact", "hidden_group", "label_window", "make_windows"]

#: the fact whose (in)visibility makes a window's future uncertain, per scenario
HIDDEN_FACT = {"OccludedCrosswalk": "pedestrian", "OccludedLeftTurn": "oncoming_vehicle",
               "StoppedLeadCar": "pedestrian"}

#: ``"in_view"``: shown in the context; ``"comes"``: not in the context, shown over the horizon; ``"stays"``: in neither
Label = Literal["in_view", "comes", "stays"]


@dataclass
class Window:
    episode: int
    t0: int
    context: np.ndarray  # uint8[K,H,W,3]
    actions: list  # T raw actions
    truth: np.ndarray  # uint8[T,H,W,3]
    group: str  # "unresolved", "resolved" or ""


def label_window(shown: Sequence[bool] | np.ndarray, t0: int, *, context: int = 1, horizon: int | None = None,
                 settle_first: bool = False, remember: bool = False, stays_from: int = 0) -> Label | None:
    """How the window whose context ends at step ``t0`` sees something shown at the steps where ``shown``
    (``bool[steps]``, one per step of the episode) is true:

    * ``"in_view"``: shown in one of the ``context`` steps ending at ``t0`` (clipped at step 0);
    * ``"comes"``: not in view there, and shown at one of the steps ``t0+1 .. t0+horizon`` (``horizon=None``: to
      the end of ``shown``);
    * ``"stays"``: shown in neither.

    ``settle_first``: ``"stays"`` whenever the future does not show it, even when the context does (nothing to tell
    apart within the horizon). ``remember``: None when it was shown before the context but not in it (the window
    remembers a sighting). ``stays_from``: ``"stays"`` only from ``t0 >= stays_from`` on, None before.
    """
    shown = np.asarray(shown, dtype=bool)
    in_ctx = bool(shown[max(0, t0 - context + 1):t0 + 1].any())
    later = bool((shown[t0 + 1:] if horizon is None else shown[t0 + 1:t0 + 1 + horizon]).any())
    if settle_first and not later:
        return "stays"
    if in_ctx:
        return "in_view"
    if remember and shown[:t0 + 1].any():
        return None
    if later:
        return "comes"
    return "stays" if t0 >= stays_from else None


def hidden_fact(env_id: str) -> str | None:
    """The scenario's hidden fact (:data:`HIDDEN_FACT`) of an env id such as ``genex/OccludedCrosswalk-v0``."""
    return HIDDEN_FACT.get(env_id.split("/")[-1].removesuffix("-v0"))


def hidden_group(env_id: str, t0: int, k: int, facts: Sequence[str] | None, visible: np.ndarray | None) -> str:
    """A window's eval-world-model group: ``"unresolved"`` (the hidden agent is not in view in the ``k`` context
    frames nor before, and shows up later in the episode), ``"resolved"`` (in view in the context, or the episode
    never shows it and the window starts in its second half) or ``""`` (anything else, or no hidden agent)."""
    fact = hidden_fact(env_id)
    if fact is None or facts is None or visible is None or fact not in facts:
        return ""
    col = visible[:, list(facts).index(fact)]
    label = label_window(col, t0, context=k, horizon=None, remember=True, stays_from=len(col) // 2)
    return {"in_view": "resolved", "comes": "unresolved", "stays": "resolved"}.get(label or "", "")


def make_windows(episodes: Sequence[EpisodeData], context: int, horizon: int, stride: int,
                 facts: Mapping[str, Sequence[str]] | None = None) -> list[Window]:
    """Every ``stride`` steps of each episode, the window starting there (see the module docstring), grouped by
    :func:`hidden_group` from ``ep.meta["_visible"]`` and ``facts[env_id]``. Recorded GUI labels of the clicks
    after a window's first are dropped (:func:`~genex.world_model.actions.without_hindsight`)."""
    from genex.world_model.actions import without_hindsight

    out = []
    for i, ep in enumerate(episodes):
        n = len(ep.raw_actions)
        for t0 in range(0, n - horizon + 1, stride):
            idx = np.maximum(np.arange(t0 - context + 1, t0 + 1), 0)
            vis = ep.meta.get("_visible")
            out.append(Window(i, t0, ep.frames[idx], without_hindsight(ep.raw_actions[t0:t0 + horizon]),
                              ep.frames[t0 + 1:t0 + 1 + horizon],
                              hidden_group(ep.env_id, t0, context, (facts or {}).get(ep.env_id), vis)))
    return out
