"""The three driving scenario families: layouts, hidden facts, priors, cues, costs.

A :class:`Scenario` is data plus a sampler. ``sample(rng, prior, cue_prob, seen_first)`` draws one
episode's :class:`Layout` (initial state, dynamics parameters, colours, the
hidden truth) from a NumPy ``Generator``, so ``reset(seed=...)`` is
deterministic. The static scene of a family never changes (the MuJoCo model is
built once per env); what varies per seed is the ego's start, the agents,
their colours and the hidden facts.

Coordinates: metres, x along the ego's road, y to the left, z up; lanes are
3.5 m wide and traffic keeps right (the ego drives in ``y < 0``).

Documented priors (``hidden_prior`` option overrides them):

* ``OccludedCrosswalk``: a pedestrian waits behind a parked truck or bus (even odds) with
  probability 0.4 and darts out when the car is 1.6-2.6 s away (or a slow car
  is within 6-9 m). Cues (with
  probability ``cue_prob``, default 0.5, when a pedestrian is there): a ball
  rolls out first, or the pedestrian stands beside the truck where the feet
  show under its body. A stray ball rolls out with no pedestrian 10% of the time. With the
  ``seen_first`` option (default 0), a pedestrian without the feet cue is, with that probability, a
  runner seen first: it starts on the far sidewalk 1-3 m inside the camera's view past the truck's
  rear (seen for a few frames), runs (3.5-4.5 m/s) behind the truck to the kerb, waits there and runs
  across when the car is 1.0-1.6 s away (or a slow car within 6-9 m). What it means needs object permanence:
  a one-frame belief forgets it once the truck hides it.
* ``StoppedLeadCar``: the van ahead stopped at a green light because a
  pedestrian is crossing (0.4), an emergency vehicle is coming (0.3) or it
  broke down (0.3). Only the last makes overtaking right. Cues: brake lights
  (on 80% of the time while waiting, off when broken down), hazard lights
  blinking when broken down (with probability ``cue_prob``, default 0.6).
  With the ``seen_first`` option (default 0), a crossing pedestrian starts, with
  that probability, on the right sidewalk (y -5.5 to -4.5 m), in view beside the
  van, and then walks on behind it (the van waits for it to cross).
* ``OccludedLeftTurn``: an oncoming car is hidden behind a truck waiting to
  turn, with probability 0.5; it reaches the ego's path 2.8-4.2 s after the start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..spec import Probe, Question
from . import dynamics as dyn
from .scene import AGENT_KINDS, CAMERA_POS, Box, SceneSpec, SlotSpec
from .topdown import VEHICLE_KINDS

__all__ = ["Layout", "Scenario", "SCENARIOS", "OCCLUDED_CROSSWALK", "STOPPED_LEAD_CAR", "OCCLUDED_LEFT_TURN"]

NEVER = 1_000_000  # start_t for agents that never start on their own
LANE = 3.5

ASPHALT = (0.22, 0.22, 0.24, 1.0)
GRASS = (0.28, 0.42, 0.25, 1.0)
SIDEWALK = (0.62, 0.62, 0.6, 1.0)
WHITE = (0.92, 0.92, 0.9, 1.0)
YELLOW = (0.9, 0.75, 0.2, 1.0)

CAR_COLOURS = np.array(
    [[0.75, 0.1, 0.1], [0.1, 0.25, 0.7], [0.85, 0.85, 0.85], [0.15, 0.15, 0.15], [0.2, 0.55, 0.3], [0.9, 0.6, 0.1]]
)
TRUCK_COLOURS = np.array([[0.95, 0.95, 0.92], [0.8, 0.55, 0.2], [0.35, 0.45, 0.6], [0.6, 0.15, 0.15]])
SHIRT_COLOURS = np.array([[0.9, 0.2, 0.2], [0.2, 0.7, 0.9], [0.95, 0.85, 0.2], [0.6, 0.3, 0.8], [0.2, 0.8, 0.3]])

BRAKE_ON = (1.0, 0.1, 0.05, 1.0)
LAMP_OFF = (0.35, 0.08, 0.08, 1.0)
HAZARD_ON = (1.0, 0.6, 0.0, 1.0)


@dataclass
class Layout:
    """One episode's draw: everything ``reset`` needs, as NumPy arrays and plain data."""

    state: dyn.WorldState  # NumPy leaves
    params: dyn.DynamicsParams  # NumPy leaves
    slot_rgba: np.ndarray  # float32[N, 4]
    hidden: dict[str, Any]
    answers: dict[str, int]
    lamps: dict[str, Any] = field(default_factory=dict)  # scenario-specific lamp schedule
    landmarks: dict[str, float] = field(default_factory=dict)  # public: e.g. conflict_s, where the hazard zone is


