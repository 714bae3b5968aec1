"""Beliefs over the declared questions' answers, updated in log-odds, scored against the truth.

For each question with answers ``a_1..a_n`` the belief keeps log-odds
``z[a] = log P(a) - log P(a_ref)`` (stored as unnormalised log-probabilities,
so adding a constant changes nothing). A piece of evidence is a probability
vector ``p`` over the same answers, given by the policy for one image. It is
read as a likelihood ratio against a ``base`` rate (uniform by default, i.e.
the policy's answer on an uninformative image)::

    z  <-  z + w * (log p - log base)

* real evidence: ``w = 1`` per real image;
* imagined evidence: ``w = trust`` with ``0 <= trust <= 1``, applied once to the
  *average* log-likelihood ratio over the S imagined samples, so that drawing
  more samples sharpens the estimate, never the belief.

Probabilities are clipped to ``[eps, 1 - eps]`` before the log so that one
confident answer can never make the belief certain. Decisions minimise
expected cost with the env's cost tables (``float[n_actions, n_answers]`` per
question, summed over questions). Scores: Brier, log loss and expected
calibration error (ECE) against the true answer indices (``info["answers"]``).

Pure numpy: no torch, no envs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "Belief",
    "QuestionBelief",
    "brier_score",
    "log_loss",
    "expected_calibration_error",
    "reliability_table",
    "score_beliefs",
]

DEFAULT_EPS = 1e-3


def _as_probs(p: Any, n: int, what: str) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.shape[-1:] != (n,):
        raise ValueError(f"{what}: expected probabilities over {n} answers, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{what}: probabilities must be finite and >= 0, got {arr}")
    s = arr.sum(-1, keepdims=True)
    if np.any(s <= 0):
        raise ValueError(f"{what}: probabilities sum to 0")
    if np.any(np.abs(s - 1) > 1e-3):
        raise ValueError(f"{what}: probabilities must sum to 1 (got sums {s.ravel()}); normalise them first")
    return arr / s


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@dataclass
class QuestionBelief:
    """The belief over one question's answers; ``logits`` are log-odds up to a constant."""

    id: str
    answers: tuple[str, ...]
    logits: np.ndarray
    n_real: int = 0
    n_imagined: int = 0

    @property
    def probs(self) -> np.ndarray:
        return _softmax(self.logits)

    def log_odds(self, answer: int | str = 0) -> float:
        """``log P(answer) - log P(not answer)``."""
        i = self.answers.index(answer) if isinstance(answer, str) else int(answer)
        p = self.probs
        return float(np.log(p[i]) - np.log(max(1.0 - p[i], 1e-300)))


