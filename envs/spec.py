"""Contracts every genex environment follows, whatever it renders.

A genex env is a Gymnasium env with *hidden state*: facts the agent cannot read
from its observation (is a pedestrian behind the truck? which tab holds the
setting?). Besides the Gymnasium API, each env exposes:

* ``questions``: the declared questions whose answers matter for the decision,
  each with its answer options (:class:`Question`);
* ``action_costs``: for each question, ``float32[n_actions, n_answers]``, the
  cost of taking each action when that answer is the truth, so that a planner
  can decide from a belief (expected cost) and beliefs can be scored;
* ``info["hidden"]``: the ground truth and ``info["answers"]``: the index of
  the true answer of each question (GUI apps add ``info["answer_labels"]``,
  what each answer slot shows). These are :data:`PRIVILEGED_INFO_KEYS`: for
  metrics only; runners strip them with :func:`public_info` before a planner
  sees ``info``;
* ``info["visible"]``: per-frame visibility labels, ``{fact: bool}`` saying
  which facts are visible *in this frame* (perception labels, never hidden
  truth);
* ``snapshot()`` / ``restore(snapshot)``: the full simulator state, so an
  oracle can render the true outcome of imagined actions without touching the
  live episode.

This module imports neither torch nor any simulator: it is shared by the
driving scenes, the GUI apps and the recorders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "PRIVILEGED_INFO_KEYS",
    "public_info",
    "Question",
    "Probe",
    "NumberReading",
    "EnvSnapshot",
    "HiddenStateEnv",
    "SnapshotMismatchError",
    "ScriptedDriver",
    "validate_action_costs",
    "validate_probes",
]


#: ``info`` keys that carry ground truth: metrics may read them, planners never see them.
PRIVILEGED_INFO_KEYS: tuple[str, ...] = ("hidden", "answers", "answer_labels")


def public_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """``info`` without its privileged keys: what a planner may see."""
    return {k: v for k, v in info.items() if k not in PRIVILEGED_INFO_KEYS}


@dataclass(frozen=True)
class Question:
    """A question about the hidden state whose answer changes the best action.

    Attributes:
        id: stable key, used in ``info["answers"]`` and ``action_costs``.
        text: the question as put to a VLM ("Is a pedestrian about to cross?").
        answers: answer options, in the order used by probabilities and costs.
    """

    id: str
    text: str
    answers: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.answers) < 2:
            raise ValueError(f"question {self.id!r} needs at least two answers, got {self.answers}")
        if len(set(self.answers)) != len(self.answers):
            raise ValueError(f"question {self.id!r} has duplicate answers {self.answers}")


@dataclass(frozen=True)
class Probe:
    """How a *visible* fact bears on a hidden question: perception evidence, declared by the env.

    A perception model (the VLM) says how likely ``fact`` is visible in a frame
    (``p``). The env declares what that means for ``question``: seeing the fact
    happens with probability ``detect`` when the truth is one of ``supports``,
    and ``false_alarm`` otherwise. A planner turns ``p`` into a likelihood over
    the answers, ``L(a) = p * P(seen | a) + (1 - p) * P(unseen | a)``, so an
    unseen fact is weak evidence against ``supports`` (an occluded pedestrian
    is "unseen" too: ``detect`` says how much a frame usually shows).

    ``after_choice``: the probe only applies to frames reached by carrying out
    action choice ``after_choice`` (GUI: "open tab 3" shows whether the target
    is in tab 3); ``None`` applies to every frame.
    """

    question: str
    fact: str
    supports: tuple[str, ...]
    detect: float = 0.8
    false_alarm: float = 0.02
    after_choice: int | None = None

    def __post_init__(self) -> None:
        if not (0.0 <= self.false_alarm < self.detect <= 1.0):
            raise ValueError(f"probe {self.fact!r}: need 0 <= false_alarm < detect <= 1, got "
                             f"false_alarm={self.false_alarm}, detect={self.detect}")
        if not self.supports:
            raise ValueError(f"probe {self.fact!r} supports no answer")

    def likelihood(self, p_seen: float, answers: tuple[str, ...]) -> np.ndarray:
        """``float64[n_answers]``: how likely the observation ``P(fact visible) = p_seen`` is under each answer."""
        unknown = set(self.supports) - set(answers)
        if unknown:
            raise ValueError(f"probe {self.fact!r} supports {sorted(unknown)}, not answers of {self.question!r}")
        hit = np.array([self.detect if a in self.supports else self.false_alarm for a in answers])
        return p_seen * hit + (1.0 - p_seen) * (1.0 - hit)


@dataclass(frozen=True)
class NumberReading:
    """How a planner reads a number on screen and compares it with a number in the instruction.

    Some facts are a comparison ("the trip's price is within the budget"): a perception model reads text, it
    does not compare. A reading declares how the comparison is made from two read numbers. The reference is
    parsed from the instruction with ``reference`` (a regex with one group of digits: "at most $165" -> 165);
    the policy is asked, for every candidate ``c`` in ``reference + window``, whether the text
    ``template.format(c)`` is on screen ("Price: $150"); the read number is distributed as the policy's
    answers, normalised over the candidates. Then ``P(fact_le) = P(given) * P(number <= reference)`` and
    ``P(fact_gt) = P(given) * P(number > reference)``, where ``given`` is the fact the number belongs to (the
    details dialog is open). Where no candidate is read (all answers below ``floor``), both facts get
    ``P(given) / 2``: nothing was read.
    """

    fact_le: str
    fact_gt: str
    given: str
    template: str
    reference: str
    window: tuple[int, int] = (-60, 60)
    floor: float = 0.05

    def __post_init__(self) -> None:
        if "{}" not in self.template:
            raise ValueError(f"reading {self.fact_le!r}: template {self.template!r} has no '{{}}' for the number")
        import re

        if re.compile(self.reference).groups != 1:
            raise ValueError(f"reading {self.fact_le!r}: reference {self.reference!r} needs exactly one group")
        if self.window[0] > self.window[1]:
            raise ValueError(f"reading {self.fact_le!r}: window {self.window} is empty")

    def reference_number(self, instruction: str) -> int | None:
        """The number the instruction gives (None when it gives none)."""
        import re

        m = re.search(self.reference, instruction)
        return int(m.group(1)) if m else None

    def candidates(self, instruction: str) -> list[int]:
        ref = self.reference_number(instruction)
        if ref is None:
            return []
        return [c for c in range(ref + self.window[0], ref + self.window[1] + 1) if c >= 0]

    def texts(self, instruction: str) -> list[str]:
        """The text questions to ask: one per candidate number."""
        return [self.template.format(c) for c in self.candidates(instruction)]

    def read(self, instruction: str, p_given: float, p_texts: Any) -> dict[str, float]:
        """``{fact_le: P, fact_gt: P}`` from ``P(given)`` and the policy's answers to :meth:`texts`."""
        cands = np.asarray(self.candidates(instruction))
        p = np.asarray(p_texts, np.float64)
        if len(cands) == 0 or p.max(initial=0.0) < self.floor:
            return {self.fact_le: p_given / 2, self.fact_gt: p_given / 2}
        ref = self.reference_number(instruction)
        share_le = float(p[cands <= ref].sum() / p.sum())
        return {self.fact_le: p_given * share_le, self.fact_gt: p_given * (1.0 - share_le)}