# ----------------------------------------------------------------------- scenery helpers
def _road_x(x0: float, x1: float, y0: float, y1: float) -> Box:
    return Box(((x0 + x1) / 2, (y0 + y1) / 2, -0.05), ((x1 - x0) / 2, (y1 - y0) / 2, 0.05), ASPHALT)


def _dashes_x(x0: float, x1: float, y: float, rgba=WHITE, dash=3.0, gap=3.0) -> list[Box]:
    out, x = [], x0
    while x + dash <= x1:
        out.append(Box((x + dash / 2, y, 0.003), (dash / 2, 0.08, 0.003), rgba))
        x += dash + gap
    return out


def _crosswalk_x(xc: float, y0: float, y1: float, width: float = 3.0) -> list[Box]:
    """Zebra stripes across a road along x, centred at ``xc``."""
    out, y = [], y0 + 0.3
    while y + 0.5 <= y1:
        out.append(Box((xc, y + 0.25, 0.004), (width / 2, 0.25, 0.004), WHITE))
        y += 1.0
    return out


def _buildings(x0: float, x1: float, y_near: float, side: int, seed: int) -> list[Box]:
    """A row of building blocks along a street edge (fixed per family, not per episode)."""
    rng = np.random.default_rng(seed)
    out, x = [], x0
    while x < x1:
        w = float(rng.uniform(8, 16))
        h = float(rng.uniform(5, 14))
        depth = 8.0
        c = rng.uniform(0.35, 0.75, size=3)
        out.append(Box((x + w / 2, y_near + side * depth / 2, h / 2), (w / 2 - 0.3, depth / 2, h / 2), (*c, 1.0)))
        x += w
    return out


def _ground(cx: float, cy: float, half: float) -> Box:
    return Box((cx, cy, -0.15), (half, half, 0.05), GRASS)


# ----------------------------------------------------------------------- scenario
@dataclass(frozen=True)
class Scenario:
    """A scenario family: its scene, actions, questions, costs and sampler."""

    name: str
    description: str
    action_names: tuple[str, ...]
    questions: tuple[Question, ...]
    action_costs: dict[str, np.ndarray]
    scene: SceneSpec
    facts: tuple[str, ...]  # visibility facts labelled per frame
    default_prior: tuple[float, ...]  # prior over the answers of the first question
    default_cue_prob: float
    max_steps: int
    sampler: Any  # (scenario, rng, prior, cue_prob, seen_first) -> Layout
    # actions that gather information about the hidden fact (physically, or in imagination)
    exploration_actions: tuple[str, ...] = ()
    # how visible facts bear on the questions (perception evidence for planners; see spec.Probe)
    probes: tuple[Probe, ...] = ()
    # agents whose presence, state and triggers carry the hidden facts (redrawn for planner hypotheses),
    # and agents whose *position* is visible but whose start time / triggers are hidden
    hidden_roles: tuple[str, ...] = ()
    hidden_param_roles: tuple[str, ...] = ()
    # whether the sampler can show the hidden agent first and then hide it (``seen_first`` option)
    supports_seen_first: bool = False

    @property
    def action_codes(self) -> np.ndarray:
        return np.array([dyn.BEHAVIOUR_NAMES.index(a) for a in self.action_names], dtype=np.int32)

    def sample(self, rng: np.random.Generator, prior: tuple[float, ...], cue_prob: float,
               seen_first: float = 0.0) -> Layout:
        return self.sampler(self, rng, prior, cue_prob, seen_first)

    def slot(self, role: str) -> int:
        for i, s in enumerate(self.scene.slots):
            if s.role == role:
                return i
        raise KeyError(role)


