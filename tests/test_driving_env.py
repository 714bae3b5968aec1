"""Driving envs: Gymnasium API conformance, determinism, vector envs, input validation, snapshots."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import genex.envs
import genex.envs.driving.env
from genex.envs import SnapshotMismatchError
from genex.envs.driving.scenarios import SCENARIOS

IDS = genex.envs.DRIVING_ENV_IDS


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_passes(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=False)
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_frames(env_id):
    def run(seed):
        env = gym.make(env_id)
        obs, info = env.reset(seed=seed)
        frames, rewards = [obs["image"]], []
        rng = np.random.default_rng(123)
        for _ in range(12):
            obs, r, term, trunc, info = env.step(int(rng.integers(env.action_space.n)))
            frames.append(obs["image"])
            rewards.append(r)
            if term or trunc:
                break
        env.close()
        return np.stack(frames), rewards, info["hidden"]

    a, b, c = run(7), run(7), run(8)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1] and a[2] == b[2]
    assert not (a[0].shape == c[0].shape and np.array_equal(a[0], c[0])), "different seeds should differ"


@pytest.mark.parametrize("mode,kwargs", [("sync", {}), ("async", {"context": "spawn"})])
def test_vector_envs(mode, kwargs):
    envs = gym.make_vec(IDS[0], num_envs=2, vectorization_mode=mode, vector_kwargs=kwargs)
    try:
        obs, info = envs.reset(seed=[1, 2])
        assert obs["image"].shape == (2, 64, 64, 3) and obs["image"].dtype == np.uint8
        for _ in range(3):
            obs, rew, term, trunc, info = envs.step(np.array([1, 3]))
        assert rew.shape == (2,)
        assert tuple(obs["text"]) == (genex.envs.driving.env.INSTRUCTIONS["OccludedCrosswalk"],) * 2
        single = gym.make(IDS[0])
        o, _ = single.reset(seed=1)
        np.testing.assert_array_equal(envs.reset(seed=[1, 2])[0]["image"][0], o["image"])
    finally:
        envs.close()


def test_config_options_shape_the_observation():
    env = gym.make(IDS[1], width=48, height=32, panorama=3)
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (32, 144, 3)
    assert env.observation_space["image"].shape == (32, 144, 3)
    assert set(obs) == {"image", "text", "speed"}
    assert "car ahead" in obs["text"]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"width": 0}, "width"),
        ({"height": -4}, "height"),
        ({"panorama": 0}, "panorama"),
        ({"max_steps": -1}, "max_steps"),
        ({"min_visible_pixels": 0}, "min_visible_pixels"),
        ({"cue_prob": 1.5}, "cue_prob"),
        ({"hidden_prior": 1.2}, "hidden_prior"),
        ({"fovy": 0}, "fovy"),
        ({"weather": "rain"}, "unknown option"),
        ({"render_view": "side"}, "render_view"),
        ({"max_steps": True}, "max_steps"),
        ({"visibility_labels": "no"}, "visibility_labels"),
        ({"hidden_prior": "0.5"}, "hidden_prior"),
        ({"width": 64.5}, "width"),
    ],
)
def test_bad_config_gives_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gym.make(IDS[0], **kwargs)


def test_numpy_scalar_prior_is_accepted():
    env = gym.make(IDS[0], hidden_prior=np.float32(1.0))
    assert env.reset(seed=0)[1]["hidden"]["pedestrian_crossing"]


def test_panorama_cameras_tile_the_horizontal_field_of_view():
    """Wide cameras (width > height) are spaced by their horizontal FOV: neighbours neither overlap nor gap."""
    env = gym.make(IDS[1], width=48, height=32, panorama=3).unwrapped
    env.reset(seed=0)
    d = env.scene.data
    yaws = [np.arctan2(-d.cam_xmat[c].reshape(3, 3)[1, 2], -d.cam_xmat[c].reshape(3, 3)[0, 2]) for c in env.scene.camera_ids]
    hfov = 2 * np.arctan(np.tan(np.radians(70.0) / 2) * 48 / 32)
    np.testing.assert_allclose(np.diff(yaws), [-hfov, -hfov], atol=1e-3)


def test_stopped_lead_car_prior_needs_three_probabilities():
    with pytest.raises(ValueError, match="3 answers"):
        gym.make("genex/StoppedLeadCar-v0", hidden_prior=0.5)
    env = gym.make("genex/StoppedLeadCar-v0", hidden_prior=(0.0, 0.0, 1.0))
    for seed in range(3):
        assert env.reset(seed=seed)[1]["hidden"]["cause"] == "breakdown"


def test_unknown_scenario_is_rejected():
    from genex.envs.driving.env import DrivingEnv

    with pytest.raises(ValueError, match="unknown scenario"):
        DrivingEnv("Roundabout")


@pytest.mark.parametrize("action", [-1, 5, 99, 1.5, "brake", None])
def test_action_outside_space_is_rejected(action):
    env = gym.make(IDS[0])  # 5 actions
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside the action space"):
        env.unwrapped.step(action)


def test_step_before_reset_and_after_end():
    env = gym.make(IDS[1]).unwrapped
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    for _ in range(12):  # accelerate into the stopped van
        obs, r, term, trunc, info = env.step(env.action_names.index("accelerate"))
        if term:
            break
    assert term and info["collision"] and info["collisions"] == 1 and r < -9
    with pytest.raises(RuntimeError, match="ended"):
        env.step(0)


@pytest.mark.parametrize("env_id", IDS)
def test_snapshot_restore_round_trip(env_id):
    env = gym.make(env_id).unwrapped
    env.reset(seed=3)
    for a in (0, 1, 2):
        env.step(a)
    snap = env.snapshot()
    after = [env.step(a)[0]["image"] for a in (3, 1, 0)]
    obs, info = env.restore(snap)
    assert info["t"] == 3
    again = [env.step(a)[0]["image"] for a in (3, 1, 0)]
    for x, y in zip(after, again):
        np.testing.assert_array_equal(x, y)
    # snapshots are copies: stepping after capture does not change them
    obs2, _ = env.restore(snap)
    np.testing.assert_array_equal(obs["image"], obs2["image"])


def test_restore_from_another_scenario_or_config_fails():
    a = gym.make(IDS[0]).unwrapped
    b = gym.make(IDS[1]).unwrapped
    c = gym.make(IDS[0], max_steps=10).unwrapped
    a.reset(seed=0)
    b.reset(seed=0)
    c.reset(seed=0)
    with pytest.raises(SnapshotMismatchError, match="OccludedCrosswalk"):
        b.restore(a.snapshot())
    with pytest.raises(SnapshotMismatchError, match="config"):
        c.restore(a.snapshot())
    with pytest.raises(TypeError):
        a.restore({"state": 1})


def test_restore_into_an_env_that_only_renders_differently():
    """An oracle may render at another size or without labels: the simulated world is the same."""
    live = gym.make(IDS[0]).unwrapped
    oracle = gym.make(IDS[0], width=32, height=32, visibility_labels=False).unwrapped
    live.reset(seed=4)
    oracle.reset(seed=99)
    for a in (1, 3, 3):
        live.step(a)
    _, info = oracle.restore(live.snapshot())
    assert info["t"] == 3 and info["hidden"] == live.snapshot().state["layout"].hidden
    o1, *_ = oracle.step(2)
    l1, *_ = live.step(2)
    assert o1["image"].shape == (32, 32, 3)
    np.testing.assert_allclose(o1["speed"], l1["speed"])


@pytest.mark.parametrize("env_id", IDS)
def test_questions_costs_and_hidden_info(env_id):
    env = gym.make(env_id)
    u = env.unwrapped
    _, info = env.reset(seed=0)
    for q in u.questions:
        assert q.id in info["answers"]
        assert 0 <= info["answers"][q.id] < len(q.answers)
        assert u.action_costs[q.id].shape == (len(u.action_names), len(q.answers))
        # the best action must depend on the answer, or the question would not matter
        best = u.action_costs[q.id].argmin(axis=0)
        assert len(set(best.tolist())) > 1
    assert set(info["visible"]) == set(u.facts)
    assert {"hidden", "answers", "visible", "collision", "success", "collisions", "ego", "t"} <= set(info)


def test_priors_match_documentation():
    """Empirical frequency of the hidden agent over 400 resets is near the documented prior."""
    env = gym.make("genex/OccludedCrosswalk-v0", visibility_labels=False)
    hits = [env.reset(seed=s)[1]["hidden"]["pedestrian_crossing"] for s in range(400)]
    assert abs(np.mean(hits) - SCENARIOS["OccludedCrosswalk"].default_prior[0]) < 0.06


def test_render_rgb_array():
    env = gym.make(IDS[2], render_mode="rgb_array", render_size=96)
    env.reset(seed=0)
    view = env.render()
    assert view.shape == (96, 96, 3) and view.dtype == np.uint8 and view.std() > 5
    env.close()


def _run_experiment(name: str, *args: str):
    """Run ``experiments/<name>/run.py`` with ``args`` in a fresh interpreter, as its docstring's command does."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "experiments" / name / "run.py"
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)


