"""A small retained-mode widget toolkit: layout, painting, hit-testing, accessibility.

Apps rebuild a widget tree from their state after every event (a view is a
pure function of state), so the tree holds no state of its own that a
snapshot would need. A :class:`Screen` is one frame: the app window plus at
most one overlay (a popup menu, or a modal dialog that dims and blocks the
window). Coordinates are logical pixels on the 128x128 canvas
(:data:`~genex.envs.gui.render.LOGICAL_SIZE`).

Widgets carry an ``id`` (the event target an app dispatches on), a ``label``
(what is written on them), a ``role`` (accessibility role) and optional
``facts``: visibility tags an app attaches ("target", "target_on", ...) that
become ``info["visible"]`` labels when the widget is on screen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

from .editing import TextValue
from .font import LINE_HEIGHT, fit_text, text_width
from .render import Colour, DisplayList

__all__ = [
    "Rect", "Widget", "Label", "Panel", "Window", "Tab", "Button", "IconButton", "ICONS", "Toggle", "Checkbox",
    "TextField",
    "ListItem", "ScrollArea", "ScrollButton", "Dropdown", "Menu", "MenuItem", "Dialog", "Screen",
    "TITLE_H", "SCROLLBAR_W",
]

# Theme (RGB).
WHITE: Colour = (255, 255, 255)
BACKGROUND: Colour = (234, 237, 242)
PANEL: Colour = (250, 250, 252)
TEXT: Colour = (22, 26, 34)
MUTED: Colour = (108, 114, 128)
BORDER: Colour = (170, 176, 190)
ACCENT: Colour = (37, 99, 200)
ACCENT_LIGHT: Colour = (200, 219, 250)
DANGER: Colour = (200, 44, 44)
SUCCESS: Colour = (40, 160, 70)
OFF: Colour = (186, 190, 200)
TAB_IDLE: Colour = (212, 217, 226)
FOCUS: Colour = (240, 150, 20)

TITLE_H = 11  # title bar height
SCROLLBAR_W = 7  # scroll bar width at the right of a ScrollArea


@dataclass(frozen=True)
class Rect:
    """An axis-aligned box in logical pixels: ``x <= px < x + w``, ``y <= py < y + h``."""

    x: int
    y: int
    w: int
    h: int

    def contains(self, px: float, py: float) -> bool:
        return self.x <= px < self.x + self.w and self.y <= py < self.y + self.h

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2


def _text_y(rect: Rect) -> int:
    return rect.y + (rect.h - LINE_HEIGHT) // 2


def _label(dl: DisplayList, rect: Rect, text: str, colour: Colour, align: str = "left", pad: int = 2) -> None:
    width = rect.w - 2 * pad
    shown = fit_text(text, width)
    x = rect.x + pad
    if align == "center":
        x = rect.x + (rect.w - text_width(shown)) // 2
    elif align == "right":
        x = rect.x + rect.w - pad - text_width(shown)
    dl.text(x, _text_y(rect), shown, colour, max(1, rect.x + rect.w - x))


@dataclass(eq=False)
class Widget:
    """Base widget: a box with an id, a label, visibility tags and children painted over it."""

    id: str
    rect: Rect
    label: str = ""
    facts: tuple[str, ...] = ()
    children: list["Widget"] = field(default_factory=list)

    role: ClassVar[str] = "group"

    @property
    def interactive(self) -> bool:
        """Whether clicks (and element actions) reach this widget."""
        return False

    def state(self) -> dict[str, Any]:
        """Accessibility state (checked, selected, value, ...)."""
        return {}

    def walk(self) -> Iterator["Widget"]:
        """This widget and its descendants in painting order."""
        yield self
        for child in self.children:
            yield from child.walk()

    def paint(self, dl: DisplayList, focus: str | None) -> None:
        self.draw(dl, focus is not None and focus == self.id)
        for child in self.children:
            child.paint(dl, focus)

    def draw(self, dl: DisplayList, focused: bool) -> None:
        if focused and self.interactive:
            r = self.rect
            dl.border(r.x, r.y, r.w, r.h, FOCUS)


@dataclass(eq=False)
class Label(Widget):
    """Static text."""

    colour: Colour = TEXT
    align: str = "left"
    role: ClassVar[str] = "text"

    def draw(self, dl: DisplayList, focused: bool) -> None:
        _label(dl, self.rect, self.label, self.colour, self.align, pad=1)


@dataclass(eq=False)
class Panel(Widget):
    """A bordered box grouping other widgets (a tab page, a sidebar)."""

    colour: Colour = PANEL

    def draw(self, dl: DisplayList, focused: bool) -> None:
        r = self.rect
        dl.fill(r.x, r.y, r.w, r.h, self.colour)
        dl.border(r.x, r.y, r.w, r.h, BORDER)


@dataclass(eq=False)
class Window(Widget):
    """The app window: background and a title bar holding ``label``."""

    colour: Colour = ACCENT
    role: ClassVar[str] = "window"

    def draw(self, dl: DisplayList, focused: bool) -> None:
        r = self.rect
        dl.fill(r.x, r.y, r.w, r.h, BACKGROUND)
        dl.fill(r.x, r.y, r.w, TITLE_H, self.colour)
        _label(dl, Rect(r.x, r.y, r.w, TITLE_H), self.label, WHITE, pad=3)


@dataclass(eq=False)
class Tab(Widget):
    """One tab of a tab bar; the selected tab joins the panel below it."""

    selected: bool = False
    role: ClassVar[str] = "tab"

    @property
    def interactive(self) -> bool:
        return True

    def state(self) -> dict[str, Any]:
        return {"selected": self.selected}

    def draw(self, dl: DisplayList, focused: bool) -> None:
        r = self.rect
        dl.fill(r.x, r.y, r.w, r.h, PANEL if self.selected else TAB_IDLE)
        dl.border(r.x, r.y, r.w, r.h + (1 if self.selected else 0), BORDER)
        if self.selected:
            dl.fill(r.x + 1, r.y + r.h - 1, r.w - 2, 2, PANEL)
            dl.fill(r.x + 1, r.y, r.w - 2, 2, ACCENT)
        _label(dl, r, self.label, TEXT if self.selected else MUTED, "center", pad=1)
        super().draw(dl, focused)


@dataclass(eq=False)
class Button(Widget):
    """A push button; ``style`` is ``"normal"``, ``"primary"`` or ``"danger"``. Disabled buttons ignore clicks."""

    style: str = "normal"
    enabled: bool = True
    role: ClassVar[str] = "button"

    @property
    def interactive(self) -> bool:
        return self.enabled

    def state(self) -> dict[str, Any]:
        return {"enabled": self.enabled}

    def draw(self, dl: DisplayList, focused: bool) -> None:
        r = self.rect
        if not self.enabled:
            fill, fg, edge = BACKGROUND, MUTED, OFF
        elif self.style == "primary":
            fill, fg, edge = ACCENT, WHITE, ACCENT
        elif self.style == "danger":
            fill, fg, edge = DANGER, WHITE, DANGER
        else:
            fill, fg, edge = WHITE, TEXT, BORDER
        dl.fill(r.x, r.y, r.w, r.h, fill)
        dl.border(r.x, r.y, r.w, r.h, edge)
        _label(dl, r, self.label, fg, "center", pad=1)
        super().draw(dl, focused)


#: glyphs of :class:`IconButton`: ``(x, y, w, h, ink)`` boxes on a 12x12 grid, painted in order (ink False:
#: the button's fill, to cut holes). Shapes only, one colour: nothing but the shape says what a button does.
ICONS: dict[str, tuple[tuple[int, int, int, int, bool], ...]] = {
    "disk": ((0, 0, 12, 12, True), (3, 0, 6, 4, False), (2, 7, 8, 5, False)),
    "printer": ((3, 0, 6, 4, True), (4, 1, 4, 3, False), (0, 4, 12, 5, True), (3, 8, 6, 4, True),
                (4, 9, 4, 3, False)),
    "arrow": tuple((x, x // 2, 1, 12 - 2 * (x // 2), True) for x in range(12)),
    "bin": ((0, 1, 12, 2, True), (4, 0, 4, 1, True), (2, 3, 8, 9, True), (4, 5, 1, 6, False),
            (7, 5, 1, 6, False)),
}


@dataclass(eq=False)
class IconButton(Widget):
    """A push button that shows only a glyph (one of :data:`ICONS`); ``label`` is its accessible name,
    which may be empty, as on many real toolbars: then only the glyph tells what it does."""

    icon: str = "disk"
    role: ClassVar[str] = "button"

    def __post_init__(self) -> None:
        if self.icon not in ICONS:
            raise ValueError(f"unknown icon {self.icon!r}; choose one of {sorted(ICONS)}")

    @property
    def interactive(self) -> bool:
        return True

    def draw(self, dl: DisplayList, focused: bool) -> None:
        r = self.rect
        dl.fill(r.x, r.y, r.w, r.h, WHITE)
        dl.border(r.x, r.y, r.w, r.h, BORDER)
        ox, oy = r.x + (r.w - 12) // 2, r.y + (r.h - 12) // 2
        for x, y, w, h, ink in ICONS[self.icon]:
            dl.fill(ox + x, oy + y, w, h, TEXT if ink else WHITE)
        super().draw(dl, focused)


@dataclass(eq=False)
class Toggle(Widget):
    """A settings row: ``label`` on the left, an on/off switch on the right. The whole row is clickable."""

    on: bool = False
    role: ClassVar[str] = "switch"

    @property
    def interactive(self) -> bool:
        return True

    def state(self) -> dict[str, Any]:
        return {"checked": self.on}

    def draw(self, dl: DisplayList, focused: bool) -> None:
        r = self.rect
        sw, sh = 14, 8
        sx, sy = r.x + r.w - sw - 2, r.y + (r.h - sh) // 2
        _label(dl, Rect(r.x, r.y, r.w - sw - 4, r.h), self.label, TEXT)
        dl.fill(sx, sy, sw, sh, SUCCESS if self.on else OFF)
        dl.fill(sx + (sw - 7 if self.on else 1), sy + 1, 6, sh - 2, WHITE)
        super().draw(dl, focused)


@dataclass(eq=False)
class Checkbox(Widget):
    """A check box followed by ``label``; the whole row is clickable."""

    checked: bool = False
    role: ClassVar[str] = "checkbox"

    @property
    def interactive(self) -> bool:
        return True

    def state(self) -> dict[str, Any]:
        return {"checked": self.checked}

    def draw(self, dl: DisplayList, focused: bool) -> None:
        r = self.rect
        b = 8
        bx, by = r.x + 2, r.y + (r.h - b) // 2
        dl.fill(bx, by, b, b, ACCENT if self.checked else WHITE)
        dl.border(bx, by, b, b, ACCENT if self.checked else BORDER)
        if self.checked:  # a blocky tick
            dl.fill(bx + 2, by + 4, 2, 2, WHITE)
            dl.fill(bx + 4, by + 2, 2, 3, WHITE)
        _label(dl, Rect(bx + b + 2, r.y, r.w - b - 4, r.h), self.label, TEXT, pad=1)
        super().draw(dl, focused)


@dataclass(eq=False)
class TextField(Widget):
    """A single-line text box showing ``value`` (a :class:`TextValue`), with caret and selection when focused.

    ``label`` is the field's accessible name (drawn by a separate :class:`Label`).
    """

    value: TextValue = field(default_factory=lambda: TextValue(""))
    focused: bool = False
    role: ClassVar[str] = "textbox"

    @property
    def interactive(self) -> bool:
        return True

    def state(self) -> dict[str, Any]:
        sel = self.value.selection if self.focused else None
        return {"value": self.value.value, "focused": self.focused, "selection": list(sel) if sel else None}

    def draw(self, dl: DisplayList, focused: bool) -> None:
        r = self.rect
        dl.fill(r.x, r.y, r.w, r.h, WHITE)
        dl.border(r.x, r.y, r.w, r.h, ACCENT if self.focused else BORDER)
        text = self.value.value
        inner = r.w - 5
        start = 0
        while start < len(text) and text_width(text[start:]) > inner:
            start += 1  # show the tail of long values
        x0, ty = r.x + 2, _text_y(r)
        sel = self.value.selection if self.focused else None
        if sel:
            a, b = max(sel[0], start), max(sel[1], start)
            xa = x0 + text_width(text[start:a])
            xb = x0 + text_width(text[start:b])
            dl.fill(xa, r.y + 2, max(1, xb - xa), r.h - 4, ACCENT_LIGHT)
        dl.text(x0, ty, text[start:], TEXT, inner + 1)
        if self.focused:
            cx = x0 + text_width(text[start : max(start, self.value.cursor)])
            dl.fill(min(cx, r.x + r.w - 2), r.y + 2, 1, r.h - 4, TEXT)


@dataclass(eq=False)
class ListItem(Widget):
    """A list row: an optional colour icon, ``label`` on the left, ``detail`` right-aligned."""

    selected: bool = False
    detail: str = ""
    icon: Colour | None = None
    role: ClassVar[str] = "listitem"

    @property
    def interactive(self) -> bool:
        return True

    def state(self) -> dict[str, Any]:
        return {"selected": self.selected}

    def draw(self, dl: DisplayList, focused: bool) -> None:
        r = self.rect
        dl.fill(r.x, r.y, r.w, r.h, ACCENT_LIGHT if self.selected else PANEL)
        dl.fill(r.x, r.y + r.h - 1, r.w, 1, BACKGROUND)
        x = r.x
        if self.icon is not None:
            dl.fill(r.x + 2, r.y + (r.h - 6) // 2, 6, 6, self.icon)
            x = r.x + 8
        dw = text_width(self.detail) + 3 if self.detail else 0
        _label(dl, Rect(x, r.y, r.w - (x - r.x) - dw, r.h), self.label, TEXT)
        if self.detail:
            _label(dl, Rect(r.x + r.w - dw - 1, r.y, dw + 1, r.h), self.detail, MUTED, "right", pad=1)
        super().draw(dl, focused)


@dataclass(eq=False)
class ScrollButton(Widget):
    """An arrow button of a scroll bar; its id is ``"<area id>:up"`` or ``"<area id>:down"``."""

    area: str = ""
    delta: int = 1
    role: ClassVar[str] = "button"

    @property
    def interactive(self) -> bool:
        return True

    def draw(self, dl: DisplayList, focused: bool) -> None:
        r = self.rect
        dl.fill(r.x, r.y, r.w, r.h, TAB_IDLE)
        cx = r.x + r.w // 2
        for i in range(3):  # a 5-pixel-wide arrow
            y = r.y + 2 + (i if self.delta > 0 else 2 - i)
            dl.fill(cx - 2 + i, y, 5 - 2 * i, 1, TEXT)
        super().draw(dl, focused)


@dataclass(eq=False)
class ScrollArea(Widget):
    """A clipped, vertically scrolled region of ``page`` rows out of ``total``, at row ``offset``.

    Apps place only the rows in view as children (use :meth:`row_rect`); the
    area draws a scroll bar with arrow buttons when ``total > page``.
    Scrolling (wheel, arrows, up/down keys) changes the app's offset, clamped
    to ``[0, total - page]``.
    """

    offset: int = 0
    total: int = 0
    page: int = 1
    row_h: int = 12
    role: ClassVar[str] = "list"

    def __post_init__(self) -> None:
        if self.scrollable:
            r = self.rect
            self.children.append(
                ScrollButton(f"{self.id}:up", Rect(r.x + r.w - SCROLLBAR_W, r.y, SCROLLBAR_W, 7), "Scroll up",
                             area=self.id, delta=-1))
            self.children.append(
                ScrollButton(f"{self.id}:down", Rect(r.x + r.w - SCROLLBAR_W, r.y + r.h - 7, SCROLLBAR_W, 7),
                             "Scroll down", area=self.id, delta=1))

    @property
    def scrollable(self) -> bool:
        return self.total > self.page

    @property
    def max_offset(self) -> int:
        return max(0, self.total - self.page)

    def row_rect(self, i: int) -> Rect:
        """Rect of the ``i``-th row in view (0 = top), leaving room for the scroll bar."""
        r = self.rect
        return Rect(r.x + 1, r.y + 1 + i * self.row_h, r.w - 2 - SCROLLBAR_W, self.row_h)

    def state(self) -> dict[str, Any]:
        return {"offset": self.offset, "total": self.total, "page": self.page}

    def draw(self, dl: DisplayList, focused: bool) -> None:
        r = self.rect
        dl.fill(r.x, r.y, r.w, r.h, PANEL)
        dl.border(r.x, r.y, r.w, r.h, BORDER)
        if self.scrollable:
            tx, ty, th = r.x + r.w - SCROLLBAR_W, r.y + 7, r.h - 14
            dl.fill(tx, ty, SCROLLBAR_W, th, BACKGROUND)
            thumb = max(4, th * self.page // self.total)
            top = ty + (th - thumb) * self.offset // max(1, self.max_offset)
            dl.fill(tx + 1, top, SCROLLBAR_W - 2, thumb, OFF)


@dataclass(eq=False)
class Dropdown(Widget):
    """A closed combo box showing ``label`` (the current value) and an arrow; clicking opens its menu."""

    expanded: bool = False
    role: ClassVar[str] = "combobox"

    @property
    def interactive(self) -> bool:
        return True

    def state(self) -> dict[str, Any]:
        return {"expanded": self.expanded}

    def draw(self, dl: DisplayList, focused: bool) -> None:
        r = self.rect
        dl.fill(r.x, r.y, r.w, r.h, WHITE)
        dl.border(r.x, r.y, r.w, r.h, ACCENT if self.expanded else BORDER)
        _label(dl, Rect(r.x, r.y, r.w - 9, r.h), self.label, TEXT)
        cx, cy = r.x + r.w - 6, r.y + r.h // 2 - 1
        for i in range(3):
            dl.fill(cx - 2 + i, cy + i, 5 - 2 * i, 1, TEXT)
        super().draw(dl, focused)


@dataclass(eq=False)
class MenuItem(Widget):
    """One option of a popup menu."""

    selected: bool = False
    role: ClassVar[str] = "menuitem"

    @property
    def interactive(self) -> bool:
        return True

    def state(self) -> dict[str, Any]:
        return {"selected": self.selected}

    def draw(self, dl: DisplayList, focused: bool) -> None:
        r = self.rect
        if self.selected:
            dl.fill(r.x, r.y, r.w, r.h, ACCENT_LIGHT)
        _label(dl, r, self.label, TEXT)
        super().draw(dl, focused)


@dataclass(eq=False)
class Menu(Widget):
    """A popup menu (non-modal overlay): a click outside it closes it."""

    role: ClassVar[str] = "menu"

    def draw(self, dl: DisplayList, focused: bool) -> None:
        r = self.rect
        dl.fill(r.x + 2, r.y + 2, r.w, r.h, MUTED)  # shadow
        dl.fill(r.x, r.y, r.w, r.h, WHITE)
        dl.border(r.x, r.y, r.w, r.h, BORDER)


@dataclass(eq=False)
class Dialog(Widget):
    """A modal dialog box titled ``label``; the window behind it is dimmed and ignores clicks."""

    colour: Colour = ACCENT
    role: ClassVar[str] = "dialog"

    def draw(self, dl: DisplayList, focused: bool) -> None:
        r = self.rect
        dl.fill(r.x, r.y, r.w, r.h, WHITE)
        dl.border(r.x, r.y, r.w, r.h, TEXT)
        dl.fill(r.x + 1, r.y + 1, r.w - 2, TITLE_H, self.colour)
        _label(dl, Rect(r.x, r.y + 1, r.w, TITLE_H), self.label, WHITE, pad=3)


class Screen:
    """One frame's widget tree: the window and an optional overlay (popup menu or modal dialog).

    The *active layer* is the overlay when there is one, else the window; only
    its interactive widgets receive clicks and are listed by :meth:`elements`
    (depth-first painting order: the stable order of element actions).
    """

    def __init__(self, root: Widget, overlay: Widget | None = None, modal: bool = False) -> None:
        self.root = root
        self.overlay = overlay
        self.modal = modal and overlay is not None
        self._active = list((overlay or root).walk())
        self._elements = [w for w in self._active if w.interactive]
        self._by_id = {w.id: w for w in self._elements if w.id}

    @property
    def active(self) -> list[Widget]:
        return self._active

    def elements(self) -> list[Widget]:
        """Interactive widgets of the active layer, in stable (painting) order."""
        return self._elements

    def find(self, widget_id: str) -> Widget | None:
        """The interactive widget ``widget_id`` of the active layer, if on screen."""
        return self._by_id.get(widget_id)

    def hit(self, px: float, py: float) -> Widget | None:
        """The topmost interactive widget of the active layer under ``(px, py)`` (logical pixels)."""
        for w in reversed(self._elements):
            if w.rect.contains(px, py):
                return w
        return None

    def scroll_area_at(self, px: float, py: float) -> ScrollArea | None:
        for w in reversed(self._active):
            if isinstance(w, ScrollArea) and w.rect.contains(px, py):
                return w
        return None

    def scroll_areas(self) -> list[ScrollArea]:
        return [w for w in self._active if isinstance(w, ScrollArea)]

    def display_list(self, focus: str | None) -> DisplayList:
        dl = DisplayList()
        self.root.paint(dl, focus)
        if self.overlay is not None:
            if self.modal:
                dl.dim()
            self.overlay.paint(dl, focus)
        return dl

    def visible_widgets(self) -> list[Widget]:
        """Widgets on screen: the window's, except those whose centre the overlay covers, then the overlay's."""
        if self.overlay is None:
            return list(self.root.walk())
        cover = self.overlay.rect
        under = [w for w in self.root.walk() if not cover.contains(*w.rect.center)]
        return under + self._active
