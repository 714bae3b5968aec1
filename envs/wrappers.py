"""Wrappers that make genex envs usable by RL libraries such as Stable-Baselines3 (SB3).

Raw genex envs speak a richer interface than most RL libraries take: the observation is a ``Dict`` with
an ``image`` and a ``text`` instruction (a Gymnasium ``Text`` space, not an array), and GUI apps act
through a ``Dict`` action with a ``Text`` field. SB3's ``check_env`` rejects both. These wrappers turn an
env into what a CNN policy expects, without touching rewards, termination or ``info``:

* :class:`ImageObservation`: the observation is the ``uint8[H, W, 3]`` image alone (``Box``);
* :class:`TextHashObservation`: the image plus the instruction as a fixed-size bag-of-words vector
  (``Dict`` of two ``Box``\\ es, for ``MultiInputPolicy``), for tasks whose instruction changes per episode;
* :class:`DiscreteChoices`: a GUI app's high-level action choices (``env.action_names``) as ``Discrete(n)``;
* :func:`make_rl_env`: applies what a given env needs (driving: image only; GUI: image only and discrete
  choices), from an env id or an env.

Example (``pip install genex[rl]``)::

    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from genex.envs.wrappers import make_rl_env

    env = make_rl_env("genex/OccludedCrosswalk-v0")        # Box uint8[64, 64, 3], Discrete(5)
    model = PPO("CnnPolicy", env, seed=0).learn(20_000)
    obs, info = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)

    # several envs in parallel; GUI apps take the same make kwargs as gym.make
    venv = make_vec_env(lambda: make_rl_env("genex/SettingsTabs-v0", tab_layout="random"), n_envs=4)

Images are channels-last; SB3 transposes them itself (``VecTransposeImage``), other libraries may want
``channels_first=True``. SB3's default ``NatureCNN`` needs frames of at least 36x36 pixels: the driving
envs' default 64x64 and the GUI apps' 128x128 are fine; smaller ``width``/``height``/``screen_size`` need a
custom ``features_extractor_class``.

What the image-only observation leaves out: the instruction text (SB3 has no text input; in the driving
scenes it is fixed per scene, but the GUI apps draw a new task each episode, e.g. which setting to turn on,
and do not show it on screen, so an image-only policy can only learn what holds across tasks: use
``text=True`` or fix the task), the driving ``speed`` reading (frame stacking, SB3's ``VecFrameStack``,
shows motion), and the GUI ``accessibility`` tree. Ground truth stays in ``info`` as in the raw env
(``info["hidden"]``, ``info["answers"]``: for metrics, not for the policy).

This module imports neither torch nor any RL library.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["ImageObservation", "TextHashObservation", "DiscreteChoices", "make_rl_env"]


def _image_space(env: gym.Env, key: str) -> spaces.Box:
    """The ``uint8[H, W, 3]`` image space under ``key`` of ``env``'s ``Dict`` observation; ``ValueError`` if none."""
    space = env.observation_space
    if not isinstance(space, spaces.Dict) or key not in space.spaces:
        raise ValueError(
            f"{_name(env)}: expected a Dict observation space with an {key!r} image, got {space}"
        )
    image = space[key]
    if not (isinstance(image, spaces.Box) and image.dtype == np.uint8 and len(image.shape) == 3
            and image.shape[-1] == 3):
        raise ValueError(f"{_name(env)}: observation {key!r} must be a Box uint8[H, W, 3], got {image}")
    return image


def _name(env: gym.Env) -> str:
    return env.spec.id if env.spec is not None else type(env.unwrapped).__name__


class ImageObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Observation = the env's image alone: ``Box(0, 255, (H, W, 3), uint8)``, ``(3, H, W)`` if ``channels_first``.

    The other observation keys (the instruction ``text``, driving ``speed``, GUI ``accessibility``) are
    dropped: see the module docstring for what that costs and the alternatives.
    """

    def __init__(self, env: gym.Env, key: str = "image", channels_first: bool = False) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, key=key, channels_first=channels_first)
        gym.ObservationWrapper.__init__(self, env)
        image = _image_space(env, key)
        self.key = key
        self.channels_first = bool(channels_first)
        h, w, c = image.shape
        shape = (c, h, w) if self.channels_first else (h, w, c)
        self.observation_space = spaces.Box(0, 255, shape, np.uint8)

    def observation(self, observation: dict[str, Any]) -> np.ndarray:
        image = observation[self.key]
        return np.ascontiguousarray(image.transpose(2, 0, 1)) if self.channels_first else image


class TextHashObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Observation = ``{"image": uint8[H, W, 3], "text": float32[dim]}``: the image and a hashed bag of words.

    ``text`` has a 1.0 in bucket ``crc32(word) % dim`` for every lowercase word (letters and digits) of the
    instruction and 0.0 elsewhere: a fixed-size vector that SB3's ``MultiInputPolicy`` can take, so a policy
    can tell this episode's task ("Turn on Wi-Fi" vs "Turn on Bluetooth"). ``crc32`` is stable across
    processes (Python's ``hash`` of ``str`` is not). Words that share a bucket are confused; numbers are
    words like any other (no arithmetic). Other keys are dropped.
    """

    WORD = re.compile(r"[a-z0-9]+")

    def __init__(self, env: gym.Env, dim: int = 128, image_key: str = "image", text_key: str = "text",
                 channels_first: bool = False) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, dim=dim, image_key=image_key, text_key=text_key,
                                                 channels_first=channels_first)
        gym.ObservationWrapper.__init__(self, env)
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        image = _image_space(env, image_key)
        if not isinstance(env.observation_space.spaces.get(text_key), spaces.Text):
            raise ValueError(f"{_name(env)}: expected a Text observation {text_key!r}, got {env.observation_space}")
        self.image_key, self.text_key, self.dim = image_key, text_key, int(dim)
        self.channels_first = bool(channels_first)
        h, w, c = image.shape
        self.observation_space = spaces.Dict({
            "image": spaces.Box(0, 255, (c, h, w) if self.channels_first else (h, w, c), np.uint8),
            "text": spaces.Box(0.0, 1.0, (self.dim,), np.float32),
        })
        self._cache: tuple[str, np.ndarray] | None = None

    def encode(self, text: str) -> np.ndarray:
        """``float32[dim]``: the hashed bag of words of ``text`` (a fresh array)."""
        if self._cache is None or self._cache[0] != text:
            vec = np.zeros(self.dim, np.float32)
            for word in self.WORD.findall(text.lower()):
                vec[zlib.crc32(word.encode()) % self.dim] = 1.0
            self._cache = (text, vec)
        return self._cache[1].copy()

    def observation(self, observation: dict[str, Any]) -> dict[str, np.ndarray]:
        image = observation[self.image_key]
        if self.channels_first:
            image = np.ascontiguousarray(image.transpose(2, 0, 1))
        return {"image": image, "text": self.encode(str(observation[self.text_key]))}


