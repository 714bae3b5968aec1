"""Gymnasium envs for the driving scenes.

Use through the registry::

    import gymnasium as gym
    import genex.envs  # registers genex/<Name>-v0
    env = gym.make("genex/OccludedCrosswalk-v0", width=64, height=64)

Observation (``Dict``):
    ``image``: ``uint8[height, width * panorama, 3]`` egocentric view (panorama
    cameras side by side, left to right); ``text``: the task instruction;
    ``speed``: ``float32[1]`` the ego speedometer (m/s).
Actions: ``Discrete(len(env.action_names))``; see ``env.action_names``.
Reward: progress to the goal (sums to 1), ``-0.01`` a step, ``+1`` on
reaching the goal, ``-10`` on a collision (which ends the episode).
Info: ``hidden`` and ``answers`` (ground truth, for metrics only),
``visible`` (``{fact: bool}``) and ``visible_pixels`` for the returned frame,
``occupancy`` (``uint8[F, H / cell, W / cell]``, ``uint16`` for cells over 15 pixels: each fact's pixels per cell of the returned frame, facts
in ``env.facts`` order: where a detector sees each kind of road user), ``appearance`` (``uint8[F, 3]``: the mean
colour of each fact's pixels in the returned frame, 0 where it shows none: what a detector sees it look like;
given with ``occupancy``), ``collision``, ``success``,
``collisions`` (count), ``ego`` pose, ``t``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import string
from dataclasses import asdict, dataclass, fields
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces

from ..spec import EnvSnapshot, Probe, validate_action_costs, validate_probes
from ..text_space import LiveText
from . import dynamics as dyn
from .scenarios import BRAKE_ON, HAZARD_ON, LAMP_OFF, SCENARIOS, Layout, Scenario, lamp_states
from .scene import AGENT_KINDS, CAMERA_POS, DrivingScene
from .topdown import OCCLUDER_MIN_HEIGHT, VEHICLE_KINDS, Footprint, SceneMap

__all__ = ["DrivingConfig", "DrivingEnv", "OccludedCrosswalkEnv", "StoppedLeadCarEnv", "OccludedLeftTurnEnv"]

TEXT_CHARSET = string.printable
LIGHTBAR_COLOURS = ((0.95, 0.1, 0.1, 1.0), (0.1, 0.2, 0.95, 1.0))
INSTRUCTIONS = {
    "OccludedCrosswalk": "Drive past the crosswalk ahead safely and without wasting time.",
    "StoppedLeadCar": "The car ahead has stopped at a green light. Get through the intersection safely.",
    "OccludedLeftTurn": "Turn left at the intersection safely and without wasting time.",
}


@dataclass(frozen=True)
class DrivingConfig:
    """Options of a driving env (pass them as keyword arguments to ``gym.make``).

    Attributes:
        width, height: egocentric frame size per camera, pixels (8..1024).
        panorama: number of cameras side by side (1 = plain egocentric view).
        fovy: vertical field of view of each camera, degrees (10..150).
        hidden_prior: prior over the first question's answers (a float for a
            yes/no question = P(yes)); ``None`` keeps the scenario's documented prior.
        cue_prob: probability of a weak visual cue when the hidden agent is there.
        seen_first: probability that a hidden agent is first seen and then hidden by the occluder
            before it steps out (object permanence; scenarios with ``supports_seen_first``). 0 keeps
            every seed's draw as it was.
        max_steps: episode length limit (truncation); ``None`` = scenario default.
        min_visible_pixels: pixels a fact needs to count as visible.
        visibility_labels: compute ``info["visible"]`` (one extra segmentation render per step).
        occupancy_cell: side in pixels of the cells of ``info["occupancy"]`` (each fact's pixel count per
            cell; it must divide the frame's height and width); 0 = no occupancy maps. Needs
            ``visibility_labels``.
        render_size: side of the ``render()`` view for people, pixels.
        render_view: ``"topdown"`` or ``"chase"``.
    """

    width: int = 64
    height: int = 64
    panorama: int = 1
    fovy: float = 70.0
    hidden_prior: float | tuple[float, ...] | None = None
    cue_prob: float | None = None
    seen_first: float = 0.0
    max_steps: int | None = None
    min_visible_pixels: int = 3
    visibility_labels: bool = True
    occupancy_cell: int = 8
    render_size: int = 256
    render_view: str = "topdown"

    def resolved(self, scenario: Scenario) -> "DrivingConfig":
        """Validate against ``scenario`` and fill scenario defaults; raises ``ValueError``."""
        def is_int(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

        for name in ("width", "height", "render_size"):
            v = getattr(self, name)
            if not is_int(v) or not 8 <= v <= 1024:
                raise ValueError(f"{name} must be an integer in [8, 1024], got {v!r}")
        if not isinstance(self.visibility_labels, (bool, np.bool_)):
            raise ValueError(f"visibility_labels must be True or False, got {self.visibility_labels!r}")
        if not is_int(self.min_visible_pixels):
            raise ValueError(f"min_visible_pixels must be an integer, got {self.min_visible_pixels!r}")
        if not is_int(self.panorama) or not 1 <= self.panorama <= 8:
            raise ValueError(f"panorama must be an integer in [1, 8] (number of cameras), got {self.panorama!r}")
        if isinstance(self.fovy, (bool, str)) or not 10.0 <= float(self.fovy) <= 150.0:
            raise ValueError(f"fovy must be in [10, 150] degrees, got {self.fovy!r}")
        cell = self.occupancy_cell
        if not is_int(cell) or cell < 0:
            raise ValueError(f"occupancy_cell must be an integer >= 0 (0: no occupancy maps), got {cell!r}")
        if cell and (self.height % cell or self.width % cell):
            raise ValueError(f"occupancy_cell {cell} must divide the frame's height and width "
                             f"({self.height}x{self.width}), or be 0")
        if self.min_visible_pixels < 1:
            raise ValueError(f"min_visible_pixels must be >= 1, got {self.min_visible_pixels}")
        if self.render_view not in ("topdown", "chase"):
            raise ValueError(f"render_view must be 'topdown' or 'chase', got {self.render_view!r}")
        n_answers = len(scenario.questions[0].answers)
        prior = self.hidden_prior
        if prior is None:
            prior = scenario.default_prior
        elif isinstance(prior, str):
            raise ValueError(f"hidden_prior must be a number or a tuple of numbers, got the string {prior!r}")
        elif np.ndim(prior) == 0:
            if n_answers != 2:
                raise ValueError(
                    f"{scenario.name} has {n_answers} answers {scenario.questions[0].answers}; "
                    "give hidden_prior as a tuple of that many probabilities"
                )
            prior = (float(prior), 1.0 - float(prior))
        prior = tuple(float(p) for p in prior)
        if len(prior) != n_answers or any(p < 0 for p in prior) or abs(sum(prior) - 1.0) > 1e-6:
            raise ValueError(
                f"hidden_prior for {scenario.name} must be {n_answers} non-negative probabilities summing to 1 "
                f"(answers {scenario.questions[0].answers}), got {self.hidden_prior!r}"
            )
        cue = scenario.default_cue_prob if self.cue_prob is None else float(self.cue_prob)
        if not 0.0 <= cue <= 1.0:
            raise ValueError(f"cue_prob must be in [0, 1], got {self.cue_prob!r}")
        if isinstance(self.seen_first, (bool, str)) or not 0.0 <= float(self.seen_first) <= 1.0:
            raise ValueError(f"seen_first must be in [0, 1], got {self.seen_first!r}")
        if self.seen_first and not scenario.supports_seen_first:
            from .scenarios import SCENARIOS

            able = [n for n, sc in SCENARIOS.items() if sc.supports_seen_first]
            raise ValueError(f"{scenario.name} has no seen-first agents (seen_first must be 0); "
                             f"scenarios that have them: {', '.join(able)}")
        max_steps = scenario.max_steps if self.max_steps is None else self.max_steps
        if not is_int(max_steps) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive integer, got {self.max_steps!r}")
        return DrivingConfig(**{**asdict(self), "hidden_prior": prior, "cue_prob": cue, "max_steps": int(max_steps),
                                "seen_first": float(self.seen_first)})


def _step_packed(params, state, action):
    """One step plus everything the host needs, packed into one ``float32`` vector.

    Copying one array from the device instead of ~20 pytree leaves saves about
    a third of a millisecond per step, a tenth of the whole step.
    """
    nxt, out = dyn.step(params, state, action)
    x, y, h = dyn.ego_pose(params, nxt.ego)
    a = nxt.agents
    f = jnp.float32
    head = jnp.stack([out.reward, out.terminated.astype(f), out.collision.astype(f), out.success.astype(f), x, y, h,
                      nxt.ego.s, nxt.ego.d, nxt.ego.v, nxt.t.astype(f), nxt.collided.astype(f),
                      nxt.succeeded.astype(f)]).astype(f)
    agents = jnp.concatenate([a.x, a.y, a.heading, a.speed, a.moving.astype(f), a.present.astype(f)]).astype(f)
    return nxt, jnp.concatenate([head, agents])


_step_jit = jax.jit(_step_packed)


def fact_colours(masks: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """``uint8[F, 3]``: the mean colour of each fact's pixels (``masks`` ``bool[F, H, W]``) in ``frame``
    (``uint8[H, W, 3]``), at least 1 per channel where the fact shows (so 0 only means "not in view")."""
    n = masks.reshape(len(masks), -1).sum(1)
    total = masks.reshape(len(masks), -1).astype(np.float64) @ frame.reshape(-1, 3).astype(np.float64)
    mean = np.rint(total / np.maximum(n, 1)[:, None])
    return np.where(n[:, None] > 0, np.clip(mean, 1, 255), 0).astype(np.uint8)


def _unpack(packed: np.ndarray) -> tuple[float, bool, bool, bool, tuple[float, float, float], dyn.WorldState]:
    reward, term, coll, succ, x, y, h, s, d, v, t, collided, succeeded = packed[:13]
    n = (len(packed) - 13) // 6
    ax, ay, ah, av, am, ap = packed[13:].reshape(6, n)
    world = dyn.WorldState(
        t=np.int32(t), ego=dyn.EgoState(s=np.float32(s), d=np.float32(d), v=np.float32(v)),
        agents=dyn.AgentState(x=ax.copy(), y=ay.copy(), heading=ah.copy(), speed=av.copy(), moving=am > 0.5,
                              present=ap > 0.5),
        collided=np.bool_(collided > 0.5), succeeded=np.bool_(succeeded > 0.5),
    )
    return float(reward), term > 0.5, coll > 0.5, succ > 0.5, (float(x), float(y), float(h)), world


class DrivingEnv(gym.Env):
    """A driving scenario with hidden state; see the module docstring for spaces and info."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": int(round(1 / dyn.DT))}

    def __init__(self, scenario: str, render_mode: str | None = None, **options: Any) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; expected one of {sorted(SCENARIOS)}")
        valid = {f.name for f in fields(DrivingConfig)}
        unknown = sorted(set(options) - valid)
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for {scenario}; valid options: {sorted(valid)}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.scenario: Scenario = SCENARIOS[scenario]
        self.config = DrivingConfig(**options).resolved(self.scenario)
        self.render_mode = render_mode
        sc, cfg = self.scenario, self.config
        self.action_names: tuple[str, ...] = sc.action_names
        self.questions = sc.questions
        self.action_costs = {k: v.copy() for k, v in sc.action_costs.items()}
        validate_action_costs(self.questions, self.action_costs, len(self.action_names))
        self.facts: tuple[str, ...] = sc.facts
        #: actions that gather information about the hidden fact (what ``explore``/``imagine`` try)
        self.exploration_actions: tuple[str, ...] = sc.exploration_actions
        #: perception evidence: how visible facts bear on the questions (see ``spec.Probe``)
        self.probes: tuple[Probe, ...] = sc.probes
        validate_probes(self.questions, self.probes, len(self.action_names))
        #: the documented prior over the first question's answers (public knowledge, like a base rate)
        self.priors: dict[str, tuple[float, ...]] = {self.questions[0].id: tuple(self.config.hidden_prior)}
        self.instruction = INSTRUCTIONS[sc.name]
        self.action_space = spaces.Discrete(len(self.action_names))
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (cfg.height, cfg.width * cfg.panorama, 3), np.uint8),
                "text": LiveText(max_length=256, charset=TEXT_CHARSET),  # survives AsyncVectorEnv shared memory
                "speed": spaces.Box(0.0, dyn.V_MAX, (1,), np.float32),
            }
        )
        self.scene = DrivingScene(
            sc.scene, width=cfg.width, height=cfg.height, n_cameras=cfg.panorama, fovy=cfg.fovy,
            render_size=cfg.render_size,
        )
        # Snapshots restore across envs that differ only in how they render (an oracle may render
        # without labels, or at another size); options that change the simulated world must match.
        sim = {k: v for k, v in asdict(cfg).items() if k in ("hidden_prior", "cue_prob", "max_steps")}
        if cfg.seen_first:  # only when set, so the keys of existing snapshots and recordings stay valid
            sim["seen_first"] = cfg.seen_first
        roles = {slot.role for slot in sc.scene.slots}
        self._lamp_slot = sc.slot("lead_car") if "lead_car" in roles else None
        self._lightbar_geoms = (
            [g for g in self.scene.slot_geoms[sc.slot("emergency_vehicle")] if "lightbar" in self.scene.model.geom(g).name]
            if "emergency_vehicle" in roles else []
        )
        self._config_key = hashlib.sha1(json.dumps(sim, sort_keys=True).encode()).hexdigest()[:12]
        self._layout: Layout | None = None
        self._params: dyn.DynamicsParams | None = None
        self._world: dyn.WorldState | None = None  # JAX leaves
        self._world_np: dyn.WorldState | None = None
        self._pose = (0.0, 0.0, 0.0)
        self._collisions = 0
        self._frame: np.ndarray | None = None
        self._visible: dict[str, bool] = {}
        self._visible_pixels: dict[str, int] = {}
        self._occupancy: np.ndarray | None = None
        self._appearance: np.ndarray | None = None

    # ---------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options:
            raise ValueError(f"{self.scenario.name}.reset takes no options, got {sorted(options)}")
        layout = self.scenario.sample(self.np_random, self.config.hidden_prior, self.config.cue_prob,
                                      self.config.seen_first)
        self._load(layout, layout.state, collisions=0)
        return self._observation(), self._info(collision=False, success=False)

    def step(self, action):
        if self._world is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(
                f"action {action!r} is outside the action space Discrete({self.action_space.n}); "
                f"actions are {dict(enumerate(self.action_names))}"
            )
        if bool(self._world_np.collided) or bool(self._world_np.succeeded):
            raise RuntimeError("the episode has ended (terminated); call reset()")
        self._world, packed = _step_jit(self._params, self._world, np.int32(action))
        reward, terminated, collision, success, self._pose, self._world_np = _unpack(np.asarray(packed))
        self._collisions += int(collision)
        self._refresh()
        terminated = bool(terminated)
        truncated = (not terminated) and int(self._world_np.t) >= self.config.max_steps
        return self._observation(), reward, terminated, truncated, self._info(bool(collision), bool(success))

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if self._world is None:
            raise RuntimeError("call reset() before render()")
        return self.scene.render_view(self.config.render_view)

    def close(self) -> None:
        self.scene.close()

    # ---------------------------------------------------------------- snapshots
    def snapshot(self) -> EnvSnapshot:
        """Copy of the full state (world, episode draw, counters, RNG); see ``restore``."""
        if self._world is None:
            raise RuntimeError("call reset() before snapshot()")
        state = {
            "layout": copy.deepcopy(self._layout),
            "world": copy.deepcopy(self._world_np),
            "collisions": self._collisions,
            "rng": copy.deepcopy(self.np_random.bit_generator.state),
        }
        return EnvSnapshot(env_id=self.scenario.name, config_key=self._config_key, state=state)

    def restore(self, snapshot: EnvSnapshot, *, render: bool = True):
        """Return to ``snapshot`` (taken from an env of the same scenario and config).

        Returns the observation and info at that moment; raises
        :class:`~genex.envs.spec.SnapshotMismatchError` for another scenario/config.
        ``render=False`` skips drawing that moment's frame (returns ``(None, None)``): for callers that
        step on at once, such as the posterior world model, whose hypotheses are restored and stepped
        thousands of times an episode.
        """
        if not isinstance(snapshot, EnvSnapshot):
            raise TypeError(f"restore() expects an EnvSnapshot, got {type(snapshot).__name__}")
        snapshot.check_compatible(self.scenario.name, self._config_key)
        st = snapshot.state
        self.np_random.bit_generator.state = copy.deepcopy(st["rng"])
        self._load(copy.deepcopy(st["layout"]), copy.deepcopy(st["world"]), collisions=st["collisions"], render=render)
        if not render:
            return None, None
        return self._observation(), self._info(collision=False, success=bool(self._world_np.succeeded))

    # ---------------------------------------------------------------- accessors for drivers and planners
    @property
    def dynamics_params(self) -> dyn.DynamicsParams:
        """This episode's dynamics parameters (JAX leaves), for batched what-if rollouts.

        Privileged: per-agent start times and triggers encode hidden facts (a
        broken-down van never starts). Scripted experts and oracles may read it;
        a fair planner samples hypotheses instead (see ``dyn.rollout_hypotheses``).
        """
        return self._params

    @property
    def world_state(self) -> dyn.WorldState:
        """The current full world state (JAX leaves). Privileged: hidden agents included."""
        return self._world

    def hypotheses(self, n_per_answer: int, seed: int) -> tuple[dyn.DynamicsParams, dyn.WorldState, np.ndarray]:
        """Particles for belief-space planners, without the hidden truth.

        For every answer ``a`` of the first question, ``n_per_answer`` copies of this episode's
        *start* (t = 0) in which the hidden agents (``Scenario.hidden_roles``: presence, state,
        triggers; ``hidden_param_roles``: start times and triggers only) are redrawn from the
        scenario's sampler given ``a``. What the ego can see or knows (its own start, the
        occluders, other traffic, the road) is kept. The true hidden agents are replaced in every
        particle, the true answer's included, so the particles carry no trace of the truth.

        Returns NumPy ``params`` and ``states`` with a leading axis ``[A * n_per_answer]`` and
        ``int[A * n_per_answer]`` answers; advance the states with the actions actually taken
        (``jax.vmap(dynamics.step, in_axes=(0, 0, None))``) to reach the present.
        """
        layouts, answers = self._hypothesis_layouts(n_per_answer, seed)
        stack = lambda *xs: np.stack(xs)  # noqa: E731
        params = dyn.DynamicsParams(*[stack(*vals) for vals in zip(*(lay.params for lay in layouts))])
        world = jax.tree_util.tree_map(stack, *(lay.state for lay in layouts))
        return params, world, answers

    def hypothesis_snapshots(self, n_per_answer: int, seed: int) -> tuple[list[EnvSnapshot], np.ndarray]:
        """The same hypotheses as :meth:`hypotheses` (same ``seed``, same draws), as whole-episode snapshots.

        Each is this episode's start (t = 0) with the hidden agents redrawn given one answer, their colours
        and (StoppedLeadCar) lamp schedule included, so :meth:`restore` renders a hypothetical episode that
        the simulator can play forward: the posterior world model (``posterior-imagine``) keeps the ones
        that agree with what the real frames showed. Returns the snapshots and ``int[A * n_per_answer]``
        answers.
        """
        layouts, answers = self._hypothesis_layouts(n_per_answer, seed)
        rng = copy.deepcopy(self.np_random.bit_generator.state)
        snaps = [EnvSnapshot(env_id=self.scenario.name, config_key=self._config_key,
                             state={"layout": lay, "world": lay.state, "collisions": 0, "rng": rng})
                 for lay in layouts]
        return snaps, answers

    def _hypothesis_layouts(self, n_per_answer: int, seed: int) -> tuple[list[Layout], np.ndarray]:
        if self._layout is None:
            raise RuntimeError("call reset() before hypotheses()")
        if n_per_answer < 1:
            raise ValueError(f"n_per_answer must be >= 1, got {n_per_answer}")
        sc, base = self.scenario, self._layout
        rng = np.random.default_rng(seed)
        n_answers = len(sc.questions[0].answers)
        layouts, answers = [], []
        for a in range(n_answers):
            prior = tuple(1.0 if i == a else 0.0 for i in range(n_answers))
            for _ in range(n_per_answer):
                draw = sc.sample(rng, prior, self.config.cue_prob, self.config.seen_first)
                shift = np.float32(float(draw.params.x0) - float(base.params.x0))  # path coordinates follow x0
                p = {k: np.array(v, copy=True) for k, v in base.params._asdict().items()}
                ag = {k: np.array(v, copy=True) for k, v in base.state.agents._asdict().items()}
                rgba = np.array(base.slot_rgba, copy=True)
                for role in sc.hidden_roles + sc.hidden_param_roles:
                    i = sc.slot(role)
                    for k in ("start_t", "trigger_tta", "pre_steps", "pre_speed", "pre_heading"):
                        p[k][i] = getattr(draw.params, k)[i]
                    for k in ("trigger_s", "conflict_s"):
                        p[k][i] = getattr(draw.params, k)[i] + shift
                    if role in sc.hidden_roles:
                        for k in ag:
                            ag[k][i] = getattr(draw.state.agents, k)[i]
                        rgba[i] = draw.slot_rgba[i]
                # lamps (brake lights, hazards) are cues of the hidden cause: the hypothesis's own
                layouts.append(Layout(state=base.state._replace(agents=dyn.AgentState(**ag)),
                                      params=dyn.DynamicsParams(**p), slot_rgba=rgba, hidden=draw.hidden,
                                      answers=dict(draw.answers), lamps=dict(draw.lamps),
                                      landmarks=dict(base.landmarks)))
                answers.append(a)
        return layouts, np.asarray(answers)

    def scene_map(self) -> SceneMap:
        """The scene now, from above, for people (privileged: shows hidden agents); see ``topdown``.

        ``genex.viz.driving_map(env.unwrapped.scene_map())`` draws it with the ego's field of view
        and the region its occluders hide.
        """
        if self._layout is None:
            raise RuntimeError("call reset() before scene_map()")
        sc, a = self.scenario, self._world_np.agents
        statics = tuple(
            Footprint(b.pos[0], b.pos[1], b.yaw, 2 * b.size[0], 2 * b.size[1], tuple(b.rgba),
                      occludes=b.pos[2] + b.size[2] >= OCCLUDER_MIN_HEIGHT)
            for b in sc.scene.statics
        )
        agents = []
        for i, slot in enumerate(sc.scene.slots):
            if not bool(a.present[i]):
                continue
            length, width = AGENT_KINDS[slot.kind]
            agents.append(Footprint(
                float(a.x[i]), float(a.y[i]), float(a.heading[i]), length, width,
                tuple(float(c) for c in self._layout.slot_rgba[i]), label=slot.role,
                occludes=slot.kind in VEHICLE_KINDS, hidden=slot.role in sc.hidden_roles,
                visible=self._visible_pixels.get(slot.role, 0) >= self.config.min_visible_pixels,
            ))
        x, y, h = self._pose
        ego = Footprint(x, y, h, float(self._params.ego_length), float(self._params.ego_width),
                        (0.1, 0.8, 0.9, 1.0), label="ego")
        ahead = CAMERA_POS[0]
        cam_x, cam_y = x + ahead * np.cos(h), y + ahead * np.sin(h)
        cameras = tuple((float(cam_x), float(cam_y), float(h + yaw)) for yaw in self.scene.camera_yaws)
        return SceneMap(statics=statics, agents=tuple(agents), ego=ego, cameras=cameras, hfov=self.scene.hfov,
                        center=tuple(sc.scene.topdown_center), extent=float(sc.scene.topdown_extent),
                        t=int(self._world_np.t))

    # ---------------------------------------------------------------- internals
    def _load(self, layout: Layout, world_np: dyn.WorldState, collisions: int, render: bool = True) -> None:
        self._layout = layout
        self._params = dyn.to_jax(layout.params)
        self._world = dyn.to_jax(world_np)
        self._world_np = world_np
        self._collisions = collisions
        self._pose = tuple(float(p) for p in dyn.to_numpy(dyn.ego_pose_jit(self._params, self._world.ego)))
        self.scene.model.geom_rgba[:] = self.scene.default_rgba
        for i, rgba in enumerate(layout.slot_rgba):
            self.scene.set_slot_rgba(i, rgba)
        if render:
            self._refresh()
        else:  # the next step draws the frame; the labels of the old one must not be read meanwhile
            self._frame, self._visible, self._visible_pixels, self._occupancy = None, {}, {}, None
            self._appearance = None

    def _refresh(self) -> None:
        """Pose the MuJoCo scene, set lamps, render the frame and its visibility labels."""
        w = self._world_np
        a = w.agents
        self.scene.set_state(self._pose, a.x, a.y, a.heading, a.present)
        lamps = self._apply_lamps()
        frame, seg = self.scene.render_ego(with_segmentation=self.config.visibility_labels)
        self._frame = frame
        if seg is None:
            self._visible, self._visible_pixels, self._occupancy, self._appearance = {}, {}, None, None
            return
        counts = self.scene.slot_pixel_counts(seg)
        pixels = {s.role: int(counts[i]) for i, s in enumerate(self.scenario.scene.slots)}
        visible = {f: pixels[f] >= self.config.min_visible_pixels for f in self.facts if f in pixels}
        # Lamps are tiny (1-2 pixels at 64x64), so a lit lamp counts as visible from one pixel on.
        if lamps:
            n = self.scene.light_pixel_counts(seg, self._lamp_slot)
            for fact, lit in lamps.items():
                pixels[fact] = n if lit else 0
                visible[fact] = lit and n >= 1
        self._visible, self._visible_pixels = visible, pixels
        if self.config.occupancy_cell:
            masks = self._fact_masks(seg, lamps)
            self._occupancy = self._occupancy_maps(masks)
            self._appearance = fact_colours(masks, frame)
        else:
            self._occupancy, self._appearance = None, None

    def _fact_masks(self, seg: np.ndarray, lamps: dict[str, bool]) -> np.ndarray:
        """``bool[F, H, W]``: each fact's pixels in a geom-id map (lamps: lit ones only)."""
        slot_of = np.where(seg >= 0, self.scene.geom_slot[np.maximum(seg, 0)], -1)  # [H, W] slot index or -1
        roles = {s.role: i for i, s in enumerate(self.scenario.scene.slots)}
        masks = []
        for fact in self.facts:
            if fact in roles:
                masks.append(slot_of == roles[fact])
            elif fact in lamps and lamps[fact]:
                masks.append(np.isin(seg, self.scene.light_geoms.get(self._lamp_slot, [])))
            else:
                masks.append(np.zeros(seg.shape, bool))
        return np.stack(masks)

    def _occupancy_maps(self, m: np.ndarray) -> np.ndarray:
        """``uint8[F, H / cell, W / cell]``: each fact's pixels per cell of its mask ``m`` (``bool[F, H, W]``)."""
        cell = self.config.occupancy_cell
        f, h, w = m.shape
        counts = m.reshape(f, h // cell, cell, w // cell, cell).sum(axis=(2, 4))
        return counts.astype(np.uint8 if cell * cell <= 255 else np.uint16)

    def _apply_lamps(self) -> dict[str, bool]:
        """Colour the lead car's lamps and the emergency light bar for this step; returns lit lamp facts."""
        if self._lamp_slot is None:
            return {}
        slot, t = self._lamp_slot, int(self._world_np.t)
        lamps = lamp_states(self.scenario, self._layout, t, bool(self._world_np.agents.moving[slot]))
        colour = HAZARD_ON if lamps.get("hazard_lights") else BRAKE_ON if lamps.get("brake_lights") else LAMP_OFF
        for i in range(len(self.scene.light_geoms.get(slot, []))):
            self.scene.set_light(slot, i, colour)
        for j, g in enumerate(self._lightbar_geoms):  # red and blue swap every step
            self.scene.model.geom_rgba[g] = LIGHTBAR_COLOURS[(j + t) % 2]
        return lamps

    def _observation(self) -> dict[str, Any]:
        return {
            "image": self._frame.copy(),
            "text": self.instruction,
            "speed": np.array([self._world_np.ego.v], np.float32),
        }

    def _info(self, collision: bool, success: bool) -> dict[str, Any]:
        x, y, h = self._pose
        return {
            "hidden": copy.deepcopy(self._layout.hidden),
            "answers": dict(self._layout.answers),
            "visible": dict(self._visible),
            "visible_pixels": dict(self._visible_pixels),
            **({"occupancy": self._occupancy.copy()} if self._occupancy is not None else {}),
            **({"appearance": self._appearance.copy()} if self._appearance is not None else {}),
            "collision": collision,
            "success": success,
            "collisions": self._collisions,
            "ego": {"x": x, "y": y, "heading": h, "speed": float(self._world_np.ego.v),
                    "progress": float(self._world_np.ego.s)},
            "t": int(self._world_np.t),
        }


class OccludedCrosswalkEnv(DrivingEnv):
    """A parked truck hides part of a crosswalk; a pedestrian may step out."""

    def __init__(self, render_mode: str | None = None, **options: Any) -> None:
        super().__init__("OccludedCrosswalk", render_mode=render_mode, **options)


class StoppedLeadCarEnv(DrivingEnv):
    """The car ahead stopped at a green light; overtake only if it broke down."""

    def __init__(self, render_mode: str | None = None, **options: Any) -> None:
        super().__init__("StoppedLeadCar", render_mode=render_mode, **options)


class OccludedLeftTurnEnv(DrivingEnv):
    """Unprotected left turn; an oncoming car may be hidden behind a turning truck."""

    def __init__(self, render_mode: str | None = None, **options: Any) -> None:
        super().__init__("OccludedLeftTurn", render_mode=render_mode, **options)
