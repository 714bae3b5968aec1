"""A tiny synthetic recording (a square moved by driving-style actions) for tests and demos.

Written in the ``genex record`` on-disk format, so the training command reads
it like any recording. Action effects: ``accelerate`` moves the square right,
``brake`` left, ``creep`` down, ``cruise`` up, ``wait`` leaves it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..recording import EpisodeRecorder, RecordingManifest, episode_path
from .checkpoint import atomic_write_bytes

__all__ = ["write_synthetic_recording", "SYNTHETIC_ACTIONS"]

SYNTHETIC_ACTIONS = ("accelerate", "cruise", "brake", "creep", "wait")
_MOVES = {0: (0, 2), 1: (-2, 0), 2: (0, -2), 3: (2, 0), 4: (0, 0)}


def _frame(size: int, y: int, x: int, colour: np.ndarray) -> np.ndarray:
    img = np.full((size, size, 3), 30, np.uint8)
    img[max(0, y):y + 4, max(0, x):x + 4] = colour
    return img


def write_synthetic_recording(out: str | Path, episodes: int = 8, steps: int = 12, size: int = 16,
                              seed: int = 0) -> Path:
    """Write ``episodes`` episodes of ``steps`` steps of ``size``x``size`` frames to ``out``; returns ``out``."""
    out = Path(out)
    (out / "episodes").mkdir(parents=True, exist_ok=True)
    manifest = RecordingManifest(env_id="synthetic/MovingSquare-v0", env_kwargs={"size": size}, driver="random",
                                 base_seed=seed, facts=[], action_names=list(SYNTHETIC_ACTIONS), questions=[],
                                 image_shape=[size, size, 3])
    atomic_write_bytes(out / "manifest.json", json.dumps(asdict(manifest), indent=2).encode())
    for i in range(episodes):
        rng = np.random.default_rng(seed + i)
        y, x = (int(v) for v in rng.integers(2, size - 6, size=2))
        colour = rng.integers(120, 256, size=3).astype(np.uint8)
        rec = EpisodeRecorder([], seed + i, "random")
        rec.start({"image": _frame(size, y, x, colour), "text": ""}, {})
        for _ in range(steps):
            a = int(rng.integers(len(SYNTHETIC_ACTIONS)))
            dy, dx = _MOVES[a]
            y, x = int(np.clip(y + dy, 0, size - 4)), int(np.clip(x + dx, 0, size - 4))
            rec.add(a, {"image": _frame(size, y, x, colour)}, 0.0, False, False, {})
        rec.save(episode_path(out, i))
    return out
