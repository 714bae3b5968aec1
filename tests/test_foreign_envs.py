"""Foreign Gymnasium envs under genex planners: frame adaptation, declared tasks, outcomes, `genex compare --env`."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

from genex.envs.foreign import (
    DeclaredTask,
    RGBFrames,
    ReportedOutcome,
    TaskSpec,
    declared,
    load_task_spec,
    make_env,
)
from genex.envs.spec import Probe, Question
from genex.planners import task_from_env


class FrameEnv(gym.Env):
    """A tiny foreign env: frames of a given layout, 3 actions; action 2 'crashes', 5 steps arrive."""

    metadata: dict = {"render_modes": []}

    def __init__(self, shape=(1, 16, 16), dtype=np.uint8, report=True):
        high = 255 if dtype == np.uint8 else 1.0
        self.observation_space = spaces.Box(0, high, shape, dtype)
        self.action_space = spaces.Discrete(3)
        self.report = report
        self.t = 0

    def _obs(self):
        a = np.zeros(self.observation_space.shape, self.observation_space.dtype)
        a.reshape(-1)[:] = np.arange(a.size) % 200 if a.dtype == np.uint8 else (np.arange(a.size) % 200) / 255.0
        return a

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        crashed = int(action) == 2
        done = crashed or self.t >= 5
        info = {"crashed": crashed, "arrived": done and not crashed} if self.report else {}
        return self._obs(), 1.0, done, False, info


def spec(**kw) -> TaskSpec:
    q = Question("danger", "Is there danger ahead?", ("yes", "no"))
    args = dict(action_names=("brake", "cruise", "accelerate"), questions=(q,),
                action_costs={"danger": [[1.0, 2.0], [6.0, 0.5], [10.0, 0.0]]},
                probes=(Probe("danger", "pedestrian", ("yes",)),), priors={"danger": (0.3, 0.7)},
                exploration_actions=("brake",), instruction="Drive on.")
    args.update(kw)
    return TaskSpec(**args)


@pytest.mark.parametrize("shape", [(16, 16), (1, 16, 16), (16, 16, 1), (3, 16, 16), (4, 16, 16), (16, 16, 3)])
def test_rgb_frames_adapts_gray_and_channel_first(shape):
    env = RGBFrames(FrameEnv(shape))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (16, 16, 3) and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    raw = FrameEnv(shape)._obs()
    if len(shape) == 2:
        want = raw
    elif shape[-1] in (1, 3):
        want = raw[..., 0] if shape[-1] == 1 else raw
    elif shape[0] == 3:
        want = np.moveaxis(raw, 0, -1)
    else:  # a stack of gray frames: the newest (last) one
        want = raw[-1]
    if want.ndim == 2:
        want = np.repeat(want[..., None], 3, axis=-1)
    np.testing.assert_array_equal(obs, want)


def test_rgb_frames_resizes_and_scales_floats():
    env = RGBFrames(FrameEnv((1, 16, 16), dtype=np.float32), size=(32, 24))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (32, 24, 3) and obs.dtype == np.uint8 and obs.max() > 100
    assert env.observation_space.shape == (32, 24, 3)


def test_rgb_frames_refuses_vector_observations():
    class VectorEnv(FrameEnv):
        def __init__(self):
            super().__init__()
            self.observation_space = spaces.Box(-np.inf, np.inf, (15, 7), np.float32)

    with pytest.raises(ValueError, match="not an image"):
        RGBFrames(VectorEnv())


def test_task_spec_validates():
    with pytest.raises(ValueError, match="action_costs"):
        spec(action_costs={"other": [[1, 2]] * 3})
    with pytest.raises(ValueError, match="exploration_actions"):
        spec(exploration_actions=("reverse",))
    with pytest.raises(ValueError, match="prior"):
        spec(priors={"danger": (0.5, 0.6)})
    with pytest.raises(ValueError, match="names 2 actions"):
        DeclaredTask(RGBFrames(FrameEnv()), spec(action_names=("a", "b"), action_costs={"danger": [[1, 2]] * 2},
                                                 exploration_actions=()))


def test_declared_task_is_what_planners_read():
    env = DeclaredTask(RGBFrames(FrameEnv()), spec())
    task = task_from_env(env, horizon=3)
    assert not task.generic and task.action_names == ("brake", "cruise", "accelerate")
    assert [b.actions for b in task.exploration] == [(0, 0, 0)]
    assert task.priors == {"danger": (0.3, 0.7)} and task.facts == ("pedestrian",)
    assert declared(env, "instruction") == "Drive on."
    obs, _ = env.reset(seed=0)
    assert obs["text"] == "Drive on." and obs["image"].shape == (16, 16, 3)
    assert env.observation_space.contains(obs)
    check_env(env, skip_render_check=True)
    # without questions: the generic task (planners fall back to the policy's actions)
    assert task_from_env(RGBFrames(FrameEnv())).generic


def test_reported_outcome_counts_crashes_and_says_nothing_it_was_not_told():
    env = ReportedOutcome(RGBFrames(FrameEnv()))
    env.reset(seed=0)
    *_, info = env.step(2)
    assert info["collisions"] == 1 and info["success"] is False
    env.reset(seed=0)
    for _ in range(5):
        *_, info = env.step(1)
    assert info["collisions"] == 0 and info["success"] is True
    silent = ReportedOutcome(RGBFrames(FrameEnv(report=False)))
    silent.reset(seed=0)
    *_, info = silent.step(2)
    assert "success" not in info and "collisions" not in info


def test_load_task_spec_errors_are_one_line():
    assert isinstance(load_task_spec("genex.envs.foreign:highway_intersection"), TaskSpec)
    for bad in ("nocolon", "genex.envs.foreign:nothing_here", "no_such_module_xyz:spec", "genex.envs.foreign:declared"):
        with pytest.raises(ValueError):
            load_task_spec(bad)


def test_make_env_keeps_genex_envs_and_refuses_options_for_them():
    env = make_env("genex/SettingsTabs-v0")
    assert not isinstance(env, RGBFrames)
    env.close()
    with pytest.raises(ValueError, match="foreign envs"):
        make_env("genex/SettingsTabs-v0", task_spec=spec())


def test_compare_runs_a_registered_foreign_env(tmp_path):
    """imagine really imagines on a foreign env with a declared task; outcomes come from its info, else n/a."""
    from genex.compare import CompareConfig, compare, write_summary

    gym.register("genex_test/Frames-v0", entry_point=FrameEnv, kwargs={"shape": (1, 64, 64)})
    gym.register("genex_test/Silent-v0", entry_point=FrameEnv, kwargs={"shape": (64, 64), "report": False})
    try:
        cfg = CompareConfig(envs=["genex_test/Frames-v0"], planners=["react", "imagine"], episodes=1,
                            options={"samples": 1, "horizon": 2}, world_model="copy-last", task_spec="test_foreign_envs:spec")
        rows = compare(cfg, tmp_path / "spec", workers=1, progress=False)
        by = {r["planner"]: r for r in rows}
        assert by["imagine"]["imagined_frames"] > 0 and not by["imagine"]["fell_back"]
        assert by["react"]["imagined_frames"] == 0 and by["react"]["success"] in (True, False)
        cfg = CompareConfig(envs=["genex_test/Silent-v0"], planners=["react"], episodes=1)
        rows = compare(cfg, tmp_path / "silent", workers=1, progress=False)
        assert rows[0]["success"] is None and rows[0]["collision"] is None and rows[0]["fell_back"]
        text = write_summary(rows, tmp_path / "silent", plots=False)
        assert "| n/a | n/a |" in text and "fell back to the policy's own actions" in text
        with pytest.raises(ValueError, match="snapshot"):
            compare(CompareConfig(envs=["genex_test/Frames-v0"], planners=["oracle-imagine"], episodes=1),
                    tmp_path / "oracle", workers=1, progress=False)
    finally:
        for env_id in ("genex_test/Frames-v0", "genex_test/Silent-v0"):
            gym.registry.pop(env_id, None)


@pytest.mark.slow
def test_cli_compare_highway_intersection(tmp_path):
    """The README's foreign-env command on highway-env (shortened): a declared task, imagined frames, crashes."""
    pytest.importorskip("highway_env")
    from genex.cli import main

    out = tmp_path / "hw"
    kwargs = json.dumps({"config": {"duration": 3}})
    assert main(["compare", "--env", "highway_env:intersection-v0", "--task-spec",
             "genex.envs.foreign:highway_intersection", "--env-kwargs", kwargs, "--planners", "react,imagine,lookahead",
             "--world-model", "copy-last", "--episodes", "1", "--samples", "1", "--workers", "1", "--out", str(out),
             "--no-plots", "--quiet"]) == 0
    rows = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]
    by = {r["planner"]: r for r in rows}
    assert by["imagine"]["imagined_frames"] > 0 and by["lookahead"]["imagined_frames"] > 0
    assert all(r["success"] is not None and r["collision"] is not None for r in rows)