def _agents(scenario: Scenario, **per_role: dict[str, float]) -> tuple[dyn.AgentState, dict[str, np.ndarray]]:
    """Build agent arrays from ``role -> dict(x, y, heading, speed, start_t, trigger_s, present)``."""
    n = len(scenario.scene.slots)
    x, y, h, v = (np.zeros(n, np.float32) for _ in range(4))
    present = np.zeros(n, bool)
    start_t = np.full(n, NEVER, np.int32)
    trigger_s = np.full(n, np.inf, np.float32)
    trigger_tta = np.zeros(n, np.float32)
    conflict_s = np.zeros(n, np.float32)
    pre_steps = np.zeros(n, np.int32)
    pre_speed = np.zeros(n, np.float32)
    pre_heading = np.zeros(n, np.float32)
    for role, spec in per_role.items():
        i = scenario.slot(role)
        x[i], y[i] = spec["x"], spec["y"]
        h[i] = spec.get("heading", 0.0)
        v[i] = spec.get("speed", 0.0)
        present[i] = spec.get("present", True)
        start_t[i] = spec.get("start_t", NEVER)
        trigger_s[i] = spec.get("trigger_s", np.inf)
        trigger_tta[i] = spec.get("trigger_tta", 0.0)
        conflict_s[i] = spec.get("conflict_s", 0.0)
        pre_steps[i] = spec.get("pre_steps", 0)
        pre_speed[i] = spec.get("pre_speed", 0.0)
        pre_heading[i] = spec.get("pre_heading", 0.0)
    state = dyn.AgentState(x=x, y=y, heading=h, speed=v, moving=np.zeros(n, bool), present=present)
    return state, {"start_t": start_t, "trigger_s": trigger_s, "trigger_tta": trigger_tta, "conflict_s": conflict_s,
                   "pre_steps": pre_steps, "pre_speed": pre_speed, "pre_heading": pre_heading}


def _params(
    scenario: Scenario, starts: dict[str, np.ndarray], *, x0: float, y0: float, goal_s: float,
    turn_s: float = 0.0, turn_radius: float = 0.0,
) -> dyn.DynamicsParams:
    sizes = np.array([AGENT_KINDS[s.kind] for s in scenario.scene.slots], np.float32)
    collides = np.array([s.kind != "ball" for s in scenario.scene.slots])
    occludes = np.array([s.kind in VEHICLE_KINDS for s in scenario.scene.slots])
    f = np.float32
    return dyn.DynamicsParams(
        length=sizes[:, 0], width=sizes[:, 1], collides=collides, occludes=occludes,
        start_t=starts["start_t"], trigger_s=starts["trigger_s"], trigger_tta=starts["trigger_tta"],
        conflict_s=starts["conflict_s"], pre_steps=starts["pre_steps"], pre_speed=starts["pre_speed"],
        pre_heading=starts["pre_heading"],
        x0=f(x0), y0=f(y0), turn_s=f(turn_s), turn_radius=f(turn_radius), lane_width=f(LANE),
        goal_s=f(goal_s), ego_length=f(4.5), ego_width=f(1.9), action_codes=scenario.action_codes,
        collision_penalty=f(10.0), time_cost=f(0.01), success_bonus=f(1.0),
    )


def _world(agents: dyn.AgentState, v0: float) -> dyn.WorldState:
    f = np.float32
    return dyn.WorldState(
        t=np.int32(0), ego=dyn.EgoState(s=f(0.0), d=f(0.0), v=f(v0)), agents=agents,
        collided=np.bool_(False), succeeded=np.bool_(False),
    )


def _colours(scenario: Scenario, rng: np.random.Generator) -> np.ndarray:
    rgba = np.ones((len(scenario.scene.slots), 4), np.float32)
    for i, s in enumerate(scenario.scene.slots):
        palette = {"truck": TRUCK_COLOURS, "bus": TRUCK_COLOURS, "pedestrian": SHIRT_COLOURS}.get(s.kind, CAR_COLOURS)
        rgba[i, :3] = palette[rng.integers(len(palette))]
        if s.kind == "emergency":
            rgba[i, :3] = (0.95, 0.95, 0.95)
    return rgba