def validate_probes(questions: tuple[Question, ...], probes: tuple[Probe, ...], n_actions: int) -> None:
    """Check every probe names a declared question, its answers, and a valid action choice."""
    by_id = {q.id: q for q in questions}
    for pr in probes:
        if pr.question not in by_id:
            raise ValueError(f"probe {pr.fact!r} names unknown question {pr.question!r}")
        pr.likelihood(0.5, by_id[pr.question].answers)
        if pr.after_choice is not None and not 0 <= pr.after_choice < n_actions:
            raise ValueError(f"probe {pr.fact!r}: after_choice {pr.after_choice} is not an action index")


class SnapshotMismatchError(ValueError):
    """Raised when a snapshot is restored into an env it was not taken from."""


@dataclass(frozen=True)
class EnvSnapshot:
    """An opaque, picklable copy of an env's full state.

    ``env_id`` and ``config_key`` guard :meth:`HiddenStateEnv.restore`: a
    snapshot only restores into an env of the same scenario and configuration.
    ``state`` is env-specific (nested dicts/arrays), copied on capture.
    """

    env_id: str
    config_key: str
    state: Mapping[str, Any] = field(repr=False)

    def check_compatible(self, env_id: str, config_key: str) -> None:
        if self.env_id != env_id:
            raise SnapshotMismatchError(
                f"snapshot was taken from {self.env_id!r}, cannot restore it into {env_id!r}"
            )
        if self.config_key != config_key:
            raise SnapshotMismatchError(
                f"snapshot of {env_id!r} was taken with a different config "
                f"({self.config_key}) than this env's ({config_key}); make the env with the same config"
            )


@runtime_checkable
class HiddenStateEnv(Protocol):
    """What planners, recorders and oracles may rely on beyond ``gymnasium.Env``."""

    questions: tuple[Question, ...]
    action_costs: Mapping[str, np.ndarray]
    action_names: tuple[str, ...]

    def snapshot(self) -> EnvSnapshot: ...

    def restore(self, snapshot: EnvSnapshot) -> tuple[Any, dict[str, Any]]:
        """Return to ``snapshot``; returns the observation and info of that moment."""
        ...


@runtime_checkable
class ScriptedDriver(Protocol):
    """A scripted agent for recording data and baselines (random, cautious, expert, ...).

    ``reset`` is called after each ``env.reset``; ``act`` returns an action in
    ``env.action_space``. Privileged drivers (the expert) may read
    ``info["hidden"]`` or ``env.unwrapped``'s state; planners may not.
    """

    name: str

    def reset(self, env: Any, seed: int | None = None) -> None: ...

    def act(self, observation: Any, info: Mapping[str, Any]) -> Any: ...


def validate_action_costs(
    questions: tuple[Question, ...], action_costs: Mapping[str, np.ndarray], n_actions: int
) -> None:
    """Check a cost table matches its questions: one ``[n_actions, n_answers]`` array each."""
    ids = {q.id for q in questions}
    if set(action_costs) != ids:
        raise ValueError(f"action_costs keys {sorted(action_costs)} != question ids {sorted(ids)}")
    for q in questions:
        table = np.asarray(action_costs[q.id])
        if table.shape != (n_actions, len(q.answers)):
            raise ValueError(
                f"action_costs[{q.id!r}] has shape {table.shape}, expected {(n_actions, len(q.answers))}"
            )
