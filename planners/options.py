"""The planner options: every planner setting that is a *choice* of the user, in one validated value.

:class:`PlannerOptions` is what ``make_planner(..., options=...)``, the planner constructors
(``options=``), :class:`genex.compare.CompareConfig` (``options``) and ``genex compare`` (its flags and
``--option KEY=VALUE``) pass around; ``run.json`` records it as one mapping (``settings["options"]``).
Each planner reads the options it uses and ignores the others.

=====================  =========  ==============================================================  ===========================
option                 default    meaning                                                         read by
=====================  =========  ==============================================================  ===========================
``samples``            4          imagined futures per branch (S)                                 imagining planners
                                                                                                  (``imagine``, ``lookahead``,
                                                                                                  ``oracle-*``,
                                                                                                  ``posterior-*``)
``horizon``            8          steps per exploration branch of the env's task; ``lookahead``:  every belief planner
                                  steps each candidate action is held                             (the env's task)
``trust``              0.7        weight of imagined evidence, in ``[0, 1]`` (real evidence       ``imagine``, ``lookahead``,
                                  weighs 1)                                                       ``oracle-*``
``context``            4          real frames kept as the world model's context                   imagining planners with a
                                                                                                  learned world model
``memory``             1          real frames whose sightings the belief keeps (1: the current    every planner that reads
                                  frame only)                                                     frames (not ``prior``,
                                                                                                  ``amortized``)
``decision``           None       ``"plan"`` (expected return of short plans over hypotheses,     every belief planner
                                  ``planners.plans``), ``"table"`` (the one-step cost table) or   (``particle``: always
                                  None (auto: ``"plan"`` where the env draws hypotheses)          ``"plan"``)
``particles``          8          hypotheses per answer of the plan rule                          the plan rule (driving)
``plan_horizon``       24         steps per candidate plan of the plan rule                       the plan rule (driving)
``imagine_every``      1          imagine every N-th decision, reuse that evidence in between     imagining planners
``imagined_reading``   ``hard``   with a fidelity table: an imagined sample counts as seen iff    imagining planners with a
                                  P > 0.5 (``hard``), or P itself feeds the rates (``soft``)      learned world model
``confidence``         0.9        top-answer belief at which exploring stops, in ``[0.5, 1]``     ``explore``
``budget``             16         real exploration actions per episode at most (>= 0)             ``explore``
``voi``                None       value-of-information gating: imagine a branch's next sample     ``imagine``, ``lookahead``,
                                  only where what it could show may change the decision           ``oracle-*`` (not
                                  (``planners.voi``); None: the planner's default (on for         ``posterior-*``)
                                  ``imagine-voi``, off for the others)
``voi_cost``           0.1        cost of one imagined frame, in the decision rule's cost units   the gated planners
                                  (>= 0): a sample is imagined only where its expected value      (``imagine-voi``, or
                                  of sample information exceeds its frames times this             ``voi=True``)
=====================  =========  ==============================================================  ===========================

Not options: what belongs to one episode (``seed``, ``save_frames``) and objects (the policy, the world
model, a fidelity table); the planner constructors and ``make_planner`` take those as their own arguments.
"""

from __future__ import annotations

import difflib
import functools
import math
import numbers
import typing
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Mapping

import numpy as np

from .plans import DECISION_RULES

__all__ = ["PlannerOptions", "as_options", "unknown_option_error"]

IMAGINED_READINGS = ("hard", "soft")
_BOOLS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