# ----------------------------------------------------------------------- occluded crosswalk
CROSSWALK_X = 40.0


def _sample_crosswalk(sc: Scenario, rng: np.random.Generator, prior, cue_prob: float, seen_first: float) -> Layout:
    p_ped = prior[0]
    x0 = float(rng.uniform(12.0, 18.0))
    v0 = float(rng.uniform(5.0, 7.0))
    present = bool(rng.random() < p_ped)
    # the pedestrian darts out when the car is tta seconds away, or when a slow car is within near_dist
    tta = float(rng.uniform(1.6, 2.6))
    near_dist = float(rng.uniform(6.0, 9.0))
    conflict_s = CROSSWALK_X - 1.5 - 2.25 - x0  # ego progress when its front reaches the crosswalk
    ped_speed = float(rng.uniform(1.5, 2.3))
    occluder = "truck" if rng.random() < 0.5 else "bus"
    occ_len = AGENT_KINDS[occluder][0]
    front = CROSSWALK_X - 2.0 + float(rng.uniform(-0.4, 0.4))  # front bumper just before the crosswalk
    truck_x = front - occ_len / 2
    cue = "none"
    if present and rng.random() < cue_prob:
        cue = "ball" if rng.random() < 0.5 else "feet"
    ped_x = CROSSWALK_X + float(rng.uniform(-0.6, 0.6))
    if cue == "feet":
        # waiting beside the far side of the truck: legs show under its body; walks out diagonally
        ped = dict(x=front - 3.0, y=-6.6)
        heading = math.atan2(-1.75 - ped["y"], ped_x - ped["x"])
    else:
        ped = dict(x=ped_x, y=-6.4)
        heading = math.pi / 2
    ball_present = cue == "ball" or (not present and rng.random() < 0.1)
    oncoming = bool(rng.random() < 0.5)
    oncoming_x = float(rng.uniform(70, 95))
    trigger = dict(trigger_tta=tta, conflict_s=conflict_s, trigger_s=conflict_s - near_dist)
    jogger = False
    if seen_first > 0.0:  # drawn after everything else, so seen_first = 0 keeps every other draw of a seed
        jogger = bool(rng.random() < seen_first) and present and cue != "feet"
        run_speed = float(rng.uniform(3.5, 4.5))
        inside = float(rng.uniform(1.0, 3.0))
        run_tta = float(rng.uniform(1.0, 1.6))  # a runner does not wait for the car to come close
        if jogger:
            # starts on the far sidewalk `inside` metres short of where the truck's far rear corner cuts the
            # camera's view (in view, at most a few steps), runs behind the truck to the kerb, waits there
            # and runs across when the car is within the dart-out trigger
            cam_x, rear = x0 + CAMERA_POS[0], truck_x - occ_len / 2
            sight = cam_x + (rear - cam_x) * (8.8 - LANE / 2) / (6.0 - LANE / 2)
            start = (min(sight - inside, ped["x"] - 2.0), -8.8)
            dx, dy = ped["x"] - start[0], ped["y"] - start[1]
            steps = max(1, int(round(math.hypot(dx, dy) / run_speed / dyn.DT)))
            ped = dict(x=start[0], y=start[1], pre_steps=steps, pre_speed=math.hypot(dx, dy) / (steps * dyn.DT),
                       pre_heading=math.atan2(dy, dx))
            ped_speed, tta = run_speed, run_tta
            trigger["trigger_tta"] = tta
            cue = "seen_first" if cue == "none" else f"{cue}+seen_first"
    ball_trigger = dict(trigger_tta=tta + 1.0, conflict_s=conflict_s, trigger_s=conflict_s - near_dist - 4.0)
    agents, starts = _agents(
        sc,
        **{occluder: dict(x=truck_x, y=-4.75)},
        pedestrian=dict(**ped, heading=heading, speed=ped_speed, present=present, **trigger),
        ball=dict(x=CROSSWALK_X - 0.8, y=-6.3, heading=math.pi / 2, speed=4.0, present=ball_present, **ball_trigger),
        oncoming_car=dict(x=oncoming_x, y=LANE / 2, heading=math.pi, speed=8.0, present=oncoming, start_t=0),
    )
    params = _params(sc, starts, x0=x0, y0=-LANE / 2, goal_s=55.0 - x0)
    hidden = {"pedestrian_crossing": present, "cue": cue, "occluder": occluder, "time_to_arrival_trigger": tta,
              "near_trigger_distance": near_dist, "pedestrian_speed": ped_speed}
    return Layout(state=_world(agents, v0), params=params, slot_rgba=_colours(sc, rng), hidden=hidden,
                  answers={"pedestrian_crossing": 0 if present else 1}, landmarks={"conflict_s": conflict_s})


