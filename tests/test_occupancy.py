"""Occupancy maps (``info["occupancy"]``): where a detector sees each kind of road user, per cell of the frame.

They are perception of the returned frame (from the same segmentation render as the visibility labels), the
layout targets a world model may learn from (DESIGN.md's protocol); ``genex record`` keeps them.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import genex.envs  # noqa: F401  (registers the envs)
from genex.recording import iter_episodes, record_episodes


@pytest.mark.parametrize("env_id", ["genex/OccludedCrosswalk-v0", "genex/StoppedLeadCar-v0"])
def test_occupancy_counts_each_facts_pixels_where_they_are(env_id):
    env = gym.make(env_id)
    facts = env.unwrapped.facts
    _, info = env.reset(seed=1)
    seen_somewhere = set()
    for t in range(25):
        occ = info["occupancy"]
        assert occ.shape == (len(facts), 8, 8) and occ.dtype == np.uint8
        for i, f in enumerate(facts):
            # every fact's pixels are in some cell, and only a visible fact's
            assert int(occ[i].sum()) == info["visible_pixels"].get(f, 0), (t, f)
            if occ[i].any():
                seen_somewhere.add(f)
        _, _, term, trunc, info = env.step(env.unwrapped.action_names.index("cruise"))
        if term or trunc:
            break
    assert seen_somewhere  # something was in view


def test_occupancy_cells_follow_the_agent_in_the_frame():
    env = gym.make("genex/OccludedCrosswalk-v0", occupancy_cell=4, hidden_prior=0.0)
    _, info = env.reset(seed=0)
    truck_or_bus = [i for i, f in enumerate(env.unwrapped.facts) if f in ("truck", "bus")]
    occ = info["occupancy"][truck_or_bus].sum(0)
    assert occ.shape == (16, 16)
    frame_cols = np.flatnonzero(occ.sum(0))
    assert frame_cols.min() >= 8  # the parked truck is on the right half of the view (traffic keeps right)


def test_occupancy_can_be_turned_off_and_bad_cells_are_refused():
    env = gym.make("genex/OccludedCrosswalk-v0", occupancy_cell=0)
    _, info = env.reset(seed=0)
    assert "occupancy" not in info
    _, info = gym.make("genex/OccludedCrosswalk-v0", visibility_labels=False).reset(seed=0)
    assert "occupancy" not in info  # no segmentation render, no maps
    _, info = gym.make("genex/OccludedCrosswalk-v0", occupancy_cell=16).reset(seed=0)
    assert info["occupancy"].dtype == np.uint16  # a 16x16 cell holds up to 256 pixels
    for bad in (3, -1, 2.0):
        with pytest.raises(ValueError, match="occupancy_cell"):
            gym.make("genex/OccludedCrosswalk-v0", occupancy_cell=bad)


def test_recordings_keep_the_occupancy_maps_aligned_with_the_frames(tmp_path):
    record_episodes("genex/OccludedCrosswalk-v0", tmp_path, 2, driver="cautious", seed=0, progress=False)
    for ep in iter_episodes(tmp_path):
        assert ep.occupancy is not None and ep.occupancy.shape[:2] == (len(ep.frames), ep.visible.shape[1])
        np.testing.assert_array_equal(ep.occupancy.reshape(len(ep.frames), ep.visible.shape[1], -1).sum(-1) >= 3,
                                      ep.visible)  # min_visible_pixels 3: the same perception as the labels
