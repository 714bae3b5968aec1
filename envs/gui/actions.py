"""The GUI action space and helpers that build actions.

Two action modes (the ``action_mode`` env option):

``"pixel"`` (default), a ``Dict``:
    ``type``: ``Discrete(5)``, index into :data:`ACTION_TYPES` (click, type, key, scroll, wait);
    ``x``, ``y``: ``Discrete(screen_size)``, the pointer position in screen pixels (click, scroll);
    ``text``: ``Text(max_length=32, min_length=0, charset=FONT_CHARSET)`` (type);
    ``key``: ``Discrete(12)``, index into :data:`KEYS` (key);
    ``scroll``: ``Discrete(2)``, 0 = up, 1 = down (scroll, by one row).

``"element"`` (MiniWoB-style), the same ``Dict`` with ``element``:
``Discrete(max_elements)`` instead of ``x``, ``y``. ``element`` indexes the
interactive widgets of the active layer in stable order (painting order:
window chrome, tabs/toolbar, content top to bottom, scroll bar arrows;
only the popup's or dialog's widgets while one is open); ``info["n_elements"]``
says how many there are. ``click`` clicks the element's centre; ``scroll``
scrolls the list under the element; ``type`` with a text-field element
that does not have focus clicks it first (focusing it and selecting its
text, so typing replaces it), and otherwise types into the focused field at
its caret; ``key`` ignores ``element``.

Fields a type does not use are ignored, and may be left out of the dict.
"""

from __future__ import annotations

from typing import Any

from gymnasium import spaces

from .font import FONT_CHARSET

__all__ = [
    "ACTION_TYPES", "KEYS", "MAX_TEXT_LENGTH", "ACTION_MODES", "make_action_space", "action",
    "click", "click_element", "type_text", "press", "scroll", "scroll_element", "wait",
]

ACTION_TYPES = ("click", "type", "key", "scroll", "wait")
KEYS = ("enter", "tab", "backspace", "delete", "escape", "up", "down", "left", "right", "home", "end", "select_all")
MAX_TEXT_LENGTH = 32
ACTION_MODES = ("pixel", "element")


def make_action_space(mode: str, screen_size: int, max_elements: int) -> spaces.Dict:
    """The action space for ``mode`` (see the module docstring)."""
    common = {
        "type": spaces.Discrete(len(ACTION_TYPES)),
        "text": spaces.Text(max_length=MAX_TEXT_LENGTH, min_length=0, charset=FONT_CHARSET),
        "key": spaces.Discrete(len(KEYS)),
        "scroll": spaces.Discrete(2),
    }
    if mode == "pixel":
        return spaces.Dict({**common, "x": spaces.Discrete(screen_size), "y": spaces.Discrete(screen_size)})
    return spaces.Dict({**common, "element": spaces.Discrete(max_elements)})


def action(kind: str, *, mode: str = "pixel", x: int = 0, y: int = 0, element: int = 0, text: str = "",
           key: str = "enter", down: bool = True) -> dict[str, Any]:
    """A complete action dict (every field set, so it is in the action space) for ``kind`` in ``mode``."""
    if kind not in ACTION_TYPES:
        raise ValueError(f"unknown action type {kind!r}; expected one of {ACTION_TYPES}")
    if key not in KEYS:
        raise ValueError(f"unknown key {key!r}; expected one of {KEYS}")
    if mode not in ACTION_MODES:
        raise ValueError(f"unknown action mode {mode!r}; expected one of {ACTION_MODES}")
    out: dict[str, Any] = {"type": ACTION_TYPES.index(kind), "text": text, "key": KEYS.index(key), "scroll": int(down)}
    if mode == "pixel":
        out.update(x=int(x), y=int(y))
    else:
        out["element"] = int(element)
    return out


def click(x: int, y: int) -> dict[str, Any]:
    return action("click", x=x, y=y)


def click_element(element: int) -> dict[str, Any]:
    return action("click", mode="element", element=element)


def type_text(text: str, mode: str = "pixel", element: int = 0) -> dict[str, Any]:
    return action("type", mode=mode, text=text, element=element)


def press(key: str, mode: str = "pixel") -> dict[str, Any]:
    return action("key", mode=mode, key=key)


def scroll(x: int, y: int, down: bool = True) -> dict[str, Any]:
    return action("scroll", x=x, y=y, down=down)


def scroll_element(element: int, down: bool = True) -> dict[str, Any]:
    return action("scroll", mode="element", element=element, down=down)


def wait(mode: str = "pixel") -> dict[str, Any]:
    return action("wait", mode=mode)
