"""Turning env actions into fixed-width numeric vectors the network conditions on.

Every action becomes ``float32[ACTION_DIM(cfg)]``::

    [kind, x, y, key, text_0 .. text_{L-1}]

* ``kind``: index into ``cfg.action_vocab`` (a driving action *name*, or a GUI
  action type);
* ``x``, ``y``: click/scroll point in ``[0, 1]`` (fraction of the frame), or
  ``-1`` when the action has no position (the network draws a Gaussian blob
  there: a spatial conditioning map);
* ``key``: GUI key index, ``-1`` if none;
* ``text_i``: hashed character bigrams of the typed text in ``[1, text_buckets)``,
  ``0`` = padding; for a click, of its ``"label"`` (the clicked widget's text)
  when the model has ``click_text``.

Driving actions may be given as names (``"brake"``) or, with ``action_names``
(the env's ``action_names``), as indices into the env's ``Discrete`` space.
GUI actions are the env's ``Dict`` actions (``type``/``x``/``y``/``text``/``key``).
"""

from __future__ import annotations

import zlib
from typing import Any, Mapping, Sequence

import numpy as np

from .config import GUI_ACTION_TYPES, GUI_KEYS, WorldModelConfig

__all__ = ["action_dim", "encode_action", "encode_actions", "hash_text", "without_hindsight"]


def action_dim(cfg: WorldModelConfig) -> int:
    return 4 + cfg.text_length


def hash_text(text: str, buckets: int, length: int) -> np.ndarray:
    """``int64[length]``: CRC32 hashes of the character bigrams of ``text`` (with a start marker), 0-padded."""
    out = np.zeros(length, np.int64)
    padded = "\x02" + text
    for i in range(min(len(text), length)):
        out[i] = 1 + zlib.crc32(padded[i:i + 2].encode("utf-8")) % (buckets - 1)
    return out


def encode_action(action: Any, cfg: WorldModelConfig, action_names: Sequence[str] | None = None) -> np.ndarray:
    """One action as ``float32[action_dim(cfg)]`` (see the module docstring)."""
    vec = np.full(action_dim(cfg), -1.0, np.float32)
    vec[4:] = 0.0
    if cfg.action_family == "discrete":
        if isinstance(action, str):
            name = action
        else:
            try:
                index = int(action)
            except (TypeError, ValueError) as e:
                raise TypeError(f"a driving action must be a name or an integer index, got {action!r}") from e
            if action_names is None:
                raise ValueError("integer actions need the env's action_names to be mapped onto the model's vocabulary")
            if not 0 <= index < len(action_names):
                raise ValueError(f"action index {index} outside the env's {len(action_names)} actions")
            name = action_names[index]
        if name not in cfg.action_vocab:
            raise ValueError(f"action {name!r} is not in this model's vocabulary {list(cfg.action_vocab)}")
        vec[0] = cfg.action_vocab.index(name)
        return vec
    if not isinstance(action, Mapping):
        raise TypeError(f"a GUI action must be a dict with 'type' (and x/y/text/key), got {action!r}")
    kind = action.get("type", 0)
    kind = GUI_ACTION_TYPES.index(kind) if isinstance(kind, str) else int(kind)
    if not 0 <= kind < len(GUI_ACTION_TYPES):
        raise ValueError(f"GUI action type {kind} outside {GUI_ACTION_TYPES}")
    vec[0] = kind
    name = GUI_ACTION_TYPES[kind]
    if name in ("click", "scroll") and "x" in action and "y" in action:
        vec[1] = (float(action["x"]) + 0.5) / cfg.width
        vec[2] = (float(action["y"]) + 0.5) / cfg.height
    if name == "key":
        key = action.get("key", 0)
        vec[3] = GUI_KEYS.index(key) if isinstance(key, str) else int(key)
    if name == "scroll":
        vec[3] = len(GUI_KEYS) + int(action.get("scroll", 1))  # scroll direction shares the key table
    if name == "type":
        vec[4:] = hash_text(str(action.get("text", "")), cfg.text_buckets, cfg.text_length)
    if name == "click" and cfg.click_text:
        vec[4:] = hash_text(str(action.get("label", "")), cfg.text_buckets, cfg.text_length)
    return vec


def encode_actions(actions: Sequence[Any], cfg: WorldModelConfig,
                   action_names: Sequence[str] | None = None) -> np.ndarray:
    """``float32[T, action_dim(cfg)]`` for a sequence of ``T`` actions."""
    if len(actions) == 0:
        return np.zeros((0, action_dim(cfg)), np.float32)
    return np.stack([encode_action(a, cfg, action_names) for a in actions])


def without_hindsight(actions: Sequence[Any]) -> list[Any]:
    """``actions`` with the ``"label"`` of every action after the first removed.

    A recorded label was read off the real screen the action was taken on. For the first action of an
    imagined sequence that screen is the real present, so a planner has it too; for later actions it is the
    real *future*, which the model is asked to imagine: evaluation and calibration windows drop those labels,
    as a planner would never have them.
    """
    return [a if i == 0 or not isinstance(a, Mapping) or "label" not in a else
            {k: v for k, v in a.items() if k != "label"} for i, a in enumerate(actions)]
