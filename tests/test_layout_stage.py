"""The stochastic layout stage (genex.world_model.layout): it samples rare events at their rate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genex.errors import CheckpointMismatchError, CorruptCheckpointError
from genex.world_model.layout import (LayoutConfig, LayoutModel, fit_layout, layout_windows, load_layout,
                                      save_layout)

CFG = LayoutConfig(facts=("pedestrian", "car"), n_actions=3, grid=(4, 4), context=2, horizon=4, components=4,
                   channels=16, image_size=(16, 16))


def toy_windows(n: int, rate_cued: float, rate_plain: float, seed: int) -> tuple[np.ndarray, ...]:
    """Windows where a pedestrian appears (at steps 2-3, in one cell) with ``rate_cued`` when a bright cue shows in
    the last context frame and ``rate_plain`` otherwise; half the windows are cued. Returns frames, actions,
    layouts and the cue flags."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 60, (n, CFG.context, 16, 16, 3), dtype=np.uint8)
    cued = rng.random(n) < 0.5
    frames[cued, -1, 2:5, 2:5] = 255
    actions = rng.integers(0, CFG.n_actions, (n, CFG.horizon))
    appears = rng.random(n) < np.where(cued, rate_cued, rate_plain)
    layouts = np.zeros((n, CFG.horizon, len(CFG.facts), 4, 4), bool)
    layouts[appears, 2:, 0, 1, 3] = True
    layouts[:, :, 1, 3, 0] = True  # a parked car always in view: certain cells must not dilute the event
    return frames, actions, layouts, cued


def test_the_stage_recovers_an_event_rate_and_its_dependence_on_a_cue(one_torch_thread):
    torch.manual_seed(0)
    model = LayoutModel(CFG)
    f, a, y, _ = toy_windows(2000, 0.3, 0.3, seed=1)
    fit_layout(model, f, a, y, steps=400, seed=0)
    tf, ta, ty, _ = toy_windows(500, 0.3, 0.3, seed=2)
    p = model.prob_visible_within(torch.from_numpy(tf), torch.from_numpy(ta), "pedestrian", CFG.horizon)
    assert abs(float(p.mean()) - 0.3) < 0.05
    samples = model.sample(torch.from_numpy(tf[:200]), torch.from_numpy(ta[:200]), 8,
                           generator=torch.Generator().manual_seed(0))
    drawn = samples[:, :, :, 0].flatten(2).any(-1).float().mean()
    assert abs(float(drawn) - 0.3) < 0.05  # 30% of the sampled futures show it: not averaged away
    # a sampled pedestrian is a whole one, in its cell at both steps (a component, not speckle)
    shown = samples[:, :, 2:, 0, 1, 3]
    assert float((shown.all(-1) | ~shown.any(-1)).float().mean()) > 0.9
    assert bool(samples[:, :, :, 1, 3, 0].all())  # the certain car is in every sample

    model = LayoutModel(CFG)
    f, a, y, _ = toy_windows(2000, 0.9, 0.1, seed=3)
    fit_layout(model, f, a, y, steps=400, seed=0)
    tf, ta, _, cued = toy_windows(500, 0.9, 0.1, seed=4)
    p = model.prob_visible_within(torch.from_numpy(tf), torch.from_numpy(ta), "pedestrian", CFG.horizon).numpy()
    assert abs(p[cued].mean() - 0.9) < 0.07 and abs(p[~cued].mean() - 0.1) < 0.07


def test_sampling_is_reproducible_with_a_seed():
    torch.manual_seed(0)
    model = LayoutModel(CFG).eval()
    f, a, _, _ = toy_windows(4, 0.5, 0.5, seed=0)
    f, a = torch.from_numpy(f), torch.from_numpy(a)
    one = model.sample(f, a, 5, generator=torch.Generator().manual_seed(7))
    two = model.sample(f, a, 5, generator=torch.Generator().manual_seed(7))
    three = model.sample(f, a, 5, generator=torch.Generator().manual_seed(8))
    assert one.shape == (5, 4, CFG.horizon, 2, 4, 4) and one.dtype == torch.bool
    assert torch.equal(one, two) and not torch.equal(one, three)


def test_windows_align_context_actions_and_the_future_layout():
    t = 10
    frames = np.arange(t + 1, dtype=np.uint8)[:, None, None, None] * np.ones((1, 16, 16, 3), np.uint8)
    occupancy = np.zeros((t + 1, 2, 4, 4), np.uint8)
    occupancy[:, 0, 0, 0] = np.arange(t + 1) % 2  # odd frames show the pedestrian
    actions = np.arange(t) % 3
    ctx, act, lay = layout_windows(occupancy, frames, actions, context=2, horizon=4)
    assert len(ctx) == t - 4 - 2 + 2
    # window 0: context frames 0-1, actions 1-4 (from the last context frame), layouts of frames 2-5
    assert ctx[0, :, 0, 0, 0].tolist() == [0, 1] and act[0].tolist() == [1, 2, 0, 1]
    assert lay[0, :, 0, 0, 0].tolist() == [False, True, False, True]
    assert layout_windows(occupancy[:4], frames[:4], actions[:3], 2, 4)[0].shape[0] == 0


