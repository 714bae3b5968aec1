"""SettingsTabs: "Turn on <setting>", where the setting hides in one of four tabs.

Only the open tab's page is visible, so which tab holds the setting is hidden
until the agent looks. Two layouts (the env option ``tab_layout``):

* ``"grouped"`` (the default): as in real settings apps, each tab name holds
  its own fixed settings in a fixed order (``GROUPS``: ``Wi-Fi`` is always
  under ``Network``). Each seed draws four of the eight tabs and their order,
  the settings' values and the target. A model that has watched the app can
  know where a setting is without looking, which is what a learned world
  model's imagination can bring; a planner reading only the current screen
  cannot.
* ``"random"``: each seed draws the tab names and order and deals 3-5 settings
  (switches or check boxes) to each tab at random. Nothing visible says where
  the target is: only looking (or the oracle) can tell.

The target is always off at the start; tab 1 is open at the start.

* success: the target setting is turned on;
* irreversible error: ``Reset`` (restores factory settings at once, no undo);
* anything else (other settings, tabs) is reversible.

Question ``target_tab``: which tab (slot 1-4, left to right) holds the target.
Action choices: ``open tab k`` (open tab k and turn the setting on if it is
there; costs 0 if it is, 1 wasted step if not) and ``reset all settings``
(cost 10: irreversible).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..spec import Probe, Question
from .app import GuiApp, Intent, UiState
from .widgets import Button, Checkbox, Label, Panel, Rect, Screen, Tab, Toggle, Widget, Window

__all__ = ["GROUPS", "TAB_LAYOUTS", "SettingsTabsApp"]

N_TABS = 4
TAB_NAMES = ("General", "Display", "Sound", "Privacy", "Media", "Power", "Account", "System", "Apps", "Storage")
SETTINGS = (
    "Dark mode", "Wi-Fi", "Bluetooth", "Auto update", "Location", "Notifications", "Night light", "Sync",
    "Airplane mode", "Battery saver", "Captions", "Hotspot", "Backup", "Cookies", "VPN", "Autoplay",
    "HDR video", "Vibration", "Large text", "Screen lock", "Do not disturb", "Auto brightness",
    "Key sounds", "Usage stats", "Cloud photos", "Ad tracking",
)
ROW_H = 14
TAB_LAYOUTS = ("grouped", "random")
#: the grouped layout: each tab's settings, in page order (check boxes are marked with a trailing "*")
GROUPS: dict[str, tuple[str, ...]] = {
    "Network": ("Wi-Fi", "Bluetooth", "Airplane mode*", "Hotspot", "VPN"),
    "Display": ("Dark mode", "Night light", "Auto brightness*", "HDR video"),
    "Sound": ("Vibration", "Key sounds*", "Do not disturb"),
    "Privacy": ("Location", "Ad tracking*", "Usage stats*", "Cookies"),
    "Media": ("Autoplay", "Captions*", "Cloud photos"),
    "Power": ("Battery saver", "Screen lock", "Fast charging*"),
    "Account": ("Sync", "Backup*", "Auto login"),
    "System": ("Auto update", "Notifications", "Large text*"),
}


@dataclass
class SettingsState(UiState):
    tab_names: list[str] = field(default_factory=list)
    tabs: list[list[str]] = field(default_factory=list)  # setting labels per tab
    values: dict[str, bool] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # "switch" or "checkbox"
    open_tab: int = 0
    target: str = ""
    target_tab: int = 0


class SettingsTabsApp(GuiApp):
    name: ClassVar[str] = "SettingsTabs"
    questions: ClassVar[tuple[Question, ...]] = (
        Question("target_tab", "Which tab holds the setting to turn on?", tuple(f"tab {i + 1}" for i in range(N_TABS))),
    )
    action_names: ClassVar[tuple[str, ...]] = (*(f"open tab {i + 1}" for i in range(N_TABS)), "reset all settings")
    action_costs: ClassVar[dict[str, np.ndarray]] = {
        # rows: open tab 1..4, reset all settings; columns: tab 1..4 holds the target
        "target_tab": np.vstack([1.0 - np.eye(N_TABS), np.full((1, N_TABS), 10.0)]).astype(np.float32),
    }
    facts: ClassVar[tuple[str, ...]] = ("target", "target_on")
    probes: ClassVar[tuple[Probe, ...]] = tuple(
        Probe("target_tab", "target", (f"tab {i + 1}",), detect=0.95, after_choice=i) for i in range(N_TABS))
    initial_view_choice: ClassVar[int | None] = 0  # tab 1 is open at the start
    default_max_steps: ClassVar[int] = 30

    def sample(self, rng: np.random.Generator) -> SettingsState:
        if self.tab_layout == "grouped":
            return self._sample_grouped(rng)
        names = [TAB_NAMES[i] for i in rng.choice(len(TAB_NAMES), N_TABS, replace=False)]
        counts = rng.integers(3, 6, size=N_TABS)
        labels = [SETTINGS[i] for i in rng.choice(len(SETTINGS), int(counts.sum()), replace=False)]
        tabs, start = [], 0
        for c in counts:
            tabs.append(labels[start : start + int(c)])
            start += int(c)
        values = {lab: bool(rng.random() < 0.5) for lab in labels}
        kinds = {lab: "checkbox" if rng.random() < 0.3 else "switch" for lab in labels}
        return self._with_target(rng, names, tabs, values, kinds)

    def _sample_grouped(self, rng: np.random.Generator) -> SettingsState:
        groups = list(GROUPS)
        names = [groups[i] for i in rng.choice(len(groups), N_TABS, replace=False)]
        tabs = [[lab.rstrip("*") for lab in GROUPS[n]] for n in names]
        kinds = {lab.rstrip("*"): "checkbox" if lab.endswith("*") else "switch" for n in names for lab in GROUPS[n]}
        values = {lab: bool(rng.random() < 0.5) for tab in tabs for lab in tab}
        return self._with_target(rng, names, tabs, values, kinds)

    @staticmethod
    def _with_target(rng: np.random.Generator, names: list[str], tabs: list[list[str]], values: dict[str, bool],
                     kinds: dict[str, str]) -> SettingsState:
        """Both layouts: draw the target's tab and row (it starts off) and assemble the state."""
        target_tab = int(rng.integers(N_TABS))
        target = tabs[target_tab][int(rng.integers(len(tabs[target_tab])))]
        values[target] = False
        return SettingsState(tab_names=names, tabs=tabs, values=values, kinds=kinds, target=target,
                             target_tab=target_tab, status="Changes apply at once")

    def instruction(self) -> str:
        return f"Turn on {self.state.target}"

    # ------------------------------------------------------------------ view
    def view(self) -> Screen:
        s: SettingsState = self.state
        win = Window("window", Rect(0, 0, 128, 128), "Settings")
        tab_w = 124 // N_TABS
        for i, name in enumerate(s.tab_names):
            win.children.append(Tab(f"tab:{i}", Rect(2 + i * tab_w, 13, tab_w, 12), name, selected=i == s.open_tab))
        page = Panel("page", Rect(2, 24, 124, 86))
        for row, lab in enumerate(s.tabs[s.open_tab]):
            on = s.values[lab]
            tags = ("target", "target_on") if lab == s.target and on else ("target",) if lab == s.target else ()
            rect = Rect(4, 27 + row * ROW_H, 120, ROW_H - 1)
            widget: Widget = (Toggle(f"setting:{lab}", rect, lab, facts=tags, on=on) if s.kinds[lab] == "switch"
                              else Checkbox(f"setting:{lab}", rect, lab, facts=tags, checked=on))
            page.children.append(widget)
        win.children.append(page)
        win.children.append(Button("reset", Rect(2, 114, 30, 12), "Reset", style="danger"))
        win.children.append(Label("", Rect(35, 114, 91, 12), s.status, colour=(108, 114, 128)))
        return Screen(win)

    # ------------------------------------------------------------------ events
    def on_click(self, widget: Widget) -> None:
        s: SettingsState = self.state
        if widget.id.startswith("tab:"):
            s.open_tab = int(widget.id[4:])
        elif widget.id.startswith("setting:"):
            lab = widget.id[8:]
            s.values[lab] = not s.values[lab]
            s.status = f"{lab} {'on' if s.values[lab] else 'off'}"
            if lab == s.target and s.values[lab]:
                self.finish("success", f"{lab} turned on")
        elif widget.id == "reset":
            for lab in s.values:
                s.values[lab] = False
            self.finish("error", "Reset all settings (irreversible)")

    # ------------------------------------------------------------------ truth and labels
    def hidden(self) -> dict[str, Any]:
        s: SettingsState = self.state
        return {
            "target": s.target,
            "target_tab": s.target_tab,
            "target_tab_name": s.tab_names[s.target_tab],
            "target_on": s.values[s.target],
            "open_tab": s.open_tab,
            "tabs": {name: list(tab) for name, tab in zip(s.tab_names, s.tabs)},
        }

    def answers(self) -> dict[str, int]:
        return {"target_tab": self.state.target_tab}

    def question_text(self) -> dict[str, str]:
        return {"target_tab": f"Which tab holds {self.state.target}?"}

    def answer_labels(self) -> dict[str, list[str]]:
        return {"target_tab": list(self.state.tab_names)}

    def labels(self) -> tuple[str, ...]:
        s: SettingsState = self.state
        return (*s.tab_names, *(lab for tab in s.tabs for lab in tab), "Reset")

    def switch_labels(self) -> tuple[str, ...]:
        return tuple(lab for tab in self.state.tabs for lab in tab)

    # ------------------------------------------------------------------ scripts
    def choice_intent(self, choice: int, screen: Screen) -> Intent | None:
        s: SettingsState = self.state
        if choice == N_TABS:
            return Intent("click", "reset")
        if s.open_tab != choice:
            return Intent("click", f"tab:{choice}")
        if s.target in s.tabs[choice] and not s.values[s.target]:
            return Intent("click", f"setting:{s.target}")
        return None

    def expert_intent(self, screen: Screen) -> Intent | None:
        return self.choice_intent(self.state.target_tab, screen)