class Belief:
    """Per-question beliefs; see the module docstring for the update rule.

    Args:
        questions: objects with ``id`` and ``answers`` (e.g. ``genex.envs.Question``).
        priors: optional ``{question id: probabilities over answers}``; uniform by default.
        eps: evidence probabilities are clipped to ``[eps, 1 - eps]``.
    """

    def __init__(self, questions: Iterable[Any], priors: Mapping[str, Sequence[float]] | None = None,
                 eps: float = DEFAULT_EPS) -> None:
        if not 0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps}")
        self.eps = eps
        self.questions: dict[str, QuestionBelief] = {}
        priors = dict(priors or {})
        for q in questions:
            answers = tuple(q.answers)
            if len(answers) < 2:
                raise ValueError(f"question {q.id!r} needs at least two answers")
            prior = _as_probs(priors.pop(q.id, np.full(len(answers), 1 / len(answers))), len(answers),
                              f"prior of {q.id!r}")
            self.questions[q.id] = QuestionBelief(q.id, answers, np.log(np.clip(prior, 1e-12, 1.0)))
        if priors:
            raise KeyError(f"priors for unknown questions {sorted(priors)}; questions are {sorted(self.questions)}")

    # -- access ---------------------------------------------------------------------------------
    def __getitem__(self, qid: str) -> QuestionBelief:
        try:
            return self.questions[qid]
        except KeyError:
            raise KeyError(f"unknown question {qid!r}; this belief holds {sorted(self.questions)}") from None

    def probs(self, qid: str) -> np.ndarray:
        return self[qid].probs

    def as_dict(self) -> dict[str, list[float]]:
        """``{question id: probabilities}`` (JSON-friendly, for traces)."""
        return {qid: qb.probs.round(6).tolist() for qid, qb in self.questions.items()}

    def copy(self) -> "Belief":
        return copy.deepcopy(self)

    # -- updates --------------------------------------------------------------------------------
    def _llr(self, qb: QuestionBelief, probs: np.ndarray, base: Sequence[float] | None) -> np.ndarray:
        p = np.clip(probs, self.eps, 1 - self.eps)
        b = np.full(len(qb.answers), 1 / len(qb.answers)) if base is None else _as_probs(base, len(qb.answers),
                                                                                           "base rate")
        return np.log(p) - np.log(np.clip(b, self.eps, 1 - self.eps))

    def update_real(self, qid: str, probs: Sequence[float], weight: float = 1.0,
                    base: Sequence[float] | None = None) -> None:
        """Evidence from one real image: the policy's probabilities over ``qid``'s answers (weight 1)."""
        if not 0 <= weight <= 1:
            raise ValueError(f"real evidence weight must be in [0, 1], got {weight}")
        qb = self[qid]
        qb.logits = qb.logits + weight * self._llr(qb, _as_probs(probs, len(qb.answers), f"evidence for {qid!r}"),
                                                   base)
        qb.n_real += 1

    def update_imagined(self, qid: str, sample_probs: Sequence[Sequence[float]] | np.ndarray, trust: float,
                        base: Sequence[float] | None = None) -> None:
        """Evidence from S imagined samples (``float[S, n_answers]``): trust x the samples' mean log-ratio."""
        if not 0 <= trust <= 1:
            raise ValueError(f"trust weight for imagined evidence must be in [0, 1], got {trust}")
        qb = self[qid]
        p = _as_probs(sample_probs, len(qb.answers), f"imagined evidence for {qid!r}")
        if p.ndim == 1:
            p = p[None]
        if p.ndim != 2 or len(p) == 0:
            raise ValueError(f"imagined evidence for {qid!r} must be float[S, n_answers] with S >= 1, got {p.shape}")
        qb.logits = qb.logits + trust * self._llr(qb, p, base).mean(0)
        qb.n_imagined += len(p)

    def update_from_images(self, qid: str, probs: np.ndarray, imagined: Sequence[bool], trust: float,
                           base: Sequence[float] | None = None) -> None:
        """Per-image answers ``float[N, n_answers]`` tagged real/imagined: each real image counts once,
        all imagined ones together count ``trust`` times their mean."""
        probs = np.asarray(probs, dtype=np.float64)
        imagined = np.asarray(imagined, dtype=bool)
        if probs.ndim != 2 or len(probs) != len(imagined):
            raise ValueError(f"probs {probs.shape} and imagined {imagined.shape} must be [N, A] and [N]")
        for p in probs[~imagined]:
            self.update_real(qid, p, base=base)
        if imagined.any():
            self.update_imagined(qid, probs[imagined], trust, base=base)

    # -- decisions --------------------------------------------------------------------------------
    def expected_costs(self, action_costs: Mapping[str, Any]) -> np.ndarray:
        """``sum_q costs[q] @ P_q``: ``float[n_actions]``; ``action_costs`` as the env declares them."""
        total = None
        for qid, table in action_costs.items():
            table = np.asarray(table, dtype=np.float64)
            qb = self[qid]
            if table.ndim != 2 or table.shape[1] != len(qb.answers):
                raise ValueError(f"cost table for {qid!r} has shape {table.shape}, expected "
                                 f"[n_actions, {len(qb.answers)}]")
            c = table @ qb.probs
            if total is not None and c.shape != total.shape:
                raise ValueError(f"cost tables disagree on the number of actions ({c.shape} vs {total.shape})")
            total = c if total is None else total + c
        if total is None:
            raise ValueError("no cost tables given")
        return total

    def decide(self, action_costs: Mapping[str, Any]) -> int:
        """The action of least expected cost (ties: the lowest index)."""
        return int(np.argmin(self.expected_costs(action_costs)))

    # -- scoring ----------------------------------------------------------------------------------
    def score(self, answers: Mapping[str, int]) -> dict[str, dict[str, float]]:
        """Brier and log loss of each question against the true answer index (``info["answers"]``)."""
        out = {}
        for qid, truth in answers.items():
            p = self.probs(qid)[None]
            t = np.asarray([int(truth)])
            out[qid] = {"brier": brier_score(p, t), "log_loss": log_loss(p, t)}
        return out


