"""EditDocument: "Change the name to <X> and the phone to <Y>, then save".

A contact form with seven fields in random order, five in view; the rest are
below the fold until the form is scrolled. Editing follows
:mod:`~genex.envs.gui.editing` (a click on a field selects its text, so
typing replaces it). ``Revert`` restores the original values.

* success: ``Save`` with the name and phone changed as asked and nothing else changed;
* irreversible error: ``Save`` with any other changes (the original is overwritten);
* ``Save`` with an invalid phone or empty name opens an error dialog (reversible);
  ``Save`` with no changes does nothing.

Question ``phone_below_fold``: is the Phone field below the fold at the start?
Action choices (costs in wasted steps; 10 = irreversible): ``edit name and
phone`` (fill in both fields, scrolling to each as needed: one scroll more when
the Phone field starts below the fold), ``scroll down``, ``save``. The macro
scrolls to each field, so scrolling down first cannot leave the Name field
above the fold, unedited: an irreversible error would then come from the
macro, not from the belief.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..spec import Probe, Question
from .app import GuiApp, Intent, UiState
from .editing import TextValue
from .widgets import MUTED, Button, Dialog, Label, Rect, Screen, ScrollArea, TextField, Widget, Window

__all__ = ["EditDocumentApp"]

FIELDS = ("Name", "Phone", "Email", "Company", "City", "Street", "Zip")
FIRST = ("Ana", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kira", "Liam",
         "Mona", "Noah", "Olga", "Pablo", "Rosa", "Sami", "Tara", "Victor")
LAST = ("Silva", "Meyer", "Khan", "Novak", "Rossi", "Berg", "Costa", "Diaz", "Evans", "Fischer", "Garcia", "Ito",
        "Jensen", "Kowal", "Lopez", "Moreau")
COMPANIES = ("Acme Ltd", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark Inc", "Wayne Co")
CITIES = ("Lisbon", "Berlin", "Austin", "Osaka", "Quebec", "Nairobi", "Lima", "Perth")
STREETS = ("Oak St", "Elm Rd", "Main St", "Park Ave", "Hill Ln", "Lake Dr")
PAGE = 5
ROW_H = 16
PHONE_RE = re.compile(r"^\+?[0-9][0-9 \-]{2,}$")


def _phone(rng: np.random.Generator) -> str:
    return f"555-{int(rng.integers(100, 1000)):03d}{int(rng.integers(10))}"


@dataclass
class DocumentState(UiState):
    order: list[str] = field(default_factory=list)  # field names, top to bottom
    original: dict[str, str] = field(default_factory=dict)
    values: dict[str, TextValue] = field(default_factory=dict)
    new_name: str = ""
    new_phone: str = ""


class EditDocumentApp(GuiApp):
    name: ClassVar[str] = "EditDocument"
    questions: ClassVar[tuple[Question, ...]] = (
        Question("phone_below_fold", "Is the Phone field below the fold (out of view until you scroll)?",
                 ("yes", "no")),
    )
    action_names: ClassVar[tuple[str, ...]] = ("edit name and phone", "scroll down", "save")
    action_costs: ClassVar[dict[str, np.ndarray]] = {
        # rows: edit name and phone, scroll down, save now; columns: yes, no
        "phone_below_fold": np.array([[1.0, 0.0], [0.0, 1.0], [10.0, 10.0]], np.float32),
    }
    facts: ClassVar[tuple[str, ...]] = ("name_field", "phone_field", "name_correct", "phone_correct", "error_dialog")
    probes: ClassVar[tuple[Probe, ...]] = (Probe("phone_below_fold", "phone_field", ("no",), detect=0.95),)
    default_max_steps: ClassVar[int] = 40

    def sample(self, rng: np.random.Generator) -> DocumentState:
        order = [FIELDS[i] for i in rng.permutation(len(FIELDS))]
        first, last = FIRST[int(rng.integers(len(FIRST)))], LAST[int(rng.integers(len(LAST)))]
        original = {
            "Name": f"{first} {last}",
            "Phone": _phone(rng),
            "Email": f"{first.lower()}@{last.lower()}.com",
            "Company": COMPANIES[int(rng.integers(len(COMPANIES)))],
            "City": CITIES[int(rng.integers(len(CITIES)))],
            "Street": f"{int(rng.integers(1, 99))} {STREETS[int(rng.integers(len(STREETS)))]}",
            "Zip": f"{int(rng.integers(10000, 99999))}",
        }
        while True:
            new_name = f"{FIRST[int(rng.integers(len(FIRST)))]} {LAST[int(rng.integers(len(LAST)))]}"
            new_phone = _phone(rng)
            if new_name != original["Name"] and new_phone != original["Phone"]:
                break
        values = {k: TextValue(v, cursor=len(v)) for k, v in original.items()}
        return DocumentState(order=order, original=original, values=values, new_name=new_name,
                             new_phone=new_phone, status="Edit, then Save")

    def instruction(self) -> str:
        s: DocumentState = self.state
        return f"Change the name to {s.new_name} and the phone to {s.new_phone}, then save."

    # ------------------------------------------------------------------ view
    def view(self) -> Screen:
        s: DocumentState = self.state
        win = Window("window", Rect(0, 0, 128, 128), "Edit contact", colour=(46, 125, 90))
        offset = s.scroll.get("form", 0)
        form = ScrollArea("form", Rect(2, 14, 124, 2 + PAGE * ROW_H), offset=offset, total=len(s.order),
                          page=PAGE, row_h=ROW_H)
        rows: list[Widget] = []
        for i, fname in enumerate(s.order[offset : offset + PAGE]):
            r = form.row_rect(i)
            tv = s.values[fname]
            tags: tuple[str, ...] = ()
            if fname in ("Name", "Phone"):
                want = s.new_name if fname == "Name" else s.new_phone
                tags = (f"{fname.lower()}_field",) + ((f"{fname.lower()}_correct",) if tv.value == want else ())
            rows.append(Label("", Rect(r.x, r.y, 36, r.h), fname, colour=MUTED))
            rows.append(TextField(f"field:{fname}", Rect(r.x + 36, r.y + 2, r.w - 37, r.h - 4), fname,
                                  facts=tags, value=tv, focused=s.focus == f"field:{fname}"))
        form.children[:0] = rows
        win.children.append(form)
        win.children.append(Button("save", Rect(2, 100, 38, 13), "Save", style="primary"))
        win.children.append(Button("revert", Rect(44, 100, 38, 13), "Revert"))
        win.children.append(Label("", Rect(2, 115, 124, 12), s.status, colour=MUTED))
        overlay = None
        if s.dialog == "invalid":
            overlay = Dialog("dialog", Rect(12, 36, 104, 56), "Cannot save", facts=("error_dialog",),
                             colour=(200, 44, 44))
            overlay.children += [
                Label("", Rect(16, 50, 96, 11), "Check the name and"),
                Label("", Rect(16, 61, 96, 11), "the phone number."),
                Button("dialog:ok", Rect(44, 75, 40, 13), "OK", style="primary"),
            ]
        return Screen(win, overlay, modal=overlay is not None)

    # ------------------------------------------------------------------ events
    def text_values(self) -> dict[str, TextValue]:
        return {f"field:{k}": v for k, v in self.state.values.items()}

    def on_click(self, widget: Widget) -> None:
        s: DocumentState = self.state
        if widget.id == "dialog:ok":
            s.dialog = None
        elif widget.id == "revert":
            for k, v in s.original.items():
                s.values[k] = TextValue(v, cursor=len(v))
            s.status = "Reverted"
        elif widget.id == "save":
            self._save()

    def on_enter(self, widget: Widget | None) -> bool:
        """``enter`` dismisses the error dialog (its only button is OK)."""
        if self.state.dialog == "invalid":
            self.state.dialog = None
            return True
        return False

    def _save(self) -> None:
        s: DocumentState = self.state
        current = {k: v.value for k, v in s.values.items()}
        if not current["Name"].strip() or not PHONE_RE.match(current["Phone"]):
            s.dialog = "invalid"
            return
        if current == s.original:
            s.status = "No changes to save"
            return
        wanted = {**s.original, "Name": s.new_name, "Phone": s.new_phone}
        if current == wanted:
            self.finish("success", "Saved")
        else:
            wrong = sorted(k for k in current if current[k] != wanted[k])
            self.finish("error", f"Saved wrong {', '.join(wrong)} (irreversible)")

    # ------------------------------------------------------------------ truth and labels
    def hidden(self) -> dict[str, Any]:
        s: DocumentState = self.state
        return {
            "field_order": list(s.order),
            "phone_slot": s.order.index("Phone"),
            "name_slot": s.order.index("Name"),
            "phone_below_fold": s.order.index("Phone") >= PAGE,
            "original": dict(s.original),
            "values": {k: v.value for k, v in s.values.items()},
            "new_name": s.new_name,
            "new_phone": s.new_phone,
        }

    def answers(self) -> dict[str, int]:
        return {"phone_below_fold": 0 if self.state.order.index("Phone") >= PAGE else 1}

    def question_text(self) -> dict[str, str]:
        return {"phone_below_fold": "Is the Phone field below the fold (out of view until you scroll)?"}

    def answer_labels(self) -> dict[str, list[str]]:
        return {"phone_below_fold": ["yes", "no"]}

    def labels(self) -> tuple[str, ...]:
        return (*FIELDS, "Save", "Revert")

    # ------------------------------------------------------------------ scripts
    def _fill(self, fname: str, want: str, screen: Screen) -> Intent | None:
        s: DocumentState = self.state
        tv, wid = s.values[fname], f"field:{fname}"
        if tv.value == want or screen.find(wid) is None:
            return None
        if s.focus != wid:
            return Intent("click", wid)
        if tv.selection != (0, len(tv.value)) and tv.value:
            return Intent("key", key="select_all")
        return Intent("type", text=want)

    def choice_intent(self, choice: int, screen: Screen) -> Intent | None:
        s: DocumentState = self.state
        if s.dialog is not None:
            return Intent("click", "dialog:ok")
        if choice == 0:  # fill in both fields, scrolling to each one as a user would
            return self._edit_intent(screen)
        if choice == 1:
            return Intent("scroll", "form", down=True) if s.scroll.get("form", 0) < len(s.order) - PAGE else None
        return Intent("click", "save")

    def _unedited(self) -> list[tuple[str, str]]:
        """``(field, wanted value)`` of the asked edits not made yet, Name first."""
        s: DocumentState = self.state
        return [(f, want) for f, want in (("Name", s.new_name), ("Phone", s.new_phone)) if s.values[f].value != want]

    def _edit_intent(self, screen: Screen) -> Intent | None:
        """The next step of the asked edits: scroll the first unedited field into view, then fill it."""
        unedited = self._unedited()
        if not unedited:
            return None
        fname, want = unedited[0]
        return self.reveal(screen, "form", self.state.order.index(fname)) or self._fill(fname, want, screen)

    def expert_intent(self, screen: Screen) -> Intent | None:
        s: DocumentState = self.state
        if s.dialog is not None:
            return Intent("click", "dialog:ok")
        if self._unedited():
            return self._edit_intent(screen)
        return Intent("click", "save")