def _crosswalk_scene() -> SceneSpec:
    statics = [
        _ground(40, 0, 90),
        _road_x(-20, 110, -6.0, LANE),  # two lanes + parking strip on the right
        Box((45, -7.5, 0.07), (65, 1.5, 0.07), SIDEWALK),
        Box((45, 5.0, 0.07), (65, 1.5, 0.07), SIDEWALK),
        *_dashes_x(-20, 110, 0.0, YELLOW),
        Box((45, -3.5, 0.003), (65, 0.06, 0.003), WHITE),
        *_crosswalk_x(CROSSWALK_X, -6.0, LANE),
        *_buildings(-20, 110, -10.0, -1, seed=1),
        *_buildings(-20, 110, 7.5, 1, seed=2),
    ]
    slots = (
        SlotSpec("truck", "truck"),
        SlotSpec("bus", "bus"),
        SlotSpec("pedestrian", "pedestrian"),
        SlotSpec("ball", "ball"),
        SlotSpec("oncoming_car", "car"),
    )
    return SceneSpec(statics=tuple(statics), slots=slots, topdown_center=(32.0, -2.0), topdown_extent=40.0)


OCCLUDED_CROSSWALK = Scenario(
    name="OccludedCrosswalk",
    description="A parked truck or bus hides part of a crosswalk; a pedestrian may step out from behind it.",
    action_names=("accelerate", "cruise", "brake", "creep", "wait"),
    questions=(Question("pedestrian_crossing", "Is a pedestrian about to cross in front of me?", ("yes", "no")),),
    action_costs={
        # rows: accelerate, cruise, brake, creep, wait; columns: yes, no
        "pedestrian_crossing": np.array([[10.0, 0.0], [8.0, 0.5], [1.0, 2.0], [0.5, 1.5], [1.0, 2.5]], np.float32),
    },
    scene=_crosswalk_scene(),
    facts=("pedestrian", "ball", "truck", "bus", "oncoming_car"),
    default_prior=(0.4, 0.6),
    default_cue_prob=0.5,
    max_steps=80,
    sampler=_sample_crosswalk,
    exploration_actions=("creep",),  # edging up to the truck's front shows the sidewalk behind it
    probes=(
        Probe("pedestrian_crossing", "pedestrian", ("yes",)),
        # a ball rolls out first in half the episodes with a pedestrian, and 10% of those without
        Probe("pedestrian_crossing", "ball", ("yes",), detect=0.25, false_alarm=0.05),
    ),
    hidden_roles=("pedestrian", "ball"),
    supports_seen_first=True,
)


# ----------------------------------------------------------------------- stopped lead car
LEAD_STOP_X = 29.5  # front bumper of the stopped van, before the crosswalk
LEAD_CROSSWALK_X = 31.5
INTERSECTION_X = 40.0