def _check_scores_input(probs: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(truth)
    if p.ndim == 1:  # binary: probability of answer 0
        p = np.stack([p, 1 - p], axis=1)
    if p.ndim != 2 or t.shape != (len(p),):
        raise ValueError(f"probs must be [N, A] (or [N] for binary) and truth [N]; got {p.shape}, {t.shape}")
    if np.any(t < 0) or np.any(t >= p.shape[1]):
        raise ValueError(f"true answer indices must be in [0, {p.shape[1]}), got {t}")
    return p, t.astype(int)


def brier_score(probs: Any, truth: Any) -> float:
    """Mean over items of ``sum_a (p_a - 1[a = truth])^2`` (0 is perfect, 2 is worst)."""
    p, t = _check_scores_input(probs, truth)
    onehot = np.eye(p.shape[1])[t]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def log_loss(probs: Any, truth: Any, eps: float = 1e-12) -> float:
    """Mean negative log-probability of the true answer (clipped at ``eps``)."""
    p, t = _check_scores_input(probs, truth)
    return float(np.mean(-np.log(np.clip(p[np.arange(len(p)), t], eps, 1.0))))


def reliability_table(probs: Any, truth: Any, n_bins: int = 10, per_answer: bool = False) -> list[dict[str, float]]:
    """Per confidence bin (equal width on [0, 1]): count, mean confidence, accuracy of the top answer.

    ``per_answer=True`` pools every (item, answer) pair instead: the probability given to each answer
    against whether it was the true one. Use it for many-answer beliefs that are often near uniform,
    where the top answer is a tie and its accuracy is arbitrary.
    """
    p, t = _check_scores_input(probs, truth)
    if per_answer:
        conf = p.reshape(-1)
        correct = (np.arange(p.shape[1])[None, :] == t[:, None]).reshape(-1).astype(float)
    else:
        conf = p.max(1)
        correct = (p.argmax(1) == t).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        m = idx == b
        rows.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": int(m.sum()),
                     "confidence": float(conf[m].mean()) if m.any() else float("nan"),
                     "accuracy": float(correct[m].mean()) if m.any() else float("nan")})
    return rows


def expected_calibration_error(probs: Any, truth: Any, n_bins: int = 10) -> float:
    """ECE: ``sum_b |B_b|/N * |accuracy_b - confidence_b|`` over equal-width confidence bins."""
    p, _ = _check_scores_input(probs, truth)
    n = len(p)
    if n == 0:
        raise ValueError("ECE of zero items")
    return float(sum(r["count"] / n * abs(r["accuracy"] - r["confidence"])
                     for r in reliability_table(probs, truth, n_bins) if r["count"]))


def score_beliefs(beliefs: Sequence[Belief], answers: Sequence[Mapping[str, int]], n_bins: int = 10
                  ) -> dict[str, dict[str, float]]:
    """Brier, log loss and ECE per question over many episodes' final beliefs and true answers."""
    if len(beliefs) != len(answers):
        raise ValueError(f"{len(beliefs)} beliefs but {len(answers)} answer sets")
    out: dict[str, dict[str, float]] = {}
    qids = sorted({q for a in answers for q in a})
    for qid in qids:
        pairs = [(b.probs(qid), a[qid]) for b, a in zip(beliefs, answers) if qid in a]
        p = np.stack([x for x, _ in pairs])
        t = np.asarray([y for _, y in pairs])
        out[qid] = {"brier": brier_score(p, t), "log_loss": log_loss(p, t),
                    "ece": expected_calibration_error(p, t, n_bins), "n": float(len(p))}
    return out