class DiscreteChoices(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """GUI actions as ``Discrete(len(action_names))``: action ``k`` takes the next step of the app's choice ``k``.

    A GUI app declares a few high-level action choices (``env.unwrapped.action_names``, e.g. "open tab 2",
    "buy listing 1"), the same ones planners choose among and ``action_costs`` price. Each is a macro the
    env expands on the current screen into primitive actions (``env.unwrapped.choice_action(k)``: scroll to
    the row, click it, fill in a field, confirm a dialog). Action ``k`` performs the *next* primitive step
    of choice ``k``, so one wrapped step is one env step: rewards, termination, truncation (``max_steps``)
    and ``info`` are the env's own. A multi-step choice is carried out by choosing ``k`` again; a choice
    that is already done, or has nothing to do on this screen, is a ``wait`` (a step, screen unchanged).

    Why choices and not a ``Discrete`` over clickable elements: element clicks cannot type, so EditDocument
    (type a name and a phone) could not be solved; the number and meaning of elements change with every
    screen (tabs, scroll position, dialogs), which makes exploration slow; and choices are what the
    planners use, so an RL agent and a planner face the same decision. Works in either ``action_mode``.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ActionWrapper.__init__(self, env)
        base = env.unwrapped
        if not (callable(getattr(base, "choice_action", None)) and getattr(base, "action_names", None)):
            raise ValueError(
                f"{_name(env)} declares no action choices (needs env.unwrapped.action_names and "
                f"choice_action(k), as the genex GUI apps have); its action space is {env.action_space}"
            )
        from .gui.actions import wait  # here, not at import: the GUI package loads Pillow

        self.action_names: tuple[str, ...] = tuple(base.action_names)
        self.action_space = spaces.Discrete(len(self.action_names))
        self._wait = wait(mode=base.config.action_mode)

    def action(self, action: Any) -> dict[str, Any]:
        """The env action that carries out the next step of choice ``action`` on the current screen."""
        arr = np.asarray(action)
        if arr.size != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"action must be an integer choice in [0, {self.action_space.n}), got {action!r}")
        k = int(arr.reshape(()))
        if not 0 <= k < self.action_space.n:
            raise ValueError(f"action must be in [0, {self.action_space.n}), got {k}; choices are "
                             f"{dict(enumerate(self.action_names))}")
        step = self.env.unwrapped.choice_action(k)
        return dict(self._wait) if step is None else step


def make_rl_env(env_or_id: str | gym.Env, *, text: bool = False, channels_first: bool = False,
                **make_kwargs: Any) -> gym.Env:
    """A genex env wrapped for RL libraries: array observations and a ``Discrete`` action space.

    Args:
        env_or_id: an env id (``"genex/SettingsTabs-v0"``, made with ``gym.make(env_or_id, **make_kwargs)``)
            or an env (``make_kwargs`` must then be empty).
        text: keep the instruction as a hashed bag of words (:class:`TextHashObservation`, a ``Dict``
            observation for SB3's ``MultiInputPolicy``) instead of the image alone (:class:`ImageObservation`,
            for ``CnnPolicy``).
        channels_first: images as ``(3, H, W)`` instead of ``(H, W, 3)`` (SB3 takes either).
        make_kwargs: env options, e.g. ``width=64`` (driving) or ``screen_size=128`` (GUI).

    Returns the wrapped env: observation ``Box uint8[H, W, 3]`` (or the ``Dict`` with ``text=True``);
    actions unchanged where already ``Discrete`` (driving), else :class:`DiscreteChoices` (GUI apps).
    Raises ``ValueError`` for an env it cannot adapt (no ``image`` observation, or a non-``Discrete``
    action space without action choices), ``TypeError`` for ``make_kwargs`` given with an env.
    """
    if isinstance(env_or_id, str):
        env = gym.make(env_or_id, **make_kwargs)
    elif isinstance(env_or_id, gym.Env):
        if make_kwargs:
            raise TypeError(f"make_kwargs {sorted(make_kwargs)} apply to an env id only; got an env "
                            f"({_name(env_or_id)}): make it with those options instead")
        env = env_or_id
    else:
        raise TypeError(f"expected an env id (str) or a gymnasium.Env, got {type(env_or_id).__name__}")
    try:
        _image_space(env, "image")
        if not isinstance(env.action_space, spaces.Discrete):
            env = DiscreteChoices(env)
        return TextHashObservation(env, channels_first=channels_first) if text else ImageObservation(
            env, channels_first=channels_first)
    except ValueError as err:
        if isinstance(env_or_id, str):
            env.close()
        raise ValueError(f"make_rl_env cannot adapt this env: {err}") from None