@dataclass(frozen=True)
class PlannerOptions:
    """The planner options (table in the module docstring); validated on construction (``ValueError``)."""

    samples: int = 4
    horizon: int = 8
    trust: float = 0.7
    context: int = 4
    memory: int = 1
    decision: str | None = None
    particles: int = 8
    plan_horizon: int = 24
    imagine_every: int = 1
    imagined_reading: str = "hard"
    confidence: float = 0.9
    budget: int = 16
    voi: bool | None = None
    voi_cost: float = 0.1

    def __post_init__(self) -> None:
        for f in fields(self):  # types first: a string "4" or a bool must not slip through a comparison
            value, kind = getattr(self, f.name), _field_type(f.name)
            if kind is int:
                if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                    raise ValueError(f"{f.name} must be an integer, got {value!r}")
                object.__setattr__(self, f.name, int(value))
            elif kind is float:
                if isinstance(value, bool) or not isinstance(value, numbers.Real):
                    raise ValueError(f"{f.name} must be a number, got {value!r}")
                object.__setattr__(self, f.name, float(value))
            elif kind is bool and value is not None:
                if not isinstance(value, (bool, np.bool_)):
                    raise ValueError(f"{f.name} must be true, false or None, got {value!r}")
                object.__setattr__(self, f.name, bool(value))
        if self.samples < 1 or self.horizon < 1 or self.context < 1 or self.memory < 1:
            raise ValueError(f"samples, horizon, context and memory must be >= 1, got {self.samples}, {self.horizon}, "
                             f"{self.context}, {self.memory}")
        if self.decision is not None and self.decision not in DECISION_RULES:
            raise ValueError(f"decision must be one of {DECISION_RULES} (or None: plan where the env allows), "
                             f"got {self.decision!r}")
        if self.particles < 1 or self.plan_horizon < 1:
            raise ValueError(f"particles and plan_horizon must be >= 1, got {self.particles}, {self.plan_horizon}")
        if not 0.0 <= self.trust <= 1.0:
            raise ValueError(f"trust must be in [0, 1], got {self.trust}")
        if self.imagine_every < 1:
            raise ValueError(f"imagine_every must be >= 1, got {self.imagine_every}")
        if self.imagined_reading not in IMAGINED_READINGS:
            raise ValueError(f"imagined_reading must be 'hard' or 'soft', got {self.imagined_reading!r}")
        if not 0.5 <= self.confidence <= 1.0 or self.budget < 0:
            raise ValueError(f"need 0.5 <= confidence <= 1 and budget >= 0, got {self.confidence}, {self.budget}")
        if not (math.isfinite(self.voi_cost) and self.voi_cost >= 0.0):
            raise ValueError(f"voi_cost must be a finite number >= 0, got {self.voi_cost}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in declaration order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> "PlannerOptions":
        """Options from ``{name: value}`` (missing names take their defaults); an unknown name is refused with
        one ``ValueError`` naming the valid ones (and the closest, where one is close)."""
        mapping = dict(mapping or {})
        unknown = [k for k in mapping if k not in cls.names()]
        if unknown:
            raise unknown_option_error(unknown)
        return cls(**mapping)

    def to_dict(self) -> dict[str, Any]:
        """``{name: value}`` of every option (JSON-friendly); ``from_mapping(o.to_dict()) == o``."""
        return asdict(self)

    def updated(self, mapping: Mapping[str, Any]) -> "PlannerOptions":
        """A copy with the options in ``mapping`` changed (validated as :meth:`from_mapping`)."""
        return type(self).from_mapping({**self.to_dict(), **mapping})

    @classmethod
    def parse_value(cls, name: str, text: str) -> Any:
        """The value of option ``name`` written as command-line ``text``, of the option's type (``decision``:
        ``auto`` or ``none`` is None). A value that does not parse raises ``ValueError``."""
        if name not in cls.names():
            raise unknown_option_error([name])
        kind = _field_type(name)
        text = text.strip()
        if name == "decision" and text.lower() in ("auto", "none", ""):
            return None
        if kind is bool:
            value = _BOOLS.get(text.lower())
            if value is None and text.lower() not in ("auto", "none", ""):
                raise ValueError(f"option {name} takes true or false (or auto: the planner's default), got {text!r}")
            return value
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"option {name} takes {'an integer' if kind is int else 'a number'}, got {text!r}") from None

    @classmethod
    def parse_assignments(cls, texts: Iterable[str]) -> dict[str, Any]:
        """``{name: value}`` from ``KEY=VALUE`` strings (``genex compare --option``), each value of its option's
        type; a text without ``=`` or an unknown name raises ``ValueError``."""
        out: dict[str, Any] = {}
        for text in texts:
            name, sep, value = text.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"an option is KEY=VALUE (e.g. particles=4), got {text!r}")
            out[name.strip()] = cls.parse_value(name.strip(), value)
        return out


@functools.lru_cache(maxsize=None)
def _field_type(name: str) -> type:
    """``int``, ``float``, ``bool`` or ``str`` (``decision``: ``str``, or None; ``voi``: ``bool``, or None) for
    option ``name``."""
    hint = typing.get_type_hints(PlannerOptions)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def unknown_option_error(names: Iterable[str], others: Iterable[str] = ()) -> ValueError:
    """The one error for unknown planner options: names the valid options (and ``others``, valid arguments
    that are not options) and, per unknown name, the closest valid one."""
    valid = list(PlannerOptions.names())
    others = sorted(others)
    parts = []
    for name in names:
        close = difflib.get_close_matches(str(name), valid + others, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    also = f"; besides the options, the planner takes {', '.join(others)}" if others else ""
    return ValueError(f"unknown planner option {', '.join(parts)}; valid options: {', '.join(valid)}{also}")


def as_options(options: "PlannerOptions | Mapping[str, Any] | None") -> PlannerOptions:
    """``options`` as :class:`PlannerOptions`: None gives the defaults, a mapping goes through ``from_mapping``."""
    if options is None:
        return PlannerOptions()
    if isinstance(options, PlannerOptions):
        return options
    if isinstance(options, Mapping):
        return PlannerOptions.from_mapping(options)
    raise TypeError(f"options must be a PlannerOptions or a mapping, got {type(options).__name__}")
