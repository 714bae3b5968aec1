"""MailCompose: "Save this message to Drafts" or "Open the Print settings", with icon-only toolbar buttons.

The compose window's toolbar has four buttons that show only a glyph, as on many real toolbars: a disk
(save to Drafts), a printer (open the Print settings dialog), an arrow (send) and a bin (delete the
message). Their accessible names describe the picture ("disk", "arrow"), not the action, like an image's
alt text; they are what ``describe_action`` gives a world model ("click the *disk* button"). Each seed
deals the four to the slots in a random order and picks the instruction. The glyphs never change meaning,
so someone who has *used* the app knows what each does; the screen itself never says. This is the
WebDreamer case: a wrong click is often irreversible, and the only safe way to learn what a button does is
to imagine clicking it.

* success: the asked-for function runs (the message is saved to Drafts, or the Print settings open);
* irreversible error: the message is sent, or deleted (one click, no confirmation, no undo);
* the other harmless button is a reversible detour (a save, or a dialog to close).

Question ``target_icon``: which toolbar slot (1-4, left to right) does what the instruction asks.
Action choices: ``click icon k`` (closing a dialog first). Costs: 0 for the right slot; 7 for a wrong
one, the mean over what a wrong slot holds (2 of the 3 others are irreversible: 10; the third is a wasted
step: 1). Probe: after ``click icon k``, the instruction's outcome ("Saved to Drafts", "Print settings")
on screen says slot k is the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..spec import Probe, Question
from .app import GuiApp, Intent, UiState
from .widgets import MUTED, Button, Dialog, IconButton, Label, Panel, Rect, Screen, Widget, Window

__all__ = ["FUNCTIONS", "GOALS", "MailComposeApp"]

N_ICONS = 4
#: toolbar function -> its glyph (:data:`~genex.envs.gui.widgets.ICONS`)
FUNCTIONS: dict[str, str] = {"save": "disk", "print": "printer", "send": "arrow", "delete": "bin"}
#: the functions an instruction may ask for, with its wording (the others are irreversible)
GOALS: dict[str, str] = {"save": "Save this message to Drafts", "print": "Open the Print settings"}
SAVED = "Saved to Drafts"
PRINT_TITLE = "Print settings"
RECIPIENTS = ("Ana Silva", "Ben Okafor", "Chen Li", "Dana Cruz", "Eli Novak", "Fay Moreau", "Gus Berg",
              "Hana Sato", "Ivo Petrov", "Jo Park")
SUBJECTS = ("Lunch on Friday", "Trip photos", "Meeting notes", "Invoice 42", "Book club", "New schedule",
            "Team dinner", "Quick question", "Budget plan", "Garden party")
BODIES = ("Hi, see you there at noon.", "Thanks again for your help.", "Here are the numbers we need.",
          "Can we move it to Monday?", "Let me know what you think.", "The room is booked for two.")
ICON_W, ICON_H, ICON_Y = 24, 16, 14


def icon_x(slot: int) -> int:
    return 6 + slot * 30


@dataclass
class MailState(UiState):
    icons: list[str] = field(default_factory=list)  # function of each toolbar slot
    goal: str = "save"
    recipient: str = ""
    subject: str = ""
    body: list[str] = field(default_factory=list)
    saved: bool = False
    sent: bool = False
    deleted: bool = False
    last_icon: int | None = None  # the slot clicked last (a choice is done once its slot was clicked)


class MailComposeApp(GuiApp):
    name: ClassVar[str] = "MailCompose"
    questions: ClassVar[tuple[Question, ...]] = (
        Question("target_icon", "Which toolbar button does what the instruction asks?",
                 tuple(f"icon {i + 1}" for i in range(N_ICONS))),
    )
    action_names: ClassVar[tuple[str, ...]] = tuple(f"click icon {i + 1}" for i in range(N_ICONS))
    action_costs: ClassVar[dict[str, np.ndarray]] = {
        # rows: click icon 1..4; columns: icon 1..4 does what is asked. A wrong slot is send or delete (10,
        # irreversible) 2 times in 3 and the other harmless function (1, a wasted step) 1 time in 3: 7.
        "target_icon": (7.0 * (1.0 - np.eye(N_ICONS))).astype(np.float32),
    }
    facts: ClassVar[tuple[str, ...]] = ("target",)
    probes: ClassVar[tuple[Probe, ...]] = tuple(
        Probe("target_icon", "target", (f"icon {i + 1}",), detect=0.95, after_choice=i) for i in range(N_ICONS))
    default_max_steps: ClassVar[int] = 20

    def sample(self, rng: np.random.Generator) -> MailState:
        icons = [list(FUNCTIONS)[int(i)] for i in rng.permutation(N_ICONS)]
        goal = list(GOALS)[int(rng.integers(len(GOALS)))]
        body = [BODIES[int(i)] for i in rng.choice(len(BODIES), 2, replace=False)]
        return MailState(icons=icons, goal=goal, recipient=RECIPIENTS[int(rng.integers(len(RECIPIENTS)))],
                         subject=SUBJECTS[int(rng.integers(len(SUBJECTS)))], body=body, status="Editing")

    def instruction(self) -> str:
        return GOALS[self.state.goal]

    # ------------------------------------------------------------------ view
    def view(self) -> Screen:
        s: MailState = self.state
        win = Window("window", Rect(0, 0, 128, 128), "New message")
        if s.sent or s.deleted:  # the message is gone: the window says so, and nothing is left to click
            text, colour = ("Message sent", (37, 99, 200)) if s.sent else ("Message deleted", (200, 44, 44))
            banner = Panel("gone", Rect(8, 44, 112, 30), colour=colour)
            banner.children.append(Label("", Rect(10, 53, 108, 12), text, colour=(255, 255, 255), align="center"))
            win.children.append(banner)
            win.children.append(Label("", Rect(2, 115, 124, 12), "This cannot be undone.", colour=MUTED))
            return Screen(win)
        for slot, fn in enumerate(s.icons):
            glyph = FUNCTIONS[fn]  # its accessible name describes the picture (alt text), not what it does
            win.children.append(IconButton(f"icon:{slot}", Rect(icon_x(slot), ICON_Y, ICON_W, ICON_H), glyph,
                                           icon=glyph))
        win.children += [
            Label("", Rect(4, 34, 36, 11), "To:", colour=MUTED), Label("", Rect(40, 34, 86, 11), s.recipient),
            Label("", Rect(4, 46, 36, 11), "Subject:", colour=MUTED), Label("", Rect(40, 46, 86, 11), s.subject),
        ]
        page = Panel("body", Rect(2, 59, 124, 40))
        for row, line in enumerate(s.body):
            page.children.append(Label("", Rect(4, 62 + row * 12, 120, 11), line))
        win.children.append(page)
        if s.saved:
            banner = Panel("saved", Rect(2, 101, 124, 12), colour=(214, 240, 220))
            banner.children.append(Label("", Rect(4, 101, 120, 12), SAVED,
                                         facts=("target",) if s.goal == "save" else ()))
            win.children.append(banner)
        win.children.append(Label("", Rect(2, 115, 124, 12), s.status, colour=MUTED))
        overlay = None
        if s.dialog == "print":
            overlay = Dialog("dialog", Rect(14, 34, 100, 62), "Print")
            overlay.children += [
                Label("", Rect(18, 47, 92, 11), PRINT_TITLE, facts=("target",) if s.goal == "print" else ()),
                Label("", Rect(18, 58, 92, 11), "Printer: Office", colour=MUTED),
                Button("dialog:ok", Rect(20, 78, 40, 13), "OK", style="primary"),
                Button("dialog:cancel", Rect(68, 78, 40, 13), "Cancel"),
            ]
        return Screen(win, overlay, modal=overlay is not None)

    # ------------------------------------------------------------------ events
    def on_click(self, widget: Widget) -> None:
        s: MailState = self.state
        wid = widget.id
        if wid.startswith("icon:"):
            slot = int(wid[5:])
            s.last_icon = slot
            fn = s.icons[slot]
            if fn == "save":
                s.saved, s.status = True, "Saved"
            elif fn == "print":
                s.dialog, s.status = "print", "Printing options"
            elif fn == "send":
                s.sent = True
                self.finish("error", "Message sent (it cannot be recalled)")
                return
            else:
                s.deleted = True
                self.finish("error", "Message deleted (no undo)")
                return
            if fn == s.goal:
                self.finish("success", SAVED if fn == "save" else f"{PRINT_TITLE} opened")
        elif wid in ("dialog:ok", "dialog:cancel"):
            self.cancel_dialog()

    def cancel_dialog(self) -> None:
        s: MailState = self.state
        s.dialog, s.last_icon, s.status = None, None, "Editing"

    # ------------------------------------------------------------------ truth and labels
    def hidden(self) -> dict[str, Any]:
        s: MailState = self.state
        return {"goal": s.goal, "icons": list(s.icons), "target_icon": s.icons.index(s.goal), "saved": s.saved,
                "sent": s.sent, "deleted": s.deleted}

    def answers(self) -> dict[str, int]:
        return {"target_icon": self.state.icons.index(self.state.goal)}

    def question_text(self) -> dict[str, str]:
        what = "saves this message to Drafts" if self.state.goal == "save" else "opens the Print settings"
        return {"target_icon": f"Which toolbar button {what}?"}

    def answer_labels(self) -> dict[str, list[str]]:
        return {"target_icon": list(self.state.icons)}  # privileged: the screen shows only glyphs

    def labels(self) -> tuple[str, ...]:
        s: MailState = self.state
        return ("New message", "To:", s.recipient, "Subject:", s.subject, *s.body, SAVED, "Print", PRINT_TITLE,
                "Printer: Office", "OK", "Cancel", "Message sent", "Message deleted", "This cannot be undone.",
                "Editing", "Saved", "Printing options")  # the glyphs' names are not drawn: no text facts

    # ------------------------------------------------------------------ scripts
    def choice_intent(self, choice: int, screen: Screen) -> Intent | None:
        s: MailState = self.state
        if s.sent or s.deleted or s.last_icon == choice:
            return None
        if s.dialog is not None:
            return Intent("click", "dialog:cancel")
        return Intent("click", f"icon:{choice}")

    def expert_intent(self, screen: Screen) -> Intent | None:
        s: MailState = self.state
        if s.outcome is not None:
            return None
        return self.choice_intent(s.icons.index(s.goal), screen)
