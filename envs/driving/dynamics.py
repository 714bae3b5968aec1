"""Kinematic driving dynamics as pure JAX array functions.

Everything here is a pure function of arrays, so the same code

* steps one env (``step`` under ``jax.jit``),
* batches what-if rollouts over particles or candidate plans
  (``rollout`` under ``jax.vmap``), which the privileged expert and the
  ``particle`` planner use.

State layout (all ``float32`` unless noted; ``N`` = agent slots of the scenario):

``WorldState``
    ``t: int32[]`` step index; ``ego: EgoState``; ``agents: AgentState``;
    ``collided: bool[]``; ``succeeded: bool[]``.
``EgoState``
    ``s``: progress along the ego path (m); ``d``: lateral offset to the left
    of the path (m, used by ``overtake``); ``v``: speed (m/s).
``AgentState``
    ``x, y, heading, speed: float32[N]``; ``moving: bool[N]`` (latched once
    the agent starts); ``present: bool[N]`` (absent slots never move, render
    or collide).
``DynamicsParams`` (fixed for an episode)
    agent sizes, start conditions, the ego path (straight, then an optional
    quarter left turn), goal and reward weights, and the ego action table.

Agents move at constant speed along their heading once ``t >= start_t``, or
the ego progress reaches ``trigger_s``, or the ego's time to reach
``conflict_s`` at its current speed drops below ``trigger_tta`` (a pedestrian
darting out when the car is about two seconds away). Before that an agent may
*approach* (``pre_steps`` steps at ``pre_speed`` along ``pre_heading``, during
which no trigger fires): walk, stop, then go, so that a road user can be seen
and then hidden before it steps out. Collisions use discs along each box's length: cheap,
vmappable and conservative to within a few centimetres.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

DT = 0.25  # seconds per env step (4 Hz decisions)
N_DISCS = 5  # collision discs per agent box

# Ego behaviours. A scenario's action list maps each action index to one of these codes.
ACCELERATE, CRUISE, BRAKE, CREEP, WAIT, OVERTAKE = range(6)
BEHAVIOUR_NAMES = ("accelerate", "cruise", "brake", "creep", "wait", "overtake")
#: a behaviour no env offers as an action: keep the speed, but brake hard for a road user in view and in or
#: entering the ego's path ahead (:func:`hazard_ahead`). Planners score plans with it to stand for "I will brake
#: if one steps out" (a driver's feedback, which an open-loop plan lacks); they carry it out as ``cruise``.
GUARDED = 6
HAZARD_LOOKAHEAD = 1.0  # seconds: an agent heading into the path within this long counts as in it
HAZARD_MARGIN = 3.0  # metres beyond the stopping distance

V_MAX = 12.0
A_ACCEL = 3.0
A_BRAKE = 7.0
A_WAIT = 3.5
V_CREEP = 1.5
V_OVERTAKE = 7.0
LATERAL_SPEED = 2.5


class EgoState(NamedTuple):
    s: jax.Array
    d: jax.Array
    v: jax.Array


class AgentState(NamedTuple):
    x: jax.Array
    y: jax.Array
    heading: jax.Array
    speed: jax.Array
    moving: jax.Array
    present: jax.Array


class WorldState(NamedTuple):
    t: jax.Array
    ego: EgoState
    agents: AgentState
    collided: jax.Array
    succeeded: jax.Array


class DynamicsParams(NamedTuple):
    # agents [N]
    length: jax.Array
    width: jax.Array
    collides: jax.Array  # bool: a ball does not count as a collision
    occludes: jax.Array  # bool: a vehicle blocks the view of what is behind it (the guarded behaviour's sight)
    start_t: jax.Array  # int32: step at which the agent starts moving (large = never)
    trigger_s: jax.Array  # ego progress that starts the agent (inf = never)
    trigger_tta: jax.Array  # start when the ego is this many seconds from conflict_s (0 = never)
    conflict_s: jax.Array  # ego progress at which the agent's path crosses the ego's
    # an approach before the start: for ``pre_steps`` steps from t = 0 the agent moves at ``pre_speed`` along
    # ``pre_heading`` (e.g. a jogger running up to a crossing) and no trigger starts it; 0 = no approach
    pre_steps: jax.Array  # int32
    pre_speed: jax.Array
    pre_heading: jax.Array
    # ego path: straight from (x0, y0) along +x, then a left quarter turn of radius turn_radius
    x0: jax.Array
    y0: jax.Array
    turn_s: jax.Array
    turn_radius: jax.Array  # 0 = no turn
    lane_width: jax.Array  # overtake target offset
    goal_s: jax.Array
    ego_length: jax.Array
    ego_width: jax.Array
    action_codes: jax.Array  # int32[A]: behaviour code of each action index
    # reward weights
    collision_penalty: jax.Array
    time_cost: jax.Array
    success_bonus: jax.Array


class StepOutput(NamedTuple):
    reward: jax.Array
    terminated: jax.Array
    collision: jax.Array
    success: jax.Array


def ego_pose(params: DynamicsParams, ego: EgoState) -> tuple[jax.Array, jax.Array, jax.Array]:
    """World ``(x, y, heading)`` of the ego from its path coordinates ``(s, d)``."""
    r = params.turn_radius
    has_turn = r > 0
    s_straight = jnp.where(has_turn, jnp.minimum(ego.s, params.turn_s), ego.s)
    arc_len = r * (jnp.pi / 2)
    s_arc = jnp.where(has_turn, jnp.clip(ego.s - params.turn_s, 0.0, arc_len), 0.0)
    s_after = jnp.where(has_turn, jnp.maximum(ego.s - params.turn_s - arc_len, 0.0), 0.0)
    phi = jnp.where(has_turn, s_arc / jnp.where(has_turn, r, 1.0), 0.0)
    x = params.x0 + s_straight + r * jnp.sin(phi)
    y = params.y0 + r * (1.0 - jnp.cos(phi)) + s_after
    heading = phi
    # lateral offset to the left of the path
    x = x - ego.d * jnp.sin(heading)
    y = y + ego.d * jnp.cos(heading)
    return x, y, heading


def _discs(x, y, heading, length, width):
    """Disc centres ``[..., N_DISCS, 2]`` and radius ``[...]`` covering a box."""
    half = jnp.maximum(length / 2 - width / 2, 0.0)
    offsets = jnp.linspace(-1.0, 1.0, N_DISCS) * half[..., None]
    cx = x[..., None] + offsets * jnp.cos(heading)[..., None]
    cy = y[..., None] + offsets * jnp.sin(heading)[..., None]
    return jnp.stack([cx, cy], axis=-1), width / 2


def collision_mask(params: DynamicsParams, state: WorldState) -> jax.Array:
    """``bool[N]``: which agents overlap the ego now."""
    ex, ey, eh = ego_pose(params, state.ego)
    ego_c, ego_r = _discs(ex, ey, eh, params.ego_length, params.ego_width)  # [D,2]
    a = state.agents
    ag_c, ag_r = _discs(a.x, a.y, a.heading, params.length, params.width)  # [N,D,2]
    diff = ag_c[:, :, None, :] - ego_c[None, None, :, :]  # [N,D,D,2]
    dist2 = jnp.sum(diff * diff, axis=-1)
    reach = (ag_r + ego_r)[:, None, None]
    overlap = jnp.any(dist2 < reach * reach, axis=(1, 2))
    return overlap & a.present & params.collides


def hidden_from(params: DynamicsParams, state: WorldState, px: jax.Array, py: jax.Array) -> jax.Array:
    """``bool[N]``: whether the straight line from ``(px, py)`` to each agent's centre passes through another
    present agent that occludes (a vehicle's footprint, seen from above; a 2-D test of line of sight)."""
    a = state.agents
    cos, sin = jnp.cos(a.heading), jnp.sin(a.heading)  # [N] occluder frames

    def local(x, y):  # points [.., ] into every occluder's frame -> [.., N]
        dx, dy = x[..., None] - a.x, y[..., None] - a.y
        return dx * cos + dy * sin, -dx * sin + dy * cos

    x0, y0 = local(px, py)  # [N]: the viewpoint in each occluder's frame
    x1, y1 = local(a.x, a.y)  # [N(target), N(occluder)]
    hx, hy = params.length / 2, params.width / 2

    def slab(p0, p1, h):
        d = p1 - p0
        safe = jnp.where(jnp.abs(d) < 1e-6, 1e-6, d)
        t1, t2 = (-h - p0) / safe, (h - p0) / safe
        lo, hi = jnp.minimum(t1, t2), jnp.maximum(t1, t2)
        flat = jnp.abs(d) < 1e-6
        inside = jnp.abs(p0) <= h
        return jnp.where(flat, jnp.where(inside, -jnp.inf, jnp.inf), lo), jnp.where(flat, jnp.where(inside, jnp.inf,
                                                                                                      -jnp.inf), hi)

    lo_x, hi_x = slab(x0[None, :], x1, hx[None, :])
    lo_y, hi_y = slab(y0[None, :], y1, hy[None, :])
    lo, hi = jnp.maximum(lo_x, lo_y), jnp.minimum(hi_x, hi_y)
    crosses = (lo <= hi) & (hi >= 0.0) & (lo <= 1.0)  # [target, occluder]
    n = a.x.shape[0]
    blocker = (a.present & params.occludes)[None, :] & ~jnp.eye(n, dtype=bool)
    return jnp.any(crosses & blocker, axis=1)


def hazard_ahead(params: DynamicsParams, state: WorldState) -> jax.Array:
    """``bool[]``: a present road user that collides, in view (not behind a vehicle, :func:`hidden_from`), is in
    the ego's lane ahead within its stopping distance plus :data:`HAZARD_MARGIN`, now or (moving at its speed)
    within :data:`HAZARD_LOOKAHEAD` seconds. What a driver who watches the road can brake for."""
    ex, ey, eh = ego_pose(params, state.ego)
    a = state.agents
    seen = ~hidden_from(params, state, ex, ey)
    v = state.ego.v
    reach = params.ego_length / 2 + v * v / (2 * A_BRAKE) + v * DT + HAZARD_MARGIN
    half = params.ego_width / 2 + params.width / 2 + 0.3
    step = jnp.where(a.moving, a.speed * HAZARD_LOOKAHEAD, 0.0)
    hit = jnp.zeros_like(a.present)
    for frac in (0.0, 0.5, 1.0):  # now, half way, and at the end of the lookahead
        ax = a.x + frac * step * jnp.cos(a.heading) - ex
        ay = a.y + frac * step * jnp.sin(a.heading) - ey
        fwd = ax * jnp.cos(eh) + ay * jnp.sin(eh)
        lat = -ax * jnp.sin(eh) + ay * jnp.cos(eh)
        hit = hit | ((fwd > 0) & (fwd - params.length / 2 < reach) & (jnp.abs(lat) < half))
    return jnp.any(hit & seen & a.present & params.collides)


def _ego_step(params: DynamicsParams, ego: EgoState, action: jax.Array, hazard: jax.Array) -> EgoState:
    code = params.action_codes[action]
    v = ego.v
    toward = lambda target, rate: v + jnp.clip(target - v, -rate * DT, rate * DT)  # noqa: E731
    braked = jnp.maximum(v - A_BRAKE * DT, 0.0)
    v_new = jnp.select(
        [code == ACCELERATE, code == CRUISE, code == BRAKE, code == CREEP, code == WAIT, code == OVERTAKE,
         code == GUARDED],
        [
            jnp.minimum(v + A_ACCEL * DT, V_MAX),
            v,
            braked,
            toward(V_CREEP, 4.0),
            jnp.maximum(v - A_WAIT * DT, 0.0),
            toward(V_OVERTAKE, A_ACCEL),
            jnp.where(hazard, braked, v),
        ],
        v,
    )
    d_target = jnp.where(code == OVERTAKE, params.lane_width, 0.0)
    d_new = ego.d + jnp.clip(d_target - ego.d, -LATERAL_SPEED * DT, LATERAL_SPEED * DT)
    s_new = ego.s + 0.5 * (v + v_new) * DT
    return EgoState(s=s_new, d=d_new, v=v_new)


def step(params: DynamicsParams, state: WorldState, action: jax.Array) -> tuple[WorldState, StepOutput]:
    """Advance one step of ``DT`` seconds. Pure; jit and vmap it freely.

    A finished state (collided or succeeded) is returned unchanged with zero
    reward, so batched rollouts can run a fixed horizon.
    """
    done = state.collided | state.succeeded
    code = params.action_codes[action]
    hazard = jax.lax.cond(code == GUARDED, lambda: hazard_ahead(params, state), lambda: jnp.bool_(False))
    ego = _ego_step(params, state.ego, action, hazard)
    a = state.agents
    t_next = state.t + 1
    to_conflict = params.conflict_s - ego.s
    tta_hit = (to_conflict > 0) & (to_conflict <= params.trigger_tta * jnp.maximum(ego.v, 0.1))
    approaching = a.present & (state.t < params.pre_steps)
    moving = a.moving | (a.present & ~approaching
                         & ((t_next >= params.start_t) | (ego.s >= params.trigger_s) | tta_hit))
    step_len = jnp.where(moving, a.speed * DT, 0.0)
    pre_len = jnp.where(approaching, params.pre_speed * DT, 0.0)
    agents = a._replace(
        x=a.x + step_len * jnp.cos(a.heading) + pre_len * jnp.cos(params.pre_heading),
        y=a.y + step_len * jnp.sin(a.heading) + pre_len * jnp.sin(params.pre_heading), moving=moving
    )
    new = WorldState(t=t_next, ego=ego, agents=agents, collided=state.collided, succeeded=state.succeeded)
    collision = jnp.any(collision_mask(params, new))
    success = (ego.s >= params.goal_s) & ~collision
    progress = (jnp.minimum(ego.s, params.goal_s) - jnp.minimum(state.ego.s, params.goal_s)) / params.goal_s
    reward = (
        progress
        - params.time_cost
        + jnp.where(success, params.success_bonus, 0.0)
        - jnp.where(collision, params.collision_penalty, 0.0)
    )
    new = new._replace(collided=collision, succeeded=success)
    # freeze finished states
    new = jax.tree_util.tree_map(lambda old, nxt: jnp.where(done, old, nxt), state, new)
    reward = jnp.where(done, 0.0, reward)
    return new, StepOutput(reward=reward, terminated=collision | success | done, collision=collision & ~done,
                           success=success & ~done)


def rollout(params: DynamicsParams, state: WorldState, actions: jax.Array) -> tuple[WorldState, StepOutput]:
    """Roll ``actions: int32[T]`` from ``state``; returns the final state and per-step outputs ``[T]``."""

    def body(carry, action):
        nxt, out = step(params, carry, action)
        return nxt, out

    return jax.lax.scan(body, state, actions)


rollout_jit = jax.jit(rollout)
#: ``rollout`` batched over plans: ``actions: int32[P, T]`` -> outputs ``[P, T]``.
rollout_plans = jax.jit(jax.vmap(rollout, in_axes=(None, None, 0)))
#: ``rollout`` batched over particles (states with a leading axis) and shared plans.
rollout_particles = jax.jit(jax.vmap(rollout, in_axes=(None, 0, None)))
#: ``rollout`` batched over hypotheses: each particle has its own params *and* state (both with a
#: leading axis), e.g. sampled start times or triggers of hidden agents; plans are shared.
rollout_hypotheses = jax.jit(jax.vmap(rollout, in_axes=(0, 0, None)))
ego_pose_jit = jax.jit(ego_pose)


def to_numpy(tree):
    """Copy a pytree of JAX arrays to NumPy (for rendering, snapshots, info dicts)."""
    return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


def to_jax(tree):
    return jax.tree_util.tree_map(jnp.asarray, tree)
