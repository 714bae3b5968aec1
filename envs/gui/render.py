"""Rasterising a display list with NumPy: the fast path behind every GUI frame.

Widgets do not draw pixels; they append drawing ops (filled rectangles,
1-pixel borders, text, a dimming layer) to a :class:`DisplayList` in logical
128x128 coordinates. :class:`Painter` turns a display list into
``uint8[size, size, 3]`` at an integer scale with slice assignments and
cached text masks, and keeps the last frames in a small LRU keyed by the ops
themselves, so a step that changes nothing on screen costs one dict lookup.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict

import numpy as np
from PIL import Image

from .font import text_mask

__all__ = ["LOGICAL_SIZE", "Colour", "DisplayList", "Painter"]

LOGICAL_SIZE = 128  # apps are laid out on a LOGICAL_SIZE x LOGICAL_SIZE canvas
CHECKPOINT_EVERY = 16  # ops between saved canvases for prefix reuse
Colour = tuple[int, int, int]


class DisplayList:
    """Drawing ops in logical pixels, in painting order (later ops cover earlier ones)."""

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: list[tuple] = []

    def fill(self, x: int, y: int, w: int, h: int, colour: Colour) -> None:
        self.ops.append(("F", x, y, w, h, colour))

    def border(self, x: int, y: int, w: int, h: int, colour: Colour) -> None:
        """A 1-logical-pixel outline just inside the rectangle."""
        self.ops.append(("B", x, y, w, h, colour))

    def text(self, x: int, y: int, text: str, colour: Colour, max_width: int) -> None:
        """``text`` with its ascender line at ``y``, clipped to ``max_width`` logical pixels."""
        if text:
            self.ops.append(("T", x, y, text, colour, max_width))

    def dim(self) -> None:
        """Darken everything painted so far (the backdrop of a modal dialog)."""
        self.ops.append(("D",))

    def key(self) -> tuple:
        return tuple(self.ops)


class Painter:
    """Renders display lists to ``uint8[size, size, 3]`` frames, caching recent frames.

    ``size`` need not be a multiple of 128: the list is painted at
    ``scale = ceil(size / 128)`` and box-filtered down to ``size``.
    """

    def __init__(self, size: int, cache_size: int = 64) -> None:
        if size < 1:
            raise ValueError(f"size must be positive, got {size}")
        self.size = size
        self.scale = max(1, math.ceil(size / LOGICAL_SIZE))
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        # Consecutive frames share long prefixes of ops (window chrome, tab bar): keep canvases
        # every CHECKPOINT_EVERY ops of the last list and resume from the last shared one.
        self._prev_ops: tuple = ()
        self._checkpoints: list[np.ndarray] = []

    def paint(self, display: DisplayList) -> np.ndarray:
        """The frame for ``display`` (a read-only array shared with the cache; copy before mutating)."""
        key = display.key()
        frame = self._cache.get(key)
        if frame is not None:
            self._cache.move_to_end(key)
            return frame
        frame = self._rasterise(key)
        frame.setflags(write=False)
        self._cache[key] = frame
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return frame

    def _rasterise(self, ops: tuple) -> np.ndarray:
        k = self.scale
        side = LOGICAL_SIZE * k
        every = CHECKPOINT_EVERY if side <= 256 else 0  # large human views: copies cost more than they save
        shared = 0
        if every:
            prev = self._prev_ops
            limit = min(len(prev), len(ops))
            while shared < limit and prev[shared] == ops[shared]:
                shared += 1
        resume = min(shared // every, len(self._checkpoints) - 1) if every and self._checkpoints else -1
        if resume >= 0:
            canvas = self._checkpoints[resume].copy()
            start = resume * every
            del self._checkpoints[resume + 1:]
        else:
            canvas = np.zeros((side, side, 3), np.uint8)
            start = 0
            self._checkpoints = []
        for i in range(start, len(ops)):
            if every and i % every == 0 and i // every == len(self._checkpoints):
                self._checkpoints.append(canvas.copy())
            op = ops[i]
            kind = op[0]
            if kind == "F":
                _, x, y, w, h, c = op
                canvas[max(0, y * k) : max(0, (y + h) * k), max(0, x * k) : max(0, (x + w) * k)] = c
            elif kind == "B":
                _, x, y, w, h, c = op
                t = max(1, k // 2)
                x0, y0, x1, y1 = max(0, x * k), max(0, y * k), max(0, (x + w) * k), max(0, (y + h) * k)
                canvas[y0 : y0 + t, x0:x1] = c
                canvas[max(y0, y1 - t) : y1, x0:x1] = c
                canvas[y0:y1, x0 : x0 + t] = c
                canvas[y0:y1, max(x0, x1 - t) : x1] = c
            elif kind == "T":
                _, x, y, text, c, max_w = op
                ink = _ink_small(text, k, c) if k <= 2 else _ink_large(text, k, c)
                self._text(canvas, x * k, y * k, *ink, max_w * k)
            elif kind == "D":
                np.right_shift(canvas, 1, out=canvas)
                canvas += 24
        if every:
            self._prev_ops = ops
        if side != self.size:
            canvas = np.asarray(Image.fromarray(canvas).resize((self.size, self.size), Image.Resampling.BOX))
        return canvas

    @staticmethod
    def _text(canvas: np.ndarray, x: int, y: int, inv: np.ndarray, term: np.ndarray, max_w: int) -> None:
        side = canvas.shape[0]
        h = min(inv.shape[0], side - y)
        w = min(inv.shape[1], max_w, side - x)
        if h <= 0 or w <= 0 or x < 0 or y < 0:
            return
        region = canvas[y : y + h, x : x + w]
        region[...] = (region * inv[:h, :w] + term[:h, :w]) // 255


def _ink(text: str, scale: int, colour: Colour) -> tuple[np.ndarray, np.ndarray]:
    """Blend terms for ``text`` in ``colour``: ``out = (bg * inv + term) // 255`` (uint16, no overflow)."""
    alpha = text_mask(text, scale).astype(np.uint16)[..., None]
    return 255 - alpha, alpha * np.asarray(colour, np.uint16) + 127


# Agent screens (small, every step) get a large cache; human views (~75 KB a string at scale 4) a small one.
_ink_small = functools.lru_cache(maxsize=4096)(_ink)
_ink_large = functools.lru_cache(maxsize=256)(_ink)
