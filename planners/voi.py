"""Value-of-information gating: imagine only where what imagination could show may change the decision.

``imagine`` imagines every exploration branch ``S`` times at every decision, also where no imagined outcome
could change what it does. ``imagine-voi`` (and ``lookahead`` with ``voi=True``) asks first, with no
world-model or policy call: *would any outcome of the next imagined sample change the decision, and by how
much in expectation?* It imagines that one sample only where the answer is worth the frames, and asks again.

One imagined sample of branch ``b`` is read, through the branch's probes (the fidelity-adjusted ones the
planner reads imagined frames with), as *seen / not seen* per fact the probes ask about: the outcomes ``o``
(``2^F`` of them for ``F`` facts). Under the current belief (the real evidence plus the imagined samples drawn
so far) each has a predictive probability

    P(o) = sum_answers P(answers) * prod_f P(o_f | answers),   P(seen_f | a) = the probes' detect (a supported)
                                                               or false_alarm (not supported)

and gives the branch the per-sample likelihood the planner would read from it; the branch's evidence becomes
the mean over its samples, as ``imagine`` mixes them, and the rule in force scores every decision under the
result (``S_o``: the one-step expected costs, the plan rule's per-first-action costs, or ``lookahead``'s
per-candidate scores). With ``d0`` the decision the rule takes now, the expected value of sample information

    EVSI_b = sum_o P(o) * (S_o[d0] - min_d S_o[d])  >= 0

is the cost the sample is expected to save: 0 when no outcome changes the decision (a certain belief, an
outcome that only confirms it, a branch whose probes carry no evidence). The gate draws the sample of the
branch with the largest ``EVSI_b - voi_cost * frames_b`` while that is positive, at most ``S`` per branch,
one world-model call each, and re-asks after each; a branch it never draws is recorded as skipped.

This module holds the arithmetic (pure NumPy); the planners' loop is ``ImaginePlanner._gated_evidence``.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

__all__ = ["Outcome", "sample_outcomes", "evsi", "branch_evsi", "MAX_OUTCOME_FACTS"]

#: facts per branch beyond which the outcomes are not enumerated (2^F); the gate then imagines the branch
MAX_OUTCOME_FACTS = 10


class Outcome(NamedTuple):
    """One outcome of an imagined sample: its predictive ``probability`` and its ``reading`` ``{fact: 1.0 | 0.0}``."""

    probability: float
    reading: dict[str, float]


def sample_outcomes(probes: Sequence[Any], answer_probs: Mapping[str, np.ndarray],
                    answers: Mapping[str, Sequence[str]]) -> list[Outcome] | None:
    """The seen / not-seen outcomes of one imagined sample read through ``probes``, with their predictive
    probabilities under the belief ``answer_probs`` ``{question: P(answers)}``; ``[]`` if the probes ask about
    nothing, None if they ask about more than :data:`MAX_OUTCOME_FACTS` facts.

    A fact several probes ask about is seen if any of them fires (noisy-or of their detect / false-alarm rates);
    the facts are independent given the answers (the naive-Bayes reading the planners use).
    """
    facts = list(dict.fromkeys(p.fact for p in probes))
    if not facts:
        return []
    if len(facts) > MAX_OUTCOME_FACTS:
        return None
    qids = list(dict.fromkeys(p.question for p in probes))
    grids = [range(len(answers[q])) for q in qids]
    # P(seen_f | joint answers): [n_joint, F]; P(joint answers): [n_joint]
    joint = list(itertools.product(*grids))
    prior = np.array([np.prod([answer_probs[q][i] for q, i in zip(qids, combo)]) for combo in joint])
    seen = np.zeros((len(joint), len(facts)))
    for j, combo in enumerate(joint):
        given = {q: answers[q][i] for q, i in zip(qids, combo)}
        for k, f in enumerate(facts):
            miss = 1.0
            for p in probes:
                if p.fact == f:
                    miss *= 1.0 - (p.detect if given[p.question] in p.supports else p.false_alarm)
            seen[j, k] = 1.0 - miss
    out = []
    for bits in itertools.product((1.0, 0.0), repeat=len(facts)):
        b = np.array(bits)
        lik = np.prod(np.where(b > 0, seen, 1.0 - seen), axis=1)
        out.append(Outcome(float(prior @ lik), dict(zip(facts, bits))))
    return out


def evsi(now: np.ndarray, outcomes: Sequence[tuple[float, np.ndarray]]) -> float:
    """``sum_o P(o) * (S_o[d0] - min S_o)``: the expected saving of one sample, ``d0 = argmin(now)``.

    ``now``: the rule's scores (costs, lower is better) without the sample; ``outcomes``: ``(P(o), S_o)``.
    """
    d0 = int(np.argmin(now))
    total = 0.0
    for p, scores in outcomes:
        scores = np.asarray(scores, np.float64)
        if p <= 0.0:
            continue
        regret = float(scores[d0] - np.min(scores))
        if np.isfinite(regret):
            total += p * max(regret, 0.0)
    return total


def branch_evsi(outcomes: Sequence[Outcome], now: np.ndarray,
                scores_given: Callable[[Mapping[str, float]], np.ndarray]) -> float:
    """EVSI of one sample whose outcomes are ``outcomes``; ``scores_given(reading)``: the rule's scores after it."""
    return evsi(now, [(o.probability, scores_given(o.reading)) for o in outcomes if o.probability > 0.0])