def _sample_lead(sc: Scenario, rng: np.random.Generator, prior, cue_prob: float, seen_first: float) -> Layout:
    cause = ("pedestrian", "emergency_vehicle", "breakdown")[int(rng.choice(3, p=np.asarray(prior)))]
    van_len = AGENT_KINDS["van"][0]
    lead_x = LEAD_STOP_X - van_len / 2
    gap = float(rng.uniform(2.5, 4.0))
    x0 = lead_x - van_len / 2 - gap - 2.25
    lead_speed = 6.0
    ped = dict(x=LEAD_CROSSWALK_X, y=-6.0, present=False)
    ev = dict(x=INTERSECTION_X + LANE / 2, y=-60.0, present=False)
    lead_start = NEVER
    if cause == "pedestrian":
        y = float(rng.uniform(-1.5, 0.0))  # in front of the van, hidden by it
        speed = float(rng.uniform(0.6, 0.9))
        ped = dict(x=LEAD_CROSSWALK_X + float(rng.uniform(-0.5, 0.5)), y=y, heading=math.pi / 2, speed=speed,
                   start_t=0)
        # the van waits until the pedestrian has crossed both lanes, then 1 s more
        lead_start = int(math.ceil((LANE + 0.3 - y) / speed / dyn.DT)) + 4
    elif cause == "emergency_vehicle":
        speed = float(rng.uniform(11.0, 14.0))
        y = -(2 * LANE + speed * float(rng.uniform(3.5, 5.0)))  # reaches the main road 3.5-5 s from now
        ev = dict(x=INTERSECTION_X + LANE / 2, y=y, heading=math.pi / 2, speed=speed, start_t=0)
        lead_start = int(math.ceil((LANE * 2 + 3.0 - y) / speed / dyn.DT)) + 4
    hazards = cause == "breakdown" and rng.random() < cue_prob
    brake_lights = cause != "breakdown" and rng.random() < 0.8
    seen = False
    if seen_first > 0.0:  # drawn after everything else, so seen_first = 0 keeps every other draw of a seed
        seen = bool(rng.random() < seen_first) and cause == "pedestrian"
        kerb_y = float(rng.uniform(-5.5, -4.5))
        if seen:  # still on the right sidewalk, in view beside the van, then walks on behind it
            y, speed = kerb_y, ped["speed"]
            ped = {**ped, "y": y}
            lead_start = int(math.ceil((LANE + 0.3 - y) / speed / dyn.DT)) + 4
    agents, starts = _agents(
        sc,
        lead_car=dict(x=lead_x, y=-LANE / 2, speed=lead_speed, start_t=lead_start),
        pedestrian=ped,
        emergency_vehicle=ev,
        parked_car=dict(x=float(rng.uniform(5.0, 12.0)), y=-4.75, present=bool(rng.random() < 0.5)),
    )
    params = _params(sc, starts, x0=x0, y0=-LANE / 2, goal_s=INTERSECTION_X + 15.0 - x0)
    conflict_s = LEAD_CROSSWALK_X - 1.5 - 2.25 - x0
    hidden = {"cause": cause, "hazard_lights": bool(hazards), "brake_lights": bool(brake_lights),
              "lead_car_resumes_at_step": None if lead_start >= NEVER else lead_start}
    if seen_first > 0.0:
        hidden["seen_first"] = seen
    return Layout(
        state=_world(agents, 0.0), params=params, slot_rgba=_colours(sc, rng), hidden=hidden,
        answers={"lead_car_cause": ("pedestrian", "emergency_vehicle", "breakdown").index(cause)},
        lamps={"hazards": bool(hazards), "brake_lights": bool(brake_lights)}, landmarks={"conflict_s": conflict_s},
    )


def _lead_scene() -> SceneSpec:
    ix = INTERSECTION_X
    statics = [
        _ground(ix, 0, 90),
        _road_x(-30, 110, -LANE, LANE),
        Box((ix, 0, -0.05), (LANE * 2, 80, 0.05), ASPHALT),  # cross road
        *_dashes_x(-30, ix - 2 * LANE, 0.0, YELLOW),
        *_dashes_x(ix + 2 * LANE, 110, 0.0, YELLOW),
        *_crosswalk_x(LEAD_CROSSWALK_X, -LANE, LANE),
        Box((ix - 2 * LANE - 0.25, -LANE / 2, 0.003), (0.25, LANE / 2, 0.003), WHITE),  # stop line
        Box((ix - 2 * LANE - 30, -5.0, 0.07), (30 - 1.5, 1.5, 0.07), SIDEWALK),
        Box((ix - 2 * LANE - 30, 5.0, 0.07), (30 - 1.5, 1.5, 0.07), SIDEWALK),
        # traffic light on the near right corner, showing green
        Box((ix - 2 * LANE - 1.0, -4.6, 2.0), (0.08, 0.08, 2.0), (0.2, 0.2, 0.2, 1.0)),
        Box((ix - 2 * LANE - 1.0, -4.6, 4.3), (0.2, 0.25, 0.45), (0.1, 0.1, 0.1, 1.0)),
        Box((ix - 2 * LANE - 1.25, -4.6, 4.0), (0.05, 0.15, 0.12), (0.1, 0.95, 0.3, 1.0)),
        *_buildings(-30, ix - 2 * LANE - 3, -6.5, -1, seed=3),
        *_buildings(-30, ix - 2 * LANE - 3, 6.5, 1, seed=4),
        *_buildings(ix + 2 * LANE + 3, 110, -6.5, -1, seed=5),
        *_buildings(ix + 2 * LANE + 3, 110, 6.5, 1, seed=6),
    ]
    slots = (
        SlotSpec("lead_car", "van"),
        SlotSpec("pedestrian", "pedestrian"),
        SlotSpec("emergency_vehicle", "emergency"),
        SlotSpec("parked_car", "car"),
    )
    return SceneSpec(statics=tuple(statics), slots=slots, topdown_center=(28.0, -2.0), topdown_extent=44.0)