def test_counterfactual_replay_flips_only_the_pedestrian():
    """``genex.evaluation.counterfactual`` (run by ``experiments/stochasticity_counterfactual/run.py``) measures
    issue 4's stochasticity against a replay with the pedestrian's presence flipped in a restored snapshot. Its
    basis: at the start both worlds look the same (the pedestrian waits behind the truck), and once it steps out the
    futures differ, in a few pixels."""
    from genex.evaluation.counterfactual import differs, replay

    env = gym.make("genex/OccludedCrosswalk-v0", hidden_prior=(1.0, 0.0), cue_prob=0.0)  # always, no cue
    cruise = env.unwrapped.action_names.index("cruise")
    actions = np.full(25, cruise)
    real = replay(env, 3, actions, None)
    assert env.unwrapped._layout.hidden["pedestrian_crossing"]
    flipped = replay(env, 3, actions, "pedestrian")
    n = min(len(real), len(flipped))
    changed = differs(real[:n], flipped[:n]).reshape(n, -1).sum(1)  # pixels per step
    assert changed[0] == 0  # hidden at the start: no camera can tell the worlds apart
    assert changed.max() >= 4  # it steps out in the real world only
    assert np.array_equal(replay(env, 3, actions, None), real)  # replays are deterministic
    env.close()

    # the experiment imports the library (and nothing by path) and checks its arguments before loading a model
    r = _run_experiment("stochasticity_counterfactual", "--samples", "1")
    assert r.returncode == 2 and "--samples must be >= 2" in r.stderr, r.stderr


