"""One window labelling for three measurements: ``genex.evaluation.windows.label_window`` reproduces, label for
label, the three definitions it replaced (copied below verbatim as references): fidelity's ``_kinds``
(``planners/calibration.py``), eval-world-model's ``_group`` (``genex/world_model/evaluate.py``) and the
counterfactual ``group_of``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Sequence

import numpy as np

from genex.evaluation import counterfactual
from genex.evaluation.fidelity import _kinds
from genex.evaluation.windows import HIDDEN_FACT, label_window, make_windows

# ---- the replaced definitions, verbatim -------------------------------------------------------------------------


def _old_kinds(window: tuple, facts: Sequence[str], horizon: int) -> dict[str, str]:
    ep, names, _, t = window[:4]
    future = ep.visible[t + 1:t + 1 + horizon]
    kinds = {}
    for f in facts:
        if f in names:
            j = names.index(f)
            now, later = bool(ep.visible[t, j]), bool(future[:, j].any())
            if not now:
                kinds[f] = "pos" if later else "neg"
    return kinds


def _old_group(ep, t0: int, k: int, facts: Sequence[str] | None, visible: np.ndarray | None) -> str:
    name = ep.env_id.split("/")[-1].removesuffix("-v0")
    fact = HIDDEN_FACT.get(name)
    if fact is None or facts is None or visible is None or fact not in facts:
        return ""
    col = visible[:, list(facts).index(fact)]
    ctx = col[max(0, t0 - k + 1): t0 + 1]
    if ctx.any():
        return "resolved"
    if col.any() and t0 < int(np.argmax(col)):
        return "unresolved"
    if not col.any() and t0 >= len(col) // 2:
        return "resolved"
    return ""


def _old_group_of(fut_r: np.ndarray, fut_f: np.ndarray, same_ctx: bool) -> str:
    if counterfactual.settled(fut_r, fut_f):
        return "settled"
    return "uncertain" if same_ctx else "visible"


# ---- visibility patterns: random ones and the cases that matter ----------------------------------------------------


def _visibility(rng: np.random.Generator, steps: int, facts: int) -> np.ndarray:
    """bool[steps, facts]: rare sightings, runs, never, always and seen-then-gone columns."""
    kind = rng.integers(5)
    if kind == 0:
        return rng.random((steps, facts)) < 0.15
    if kind == 1:
        v = np.zeros((steps, facts), bool)
        for j in range(facts):
            a = int(rng.integers(steps))
            v[a:a + int(rng.integers(1, 5)), j] = True
        return v
    if kind == 2:
        return np.zeros((steps, facts), bool)
    if kind == 3:
        return np.ones((steps, facts), bool)
    v = np.zeros((steps, facts), bool)
    v[1:3] = True  # seen early, gone, back near the end
    v[-2:] = rng.random(facts) < 0.5
    return v


def test_fidelity_labels_are_the_old_kinds():
    rng = np.random.default_rng(0)
    names = ["pedestrian", "ball", "oncoming_vehicle"]
    n = 0
    for _ in range(60):
        steps = int(rng.integers(6, 20))
        ep = SimpleNamespace(visible=_visibility(rng, steps, len(names)))
        for horizon in (1, 3, 8):
            for t in range(steps):
                w = (ep, names, None, t)
                facts = ["pedestrian", "ball", "absent_fact"]
                assert _kinds(w, facts, horizon) == _old_kinds(w, facts, horizon)
                n += 1
    assert n > 1000


def test_eval_world_model_groups_are_the_old_groups():
    from genex.world_model.data import EpisodeData

    rng = np.random.default_rng(1)
    facts = {"genex/OccludedCrosswalk-v0": ["ball", "pedestrian"], "genex/OccludedLeftTurn-v0": ["oncoming_vehicle"],
             "synthetic/MovingSquare-v0": []}
    seen = set()
    for _ in range(80):
        env_id = list(facts)[int(rng.integers(3))]
        steps = int(rng.integers(6, 20))
        vis = _visibility(rng, steps + 1, max(1, len(facts[env_id])))[:, :len(facts[env_id])]
        ep = EpisodeData(np.zeros((steps + 1, 2, 2, 3), np.uint8), np.zeros((steps, 1), np.float32),
                         [0] * steps, env_id, 0, {"_visible": vis})
        for k in (1, 2, 4):
            for horizon in (1, 3):
                for w in make_windows([ep], context=k, horizon=horizon, stride=1, facts=facts):
                    old = _old_group(ep, w.t0, k, facts[env_id], vis)
                    assert w.group == old, (env_id, vis[:, -1], w.t0, k)
                    seen.add(old)
        assert [w.group for w in make_windows([ep], 2, 2, 1)] == [""] * (steps - 1)  # no facts given: no groups
    assert seen == {"", "resolved", "unresolved"}


def test_counterfactual_groups_are_the_old_groups():
    rng = np.random.default_rng(2)
    seen = set()
    for _ in range(200):
        fut_r = rng.integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
        fut_f = fut_r.copy()
        changed = rng.random((3, 4, 4)) < rng.choice([0.0, 0.1, 0.3])  # 0 to ~5 pixels per step
        fut_f[changed] ^= 128
        for same_ctx in (True, False):
            old = _old_group_of(fut_r, fut_f, same_ctx)
            assert counterfactual.group_of(fut_r, fut_f, same_ctx) == old
            seen.add(old)
    assert seen == {"settled", "uncertain", "visible"}


def test_label_window_options():
    shown = np.array([0, 1, 0, 0, 0, 1, 0, 0], bool)
    assert label_window(shown, 1) == "in_view"
    assert label_window(shown, 3, horizon=2) == "comes" and label_window(shown, 2, horizon=2) == "stays"
    assert label_window(shown, 3, horizon=None, remember=True) is None  # seen at step 1, before the context
    assert label_window(shown, 3, context=3, horizon=None, remember=True) == "in_view"
    assert label_window(shown, 5, horizon=1, settle_first=True) == "stays"  # in view, but no alternative to come
    assert label_window(shown, 6, stays_from=7) is None and label_window(shown, 7, stays_from=7) == "stays"
