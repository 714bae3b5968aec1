"""Text for the GUI toolkit: one font, measured in logical pixels, rasterised per scale.

Every app is laid out on a logical 128x128 canvas. Text is measured with
Pillow's built-in font (``ImageFont.load_default``, bundled with Pillow, so
screens do not depend on the fonts of the machine) at :data:`FONT_SIZE` logical
pixels, anti-aliased and unhinted (hinted monochrome glyphs at 8 pixels are
25% wider and garble letters: t reads as l). At scale ``k > 1`` (the large
human view) the same strings are re-rendered from the outline font at
``k * FONT_SIZE`` pixels, not upscaled. Masks are cached per (string, scale),
so steady-state rendering never calls into FreeType.
"""

from __future__ import annotations

import functools
import math
import string

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

__all__ = ["FONT_CHARSET", "FONT_SIZE", "LINE_HEIGHT", "ASCENT", "undrawable", "text_width", "fit_text", "text_mask"]

FONT_CHARSET = string.ascii_letters + string.digits + string.punctuation + " "
"""Characters the font draws (printable ASCII without tabs/newlines); the ``text`` action's charset."""
_CHARSET = frozenset(FONT_CHARSET)

FONT_SIZE = 8
ASCENT = 8  # logical pixels above the baseline at FONT_SIZE
LINE_HEIGHT = 10  # ascent + descent at FONT_SIZE: the height of one text line, logical pixels


@functools.lru_cache(maxsize=None)
def _font(size: int) -> ImageFont.FreeTypeFont:
    if not features.check("freetype2"):
        raise RuntimeError(
            "genex GUI envs need Pillow built with FreeType (the default wheels have it); "
            "reinstall Pillow with `pip install --force-reinstall pillow`"
        )
    return ImageFont.load_default(size=size)


def undrawable(text: str) -> list[str]:
    """The characters of ``text`` the font cannot draw (sorted, unique); empty if all are fine."""
    return sorted(set(text) - _CHARSET)


@functools.lru_cache(maxsize=16384)
def text_width(text: str) -> int:
    """Width of ``text`` in logical pixels (the advance at FONT_SIZE, rounded up)."""
    return int(math.ceil(_font(FONT_SIZE).getlength(text))) if text else 0


@functools.lru_cache(maxsize=16384)
def fit_text(text: str, max_width: int) -> str:
    """``text`` shortened with ``..`` so that it fits ``max_width`` logical pixels."""
    if text_width(text) <= max_width:
        return text
    for n in range(len(text) - 1, 0, -1):
        cand = text[:n].rstrip() + ".."
        if text_width(cand) <= max_width:
            return cand
    return ""


@functools.lru_cache(maxsize=1024)
def text_mask(text: str, scale: int) -> np.ndarray:
    """Coverage mask of ``text`` at ``scale``: ``uint8[LINE_HEIGHT*scale, w]``, 0..255, read-only.

    The top row is the ascender line (Pillow's ``"la"`` anchor); anti-aliased.
    """
    font = _font(FONT_SIZE * scale)
    width = max(1, int(math.ceil(font.getlength(text))) + scale)
    image = Image.new("L", (width, LINE_HEIGHT * scale), 0)
    draw = ImageDraw.Draw(image)
    draw.fontmode = "L"
    draw.text((0, 0), text, font=font, fill=255)
    mask = np.asarray(image, dtype=np.uint8).copy()
    mask.setflags(write=False)
    return mask
