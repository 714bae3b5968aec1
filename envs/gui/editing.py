"""Single-line text editing: value, caret and selection, as plain copyable data.

Kept apart from the widgets so an app's state (and so a snapshot) holds only
:class:`TextValue` records, and editing rules live in one place:

* clicking an unfocused field selects all of its text (typing replaces it);
  clicking the focused field again puts the caret at the end;
* typing replaces the selection, else inserts at the caret (up to ``max_length``);
* ``backspace``/``delete`` remove the selection or one character;
* ``left``/``right``/``home``/``end`` move the caret and drop the selection;
* ``select_all`` selects everything.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TextValue", "EDIT_KEYS"]

EDIT_KEYS = frozenset({"backspace", "delete", "left", "right", "home", "end", "select_all"})


@dataclass
class TextValue:
    """A field's text; the selection is ``[min(anchor, cursor), max(anchor, cursor))`` when ``anchor`` is set."""

    value: str
    cursor: int = 0
    anchor: int | None = None
    max_length: int = 32

    @property
    def selection(self) -> tuple[int, int] | None:
        if self.anchor is None or self.anchor == self.cursor:
            return None
        return min(self.anchor, self.cursor), max(self.anchor, self.cursor)

    def select_all(self) -> None:
        self.anchor, self.cursor = 0, len(self.value)

    def caret_to_end(self) -> None:
        self.anchor, self.cursor = None, len(self.value)

    def insert(self, text: str) -> None:
        """Type ``text``: replace the selection or insert at the caret, truncated to ``max_length``."""
        self._delete_selection()
        room = self.max_length - len(self.value)
        text = text[: max(0, room)]
        self.value = self.value[: self.cursor] + text + self.value[self.cursor :]
        self.cursor += len(text)

    def key(self, key: str) -> bool:
        """Apply an editing key; returns False (and changes nothing) for keys that do not edit."""
        if key not in EDIT_KEYS:
            return False
        n = len(self.value)
        if key == "select_all":
            self.select_all()
        elif key in ("backspace", "delete"):
            if not self._delete_selection():
                if key == "backspace" and self.cursor > 0:
                    self.value = self.value[: self.cursor - 1] + self.value[self.cursor :]
                    self.cursor -= 1
                elif key == "delete" and self.cursor < n:
                    self.value = self.value[: self.cursor] + self.value[self.cursor + 1 :]
        else:
            sel = self.selection
            if key == "left":
                self.cursor = sel[0] if sel else max(0, self.cursor - 1)
            elif key == "right":
                self.cursor = sel[1] if sel else min(n, self.cursor + 1)
            elif key == "home":
                self.cursor = 0
            elif key == "end":
                self.cursor = n
            self.anchor = None
        return True

    def _delete_selection(self) -> bool:
        sel = self.selection
        self.anchor = None
        if sel is None:
            return False
        self.value = self.value[: sel[0]] + self.value[sel[1] :]
        self.cursor = sel[0]
        return True
