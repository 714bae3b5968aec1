"""Reference rows for the comparison: ``prior`` (never looks) and ``amortized`` (a black box on hidden labels).

* :class:`PriorPlanner` decides from the documented prior alone. It shows what
  looking buys at all: a planner that reads frames must beat it on return.
* :class:`AmortizedPlanner` asks the env's *declared* questions ("Is a
  pedestrian about to cross?") of the current real frame, with a policy trained
  end-to-end on hidden-state labels from partial views (``genex train-policy
  --labels hidden``). It is the design's amortized reference: the same data and
  architecture, no world model, no perception/decision split.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from genex.belief import Belief
from genex.policy.protocol import PolicyQuestion, TaggedImage

from .base import BeliefPlanner, DecisionTrace, to_jsonable

__all__ = ["PriorPlanner", "AmortizedPlanner"]


class PriorPlanner(BeliefPlanner):
    name = "prior"
    sees_road_users = False  # never looks: no guarded plans

    def _p_seen(self, frames, imagined, step=0):  # never looks: no evidence
        return [{f: 0.5 for f in self.task.facts} for _ in frames]

    def _likelihoods(self, p_seen, probes, conditional_only=False):
        return {}


class AmortizedPlanner(BeliefPlanner):
    name = "amortized"
    sees_road_users = False  # its policy answers the hidden question only: no guarded plans

    def _decide(self, frame: np.ndarray, t: int) -> tuple[Any, DecisionTrace]:
        task = self.task
        t0 = time.perf_counter()
        self._timers = {"policy": 0.0, "world_model": 0.0}
        belief = Belief(task.questions, priors=None)  # the model was trained on the prior's frequencies
        qs = [PolicyQuestion(q.id, q.text, tuple(q.answers)) for q in task.questions]
        r = self.policy.answer([TaggedImage(frame, step=t)], self.prompt, qs)
        self._timers["policy"] += time.perf_counter() - t0
        for q in task.questions:
            belief.update_real(q.id, r.per_image[q.id][0] / r.per_image[q.id][0].sum())
        self._plan_summary = {}
        best, costs = self._by_rule(belief)
        action, decision = self._to_action(best, costs)
        return action, DecisionTrace(
            step=t, decision=decision, decision_name=task.action_names[decision], action=to_jsonable(action),
            belief_real=belief.as_dict(), belief=belief.as_dict(), expected_costs=[float(c) for c in costs],
            plan=self._plan_summary,
            policy_images=1, seconds={**{k: round(v, 5) for k, v in self._timers.items()},
                                      "total": round(time.perf_counter() - t0, 5)},
            frames={"real": frame.copy()} if self.save_frames else None)
