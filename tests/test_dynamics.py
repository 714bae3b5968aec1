"""JAX dynamics: one code path for single steps and batched what-if rollouts."""

from __future__ import annotations

import math

import gymnasium as gym
import jax
import numpy as np
import pytest

from genex.envs.driving import dynamics as dyn
from genex.envs.driving.drivers import candidate_plans


def _env(env_id="genex/OccludedCrosswalk-v0", **kw):
    env = gym.make(env_id, visibility_labels=False, **kw).unwrapped
    env.reset(seed=5)
    return env


def test_batched_rollouts_match_env_steps():
    env = _env(hidden_prior=1.0)
    plans = candidate_plans(len(env.action_names), horizon=10)
    assert plans.ndim == 2 and plans.shape[1] == 10 and len(np.unique(plans, axis=0)) == len(plans)
    _, out = dyn.rollout_plans(env.dynamics_params, env.world_state, plans)
    assert out.reward.shape == (len(plans), 10)
    snap = env.snapshot()
    for p in (0, len(plans) // 2, len(plans) - 1):
        env.restore(snap)
        rewards = []
        for a in plans[p]:
            _, r, term, trunc, _ = env.step(int(a))
            rewards.append(r)
            if term:
                break
        np.testing.assert_allclose(rewards, np.asarray(out.reward[p][: len(rewards)]), rtol=1e-5, atol=1e-6)


def test_particles_vmap_over_states():
    env = _env()
    state = env.world_state
    n = 64
    particles = jax.tree_util.tree_map(lambda x: np.repeat(np.asarray(x)[None], n, axis=0), state)
    # spread the ego speed over particles
    particles = particles._replace(ego=particles.ego._replace(v=np.linspace(0, 10, n, dtype=np.float32)))
    final, out = dyn.rollout_particles(env.dynamics_params, particles, np.full(8, 1, np.int32))  # cruise
    progress = np.asarray(final.ego.s)
    assert progress.shape == (n,)
    assert np.all(np.diff(progress) >= 0)  # faster particles get further
    np.testing.assert_allclose(progress[-1] - progress[0], 10 * 8 * dyn.DT, rtol=1e-4)


def test_left_turn_path_geometry():
    env = _env("genex/OccludedLeftTurn-v0")
    p = env.dynamics_params
    r = float(p.turn_radius)
    s = np.array([0.0, float(p.turn_s), float(p.turn_s) + r * math.pi / 2, float(p.turn_s) + r * math.pi / 2 + 5],
                 np.float32)
    z = np.zeros_like(s)
    x, y, h = (np.asarray(v) for v in dyn.ego_pose_jit(p, dyn.EgoState(s=s, d=z, v=z)))
    np.testing.assert_allclose(h, [0, 0, math.pi / 2, math.pi / 2], atol=1e-5)
    np.testing.assert_allclose(x[2], x[1] + r, atol=1e-4)
    np.testing.assert_allclose(y[2], y[1] + r, atol=1e-4)
    np.testing.assert_allclose(y[3] - y[2], 5.0, atol=1e-4)


def test_collision_is_detected_and_freezes_state():
    env = _env("genex/StoppedLeadCar-v0")
    state = env.world_state
    accelerate = env.action_names.index("accelerate")
    final, out = dyn.rollout_jit(env.dynamics_params, state, np.full(30, accelerate, np.int32))
    coll = np.asarray(out.collision)
    assert coll.sum() == 1, "exactly one collision event"
    k = int(np.argmax(coll))
    assert np.asarray(out.reward)[k] < -9 and np.all(np.asarray(out.reward)[k + 1:] == 0)
    assert bool(final.collided)


@pytest.mark.parametrize("behaviour,expect", [("brake", 0.0), ("creep", dyn.V_CREEP), ("accelerate", dyn.V_MAX)])
def test_speed_limits(behaviour, expect):
    env = _env(hidden_prior=0.0)
    a = env.action_names.index(behaviour)
    params = env.dynamics_params._replace(goal_s=np.float32(1000.0))  # never finish
    final, _ = dyn.rollout_jit(params, env.world_state, np.full(20, a, np.int32))
    assert not bool(final.collided)
    assert float(final.ego.v) == pytest.approx(expect, abs=1e-4)


def test_guarded_holds_speed_and_stops_for_what_steps_into_the_path():
    """The planners' "guarded" behaviour: cruise where the path is clear, stop short of a stopped van ahead."""
    lead = _env("genex/StoppedLeadCar-v0")
    accelerate = lead.action_names.index("accelerate")
    codes = np.concatenate([np.asarray(lead.dynamics_params.action_codes), [dyn.GUARDED]]).astype(np.int32)
    params = lead.dynamics_params._replace(action_codes=codes)
    guarded = len(codes) - 1
    state, _ = dyn.rollout_jit(params, lead.world_state, np.full(3, accelerate, np.int32))
    final, out = dyn.rollout_jit(params, state, np.full(30, guarded, np.int32))
    assert not bool(final.collided) and float(final.ego.v) == pytest.approx(0.0)  # the stopped van ahead
    _, blind = dyn.rollout_jit(params, state, np.full(30, lead.action_names.index("cruise"), np.int32))
    assert np.asarray(blind.collision).any()  # cruise at that speed hits it
    clear = _env(hidden_prior=0.0)  # no pedestrian: guarded keeps its speed like cruise
    codes = np.concatenate([np.asarray(clear.dynamics_params.action_codes), [dyn.GUARDED]]).astype(np.int32)
    p = clear.dynamics_params._replace(action_codes=codes, goal_s=np.float32(1000.0))
    a, _ = dyn.rollout_jit(p, clear.world_state, np.full(12, len(codes) - 1, np.int32))
    b, _ = dyn.rollout_jit(p, clear.world_state, np.full(12, clear.action_names.index("cruise"), np.int32))
    assert float(a.ego.s) == pytest.approx(float(b.ego.s)) and float(a.ego.v) == pytest.approx(float(b.ego.v))
    assert not bool(dyn.hazard_ahead(p, clear.world_state))


def test_guarded_cannot_see_through_the_truck():
    """The guard brakes only for what is in view: a pedestrian walking out behind the parked truck is hidden
    until it clears the truck's front, as in the ego's camera."""
    env = _env(hidden_prior=1.0, cue_prob=0.0)
    p, state = env.dynamics_params, env.world_state
    ped, truck = env.scenario.slot("pedestrian"), env.scenario.slot("truck")
    bus = env.scenario.slot("bus")
    occluder = truck if bool(np.asarray(state.agents.present)[truck]) else bus
    ex, ey, _ = (float(v) for v in dyn.ego_pose_jit(p, state.ego))
    hidden = np.asarray(dyn.hidden_from(p, state, np.float32(ex), np.float32(ey)))
    assert hidden[ped] and not hidden[occluder]  # waiting behind it; the truck itself is in view
    agents = state.agents
    stepped_out = agents._replace(y=np.asarray(agents.y).copy())
    stepped_out.y[ped] = -2.0  # in the ego's lane, past the truck
    assert not np.asarray(dyn.hidden_from(p, state._replace(agents=stepped_out), np.float32(ex), np.float32(ey)))[ped]
