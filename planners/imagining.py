"""Planners that look before they act: ``imagine`` (GenEx), ``lookahead`` (WebDreamer/MPC), ``explore``.

* :class:`ImaginePlanner` imagines the env's *exploration* branches (creep
  forward, wait, peek past the van; open each tab/folder/listing), reads the
  imagined frames with the policy, revises the belief, then decides by expected
  cost. With an :class:`~genex.world_model.OracleWorldModel` it is
  ``oracle-imagine``, the upper bound.
* :class:`LookaheadPlanner` imagines the outcome of *each candidate decision*
  (the action held for ``horizon`` steps, or the GUI choice) and scores each
  candidate by its expected cost under the belief revised with its own
  imagined outcome.
* :class:`ExplorePlanner` takes the exploration actions *for real* while the
  belief is uncertain (real steps, real risk), then decides.
* :class:`VOIImaginePlanner` (``imagine-voi``) is ``imagine`` gated by the value of information
  (:mod:`~genex.planners.voi`): it imagines one sample at a time, of the branch whose sample is expected to
  change the decision the most, and only while that is worth its frames (``voi_cost``). ``lookahead`` takes the
  same gate with ``voi=True``.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from genex.belief import Belief

from .base import BeliefPlanner
from .options import PlannerOptions
from genex.evaluation.fidelity import SEEN_P, apply_fidelity
from .plans import PlanChoice
from .task import Branch
from .voi import branch_evsi, sample_outcomes

__all__ = ["ImaginePlanner", "VOIImaginePlanner", "LabelledPosteriorPlanner", "LookaheadPlanner", "ExplorePlanner",
           "labelled_action"]

#: EVSI at or below this counts as none (float noise of identical decisions)
_VOI_EPS = 1e-9


def labelled_action(env: Any, action: Any) -> Any:
    """``action`` as the imagining planners send it to a world model: a GUI click gains ``"label"``, what it
    targets on the visible screen ("open the *Display* tab", the env's public ``describe_action``), for world
    models that read it; the env ignores the key. Unchanged where the env describes nothing."""
    describe = getattr(getattr(env, "unwrapped", env), "describe_action", None)
    label = describe(action) if describe is not None else ""
    return {**action, "label": label} if label else action


class ImaginePlanner(BeliefPlanner):
    """GenEx mental exploration; see the module docstring (and :class:`BeliefPlanner` for the arguments)."""

    name = "imagine"
    imagines = True
    branch_kind = "explore"
    #: whether the value-of-information gate is on when ``options.voi`` is None (``imagine-voi``: on)
    voi_default = False

    def __init__(self, policy: Any, world_model: Any = None, options: PlannerOptions | Mapping[str, Any] | None = None,
                 *, fidelity: Mapping[str, Mapping[str, float]] | None = None, **kwargs: Any) -> None:
        super().__init__(policy, world_model, options, **kwargs)
        # options.imagined_reading: with ``fidelity``, how an imagined sample counts: ``"hard"`` (default) as seen
        # iff P(visible) > 0.5, the event whose recall and false-alarm rates ``fidelity`` measured; ``"soft"`` feeds
        # P itself into those rates. Soft lets sub-threshold noise decide near-ties: in MailCompose, where the
        # policy reads no imagined outcome as the target, P = 0.01 on an imagined "Message deleted" page against
        # 0.0001 on the others sent every such episode to the irreversible button (README, Results).
        # options.imagine_every: imagine at every N-th decision and reuse that evidence in between (compute knob)
        #: measured recall / false alarms of imagined facts (``genex.evaluation.fidelity``); None: take imagined
        #: frames at face value (right for the oracle, optimistic for a learned world model)
        self.fidelity = fidelity

    def reset(self, env: Any, seed: int | None = None) -> None:
        super().reset(env, seed)
        self._decisions = 0
        self._voi_step: int | None = None  # the decision (step counter) the gate computed the plans' returns for
        self._voi_returns: np.ndarray | None = None
        self._cached: tuple[list[dict[str, Any]], dict[str, np.ndarray]] | None = None
        if self._tracks_observations:  # posterior-imagine: hypotheses of this episode, filtered as it goes
            self.world_model.reset(env, seed=self.episode_seed + 7919)

    @property
    def _tracks_observations(self) -> bool:
        return bool(getattr(self.world_model, "tracks_observations", False))

    #: how the posterior world model's filter reads each real frame: ``"policy"`` (the policy's P(visible), the
    #: same perception as ``react``, so that the react -> posterior gap is imagination's alone) or ``"labels"``
    #: (the env's visibility labels: a perfect detector, ``posterior-imagine-labels``)
    real_reading: str = "policy"

    def _observe(self, info: Mapping[str, Any] | None) -> None:
        if self._tracks_observations:
            self._visible_now = dict((info or {}).get("visible") or {})
            self._observed_action = self.last_action if self.step > 1 else None
            if self.real_reading == "labels":
                self.world_model.observe(self._observed_action, self._visible_now)
            # "policy": observed in _imagined, once the policy has read the frame (BeliefPlanner._decide)

    def _hazard_seen(self) -> bool:
        if self._tracks_observations and self.real_reading == "labels":  # it sees the real frame as its filter does
            return any(self._visible_now.get(f, False) for f in self.hazard_facts)
        return super()._hazard_seen()

    def _imagined(self, t: int, belief: Belief | None = None) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
        """Fresh branch evidence every ``imagine_every`` decisions, else the last one (marked ``reused``); with the
        value-of-information gate on, only the samples worth imagining under ``belief`` (the real one)."""
        if self._tracks_observations and self.real_reading == "policy":  # filter by the policy's reading first
            self.world_model.observe(self._observed_action, {f: float(p) for f, p in self._p_now.items()})
        fresh = self._cached is None or self._decisions % self.options.imagine_every == 0
        self._decisions += 1
        if fresh:
            if self.voi_gated and belief is not None:
                self._cached = self._gated_evidence(self._branches(), t, belief)
            else:
                self._cached = self._branch_evidence(self._branches(), t)
            return self._cached
        summaries = [{**sm, "frames": 0, "reused": True} for sm in self._cached[0]]
        return summaries, {}

    def _branches(self) -> tuple[Branch, ...]:
        return self.task.exploration

    # ------------------------------------------------------------------ imagination
    def _branch_actions(self, branch: Branch) -> list[Any]:
        if branch.choice is None:
            return list(branch.actions)
        a = self.unwrapped.choice_action(branch.choice)  # GUI: the choice's next primitive action
        if a is None:
            return []
        return [labelled_action(self.unwrapped, a)]

    def _rollout(self, branches: tuple[Branch, ...], t: int, samples: int | None = None,
                 seed: int | None = None) -> list[np.ndarray]:
        """Imagined frames per branch, ``uint8[S, T_b, H, W, 3]`` (``T_b = 0``: nothing to imagine); ``S`` is
        ``samples`` (default ``options.samples``), drawn with ``seed`` (default: the episode's seed and ``t``)."""
        wm = self.world_model
        deterministic = not getattr(wm, "context_is_state", True)  # the oracle's samples are identical
        s = 1 if deterministic else (self.options.samples if samples is None else samples)
        t0 = time.perf_counter()
        seed = self.episode_seed * 100_003 + t if seed is None else seed
        acts = [self._branch_actions(b) for b in branches]
        out: list[np.ndarray] = []
        if self._tracks_observations:  # posterior: the same S posterior draws for every branch
            out = [wm.imagine(None, a, num_samples=s, seed=seed) if a
                   else np.zeros((s, 0) + self.frames[-1].shape, np.uint8) for a in acts]
            self._drawn = [int(self.world_model.answers[i]) for i in wm.last_draw]
        elif not getattr(wm, "context_is_state", True):  # oracle: the simulator from the live env's snapshot
            u = self.unwrapped
            snap = u.snapshot()
            for b, a in zip(branches, acts):
                if b.choice is not None and hasattr(getattr(wm, "env", None), "choice_action"):
                    frames = wm.rollout_choice(snap, b.choice)
                else:
                    frames = wm.rollout(snap, a) if a else np.zeros((0,) + self.frames[-1].shape, np.uint8)
                out.append(np.broadcast_to(frames[None], (s,) + frames.shape).copy())
        else:
            ctx = np.stack(self.frames)
            lengths = {len(a) for a in acts if a}
            if len(lengths) == 1 and hasattr(wm, "imagine_batch"):  # one batch: all branches x samples
                live = [i for i, a in enumerate(acts) if a]
                contexts = np.repeat(ctx[None], len(live) * s, axis=0)
                seqs = [acts[i] for i in live for _ in range(s)]
                frames = wm.imagine_batch(contexts, seqs, seed=seed)
                by_branch = {i: frames[j * s:(j + 1) * s] for j, i in enumerate(live)}
            else:
                by_branch = {i: wm.imagine(ctx, a, num_samples=s, seed=seed + i) for i, a in enumerate(acts) if a}
            empty = np.zeros((s, 0) + ctx.shape[1:], np.uint8)
            out = [by_branch.get(i, empty) for i in range(len(branches))]
        self._timers["world_model"] += time.perf_counter() - t0
        return out

    def _branch_evidence(self, branches: tuple[Branch, ...], t: int) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
        """Imagine every branch, ask the policy about all imagined frames in one call, build evidence."""
        rolled = self._rollout(branches, t)
        flat = [f for r in rolled for f in r.reshape((-1,) + r.shape[2:])]
        p_flat = self._p_seen(flat, imagined=True, step=t + 1)
        summaries, frames, k = [], {}, 0
        for b, r in zip(branches, rolled):
            s, steps = r.shape[:2]
            n = s * steps
            p = p_flat[k:k + n]
            k += n
            summary: dict[str, Any] = {"name": b.name, "kind": self.branch_kind, "choice": b.choice,
                                       "frames": n, "steps": steps}
            if self._tracks_observations:  # which hypotheses the posterior drew, and what it believes
                summary.update(drawn_answers=self._drawn,
                               posterior=self.world_model.answer_posterior().round(4).tolist(),
                               effective_hypotheses=round(self.world_model.effective_size(), 2))
            if steps == 0:
                summary.update(p_seen={}, evidence={})
                summaries.append(summary)
                continue
            p_seen, per_sample = self._read_samples(b, p, s, steps)
            evidence = {q: np.mean([ps[q] for ps in per_sample], axis=0) for q in per_sample[0]}
            summary.update(p_seen={f: v.round(4).tolist() for f, v in p_seen.items()},
                           evidence={q: v.round(6).tolist() for q, v in evidence.items()})
            summaries.append(summary)
            if self.save_frames:
                frames[f"imagined/{b.name}"] = r
        return summaries, frames

    def _imagined_probes(self, branch: Branch) -> tuple[Any, ...]:
        """The probes imagined frames of ``branch`` are read with (the measured fidelity applied)."""
        return apply_fidelity(self.task.probes_for(branch.choice), self.fidelity)

    def _read_samples(self, branch: Branch, p: list[dict[str, float]], s: int, steps: int
                      ) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
        """``p`` (P(visible) per imagined frame, ``s`` samples of ``steps`` frames) -> P(seen) per fact and sample
        (max over the steps), and each sample's likelihoods through the branch's probes."""
        p_seen = {f: np.array([max(p[i * steps + j][f] for j in range(steps)) for i in range(s)])
                  for f in self.task.facts}
        probes = self._imagined_probes(branch)
        read = p_seen
        if self.fidelity is not None and self.options.imagined_reading == "hard":
            read = {f: (v > SEEN_P).astype(np.float64) for f, v in p_seen.items()}
        per_sample = [self._likelihoods({f: v[i] for f, v in read.items()}, probes) for i in range(s)]
        return p_seen, per_sample

    # ------------------------------------------------------------------ value-of-information gate
    @property
    def voi_gated(self) -> bool:
        """Whether the value-of-information gate decides what is imagined (``options.voi``, else the planner's
        default). Never where the belief does not decide: the posterior world model, or the oracle under the plan
        rule (it plans in the imagined world itself)."""
        on = self.voi_default if self.options.voi is None else self.options.voi
        if not on or self._tracks_observations:
            return False
        return not (self.plans is not None and hasattr(self.world_model, "worlds"))

    def _with_evidence(self, belief: Belief, evidence: list[dict[str, np.ndarray]]) -> Belief:
        """A copy of ``belief`` with each branch's imagined evidence added, as :meth:`_imagine` adds it."""
        b = belief.copy()
        for ev in evidence:
            for q, lik in ev.items():
                b.update_imagined(q, [lik], self.options.trust)
        return b

    def _rule_scores(self, belief: Belief) -> np.ndarray:
        """The rule's cost of each decision under ``belief`` (one-step expected costs, or the plan rule's best
        plan per first action), with no side effects; the plan rule reads the returns cached for this decision."""
        if self.plans is None:
            return np.asarray(belief.expected_costs(self.task.action_costs), np.float64)
        return np.asarray(self.plans.choose(belief.probs(self.task.questions[0].id), self._voi_returns).costs,
                          np.float64)

    def _voi_scores(self, belief: Belief, evidence: list[dict[str, np.ndarray]]) -> np.ndarray:
        """The scores the planner decides by given each branch's imagined evidence (``{}``: none)."""
        return self._rule_scores(self._with_evidence(belief, evidence))

    def _sample_seed(self, t: int, branch: int, sample: int) -> int:
        """The world model's seed for sample ``sample`` of branch ``branch`` at decision ``t``: fixed by the
        episode, so a gated run draws the same futures whatever it skipped."""
        return int(np.random.SeedSequence([self.episode_seed % 2 ** 32, t, branch, sample]).generate_state(1)[0])

    def _gated_evidence(self, branches: tuple[Branch, ...], t: int, belief: Belief
                        ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
        """Imagine one sample at a time, of the branch with the largest EVSI net of its frames' cost, while that is
        positive (:mod:`~genex.planners.voi`); summaries as :meth:`_branch_evidence`'s, plus ``voi`` per branch."""
        wm = self.world_model
        s_max = 1 if not getattr(wm, "context_is_state", True) else self.options.samples
        lengths = [len(self._branch_actions(b)) for b in branches]
        probes = [self._imagined_probes(b) for b in branches]
        answers = {q.id: tuple(q.answers) for q in self.task.questions}
        self._voi_returns = self.plans.returns() if self.plans is not None else None
        self._voi_step = self.step  # the returns hold for this decision only
        rolled: list[list[np.ndarray]] = [[] for _ in branches]
        seen: list[list[dict[str, float]]] = [[] for _ in branches]  # P(seen) per fact, per drawn sample
        liks: list[list[dict[str, np.ndarray]]] = [[] for _ in branches]  # likelihoods per drawn sample
        first: list[float | None] = [None] * len(branches)
        last: list[float | None] = [None] * len(branches)

        def mean(samples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
            return {q: np.mean([ps[q] for ps in samples], axis=0) for q in samples[0]} if samples else {}

        while True:
            evidence = [mean(x) for x in liks]
            now = self._voi_scores(belief, evidence)
            predictive = self._with_evidence(belief, evidence)
            probs = {q: predictive.probs(q) for q in answers}
            pick, pick_net = None, 0.0
            for i, b in enumerate(branches):
                if lengths[i] == 0 or len(liks[i]) >= s_max:
                    continue
                outcomes = sample_outcomes(probes[i], probs, answers)
                if outcomes is None:  # too many facts to enumerate: imagine it, as imagine would
                    value = float("inf")
                else:
                    def scores_given(reading: Mapping[str, float], i: int = i) -> np.ndarray:
                        ev = list(evidence)
                        ev[i] = mean(liks[i] + [self._likelihoods(reading, probes[i])])
                        return self._voi_scores(belief, ev)

                    value = branch_evsi(outcomes, now, scores_given)
                first[i] = value if first[i] is None else first[i]
                last[i] = value
                net = value - self.options.voi_cost * lengths[i]
                if value > _VOI_EPS and net > pick_net:
                    pick, pick_net = i, net
            if pick is None:
                break
            k = len(liks[pick])
            r = self._rollout((branches[pick],), t, samples=1, seed=self._sample_seed(t, pick, k))[0][:1]
            p = self._p_seen(list(r[0]), imagined=True, step=t + 1)
            p_seen, per_sample = self._read_samples(branches[pick], p, 1, r.shape[1])
            rolled[pick].append(r)
            seen[pick].append({f: float(v[0]) for f, v in p_seen.items()})
            liks[pick].append(per_sample[0])

        summaries, frames = [], {}
        for i, b in enumerate(branches):
            n, steps = len(liks[i]), lengths[i]
            summary: dict[str, Any] = {"name": b.name, "kind": self.branch_kind, "choice": b.choice,
                                       "frames": n * steps, "steps": steps if n else 0}
            evsi = {"first": _rounded(first[i]), "last": _rounded(last[i])}
            if steps == 0:
                summary.update(p_seen={}, evidence={})
            elif n == 0:
                none = first[i] is not None and first[i] <= _VOI_EPS
                reason = ("no outcome of it changes the decision" if none else
                          "its expected value of information is below the cost of its frames")
                summary.update(p_seen={}, evidence={}, voi={"skipped": True, "reason": reason, "evsi": evsi,
                                                            "samples": 0})
            else:
                summary.update(p_seen={f: [round(x[f], 4) for x in seen[i]] for f in self.task.facts},
                               evidence={q: v.round(6).tolist() for q, v in mean(liks[i]).items()},
                               voi={"skipped": False, "evsi": evsi, "samples": n})
                if self.save_frames:
                    frames[f"imagined/{b.name}"] = np.concatenate(rolled[i], axis=0)
            summaries.append(summary)
        return summaries, frames

    def _imagine(self, belief: Belief, frame: np.ndarray, t: int):
        summaries, frames = self._imagined(t, belief)
        if self._tracks_observations:  # a perfect reading of the posterior's futures: the share holding each answer
            q = self.task.questions[0].id
            belief[q].logits = np.log(np.clip(self.world_model.answer_posterior(), 1e-12, 1.0))
            return summaries, frames
        for sm in summaries:
            for q, lik in sm["evidence"].items():
                belief.update_imagined(q, [lik], self.options.trust)
        return summaries, frames

    def _imagined_worlds(self) -> tuple[Any, Any, np.ndarray] | None:
        """The world model's imagined future as simulator states where it is the truth (the oracle), for the plan
        rule to score plans under (``planners.plans``); None for every other world model."""
        wm = self.world_model
        if self.plans is None or not hasattr(wm, "worlds") or self._tracks_observations:
            return None
        return wm.worlds(self.unwrapped.snapshot())  # the oracle: the live state

    def _by_rule(self, belief: Belief) -> tuple[int, np.ndarray]:
        worlds = self._imagined_worlds()
        if worlds is None and self.plans is not None and self._voi_step == self.step:
            # the gate has rolled the plans out from the present for this decision: the same returns, not again
            probs = belief.probs(self.task.questions[0].id)
            choice = self.plans.choose(probs, self._voi_returns)
            return self._carry_out(choice, lambda: self.plans.hazard_now(probs))
        if worlds is None:
            return super()._by_rule(belief)
        choice = self.plans.choose_in(worlds)
        return self._carry_out(choice, lambda: self.plans.hazard_now(worlds=worlds))


class VOIImaginePlanner(ImaginePlanner):
    """``imagine-voi``: ``imagine`` that imagines only where it pays. Before each imagined sample it asks, with no
    world-model or policy call, whether any outcome the sample could show would change the decision under the
    current belief, and by how much in expectation (the expected value of sample information, in the rule's cost
    units); it draws the sample worth the most net of its frames' cost (``voi_cost`` per frame), at most
    ``samples`` per branch, and stops when none is worth it (:mod:`~genex.planners.voi`)."""

    name = "imagine-voi"
    voi_default = True


class LabelledPosteriorPlanner(ImaginePlanner):
    """``posterior-imagine-labels``: ``posterior-imagine`` whose filter and braking read the real frames with a
    perfect detector (the env's public visibility labels) instead of the policy: imagination *and* perception
    perfect, so its gap over ``posterior-imagine`` is what better eyes on the real frames would add."""

    real_reading = "labels"


class LookaheadPlanner(ImaginePlanner):
    """WebDreamer/MPC: imagine each candidate decision, score it under the belief its outcome implies."""

    name = "lookahead"
    branch_kind = "candidate"

    def _branches(self) -> tuple[Branch, ...]:
        return self.task.branches_for_actions(self.options.horizon)

    def _imagine(self, belief: Belief, frame: np.ndarray, t: int):
        return self._imagined(t, belief)

    def _choose(self, belief: Belief, branches: list[dict[str, Any]]) -> tuple[int, np.ndarray]:
        if self.plans is not None and self._imagined_worlds() is not None:  # the oracle: plans scored in the true world
            return self._by_rule(belief)
        returns = None
        if self.plans is not None:  # the gate's, where it rolled the plans out for this decision
            returns = self._voi_returns if self._voi_step == self.step else self.plans.returns()
        scored, base = self._scored(belief, [sm["evidence"] for sm in branches], returns)
        for a, sm in enumerate(branches):
            if sm["evidence"]:
                sm["expected_cost"] = float(scored[a])
        if self.plans is None:
            return int(np.argmin(scored)), scored
        best = int(np.argmin(scored))
        probs = belief.probs(self.task.questions[0].id)
        chosen = PlanChoice(best, scored, base.summary, guarded=base.guarded and best == base.action)
        return self._carry_out(chosen, lambda: self.plans.hazard_now(probs))

    def _scored(self, belief: Belief, evidence: list[Mapping[str, Any]], returns: np.ndarray | None
                ) -> tuple[np.ndarray, PlanChoice | None]:
        """Each candidate's score (lower is better) under the belief its own imagined ``evidence`` implies (none:
        ``belief``): its expected cost, or (the plan rule, with the plans' ``returns``) minus the best expected
        return of a plan starting with it; and the plan rule's choice under ``belief`` (None for the table)."""
        base = None
        if self.plans is None:
            scored = np.array(belief.expected_costs(self.task.action_costs), dtype=np.float64)
        else:  # plans starting with each action, scored under the belief that action's own imagined outcome implies
            base = self.plans.choose(belief.probs(self.task.questions[0].id), returns)
            scored = np.array(base.costs, dtype=np.float64)
        for a, ev in enumerate(evidence):
            if not ev:
                continue
            b = belief.copy()
            for q, lik in ev.items():
                b.update_imagined(q, [lik], self.options.trust)
            if self.plans is None:
                scored[a] = b.expected_costs(self.task.action_costs)[a]
            else:
                scored[a] = self.plans.choose(b.probs(self.task.questions[0].id), returns, first_actions=[a]).costs[a]
        return scored, base

    def _voi_scores(self, belief: Belief, evidence: list[dict[str, np.ndarray]]) -> np.ndarray:
        return self._scored(belief, evidence, self._voi_returns)[0]


class ExplorePlanner(BeliefPlanner):
    """Physically explore while uncertain: take the first exploration action (driving) or open the
    most likely unexplored view (GUI) until the belief's top answer has ``options.confidence``, at most
    ``options.budget`` times per episode; then decide as ``react``."""

    name = "explore"

    def reset(self, env: Any, seed: int | None = None) -> None:
        super().reset(env, seed)
        self.explored = 0

    def _choose(self, belief: Belief, branches: list[dict[str, Any]]) -> tuple[int, np.ndarray]:
        best, costs = self._by_rule(belief)
        sure = all(belief.probs(q.id).max() >= self.options.confidence for q in self.task.questions)
        if sure or self.explored >= self.options.budget or not self.task.exploration:
            return best, costs
        self.explored += 1
        if self.task.mode == "direct":
            return int(self.task.exploration[0].actions[0]), costs
        open_views = [b.choice for b in self.task.exploration if b.choice not in self.memory]
        if not open_views:
            return best, costs
        q = self.task.questions[0]
        mass = {c: float(belief.probs(q.id)[min(c, len(q.answers) - 1)]) for c in open_views}
        return max(open_views, key=lambda c: mass[c]), costs


def _rounded(x: float | None) -> float | None:
    """An EVSI for the trace: rounded, None where never computed or unbounded (too many facts to enumerate)."""
    return None if x is None or not np.isfinite(x) else round(float(x), 6)
