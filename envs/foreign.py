"""Foreign Gymnasium envs under genex planners (installed as ``genex.envs.foreign``).

Any registered Gymnasium env with image observations and a ``Discrete`` action
space can run under every planner (``genex compare --env module:Env-v0``). Two
things make that honest:

* **Frames**: planners read ``uint8[H, W, 3]`` RGB frames. :class:`RGBFrames`
  turns grayscale (``[H, W]``, ``[1, H, W]``, ``[H, W, 1]``), channel-first
  (``[3, H, W]``) or stacked-grayscale (``[k, H, W]``: the newest frame)
  observations into that, and resizes them where a world model needs another
  size (``size=(H, W)``).
* **A task**: without declared questions a planner cannot form a belief, so
  every planner falls back to the policy's own action choice and no world
  model is called. A :class:`TaskSpec` declares what a genex env declares
  (questions, per-answer action costs, probes, exploration actions, priors)
  and how to read success and collisions from the env's own ``info``;
  :class:`DeclaredTask` attaches it, and then ``imagine``, ``lookahead`` and
  the other belief planners really plan on the env. Where the env reports no
  outcome, the outcome is ``None`` (tables say "n/a", never a false 0%).

Example (what ``genex compare --env highway_env:intersection-v0 --task-spec
genex.envs.foreign:highway_intersection`` does)::

    env = make_env("highway_env:intersection-v0", task_spec=highway_intersection())  # 64x64 frames
    planner = make_planner("imagine", env)

The spec's ``action_names`` name what each ``Discrete`` action does in the
driving vocabulary (``brake``, ``cruise``, ``accelerate``, ...), so a driving
world model conditions on them; a spec for another kind of env names its own.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .spec import Probe, Question, validate_action_costs, validate_probes

__all__ = [
    "TaskSpec",
    "RGBFrames",
    "DeclaredTask",
    "ReportedOutcome",
    "make_env",
    "is_genex_env",
    "load_task_spec",
    "declared",
    "highway_intersection",
    "highway_frames",
    "HIGHWAY_GRAYSCALE_64",
]

#: info keys read as success, and as a collision, when a spec names none (SB3 and highway-env conventions)
SUCCESS_KEYS = ("success", "is_success", "arrived")
COLLISION_KEYS = ("collisions", "crashed", "collision")

Outcome = Callable[[Mapping[str, Any]], "bool | None"]


def declared(env: Any, name: str, default: Any = None) -> Any:
    """Attribute ``name`` as declared by ``env``: on a wrapper of it (a :class:`DeclaredTask`) or on the base env.

    Gymnasium 1.x hides wrapper attributes behind ``get_wrapper_attr``; genex envs declare theirs on
    ``env.unwrapped``. Planners read both through this one function.
    """
    getter = getattr(env, "get_wrapper_attr", None)
    if getter is not None:
        try:
            return getter(name)
        except AttributeError:
            return default
    return getattr(getattr(env, "unwrapped", env), name, default)


def _read_key(info: Mapping[str, Any], keys: tuple[str, ...]) -> bool | None:
    for k in keys:
        if k in info and info[k] is not None:
            v = info[k]
            return bool(v > 0) if isinstance(v, (int, float, np.integer, np.floating)) else bool(v)
    return None


def _as_outcome(rule: Outcome | str | tuple[str, ...] | None, fallback: tuple[str, ...]) -> Outcome:
    """An outcome reader: a function of ``info``, an info key (or keys, first present wins), or None (defaults)."""
    if callable(rule):
        return rule
    keys = fallback if rule is None else ((rule,) if isinstance(rule, str) else tuple(rule))
    return lambda info: _read_key(info, keys)


@dataclass(frozen=True)
class TaskSpec:
    """What a planner needs to know about a foreign env: its decision problem, declared as genex envs declare it.

    Attributes:
        action_names: one name per ``Discrete`` action (in a world model's vocabulary where one imagines).
        questions: the hidden-state questions whose answers change the best action.
        action_costs: per question, ``float[n_actions, n_answers]``: the cost of each action under each answer.
        probes: how a visible fact (asked of the policy: "Is a <fact> visible?") bears on a question.
        priors: per question, the prior over its answers (default uniform).
        exploration_actions: actions whose repetition ``imagine`` rolls out (e.g. waiting to see more).
        instruction: the task text the policy reads.
        env_kwargs: options the env needs for this task (e.g. image observations), merged under the caller's
            ``env_kwargs`` (nested dicts merged key by key).
        success, collision: how to read the episode's outcome from the final ``info``: a function of ``info``
            returning True/False/None, an info key (or tuple of keys), or None for the defaults
            (:data:`SUCCESS_KEYS`, :data:`COLLISION_KEYS`). None from the reader means "not reported".
    """

    action_names: tuple[str, ...]
    questions: tuple[Question, ...] = ()
    action_costs: Mapping[str, Any] = field(default_factory=dict)
    probes: tuple[Probe, ...] = ()
    priors: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    exploration_actions: tuple[str, ...] = ()
    instruction: str = ""
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    success: Outcome | str | tuple[str, ...] | None = None
    collision: Outcome | str | tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.action_names)
        if n < 1 or len(set(self.action_names)) != n:
            raise ValueError(f"TaskSpec.action_names must be unique and non-empty, got {self.action_names}")
        costs = {k: np.asarray(v, np.float32) for k, v in self.action_costs.items()}
        object.__setattr__(self, "action_costs", costs)
        if self.questions or costs:
            validate_action_costs(tuple(self.questions), costs, n)
        validate_probes(tuple(self.questions), tuple(self.probes), n)
        bad = [a for a in self.exploration_actions if a not in self.action_names]
        if bad:
            raise ValueError(f"exploration_actions {bad} are not among action_names {list(self.action_names)}")
        by_id = {q.id: q for q in self.questions}
        for qid, p in self.priors.items():
            if qid not in by_id or len(p) != len(by_id[qid].answers) or abs(sum(p) - 1.0) > 1e-6:
                raise ValueError(f"prior {qid!r}={p} must name a question and sum to 1 over its answers")


# ---------------------------------------------------------------------------------------------- frames
def _frame_layout(shape: tuple[int, ...]) -> str:
    """How an image observation's axes are laid out: ``"hw"``, ``"hwc"`` (C in 1, 3, 4) or ``"chw"`` (C <= 4)."""
    if len(shape) == 2:
        return "hw"
    if len(shape) == 3 and shape[-1] in (1, 3, 4):
        return "hwc"
    if len(shape) == 3 and shape[0] <= 4:
        return "chw"
    raise ValueError(f"cannot read a frame from an observation of shape {list(shape)}: need [H, W], [H, W, C] "
                     "or [C, H, W] (C <= 4)")


class RGBFrames(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Observations as ``uint8[H, W, 3]`` RGB frames (grayscale, channel-first or frame stacks adapted).

    Args:
        env: an env whose observation is an image ``Box`` or a ``Dict`` with an ``"image"`` image ``Box``.
        size: ``(H, W)`` to resize every frame to (bilinear), e.g. the frame size a world model imagines;
            None keeps the env's size.

    A stack of ``k`` grayscale frames (highway-env's ``GrayscaleObservation``) keeps its newest frame: the planners
    keep their own history. Float images in ``[0, 1]`` are scaled to ``uint8``.
    """

    def __init__(self, env: gym.Env, size: tuple[int, int] | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, size=size)
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        self._dict = isinstance(space, spaces.Dict)
        box = space["image"] if self._dict else space
        if not isinstance(box, spaces.Box):
            raise ValueError(f"RGBFrames needs an image Box observation (or a Dict with 'image'), got {space}")
        self._float = not np.issubdtype(box.dtype, np.integer)
        if box.dtype != np.uint8 and not (self._float and np.all(box.low >= 0) and np.all(box.high <= 1)):
            raise ValueError(f"the observation {box} is not an image (uint8, or floats in [0, 1]); make the env "
                             "render images (highway-env: config.observation.type = GrayscaleObservation), e.g. "
                             "through a task spec's env_kwargs")
        self._layout = _frame_layout(tuple(box.shape))
        h, w = self._hw(tuple(box.shape))
        self._size = None if size is None or tuple(size) == (h, w) else (int(size[0]), int(size[1]))
        out = spaces.Box(0, 255, (*(self._size or (h, w)), 3), np.uint8)
        self.observation_space = spaces.Dict({**space.spaces, "image": out}) if self._dict else out

    def _hw(self, shape: tuple[int, ...]) -> tuple[int, int]:
        return (shape[1], shape[2]) if self._layout == "chw" else (shape[0], shape[1])

    def to_rgb(self, img: Any) -> np.ndarray:
        """One observation's image as ``uint8[H, W, 3]``."""
        a = np.asarray(img)
        if self._float:
            a = np.clip(a * 255.0 if a.max(initial=0) <= 1.0 else a, 0, 255)
        a = a.astype(np.uint8, copy=False)
        if self._layout == "hw":
            a = a[:, :, None]
        elif self._layout == "chw":
            a = a if a.shape[0] == 3 else a[-1:]  # RGB channel-first, or a stack of gray frames: the newest
            a = np.moveaxis(a, 0, -1)
        if a.shape[-1] == 1:
            a = np.repeat(a, 3, axis=-1)
        elif a.shape[-1] == 4:
            a = a[..., :3]
        if self._size is not None:
            from PIL import Image

            a = np.asarray(Image.fromarray(np.ascontiguousarray(a)).resize(self._size[::-1], Image.BILINEAR))
        return np.ascontiguousarray(a)

    def observation(self, observation: Any) -> Any:
        if self._dict:
            return {**observation, "image": self.to_rgb(observation["image"])}
        return self.to_rgb(observation)


# ---------------------------------------------------------------------------------------------- task
class ReportedOutcome(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """``info["success"]`` and ``info["collisions"]`` as a foreign env reports them, so tables count them.

    ``success``/``collision``: a function of ``info`` (True/False/None), an info key or keys (the first present
    wins), or None for the defaults (:data:`SUCCESS_KEYS`, :data:`COLLISION_KEYS`: ``crashed`` and the like). A key
    the env never reports stays absent, and the runner writes "n/a" for it, never a false 0%. A collision latches for
    the rest of the episode; success needs no collision.
    """

    def __init__(self, env: gym.Env, success: Outcome | str | tuple[str, ...] | None = None,
                 collision: Outcome | str | tuple[str, ...] | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, success=success, collision=collision)
        gym.Wrapper.__init__(self, env)
        self._success = _as_outcome(success, SUCCESS_KEYS)
        self._collision = _as_outcome(collision, COLLISION_KEYS)
        self._collided: bool | None = None

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        out = dict(info)
        s, c = self._success(info), self._collision(info)
        if c is not None:
            self._collided = bool(self._collided) or c
        if self._collided is not None:
            out["collisions"] = int(self._collided)
        if s is not None:
            out["success"] = bool(s) and not self._collided
        return out

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._collided = None
        obs, info = self.env.reset(**kwargs)
        return obs, self._info(info)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._info(info)


class DeclaredTask(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Attach a :class:`TaskSpec` to a foreign env: planners read its declarations (through :func:`declared`).

    Observations become ``{"image": uint8[H, W, 3], "text": instruction}`` when the wrapped env gives bare frames,
    so the policy reads the spec's instruction. Wrap it in :class:`ReportedOutcome` (``make_env`` does) to count
    the spec's success and collisions.
    """

    def __init__(self, env: gym.Env, spec: TaskSpec) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, spec=spec)
        gym.Wrapper.__init__(self, env)
        if not isinstance(env.action_space, spaces.Discrete):
            raise ValueError(f"a TaskSpec needs a Discrete action space, got {env.action_space}")
        if int(env.action_space.n) != len(spec.action_names):
            raise ValueError(f"the TaskSpec names {len(spec.action_names)} actions {list(spec.action_names)} but the "
                             f"env has {int(env.action_space.n)}")
        self.task_spec = spec
        self.questions = tuple(spec.questions)
        self.action_costs = dict(spec.action_costs)
        self.action_names = tuple(spec.action_names)
        self.probes = tuple(spec.probes)
        self.priors = dict(spec.priors)
        self.exploration_actions = tuple(spec.exploration_actions)
        self.instruction = spec.instruction
        self._wrap_obs = not isinstance(env.observation_space, spaces.Dict)
        if self._wrap_obs:
            self.observation_space = spaces.Dict({
                "image": env.observation_space,
                "text": spaces.Text(max_length=max(1, len(spec.instruction)), min_length=0, charset=_charset(spec)),
            })

    def _obs(self, obs: Any) -> Any:
        return {"image": obs, "text": self.instruction} if self._wrap_obs else obs

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return self._obs(obs), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._obs(obs), reward, terminated, truncated, info


def _charset(spec: TaskSpec) -> str:
    """The Text space's characters: gymnasium's alphanumerics plus whatever the instruction uses."""
    from gymnasium.spaces.text import alphanumeric

    return "".join(sorted(set(alphanumeric) | set(spec.instruction)))


# ---------------------------------------------------------------------------------------------- making envs
def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, nested dicts merged key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def is_genex_env(env_id: str) -> bool:
    import genex.envs

    return env_id in genex.envs.ENV_IDS


def load_task_spec(ref: str | TaskSpec | Callable[[], TaskSpec]) -> TaskSpec:
    """A :class:`TaskSpec` from itself, a function returning one, or ``"module:attribute"`` naming either."""
    obj: Any = ref
    if isinstance(ref, str):
        module, sep, attr = ref.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"a task spec is named 'module:attribute', e.g. genex.envs.foreign:highway_intersection; "
                             f"got {ref!r}")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"cannot load task spec {ref!r}: {e}") from e
    if callable(obj) and not isinstance(obj, TaskSpec):
        try:
            obj = obj()
        except TypeError as e:
            raise ValueError(f"{ref!r} must be a TaskSpec or a function of no arguments returning one: {e}") from e
    if not isinstance(obj, TaskSpec):
        raise ValueError(f"{ref!r} is not a genex.envs.foreign.TaskSpec (got {type(obj).__name__})")
    return obj


def make_env(env_id: str, env_kwargs: Mapping[str, Any] | None = None,
             task_spec: str | TaskSpec | Callable[[], TaskSpec] | None = None,
             image_size: tuple[int, int] | int | None = None) -> gym.Env:
    """Make env ``env_id`` ready for the planners.

    genex envs are made as they are (a spec or an image size for one is an error: they declare their own).
    Any other registered id (``module:Env-v0`` imports ``module`` first) is made with ``env_kwargs`` and its frames
    adapted by :class:`RGBFrames` (resized to ``image_size``); with ``task_spec`` it gets a :class:`DeclaredTask`;
    either way :class:`ReportedOutcome` reads success and collisions from its ``info``.
    """
    import genex.envs  # noqa: F401  (registers the genex envs)

    if is_genex_env(env_id):
        if task_spec is not None or image_size is not None:
            raise ValueError(f"{env_id} declares its own task and frame size; --task-spec and --image-size are for "
                             "foreign envs")
        return gym.make(env_id, **dict(env_kwargs or {}))
    spec = None if task_spec is None else load_task_spec(task_spec)
    kwargs = _merge(dict(spec.env_kwargs) if spec is not None else {}, dict(env_kwargs or {}))
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as e:
        raise ValueError(f"cannot make env {env_id!r}: {e}. Use a genex id ({', '.join(genex.envs.ENV_IDS)}) or any "
                         "registered Gymnasium id; 'module:Env-v0' imports module first "
                         "(e.g. highway_env:intersection-v0)") from e
    except ModuleNotFoundError as e:
        raise ValueError(f"cannot make env {env_id!r}: {e} (install the package that registers it)") from e
    except Exception as e:  # the env's own constructor refused its options: one line that names them
        raise ValueError(f"cannot make env {env_id!r} with env_kwargs {kwargs}: {type(e).__name__}: {e}") from e
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    try:
        env = RGBFrames(env, size=size)
        if spec is not None:
            env = DeclaredTask(env, spec)
        env = ReportedOutcome(env, *((spec.success, spec.collision) if spec is not None else (None, None)))
    except Exception:
        env.close()
        raise
    return env


# ---------------------------------------------------------------------------------------------- highway-env
#: ``env_kwargs`` that make highway-env render 64x64 grayscale frames (its default observation is a vector;
#: highway-env needs the shape as a tuple, which JSON cannot give: hence a spec default, not a command-line option)
HIGHWAY_GRAYSCALE_64: dict[str, Any] = {"config": {"observation": {
    "type": "GrayscaleObservation", "observation_shape": (64, 64), "stack_size": 1,
    "weights": [0.2989, 0.587, 0.114], "scaling": 1.75}}}


def _highway_arrived(info: Mapping[str, Any]) -> bool | None:
    rewards = info.get("rewards")
    if isinstance(rewards, Mapping) and "arrived_reward" in rewards:
        return bool(rewards["arrived_reward"] > 0)
    return None


def highway_frames() -> TaskSpec:
    """highway-env ``intersection-v0`` with 64x64 frames and its outcomes, but no questions: the planners fall back
    to the policy's own actions (the comparison's table says so). The baseline a declared task is measured against."""
    return TaskSpec(action_names=("brake", "cruise", "accelerate"), instruction="Cross the intersection.",
                    env_kwargs=HIGHWAY_GRAYSCALE_64, success=_highway_arrived, collision="crashed")


def highway_intersection() -> TaskSpec:
    """A task for highway-env's ``intersection-v0`` (``DiscreteMetaAction``, longitudinal: SLOWER, IDLE, FASTER).

    The hidden question is whether crossing traffic will reach the ego's path; the probe asks the policy whether
    an oncoming vehicle is visible. Success is highway-env's ``arrived_reward`` without a crash; collisions are its
    ``crashed``. The shipped tiny policy and world model were trained on genex's 3-D driving frames, not on
    highway-env's top-down view: on it they run (imagination, beliefs and costs are all exercised) but read out of
    their training distribution, so this spec is a worked example of the interface, not a tuned agent.
    """
    q = Question("crossing_traffic", "Will a vehicle cross my path at the intersection?", ("yes", "no"))
    return TaskSpec(
        action_names=("brake", "cruise", "accelerate"),
        questions=(q,),
        # rows: brake (SLOWER), cruise (IDLE), accelerate (FASTER); columns: yes, no
        action_costs={q.id: [[1.0, 1.5], [4.0, 0.3], [10.0, 0.0]]},
        # a top-down view shows some vehicle nearly always, crossing or not: weak evidence, declared as such
        probes=(Probe(q.id, "oncoming_vehicle", ("yes",), detect=0.95, false_alarm=0.85),),
        priors={q.id: (0.2, 0.8)},
        exploration_actions=("brake",),
        instruction="Cross the intersection without a collision.",
        env_kwargs=HIGHWAY_GRAYSCALE_64,
        success=_highway_arrived,
        collision="crashed",
    )
