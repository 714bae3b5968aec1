"""The app contract: state as plain data, a view built from it, and event handlers.

An app (:class:`GuiApp`) owns one dataclass of state (a :class:`UiState`
subclass) that ``copy.deepcopy`` captures whole, so env snapshots are just
copies of it. The env turns raw actions into widget-level events through a
:class:`~genex.envs.gui.widgets.Screen` (hit-testing, element indices) and calls
the generic handlers here (focus, text editing, scrolling, keyboard
navigation), which defer to the app's ``on_click`` for app logic.

Apps also declare what the planners and metrics need: ``questions``,
``action_names`` with ``action_costs`` (high-level action choices, each a
macro the env can expand into primitive actions via :meth:`choice_intent`),
visibility ``facts``, and the hidden truth.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..spec import NumberReading, Probe, Question
from .editing import TextValue
from .widgets import Dropdown, ScrollArea, ScrollButton, Screen, TextField, Widget

__all__ = ["UiState", "Intent", "GuiApp"]


@dataclass
class UiState:
    """Per-episode UI state shared by all apps (apps subclass it with their own fields).

    Attributes:
        focus: id of the focused widget, or None.
        scroll: row offset of each scroll area, by id.
        popup: id of the dropdown whose menu is open, or None.
        dialog: name of the open modal dialog, or None.
        status: status-bar message.
        outcome: None while running, ``"success"`` or ``"error"`` (an irreversible mistake) when done.
        reason: why the episode ended (human-readable).
    """

    focus: str | None = None
    scroll: dict[str, int] = field(default_factory=dict)
    popup: str | None = None
    dialog: str | None = None
    status: str = ""
    outcome: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class Intent:
    """A widget-level action: what a script (expert, action choice) wants to do next.

    ``kind`` is ``"click"`` (``target``), ``"type"`` (``text``), ``"key"`` (``key``)
    or ``"scroll"`` (``target`` = a scroll area id, ``down``).
    """

    kind: str
    target: str = ""
    text: str = ""
    key: str = ""
    down: bool = True


class GuiApp(abc.ABC):
    """Base class of the mock apps; see the module docstring."""

    name: ClassVar[str]
    questions: ClassVar[tuple[Question, ...]]
    action_names: ClassVar[tuple[str, ...]]
    action_costs: ClassVar[dict[str, np.ndarray]]
    facts: ClassVar[tuple[str, ...]]  # semantic visibility facts (widget tags)
    default_max_steps: ClassVar[int]
    #: how visible facts bear on the questions (perception evidence for planners; see ``spec.Probe``)
    probes: ClassVar[tuple[Probe, ...]] = ()
    #: facts that are comparisons of a read number with the instruction's (see ``spec.NumberReading``)
    readings: ClassVar[tuple[NumberReading, ...]] = ()
    #: the action choice whose view the app starts in (its ``after_choice`` probes apply at reset), if any
    initial_view_choice: ClassVar[int | None] = None

    def __init__(self) -> None:
        self.state: Any = None
        self.dawdle_cost = 0.0  # set by the env from its config; used by apps with a "found" moment
        self.tab_layout = "grouped"  # set by the env from its config; used by SettingsTabs

    # ------------------------------------------------------------ to implement
    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> UiState:
        """Draw one episode's initial state."""

    @abc.abstractmethod
    def instruction(self) -> str:
        """The task, as shown to the agent."""

    @abc.abstractmethod
    def view(self) -> Screen:
        """The widget tree for the current state."""

    @abc.abstractmethod
    def on_click(self, widget: Widget) -> None:
        """App logic for a click on ``widget`` (focus and text fields are handled already)."""

    @abc.abstractmethod
    def hidden(self) -> dict[str, Any]:
        """Ground truth for metrics (never shown to planners)."""

    @abc.abstractmethod
    def answers(self) -> dict[str, int]:
        """Index of the true answer of each question."""

    @abc.abstractmethod
    def question_text(self) -> dict[str, str]:
        """Each question phrased for this episode (e.g. naming the setting)."""

    @abc.abstractmethod
    def answer_labels(self) -> dict[str, list[str]]:
        """What each answer slot shows on screen this episode (e.g. the tab names)."""

    @abc.abstractmethod
    def labels(self) -> tuple[str, ...]:
        """Every label that may appear this episode: keys of the ``label:<text>`` visibility facts."""

    @abc.abstractmethod
    def choice_intent(self, choice: int, screen: Screen) -> Intent | None:
        """Next widget-level step of high-level action ``choice``; None when done or impossible."""

    @abc.abstractmethod
    def expert_intent(self, screen: Screen) -> Intent | None:
        """Next step of a privileged script that completes the task (reads the hidden state)."""

    # ------------------------------------------------------------ optional hooks
    def switch_labels(self) -> tuple[str, ...]:
        """Labels of toggles/checkboxes: keys of the ``on:<label>`` visibility facts."""
        return ()

    def text_values(self) -> dict[str, TextValue]:
        """Editable text fields by widget id (the values live in the app state)."""
        return {}

    def on_enter(self, widget: Widget | None) -> bool:
        """``enter`` with focus on a text field (or nothing); returns whether it did something (default: no)."""
        return False

    def cancel_dialog(self) -> None:
        """``escape`` with a dialog open; default: close it."""
        self.state.dialog = None

    def tick(self) -> float:
        """Called once per step after the action; returns an extra reward (e.g. a dawdling cost)."""
        return 0.0

    # ------------------------------------------------------------ generic event handling
    def reset(self, rng: np.random.Generator) -> None:
        self.state = self.sample(rng)

    def click(self, widget: Widget, screen: Screen) -> None:
        """A click that landed on ``widget`` (an interactive widget of the active layer)."""
        s = self.state
        if isinstance(widget, ScrollButton):
            area = next((a for a in screen.scroll_areas() if a.id == widget.area), None)
            if area is not None:
                self.scroll(area, widget.delta)
            return
        if isinstance(widget, TextField):
            tv = self.text_values().get(widget.id)
            if tv is not None:
                if s.focus == widget.id:
                    tv.caret_to_end()
                else:
                    tv.select_all()
            s.focus = widget.id
            return
        s.focus = widget.id if widget.interactive else None
        if isinstance(widget, Dropdown):
            s.popup = None if s.popup == widget.id else widget.id
            return
        self.on_click(widget)

    def click_outside(self, screen: Screen) -> None:
        """A click on no interactive widget: closes a popup menu, else drops the focus."""
        s = self.state
        if screen.overlay is not None and not screen.modal:
            s.popup = None
        elif not screen.modal:
            s.focus = None

    def type_text(self, text: str) -> bool:
        """Type into the focused text field; returns False (no-op) when no field has focus."""
        tv = self.text_values().get(self.state.focus or "")
        if tv is None:
            return False
        tv.insert(text)
        return True

    def press(self, key: str, screen: Screen) -> bool:
        """Keyboard handling; returns False when the key did nothing."""
        s = self.state
        focused = screen.find(s.focus) if s.focus else None
        tv = self.text_values().get(s.focus or "")
        if tv is not None and focused is not None and tv.key(key):
            return True
        if key == "tab":
            elements = screen.elements()
            if not elements:
                return False
            i = elements.index(focused) + 1 if focused in elements else 0
            target = elements[i % len(elements)]
            s.focus = target.id
            tv = self.text_values().get(target.id)
            if tv is not None:
                tv.select_all()
            return True
        if key == "escape":
            if s.popup is not None:
                s.popup = None
            elif s.dialog is not None:
                self.cancel_dialog()
            elif s.focus is not None:
                s.focus = None
            else:
                return False
            return True
        if key == "enter":
            if focused is None or isinstance(focused, TextField):
                return self.on_enter(focused)
            self.click(focused, screen)
            return True
        if key in ("up", "down"):
            areas = screen.scroll_areas()
            if not areas:
                return False
            area = next((a for a in areas if focused is not None and focused in a.children), areas[0])
            return self.scroll(area, 1 if key == "down" else -1)
        return False

    def scroll(self, area: ScrollArea, delta: int) -> bool:
        """Scroll ``area`` by ``delta`` rows (clamped); returns False when it did not move."""
        s = self.state
        old = s.scroll.get(area.id, 0)
        new = min(max(0, old + delta), area.max_offset)
        s.scroll[area.id] = new
        return new != old

    # ------------------------------------------------------------ helpers for subclasses
    def finish(self, outcome: str, reason: str) -> None:
        """End the episode with ``"success"`` or ``"error"`` (an irreversible mistake)."""
        self.state.outcome = outcome
        self.state.reason = reason
        self.state.status = reason

    @staticmethod
    def reveal(screen: Screen, area_id: str, row: int) -> Intent | None:
        """A scroll intent bringing row ``row`` of scroll area ``area_id`` into view, or None if it is in view."""
        area = next((a for a in screen.scroll_areas() if a.id == area_id), None)
        if area is None:
            return None
        if row < area.offset:
            return Intent("scroll", target=area_id, down=False)
        if row >= area.offset + area.page:
            return Intent("scroll", target=area_id, down=True)
        return None