def test_counterfactual_strips_selects_the_asked_group_and_parses_models(tmp_path):
    """``experiments/counterfactual_strips/run.py`` draws the windows the counterfactual test counts: it must pick
    the same groups (uncertain: identical contexts, differing futures; visible: contexts differ too) and refuse a bad
    ``--model``. The selection, the blocks and the parser live in ``genex.evaluation.counterfactual``."""
    import argparse
    from types import SimpleNamespace

    from genex.evaluation import counterfactual as strips

    assert strips.parse_model("a=dir/m:steps=8,min_changed_pixels=0") == ("a", "dir/m", {"steps": 8,
                                                                                        "min_changed_pixels": 0})
    assert strips.parse_model("b=dir") == ("b", "dir", {})
    for bad in ("dir", "a=dir:colour=red", "a=dir:steps"):
        with pytest.raises(argparse.ArgumentTypeError):
            strips.parse_model(bad)

    # 20 frames of 8x8; the flipped world differs from step 10 on (a "pedestrian" of 6 pixels)
    real = np.zeros((20, 8, 8, 3), np.uint8)
    flipped = real.copy()
    flipped[10:, 2:4, 2:5] = 200
    ep = SimpleNamespace(seed=7, frames=real, actions=np.zeros((19, 6), np.float32))
    cache = {"seed7_real": real, "seed7_flipped": flipped, "seed7_present": np.array(False)}
    kw = dict(stride=1, horizon=4, k=2, n=10)
    unc = strips.select_windows([ep], cache, group="uncertain", present="any", **kw)
    vis = strips.select_windows([ep], cache, group="visible", present="any", **kw)
    assert [w["t0"] for w in unc] == [6, 7, 8, 9]  # futures differ within 4 steps, contexts do not yet
    assert [w["t0"] for w in vis][:2] == [10, 11]  # the context already shows the difference
    assert np.array_equal(unc[0]["with_ped"], flipped[7:11]) and np.array_equal(unc[0]["without"], real[7:11])
    assert strips.select_windows([ep], cache, group="uncertain", present="yes", **kw) == []
    block = strips.compose([("a", unc[0]["with_ped"]), ("b", unc[0]["without"])], unc[0]["context"][-1])
    assert block.shape == (2 * (8 + strips.GAP), 5 * (8 + strips.GAP), 3)

    # the experiment refuses a bad --model through the same parser, before it loads anything
    r = _run_experiment("counterfactual_strips", "--model", "dir", "--out", str(tmp_path / "strips.png"))
    assert r.returncode == 2 and "expected LABEL=DIR" in r.stderr, r.stderr