STOPPED_LEAD_CAR = Scenario(
    name="StoppedLeadCar",
    description="The van ahead stopped at a green light: pedestrian, emergency vehicle or breakdown?",
    action_names=("accelerate", "cruise", "brake", "creep", "wait", "overtake"),
    questions=(
        Question(
            "lead_car_cause",
            "Why has the car ahead stopped at a green light?",
            ("pedestrian", "emergency_vehicle", "breakdown"),
        ),
    ),
    action_costs={
        # rows: accelerate, cruise, brake, creep, wait, overtake; columns: pedestrian, emergency, breakdown
        "lead_car_cause": np.array(
            [[10, 10, 10], [10, 10, 10], [0.5, 0.5, 2.0], [3.0, 3.0, 3.0], [0.5, 0.5, 2.0], [10, 10, 0.0]], np.float32
        ),
    },
    scene=_lead_scene(),
    facts=("lead_car", "pedestrian", "emergency_vehicle", "parked_car", "brake_lights", "hazard_lights"),
    default_prior=(0.4, 0.3, 0.3),
    default_cue_prob=0.6,
    max_steps=100,
    sampler=_sample_lead,
    exploration_actions=("overtake", "wait"),  # one overtake step peeks past the van; waiting shows the cause
    probes=(
        Probe("lead_car_cause", "pedestrian", ("pedestrian",)),
        Probe("lead_car_cause", "emergency_vehicle", ("emergency_vehicle",)),
        Probe("lead_car_cause", "hazard_lights", ("breakdown",), detect=0.3, false_alarm=0.01),
        # brake lights: on 80% of the time while waiting, off when broken down
        Probe("lead_car_cause", "brake_lights", ("pedestrian", "emergency_vehicle"), detect=0.8, false_alarm=0.05),
    ),
    hidden_roles=("pedestrian", "emergency_vehicle"),
    supports_seen_first=True,
    hidden_param_roles=("lead_car",),
)


# ----------------------------------------------------------------------- occluded left turn
TURN_RADIUS = 5.25
TRUCK_TURN_X = 11.5


def _sample_left_turn(sc: Scenario, rng: np.random.Generator, prior, cue_prob: float,
                      seen_first: float) -> Layout:
    del cue_prob, seen_first  # no cue beyond geometry in this family
    x0 = float(rng.uniform(-22.0, -16.0))
    v0 = float(rng.uniform(2.0, 4.0))
    present = bool(rng.random() < prior[0])
    speed = float(rng.uniform(9.0, 13.0))
    arrival = float(rng.uniform(2.8, 4.2))  # seconds until it reaches the ego's path
    car_x = TURN_RADIUS - LANE / 2 + speed * arrival
    turn_s = -LANE / 2 - x0
    agents, starts = _agents(
        sc,
        truck=dict(x=TRUCK_TURN_X + float(rng.uniform(-0.3, 0.3)), y=LANE / 2, heading=math.pi),
        oncoming_vehicle=dict(x=car_x, y=LANE * 1.5, heading=math.pi, speed=speed, present=present, start_t=0),
        parked_car=dict(x=float(rng.uniform(-40.0, -30.0)), y=-LANE * 1.5, present=bool(rng.random() < 0.5)),
    )
    goal_s = turn_s + TURN_RADIUS * math.pi / 2 + 16.5
    params = _params(sc, starts, x0=x0, y0=-LANE / 2, goal_s=goal_s, turn_s=turn_s, turn_radius=TURN_RADIUS)
    hidden = {"oncoming_vehicle": present, "oncoming_speed": speed if present else None,
              "arrival_s": arrival if present else None}
    return Layout(state=_world(agents, v0), params=params, slot_rgba=_colours(sc, rng), hidden=hidden,
                  answers={"oncoming_vehicle": 0 if present else 1}, landmarks={"conflict_s": turn_s})