def test_a_missing_or_mismatched_layout_stage_fails_to_load_clearly(tmp_path):
    model = LayoutModel(CFG)
    with pytest.raises(CorruptCheckpointError, match="no layout stage"):
        load_layout(tmp_path)
    save_layout(model, tmp_path)
    back = load_layout(tmp_path, facts=CFG.facts, n_actions=3, grid=(4, 4))
    for k, v in model.state_dict().items():
        assert torch.equal(v, back.state_dict()[k])
    with pytest.raises(CheckpointMismatchError, match="facts"):
        load_layout(tmp_path, facts=("pedestrian", "ball"))
    with pytest.raises(CheckpointMismatchError, match="n_actions"):
        load_layout(tmp_path, n_actions=5)
    (tmp_path / "layout.safetensors").write_bytes(b"not weights")
    with pytest.raises(CorruptCheckpointError, match="cannot be loaded"):
        load_layout(tmp_path)


@pytest.mark.parametrize("bad", [dict(facts=()), dict(grid=(5, 5)), dict(horizon=0)])
def test_bad_configs_are_refused(bad):
    with pytest.raises(ValueError):
        LayoutConfig(**{**CFG.to_dict(), **bad})


def test_a_persistent_stage_keeps_what_is_in_view(one_torch_thread):
    """A road user who shows stays (here: it appears at a uniformly random step, or never, and then stays): with
    only 2 components, independent steps cannot hold that, the two-state chain can (``persistent``)."""
    cfg = LayoutConfig(**{**CFG.to_dict(), "horizon": 8, "components": 2})
    rng = np.random.default_rng(5)
    n = 2000
    frames = rng.integers(0, 60, (n, cfg.context, 16, 16, 3), dtype=np.uint8)
    actions = rng.integers(0, cfg.n_actions, (n, cfg.horizon))
    start = rng.integers(0, 2 * cfg.horizon, n)  # appears at step `start` (never when >= horizon)
    layouts = np.zeros((n, cfg.horizon, 2, 4, 4), bool)
    layouts[:, :, 0, 1, 3] = np.arange(cfg.horizon)[None] >= start[:, None]
    kept = {}
    for persistent in (False, True):
        torch.manual_seed(0)
        model = LayoutModel(LayoutConfig(**{**cfg.to_dict(), "persistent": persistent}))
        fit_layout(model, frames, actions, layouts, steps=300, seed=0)
        s = model.sample(torch.from_numpy(frames[:200]), torch.from_numpy(actions[:200]), 8,
                         generator=torch.Generator().manual_seed(0))[:, :, :, 0].flatten(3).any(-1)  # [8, 200, H]
        kept[persistent] = float(s[:, :, 1:][s[:, :, :-1]].float().mean())  # P(shows | showed the step before)
        if persistent:  # and it appears at the true rate: within 8 steps in half the futures
            assert abs(float(s.any(-1).float().mean()) - 0.5) < 0.06
            p = model.prob_visible_within(torch.from_numpy(frames[:200]), torch.from_numpy(actions[:200]),
                                          "pedestrian", cfg.horizon)
            assert abs(float(p.mean()) - 0.5) < 0.05
    assert kept[True] > 0.97 and kept[True] > kept[False] + 0.03


def test_a_stage_with_seen_weight_learns_to_see_what_is_in_view(one_torch_thread):
    """The auxiliary perception loss: the encoder learns the last context frame's occupancy (here a bright square
    in one of the 16 cells), so a stage knows what is already in view."""
    from genex.world_model.layout import context_layouts

    cfg = LayoutConfig(**{**CFG.to_dict(), "persistent": True, "seen_weight": 1.0})
    assert LayoutConfig(**cfg.to_dict()) == cfg and "seen_weight" not in CFG.to_dict()
    rng = np.random.default_rng(7)
    n = 1000
    frames = rng.integers(0, 60, (n, cfg.context, 16, 16, 3), dtype=np.uint8)
    seen = np.zeros((n, 2, 4, 4), bool)
    cell = rng.integers(0, 16, n)
    seen[np.arange(n), 0, cell // 4, cell % 4] = True
    for i in range(n):
        r, c = divmod(int(cell[i]), 4)
        frames[i, -1, 4 * r:4 * r + 4, 4 * c:4 * c + 4] = 255
    actions = rng.integers(0, cfg.n_actions, (n, cfg.horizon))
    layouts = np.repeat(seen[:, None], cfg.horizon, 1)  # it stays where it is
    torch.manual_seed(0)
    model = LayoutModel(cfg)
    with pytest.raises(ValueError, match="seen"):
        fit_layout(model, frames, actions, layouts, steps=1)
    fit_layout(model, frames, actions, layouts, steps=200, seed=0, seen=seen)
    with torch.no_grad():
        logits = model(torch.from_numpy(frames[:200]), torch.from_numpy(actions[:200]), with_seen=True)[3]
    assert float(((logits > 0).numpy() == seen[:200]).mean()) > 0.99
    # context_layouts lines up with layout_windows: window i's last context frame is frame i + context - 1
    occupancy = rng.random((10, 2, 4, 4)) < 0.3
    assert np.array_equal(context_layouts(occupancy, 2, 4), occupancy[1:1 + 5] > 0)
