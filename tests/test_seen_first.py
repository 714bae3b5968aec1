"""Seen-first road users (``seen_first``): in view, then hidden by the occluder, then stepping out.

The structure a one-frame belief forgets (object permanence); see envs/driving/scenarios.py.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import genex.envs  # noqa: F401  (registers the envs)
from genex.envs.driving import dynamics as dyn

CROSSWALK = "genex/OccludedCrosswalk-v0"


def _runner_seeds(env, n: int, limit: int = 80) -> list[int]:
    out = []
    for seed in range(limit):
        env.reset(seed=seed)
        if "seen_first" in env.unwrapped._layout.hidden["cue"]:
            out.append(seed)
        if len(out) == n:
            break
    return out


def test_seen_first_zero_keeps_every_draw_and_a_positive_value_only_adds_the_runner():
    plain = gym.make(CROSSWALK, visibility_labels=False).unwrapped
    zero = gym.make(CROSSWALK, visibility_labels=False, seen_first=0.0).unwrapped
    some = gym.make(CROSSWALK, visibility_labels=False, seen_first=1.0).unwrapped
    runners = 0
    for seed in range(30):
        for e in (plain, zero, some):
            e.reset(seed=seed)
        a, b, c = plain._layout, zero._layout, some._layout
        for x, y in zip(a.params, b.params):
            np.testing.assert_array_equal(x, y)
        assert a.hidden == b.hidden
        # drawn after everything else: the ego, the occluder, the pedestrian's presence and triggers are kept
        assert float(c.params.x0) == float(a.params.x0) and a.hidden["occluder"] == c.hidden["occluder"]
        assert a.hidden["pedestrian_crossing"] == c.hidden["pedestrian_crossing"]
        runner = "seen_first" in c.hidden["cue"]
        runners += runner
        ped = some.scenario.slot("pedestrian")
        if runner:  # a runner darts sooner (1.0-1.6 s), and the ball that precedes it keeps its 1 s lead
            assert 1.0 <= float(c.params.trigger_tta[ped]) <= 1.6
            assert float(c.params.trigger_tta[some.scenario.slot("ball")]) == pytest.approx(
                float(c.params.trigger_tta[ped]) + 1.0)
        else:
            np.testing.assert_array_equal(a.params.trigger_tta, c.params.trigger_tta)
        assert (int(c.params.pre_steps[ped]) > 0) == runner
        # seen_first = 1: every pedestrian without the feet cue is a runner, nobody else
        assert runner == (bool(a.hidden["pedestrian_crossing"]) and a.hidden["cue"] != "feet")
    assert runners >= 5
    assert plain._config_key == zero._config_key != some._config_key  # snapshots do not restore across them


def test_the_runner_is_seen_then_hidden_then_steps_out():
    env = gym.make(CROSSWALK, seen_first=1.0)
    cruise = env.unwrapped.action_names.index("cruise")
    seen_first, hidden_after, crossed = 0, 0, 0
    seeds = _runner_seeds(env, 8)
    for seed in seeds:
        _, info = env.reset(seed=seed)
        seen = []
        for _ in range(40):
            seen.append(bool(info["visible"].get("pedestrian", False)))
            _, _, term, trunc, info = env.step(cruise)
            if term or trunc:
                break
        seen_first += seen[0]
        first_gap = seen.index(False) if False in seen else len(seen)
        hidden_after += not any(seen[first_gap:first_gap + 4])
        crossed += bool(info.get("collision")) or any(seen[first_gap + 4:])
    assert seen_first >= 6 and hidden_after >= 6, (seen_first, hidden_after)  # in view at the start, then behind
    assert crossed >= 5  # and then steps out: into the car that never slowed, or in view again


def test_an_approaching_agent_ignores_its_triggers_until_it_arrives():
    env = gym.make(CROSSWALK, seen_first=1.0, visibility_labels=False).unwrapped
    seed = _runner_seeds(env, 1)[0]
    env.reset(seed=seed)
    params, state = env.dynamics_params, env.world_state
    ped = env.scenario.slot("pedestrian")
    steps = int(params.pre_steps[ped])
    accelerate = env.action_names.index("accelerate")
    xs = [float(state.agents.x[ped])]
    for t in range(steps + 3):
        state, _ = dyn.step(params, state, accelerate)
        xs.append(float(state.agents.x[ped]))
        if t < steps - 1:
            assert not bool(state.agents.moving[ped])  # the car's approach triggers nothing while it runs
    dx = np.diff(xs[: steps + 1])
    expect = float(params.pre_speed[ped]) * dyn.DT * np.cos(float(params.pre_heading[ped]))
    np.testing.assert_allclose(dx, expect, rtol=1e-4)
    assert 39.3 < xs[steps] < 40.7  # at the crossing, where it waits for its trigger
    assert float(np.cos(float(params.pre_heading[ped]))) > 0.9  # along the sidewalk, towards the crossing


def test_hypotheses_draw_runners_and_plain_pedestrians():
    env = gym.make(CROSSWALK, seen_first=0.5, visibility_labels=False).unwrapped
    env.reset(seed=0)
    params, _, answers = env.hypotheses(32, seed=1)
    ped = env.scenario.slot("pedestrian")
    runners = np.asarray(params.pre_steps)[:, ped] > 0
    assert runners[answers == 0].any() and not runners[answers == 0].all()
    assert not runners[answers == 1].any()  # no pedestrian, no runner


def test_seen_first_is_refused_where_the_scene_has_none():
    with pytest.raises(ValueError, match="OccludedCrosswalk, StoppedLeadCar"):
        gym.make("genex/OccludedLeftTurn-v0", seen_first=0.5)


def test_the_lead_car_pedestrian_is_seen_on_the_sidewalk_then_hidden_by_the_van():
    env = gym.make("genex/StoppedLeadCar-v0", seen_first=1.0)
    wait = env.unwrapped.action_names.index("wait")
    plain = gym.make("genex/StoppedLeadCar-v0", visibility_labels=False).unwrapped
    checked = 0
    for seed in range(30):
        _, info = env.reset(seed=seed)
        plain.reset(seed=seed)
        hidden = env.unwrapped._layout.hidden
        assert hidden["cause"] == plain._layout.hidden["cause"]  # the cause's draw is kept
        if not hidden["seen_first"]:
            assert hidden["cause"] != "pedestrian"
            continue
        seen = []
        for _ in range(20):
            seen.append(bool(info["visible"].get("pedestrian", False)))
            _, _, term, trunc, info = env.step(wait)
        assert seen[0] and not any(seen[8:20]), seen  # beside the van at first, then in front of it
        # it starts further out, so the van waits longer for it
        assert hidden["lead_car_resumes_at_step"] > plain._layout.hidden["lead_car_resumes_at_step"]
        checked += 1
        if checked == 4:
            break
    assert checked == 4


@pytest.mark.parametrize("bad", [1.5, -0.1, "0.5", True])
def test_seen_first_must_be_a_probability(bad):
    with pytest.raises(ValueError, match="seen_first must be in"):
        gym.make(CROSSWALK, seen_first=bad)