def _left_turn_scene() -> SceneSpec:
    w = 2 * LANE
    statics = [
        _ground(0, 0, 90),
        _road_x(-80, 80, -w, w),
        Box((0, 0, -0.05), (w, 80, 0.05), ASPHALT),
        *_dashes_x(-80, -w, 0.0, YELLOW),
        *_dashes_x(w, 80, 0.0, YELLOW),
        *_dashes_x(-80, -w, -LANE, WHITE),
        *_dashes_x(w, 80, LANE, WHITE),
        *_crosswalk_x(-w - 1.5, -w, w),
        Box((-w - 3.2, -LANE / 2, 0.003), (0.2, LANE / 2, 0.003), WHITE),  # stop line
        *_buildings(-80, -w - 4, -w - 2, -1, seed=7),
        *_buildings(-80, -w - 4, w + 2, 1, seed=8),
        *_buildings(w + 4, 80, -w - 2, -1, seed=9),
        *_buildings(w + 4, 80, w + 2, 1, seed=10),
    ]
    slots = (
        SlotSpec("truck", "truck"),
        SlotSpec("oncoming_vehicle", "car"),
        SlotSpec("parked_car", "car"),
    )
    return SceneSpec(statics=tuple(statics), slots=slots, topdown_center=(2.0, 2.0), topdown_extent=46.0)


OCCLUDED_LEFT_TURN = Scenario(
    name="OccludedLeftTurn",
    description="Turning left; a truck waiting to turn from the other side may hide an oncoming car.",
    action_names=("accelerate", "cruise", "brake", "creep", "wait"),
    questions=(Question("oncoming_vehicle", "Is an oncoming vehicle hidden behind the truck?", ("yes", "no")),),
    action_costs={
        # rows: accelerate, cruise, brake, creep, wait; columns: yes, no
        "oncoming_vehicle": np.array([[10.0, 0.0], [8.0, 0.5], [1.0, 2.0], [1.5, 1.0], [0.5, 2.0]], np.float32),
    },
    scene=_left_turn_scene(),
    facts=("truck", "oncoming_vehicle", "parked_car"),
    default_prior=(0.5, 0.5),
    default_cue_prob=0.0,
    max_steps=80,
    sampler=_sample_left_turn,
    # The truck's shadow covers the far lane from every point of the approach and widens as the ego
    # gets closer, so creeping does not reveal an oncoming car earlier: only time (waiting) does.
    exploration_actions=("wait",),
    probes=(Probe("oncoming_vehicle", "oncoming_vehicle", ("yes",)),),
    hidden_roles=("oncoming_vehicle",),
)

SCENARIOS: dict[str, Scenario] = {
    s.name: s for s in (OCCLUDED_CROSSWALK, STOPPED_LEAD_CAR, OCCLUDED_LEFT_TURN)
}


# ----------------------------------------------------------------------- lamps
def lamp_states(scenario: Scenario, layout: Layout, t: int, lead_moving: bool) -> dict[str, bool]:
    """Which lamp facts are lit at step ``t`` (brake lights, hazards, light bars)."""
    if scenario is not STOPPED_LEAD_CAR:
        return {}
    hazards_on = bool(layout.lamps.get("hazards")) and (t // 2) % 2 == 0
    brake_on = bool(layout.lamps.get("brake_lights")) and not lead_moving
    return {"hazard_lights": hazards_on, "brake_lights": brake_on}
