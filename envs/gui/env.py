"""Gymnasium envs for the mock GUI apps.

Use through the registry::

    import gymnasium as gym
    from genex.envs.gui import register_gui_envs
    register_gui_envs()
    env = gym.make("genex/SettingsTabs-v0", action_mode="element", accessibility=True)

Observation (``Dict``):
    ``image``: ``uint8[screen_size, screen_size, 3]``, the app's screen;
    ``text``: the task instruction (``Text``, :data:`~genex.envs.gui.font.FONT_CHARSET`);
    ``accessibility`` (only with ``accessibility=True``): a JSON list (``Text``),
    one entry per widget on screen: ``{"role", "label", "state", "bbox": [x, y, w, h]
    in screen pixels, "element": index for element actions or null}``.
Actions: see :mod:`genex.envs.gui.actions` (pixel or element mode).
Reward: ``-step_cost`` a step; ``+success_reward`` on success and
``-error_penalty`` on an irreversible mistake, both of which end the episode;
TicketShop adds ``-dawdle_cost`` a step once the right ticket has been found
and not bought. Episodes truncate after ``max_steps`` (inside the env, so
snapshots capture it).
Info: ``hidden``, ``answers`` and ``answer_labels`` (ground truth and what
each answer slot shows, which may name rows not yet on screen: privileged,
see :data:`genex.envs.spec.PRIVILEGED_INFO_KEYS`); ``question_text`` (this
episode's wording of each question); ``visible`` (per-frame labels:
the app's semantic facts, ``label:<text>`` for every label of the episode and
``on:<label>`` for switches that are on screen and on); ``irreversible_errors``
(count), ``success``, ``t``, ``n_elements`` (interactive widgets on screen),
``invalid_action`` (the action had no target: a documented no-op) and
``status`` (the status-bar text).

Bad input raises ``ValueError`` saying what to send instead: a click outside
the screen, text the font cannot draw, an unknown option or key.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..spec import EnvSnapshot, Probe, validate_action_costs, validate_probes
from .actions import ACTION_MODES, ACTION_TYPES, KEYS, MAX_TEXT_LENGTH, action, make_action_space
from .app import GuiApp, Intent
from .edit_document import EditDocumentApp
from .file_manager import FileManagerApp
from .mail_compose import MailComposeApp
from .font import FONT_CHARSET, undrawable
from .render import LOGICAL_SIZE, Painter
from .settings_tabs import TAB_LAYOUTS, SettingsTabsApp
from ..text_space import LiveText
from .ticket_shop import TicketShopApp
from .widgets import Checkbox, Screen, TextField, Toggle, Widget

__all__ = ["APPS", "GuiConfig", "GuiEnv", "SettingsTabsEnv", "EditDocumentEnv", "TicketShopEnv", "FileManagerEnv",
           "MailComposeEnv"]

logger = logging.getLogger(__name__)

APPS: dict[str, type[GuiApp]] = {
    app.name: app for app in (SettingsTabsApp, EditDocumentApp, TicketShopApp, FileManagerApp, MailComposeApp)
}
A11Y_MAX_LENGTH = 16384


@dataclass(frozen=True)
class GuiConfig:
    """Options of a GUI env (keyword arguments to ``gym.make``).

    Attributes:
        screen_size: side of the agent's square screen, pixels (32..1024). Apps are laid
            out on a 128x128 canvas; other sizes paint at ``ceil(size/128)`` times that
            and box-filter down, so 128 and its multiples are crisp.
        render_size: side of the ``render()`` view for people (re-rendered, not upscaled).
        action_mode: ``"pixel"`` (click at x, y) or ``"element"`` (index visible widgets).
        max_elements: size of the ``element`` space in element mode (1..256).
        accessibility: add the ``accessibility`` JSON observation.
        max_steps: episode length limit (truncation); ``None`` = the app's default.
        step_cost: reward subtracted every step (>= 0).
        success_reward: reward for completing the task.
        error_penalty: reward subtracted for an irreversible mistake (which ends the episode).
        dawdle_cost: TicketShop: extra cost per step once the right ticket's details were seen.
        tab_layout: SettingsTabs: ``"grouped"`` (each tab name holds its own fixed settings, as
            in real settings apps, so a model of the app can know where a setting is) or
            ``"random"`` (settings dealt to tabs at random each episode: nothing visible tells).
    """

    screen_size: int = 128
    render_size: int = 512
    action_mode: str = "pixel"
    max_elements: int = 32
    accessibility: bool = False
    max_steps: int | None = None
    step_cost: float = 0.01
    success_reward: float = 1.0
    error_penalty: float = 1.0
    dawdle_cost: float = 0.05
    tab_layout: str = "grouped"

    def resolved(self, app: GuiApp) -> "GuiConfig":
        """Validated copy with the app's defaults filled in; raises ``ValueError`` saying what to pass."""
        for name, lo, hi in (("screen_size", 32, 1024), ("render_size", 32, 2048), ("max_elements", 1, 256)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
        if self.action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {self.action_mode!r}")
        if not isinstance(self.accessibility, bool):
            raise ValueError(f"accessibility must be True or False, got {self.accessibility!r}")
        max_steps = app.default_max_steps if self.max_steps is None else self.max_steps
        if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive integer, got {self.max_steps!r}")
        if self.tab_layout not in TAB_LAYOUTS:
            raise ValueError(f"tab_layout must be one of {TAB_LAYOUTS}, got {self.tab_layout!r}")
        for name in ("step_cost", "success_reward", "error_penalty", "dawdle_cost"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        return GuiConfig(**{**asdict(self), "max_steps": int(max_steps)})


class GuiEnv(gym.Env):
    """A mock GUI app with hidden state; see the module docstring for spaces, rewards and info."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, app: str, render_mode: str | None = None, **options: Any) -> None:
        if app not in APPS:
            raise ValueError(f"unknown GUI app {app!r}; expected one of {sorted(APPS)}")
        valid = {f.name for f in fields(GuiConfig)}
        unknown = sorted(set(options) - valid)
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for {app}; valid options: {sorted(valid)}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.app: GuiApp = APPS[app]()
        self.config = cfg = GuiConfig(**options).resolved(self.app)
        self.render_mode = render_mode
        self.app.dawdle_cost = cfg.dawdle_cost
        self.app.tab_layout = cfg.tab_layout
        self.questions = self.app.questions
        #: the app's fixed visibility facts (``info["visible"]`` adds per-episode ``label:``/``on:`` keys)
        self.facts: tuple[str, ...] = tuple(self.app.facts)
        self.action_names: tuple[str, ...] = self.app.action_names
        self.action_costs = {k: v.copy() for k, v in self.app.action_costs.items()}
        validate_action_costs(self.questions, self.action_costs, len(self.action_names))
        #: perception evidence: how visible facts bear on the questions (see ``spec.Probe``)
        self.probes: tuple[Probe, ...] = tuple(self.app.probes)
        #: facts read as a comparison of two numbers (see ``spec.NumberReading``), e.g. TicketShop's price and budget
        self.readings = tuple(self.app.readings)
        self.initial_view_choice: int | None = self.app.initial_view_choice
        validate_probes(self.questions, self.probes, len(self.action_names))
        self.action_space = make_action_space(cfg.action_mode, cfg.screen_size, cfg.max_elements)
        obs = {
            "image": spaces.Box(0, 255, (cfg.screen_size, cfg.screen_size, 3), np.uint8),
            "text": LiveText(max_length=128, charset=FONT_CHARSET),
        }
        if cfg.accessibility:
            obs["accessibility"] = LiveText(max_length=A11Y_MAX_LENGTH, min_length=2, charset=FONT_CHARSET)
        self.observation_space = spaces.Dict(obs)
        self._config_key = hashlib.sha1(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:12]
        self._painter = Painter(cfg.screen_size)
        self._human_painter = Painter(cfg.render_size, cache_size=4)
        self._screen: Screen | None = None
        self._frame: np.ndarray | None = None
        self._t = 0
        self._errors = 0
        self._ended = False
        self._invalid = False

    # ---------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options:
            raise ValueError(f"{self.app.name}.reset takes no options, got {sorted(options)}")
        self.app.reset(self.np_random)
        self._t, self._errors, self._ended, self._invalid = 0, 0, False, False
        self._refresh()
        return self._observation(), self._info()

    def step(self, action: Mapping[str, Any]):
        if self._screen is None:
            raise RuntimeError("call reset() before step()")
        if self._ended:
            raise RuntimeError("the episode has ended (terminated or truncated); call reset()")
        self._invalid = not self._apply(self._parse(action))
        cfg = self.config
        reward = -cfg.step_cost + self.app.tick()
        self._t += 1
        outcome = self.app.state.outcome
        if outcome == "success":
            reward += cfg.success_reward
        elif outcome == "error":
            reward -= cfg.error_penalty
            self._errors += 1
        terminated = outcome is not None
        truncated = not terminated and self._t >= cfg.max_steps
        self._ended = terminated or truncated
        self._refresh()
        return self._observation(), float(reward), terminated, truncated, self._info()

    def render(self) -> np.ndarray | None:
        """The large view for people, ``uint8[render_size, render_size, 3]``, re-rendered at high scale."""
        if self.render_mode != "rgb_array":
            return None
        if self._screen is None:
            raise RuntimeError("call reset() before render()")
        return self._human_painter.paint(self._screen.display_list(self.app.state.focus)).copy()

    # ---------------------------------------------------------------- snapshots
    def snapshot(self) -> EnvSnapshot:
        """Copy of the full state (app state, counters, RNG); see :meth:`restore`."""
        if self._screen is None:
            raise RuntimeError("call reset() before snapshot()")
        state = {
            "app": copy.deepcopy(self.app.state),
            "t": self._t,
            "errors": self._errors,
            "ended": self._ended,
            "rng": copy.deepcopy(self.np_random.bit_generator.state),
        }
        return EnvSnapshot(env_id=self.app.name, config_key=self._config_key, state=state)

    def restore(self, snapshot: EnvSnapshot):
        """Return to ``snapshot`` (of the same app and config); returns ``(observation, info)``.

        Raises :class:`~genex.envs.spec.SnapshotMismatchError` for another app or config.
        """
        if not isinstance(snapshot, EnvSnapshot):
            raise TypeError(f"restore() expects an EnvSnapshot, got {type(snapshot).__name__}")
        snapshot.check_compatible(self.app.name, self._config_key)
        st = snapshot.state
        self.np_random.bit_generator.state = copy.deepcopy(st["rng"])
        self.app.state = copy.deepcopy(st["app"])
        self._t, self._errors, self._ended, self._invalid = st["t"], st["errors"], st["ended"], False
        self._refresh()
        return self._observation(), self._info()

    # ---------------------------------------------------------------- scripting helpers
    @property
    def screen(self) -> Screen:
        """The current widget tree (privileged: scripts and tests, not planners)."""
        if self._screen is None:
            raise RuntimeError("call reset() first")
        return self._screen

    def describe_action(self, action: Mapping[str, Any]) -> str:
        """The label of the widget ``action`` clicks on the current screen ("" if none, or not a click).

        Public: it is what the accessibility tree of the visible screen says, the text a WebDreamer-style
        action description ("click the *Display* tab") carries. Recordings store it per step (see
        :mod:`genex.recording`) and world models with ``click_text`` condition on it; the env ignores an
        action's ``label`` key.
        """
        act = self._parse(action)
        if act["type"] != "click" or self._screen is None:
            return ""
        widget, _ = self._target(act)
        return "" if widget is None else str(widget.label or "")

    def _target(self, act: dict[str, Any]) -> tuple[Widget | None, tuple[float, float] | None]:
        """The widget a parsed click/scroll hits on the current screen and the logical point it lands on
        (``(None, None)``: an element index past the screen's elements)."""
        screen = self._screen
        if "element" in act:
            elements = screen.elements()
            if act["element"] >= len(elements):
                logger.debug("element %d of %d: no-op", act["element"], len(elements))
                return None, None
            widget = elements[act["element"]]
            return widget, widget.rect.center
        n = self.config.screen_size
        lx, ly = (act["x"] + 0.5) * LOGICAL_SIZE / n, (act["y"] + 0.5) * LOGICAL_SIZE / n
        return screen.hit(lx, ly), (lx, ly)

    def choice_action(self, choice: int) -> dict[str, Any] | None:
        """Next primitive action carrying out high-level choice ``action_names[choice]``; None when done."""
        if not 0 <= choice < len(self.action_names):
            raise ValueError(f"choice must be in [0, {len(self.action_names)}), got {choice}; see action_names")
        intent = self.app.choice_intent(choice, self.screen)
        return None if intent is None else self.intent_action(intent)

    def intent_action(self, intent: Intent) -> dict[str, Any]:
        """A complete action (in ``action_space``) performing ``intent`` on the current screen."""
        mode, screen = self.config.action_mode, self.screen
        if intent.kind in ("type", "key"):
            element = 0
            if mode == "element":  # point `element` at the focused widget, so typing goes where it has focus
                elements = screen.elements()
                focused = screen.find(self.app.state.focus or "")
                element = elements.index(focused) if focused is not None else next(
                    (i for i, w in enumerate(elements) if not isinstance(w, TextField)), 0)
            return action(intent.kind, mode=mode, text=intent.text, key=intent.key or "enter", element=element)
        if intent.kind == "click":
            target = screen.find(intent.target)
        elif intent.kind == "scroll":
            target = next((a for a in screen.scroll_areas() if a.id == intent.target), None)
        else:
            raise ValueError(f"unknown intent kind {intent.kind!r}")
        if target is None:
            raise LookupError(f"{intent.target!r} is not on screen; cannot {intent.kind} it")
        if mode == "element":
            elements = screen.elements()
            inside = {id(w) for w in target.walk()}
            hit = next((w for w in elements if id(w) in inside), None)
            if hit is None:
                raise LookupError(f"{intent.target!r} has no interactive element to {intent.kind}")
            return action(intent.kind, mode=mode, element=elements.index(hit), down=intent.down)
        x, y = self._to_screen(*target.rect.center)
        return action(intent.kind, x=x, y=y, down=intent.down)

    # ---------------------------------------------------------------- internals
    def _to_screen(self, lx: float, ly: float) -> tuple[int, int]:
        n = self.config.screen_size
        return min(n - 1, int(lx * n / LOGICAL_SIZE)), min(n - 1, int(ly * n / LOGICAL_SIZE))

    def _parse(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``action`` and normalise it to plain Python values; raises ``ValueError``."""
        cfg = self.config
        if not isinstance(action, Mapping):
            raise ValueError(
                f"GUI actions are dicts such as {{'type': 0, 'x': 10, 'y': 20}} (see genex.envs.gui.actions), "
                f"got {type(action).__name__}"
            )
        keys = set(self.action_space.spaces) | {"label"}  # "label": a description for world models, ignored
        unknown = sorted(set(action) - keys)
        if unknown:
            raise ValueError(f"unknown action field(s) {unknown} in {cfg.action_mode} mode; fields are {sorted(keys)}")
        if "type" not in action:
            raise ValueError(f"an action needs 'type', an index into {ACTION_TYPES}")
        kind = ACTION_TYPES[_index(action["type"], len(ACTION_TYPES), "type", ACTION_TYPES)]
        out: dict[str, Any] = {"type": kind}
        if kind in ("click", "scroll"):
            if cfg.action_mode == "pixel":
                n = cfg.screen_size
                x, y = _int(action.get("x"), "x"), _int(action.get("y"), "y")
                if not (0 <= x < n and 0 <= y < n):
                    raise ValueError(
                        f"{kind} at (x={x}, y={y}) is outside the {n}x{n} screen; "
                        f"x and y must be integers in [0, {n - 1}]"
                    )
                out["x"], out["y"] = x, y
            else:
                out["element"] = _int(action.get("element"), "element")
                if not 0 <= out["element"] < cfg.max_elements:
                    raise ValueError(f"element must be in [0, {cfg.max_elements}), got {out['element']}")
            out["down"] = bool(_index(action.get("scroll", 1), 2, "scroll", ("up", "down")))
        elif kind == "type":
            text = action.get("text", "")
            if not isinstance(text, str):
                raise ValueError(f"text must be a str, got {type(text).__name__}")
            bad = undrawable(text)
            if bad:
                raise ValueError(
                    f"text {text!r} has characters the screen font cannot draw: {bad}; "
                    "use printable ASCII (genex.envs.gui.font.FONT_CHARSET)"
                )
            if len(text) > MAX_TEXT_LENGTH:
                raise ValueError(f"text is {len(text)} characters; type at most {MAX_TEXT_LENGTH} per action")
            out["text"] = text
            if cfg.action_mode == "element" and "element" in action:
                out["element"] = _int(action["element"], "element")
                if not 0 <= out["element"] < cfg.max_elements:
                    raise ValueError(f"element must be in [0, {cfg.max_elements}), got {out['element']}")
        elif kind == "key":
            key = action.get("key")
            if isinstance(key, str):
                if key not in KEYS:
                    raise ValueError(f"unknown key {key!r}; keys are {KEYS} (pass the name or its index)")
                out["key"] = key
            else:
                out["key"] = KEYS[_index(key, len(KEYS), "key", KEYS)]
        return out

    def _apply(self, act: dict[str, Any]) -> bool:
        """Perform a parsed action; returns False when it had no target (a documented no-op)."""
        app, screen, kind = self.app, self._screen, act["type"]
        if kind == "wait":
            return True
        if kind == "type":
            if "element" in act:  # focus a text-field element first (selecting its text), unless it has focus
                elements = screen.elements()
                field = elements[act["element"]] if act["element"] < len(elements) else None
                if isinstance(field, TextField) and app.state.focus != field.id:
                    app.click(field, screen)
            return app.type_text(act["text"])
        if kind == "key":
            return app.press(act["key"], screen)
        widget, point = self._target(act)
        if point is None:
            return False
        lx, ly = point
        if kind == "scroll":
            area = screen.scroll_area_at(lx, ly)
            if area is None:
                return False
            app.scroll(area, 1 if act["down"] else -1)
            return True
        if widget is None:
            app.click_outside(screen)
            return True
        app.click(widget, screen)
        return True

    def _refresh(self) -> None:
        self._screen = self.app.view()
        self._frame = self._painter.paint(self._screen.display_list(self.app.state.focus))

    def _observation(self) -> dict[str, Any]:
        obs = {"image": self._frame.copy(), "text": self.app.instruction()}
        if self.config.accessibility:
            obs["accessibility"] = self._accessibility()
        return obs

    def _accessibility(self) -> str:
        screen, n = self._screen, self.config.screen_size
        index = {id(w): i for i, w in enumerate(screen.elements())}
        entries = []
        for w in screen.visible_widgets():
            if w.role == "group" or (w.role == "text" and not w.label):
                continue
            r = w.rect
            bbox = [round(v * n / LOGICAL_SIZE) for v in (r.x, r.y, r.w, r.h)]
            entries.append({"role": w.role, "label": w.label, "state": w.state(), "bbox": bbox,
                            "element": index.get(id(w))})
        text = json.dumps(entries, separators=(",", ":"))
        if len(text) > A11Y_MAX_LENGTH:  # never expected: apps show far fewer widgets
            raise RuntimeError(f"accessibility tree is {len(text)} characters, over {A11Y_MAX_LENGTH}")
        return text

    def _visible(self) -> dict[str, bool]:
        labels: set[str] = set()
        tags: set[str] = set()
        switched_on: set[str] = set()
        for w in self._screen.visible_widgets():
            if w.label:
                labels.add(w.label)
            tags.update(w.facts)
            if (isinstance(w, Toggle) and w.on) or (isinstance(w, Checkbox) and w.checked):
                switched_on.add(w.label)
        app = self.app
        out = {f: f in tags for f in app.facts}
        # sorted: the apps list labels tab by tab, and that order would give away where the target is
        out.update({f"label:{lab}": lab in labels for lab in sorted(set(app.labels()))})
        out.update({f"on:{lab}": lab in switched_on for lab in sorted(set(app.switch_labels()))})
        return out

    def _info(self) -> dict[str, Any]:
        app = self.app
        return {
            "hidden": app.hidden(),
            "answers": app.answers(),
            "question_text": app.question_text(),
            "answer_labels": app.answer_labels(),
            "visible": self._visible(),
            "irreversible_errors": self._errors,
            "success": app.state.outcome == "success",
            "t": self._t,
            "n_elements": len(self._screen.elements()),
            "invalid_action": self._invalid,
            "status": app.state.status,
        }


def _int(value: Any, name: str) -> int:
    arr = np.asarray(value)
    if value is None or arr.size != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise ValueError(f"action field {name!r} must be an integer, got {value!r}")
    return int(arr.reshape(()))


def _index(value: Any, n: int, name: str, names: tuple[str, ...]) -> int:
    i = _int(value, name)
    if not 0 <= i < n:
        raise ValueError(f"action field {name!r} must be in [0, {n}) (one of {dict(enumerate(names))}), got {i}")
    return i


class SettingsTabsEnv(GuiEnv):
    """"Turn on <setting>": the setting is in one of four tabs; only the open tab shows."""

    def __init__(self, render_mode: str | None = None, **options: Any) -> None:
        super().__init__("SettingsTabs", render_mode=render_mode, **options)


class EditDocumentEnv(GuiEnv):
    """"Change the name and the phone, then save": a scrolling form; Save commits irreversibly."""

    def __init__(self, render_mode: str | None = None, **options: Any) -> None:
        super().__init__("EditDocument", render_mode=render_mode, **options)


class TicketShopEnv(GuiEnv):
    """"Buy a ticket to <city> for at most $<price>": prices hide behind details; Buy is irreversible."""

    def __init__(self, render_mode: str | None = None, **options: Any) -> None:
        super().__init__("TicketShop", render_mode=render_mode, **options)


class FileManagerEnv(GuiEnv):
    """"Delete <file>": the file is in one of four folders; Delete is irreversible, Archive is not."""

    def __init__(self, render_mode: str | None = None, **options: Any) -> None:
        super().__init__("FileManager", render_mode=render_mode, **options)


class MailComposeEnv(GuiEnv):
    """"Save this message to Drafts" / "Open the Print settings": four icon-only toolbar buttons, two of
    which (send, delete) are irreversible."""

    def __init__(self, render_mode: str | None = None, **options: Any) -> None:
        super().__init__("MailCompose", render_mode=render_mode, **options)
