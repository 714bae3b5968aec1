"""TicketShop: "Buy a ticket to <city> for at most $<price>".

A scrolling list of trips (city, day and time; 7 of 10-13 in view) with a
city filter dropdown. Prices are hidden behind a click: a trip's details
dialog shows its price and a ``Buy`` button. The destination has exactly
three trips, of which exactly one is within budget.

* success: ``Buy`` on the destination's trip within budget;
* irreversible error: ``Buy`` on any other trip;
* once the right trip's details have been opened, every further step until
  buying costs ``dawdle_cost`` (the env option) on top of the step cost.

Question ``affordable_listing``: which of the destination's three trips (in
list order) is within budget. Action choices: ``open listing k`` (view its
details; 1 wasted step if wrong, 0.5 if right: it does not buy) and ``buy listing k`` (open it and buy;
10 if wrong: irreversible).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..spec import NumberReading, Probe, Question
from .app import GuiApp, Intent, UiState
from .widgets import (
    MUTED, Button, Dialog, Dropdown, Label, ListItem, Menu, MenuItem, Rect, Screen, ScrollArea, Widget, Window,
)

__all__ = ["TicketShopApp"]

N_LISTINGS = 3
CITIES = ("Paris", "Rome", "Berlin", "Madrid", "Vienna", "Prague", "Lisbon", "Oslo", "Dublin", "Athens", "Warsaw",
          "Zurich")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
ALL = "All cities"
PAGE = 7
ROW_H = 12


@dataclass
class Trip:
    city: str
    day: str
    time: str
    price: int
    seats: int


@dataclass
class ShopState(UiState):
    trips: list[Trip] = field(default_factory=list)
    city: str = ""
    budget: int = 0
    filter: str = ALL
    details: int | None = None  # index of the trip whose details dialog is open
    found: bool = False  # the right trip's details have been seen
    dawdling: bool = False  # a step has passed since found: later steps cost dawdle_cost


class TicketShopApp(GuiApp):
    name: ClassVar[str] = "TicketShop"
    questions: ClassVar[tuple[Question, ...]] = (
        Question("affordable_listing", "Which trip to the destination costs at most the budget?",
                 tuple(f"listing {i + 1}" for i in range(N_LISTINGS))),
    )
    action_names: ClassVar[tuple[str, ...]] = (
        *(f"open listing {i + 1}" for i in range(N_LISTINGS)), *(f"buy listing {i + 1}" for i in range(N_LISTINGS)),
    )
    action_costs: ClassVar[dict[str, np.ndarray]] = {
        # rows: open listing 1..3, buy listing 1..3; columns: listing 1..3 is within budget. Opening the right
        # listing costs 0.5: it shows the price but does not buy, so a confident belief buys (p > 0.95).
        "affordable_listing": np.vstack([1.0 - 0.5 * np.eye(N_LISTINGS), 10.0 * (1.0 - np.eye(N_LISTINGS))]).astype(
            np.float32),
    }
    facts: ClassVar[tuple[str, ...]] = ("destination", "details", "affordable_details", "expensive_details")
    probes: ClassVar[tuple[Probe, ...]] = tuple(
        p for i in range(N_LISTINGS) for p in (
            Probe("affordable_listing", "affordable_details", (f"listing {i + 1}",), detect=0.95, after_choice=i),
            Probe("affordable_listing", "expensive_details",
                  tuple(f"listing {j + 1}" for j in range(N_LISTINGS) if j != i), detect=0.95, after_choice=i)))
    #: "affordable" is a comparison the policy does not make: it reads the dialog's "Price: $N" (the text question
    #: for every N within 60 of the instruction's budget) and the planner compares N with the budget
    readings: ClassVar[tuple[NumberReading, ...]] = (
        NumberReading("affordable_details", "expensive_details", given="details", template="Price: ${}",
                      reference=r"at most \$(\d+)"),)
    default_max_steps: ClassVar[int] = 40

    def sample(self, rng: np.random.Generator) -> ShopState:
        cities = [CITIES[i] for i in rng.choice(len(CITIES), 5, replace=False)]
        city = cities[0]
        budget = int(rng.integers(12, 40)) * 5
        trips = []
        cheap = int(rng.integers(N_LISTINGS))
        for k in range(N_LISTINGS):
            price = budget - int(rng.integers(0, 20)) if k == cheap else budget + int(rng.integers(5, 60))
            trips.append((city, price))
        for other in cities[1:]:
            for _ in range(int(rng.integers(1, 4))):
                trips.append((other, int(rng.integers(8, 52)) * 5))
        order = rng.permutation(len(trips))
        out = []
        for i in order:
            c, price = trips[i]
            time = f"{int(rng.integers(6, 22)):02d}:{int(rng.integers(0, 4)) * 15:02d}"
            out.append(Trip(c, DAYS[int(rng.integers(len(DAYS)))], time, price, int(rng.integers(1, 9))))
        return ShopState(trips=out, city=city, budget=budget, status="Click a trip for details")

    def instruction(self) -> str:
        return f"Buy a ticket to {self.state.city} for at most ${self.state.budget}"

    # ------------------------------------------------------------------ helpers
    def _shown(self) -> list[int]:
        """Indices of the trips the filter lets through, in list order."""
        s: ShopState = self.state
        return [i for i, t in enumerate(s.trips) if s.filter in (ALL, t.city)]

    def _listing(self, k: int) -> int:
        """Trip index of the destination's ``k``-th trip (0-based) in the unfiltered list."""
        s: ShopState = self.state
        return [i for i, t in enumerate(s.trips) if t.city == s.city][k]

    def _right(self, i: int) -> bool:
        t = self.state.trips[i]
        return t.city == self.state.city and t.price <= self.state.budget

    def _options(self) -> list[str]:
        return [ALL, *sorted({t.city for t in self.state.trips})]

    # ------------------------------------------------------------------ view
    def view(self) -> Screen:
        s: ShopState = self.state
        win = Window("window", Rect(0, 0, 128, 128), "Tickets", colour=(120, 60, 170))
        win.children.append(Label("", Rect(2, 13, 22, 12), "City:", colour=MUTED))
        win.children.append(Dropdown("filter", Rect(24, 13, 62, 12), s.filter, expanded=s.popup == "filter"))
        shown = self._shown()
        win.children.append(Label("", Rect(88, 13, 38, 12), f"{len(shown)} trips", colour=MUTED, align="right"))
        offset = s.scroll.get("trips", 0)
        area = ScrollArea("trips", Rect(2, 27, 124, 2 + PAGE * ROW_H), offset=offset, total=len(shown), page=PAGE,
                          row_h=ROW_H)
        rows: list[Widget] = []
        for row, i in enumerate(shown[offset : offset + PAGE]):
            t = s.trips[i]
            tags = ("destination",) if t.city == s.city else ()
            rows.append(ListItem(f"trip:{i}", area.row_rect(row), t.city, facts=tags, selected=s.details == i,
                                 detail=f"{t.day} {t.time}"))
        area.children[:0] = rows
        win.children.append(area)
        win.children.append(Label("", Rect(2, 115, 124, 12), s.status, colour=MUTED))
        overlay: Widget | None = None
        if s.details is not None:
            t = s.trips[s.details]
            tags = ("details",)
            if t.city == s.city:
                tags += ("affordable_details",) if t.price <= s.budget else ("expensive_details",)
            overlay = Dialog("dialog", Rect(12, 30, 104, 70), "Trip details", facts=tags, colour=(120, 60, 170))
            overlay.children += [
                Label("", Rect(16, 43, 96, 11), f"{t.city}, {t.day} {t.time}"),
                Label("", Rect(16, 54, 96, 11), f"Price: ${t.price}"),
                Label("", Rect(16, 65, 96, 11), f"Seats left: {t.seats}", colour=MUTED),
                Button("dialog:buy", Rect(18, 81, 40, 13), "Buy", style="primary"),
                Button("dialog:close", Rect(70, 81, 40, 13), "Close"),
            ]
        elif s.popup == "filter":
            options = self._options()
            overlay = Menu("menu", Rect(24, 25, 62, 2 + 11 * len(options)))
            overlay.children += [
                MenuItem(f"option:{o}", Rect(25, 26 + 11 * j, 60, 11), o, selected=o == s.filter)
                for j, o in enumerate(options)
            ]
        return Screen(win, overlay, modal=s.details is not None)

    # ------------------------------------------------------------------ events
    def on_click(self, widget: Widget) -> None:
        s: ShopState = self.state
        wid = widget.id
        if wid.startswith("trip:"):
            s.details = int(wid[5:])
            s.found = s.found or self._right(s.details)
        elif wid.startswith("option:"):
            s.filter = wid[7:]
            s.popup = None
            s.scroll["trips"] = 0
        elif wid == "dialog:close":
            s.details = None
        elif wid == "dialog:buy" and s.details is not None:
            t = s.trips[s.details]
            if self._right(s.details):
                self.finish("success", f"Bought {t.city} for ${t.price}")
            else:
                why = "over budget" if t.city == s.city else "wrong city"
                self.finish("error", f"Bought {t.city} for ${t.price}: {why} (irreversible)")

    def cancel_dialog(self) -> None:
        self.state.details = None

    def tick(self) -> float:
        s: ShopState = self.state
        if not s.found or s.outcome is not None:
            return 0.0
        cost = -self.dawdle_cost if s.dawdling else 0.0
        s.dawdling = True
        return cost

    # ------------------------------------------------------------------ truth and labels
    def hidden(self) -> dict[str, Any]:
        s: ShopState = self.state
        k = self.answers()["affordable_listing"]
        return {
            "city": s.city,
            "budget": s.budget,
            "affordable_listing": k,
            "affordable_trip": self._listing(k),
            "found": s.found,
            "trips": [{"city": t.city, "day": t.day, "time": t.time, "price": t.price} for t in s.trips],
        }

    def answers(self) -> dict[str, int]:
        return {"affordable_listing": next(k for k in range(N_LISTINGS) if self._right(self._listing(k)))}

    def question_text(self) -> dict[str, str]:
        s: ShopState = self.state
        return {"affordable_listing": f"Which trip to {s.city} costs at most ${s.budget}?"}

    def answer_labels(self) -> dict[str, list[str]]:
        s: ShopState = self.state
        trips = [s.trips[self._listing(k)] for k in range(N_LISTINGS)]
        return {"affordable_listing": [f"{t.city} {t.day} {t.time}" for t in trips]}

    def labels(self) -> tuple[str, ...]:
        # the prices too: a reader learns "Price: $175" from the other trips' "Price: $165" (planners compare it
        # with the budget through `readings`)
        return (*self._options(), "Buy", "Close", *sorted({f"Price: ${t.price}" for t in self.state.trips}))

    # ------------------------------------------------------------------ scripts
    def _open(self, i: int, screen: Screen) -> Intent | None:
        s: ShopState = self.state
        if s.details == i:
            return None
        if s.details is not None:
            return Intent("click", "dialog:close")
        if s.filter not in (ALL, s.trips[i].city):
            return Intent("click", f"option:{ALL}") if s.popup == "filter" else Intent("click", "filter")
        if s.popup is not None:
            return Intent("key", key="escape")
        return self.reveal(screen, "trips", self._shown().index(i)) or Intent("click", f"trip:{i}")

    def choice_intent(self, choice: int, screen: Screen) -> Intent | None:
        i = self._listing(choice % N_LISTINGS)
        step = self._open(i, screen)
        if choice < N_LISTINGS or step is not None:
            return step
        return Intent("click", "dialog:buy")

    def expert_intent(self, screen: Screen) -> Intent | None:
        return self.choice_intent(N_LISTINGS + self.answers()["affordable_listing"], screen)
