"""A ``Text`` space whose observations survive ``AsyncVectorEnv``'s shared memory.

Gymnasium's ``AsyncVectorEnv`` (with ``shared_memory=True``, the default)
reads the shared buffers once, at construction, and relies on the result
being a live view. That holds for arrays, but a ``Text`` read decodes the
buffer into a tuple of strings right away, so every later batch would repeat
the first (empty) strings. :class:`LiveText` is a ``Text`` whose
shared-memory read returns :class:`LiveTexts`, a sequence that decodes the
buffer when accessed and deep-copies (as ``AsyncVectorEnv`` does before
returning observations) to a plain tuple of strings. Everything else
(sampling, checking, flattening, writing) is ``Text``'s own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils.shared_memory import read_from_shared_memory

__all__ = ["LiveText", "LiveTexts"]


class LiveText(spaces.Text):
    """``spaces.Text`` that reads back correctly from ``AsyncVectorEnv`` shared memory."""


class LiveTexts(Sequence):
    """The ``n`` strings currently in a ``LiveText`` shared buffer; ``deepcopy`` gives a tuple."""

    def __init__(self, space: LiveText, shared_memory: Any, n: int) -> None:
        self._codes = np.frombuffer(shared_memory.get_obj(), dtype=np.int32).reshape(n, space.max_length)
        self._chars = np.array(space.character_list + ("",), dtype=object)
        self._pad = len(space.character_list)

    def __len__(self) -> int:
        return self._codes.shape[0]

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return tuple(self)[i]
        row = self._codes[i]
        return "".join(self._chars[np.minimum(row[row < self._pad], self._pad)])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, Sequence) else other)

    def __repr__(self) -> str:
        return repr(tuple(self))

    def __deepcopy__(self, memo: dict) -> tuple[str, ...]:
        return tuple(self)


@read_from_shared_memory.register(LiveText)
def _read_live_text(space: LiveText, shared_memory: Any, n: int = 1) -> LiveTexts:
    return LiveTexts(space, shared_memory, n)
