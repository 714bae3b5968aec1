"""The ``Planner`` protocol, ``DecisionTrace``, and the belief machinery every planner shares.

One decision of a belief planner::

    prior (the env's documented base rates, else uniform)
      + real evidence: the policy's P(fact visible) on the real frames, through the env's probes: per fact,
        the largest P over the last ``memory`` real frames (``memory=1``: the current frame only); GUI: plus
        what the real screen showed after each action choice already carried out
      + imagined evidence (imagine / lookahead / oracle-imagine): the policy on imagined frames, per branch,
        P(fact seen at any imagined step) per sample, mixed over the S samples, weighted by ``trust``
      -> decision (``decision=``): ``"plan"`` (the default where the env draws hypotheses: the driving scenes),
         the first action of the candidate plan with the highest expected return over belief-weighted
         hypotheses (``planners.plans``); ``"table"`` (the GUI apps, or asked for), argmin expected cost in the
         env's one-step cost table (``Belief.expected_costs``)

Subclasses only change *which* branches are imagined or taken for real, and how
the decision is scored. Every decision yields a :class:`DecisionTrace`.
Planners see ``public_info`` only: they never read ``info["hidden"]``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from genex.belief import Belief
from genex.envs.spec import PRIVILEGED_INFO_KEYS
from genex.policy.data import fact_question, text_question
from genex.policy.protocol import PolicyQuestion, TaggedImage

from .options import PlannerOptions, as_options
from .plans import HypothesisPlans, plans_available
from .task import Task, image_of, prompt_of, task_from_env

__all__ = ["Planner", "DecisionTrace", "BeliefPlanner", "to_jsonable"]

YES_NO = ("yes", "no")


@runtime_checkable
class Planner(Protocol):
    """``reset(env, seed)`` at each episode start; ``act(obs, info) -> (action, trace or None)`` per step.

    ``trace`` is None on steps that carry out an earlier decision (GUI macros) and a
    :class:`DecisionTrace` whenever the planner decided.
    """

    name: str

    def reset(self, env: Any, seed: int | None = None) -> None: ...

    def act(self, obs: Any, info: Mapping[str, Any] | None = None) -> tuple[Any, "DecisionTrace | None"]: ...


@dataclass
class DecisionTrace:
    """Everything one decision did (JSON-friendly except ``frames``).

    ``branches``: one dict per imagined/explored branch: ``name``, ``kind``
    (``explore`` | ``candidate``), ``p_seen`` ``{fact: [S]}`` (max over the imagined
    steps of each sample), ``evidence`` ``{question: likelihood over answers}``.
    ``plan``: with the plan rule, its hypotheses, effective sample size, best plan and expected return.
    ``frames`` (only with ``save_frames``): ``"real"`` uint8[H, W, 3] and
    ``"imagined/<branch>"`` uint8[S, T, H, W, 3].
    """

    step: int
    decision: int | None
    decision_name: str | None
    action: Any
    belief_real: dict[str, list[float]] = field(default_factory=dict)
    belief: dict[str, list[float]] = field(default_factory=dict)
    expected_costs: list[float] = field(default_factory=list)
    real_p_seen: dict[str, float] = field(default_factory=dict)
    kept_p_seen: dict[str, float] = field(default_factory=dict)  # with memory > 1: max over the kept frames
    branches: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)  # the plan rule's choice (planners.plans), if it decided
    imagined_frames: int = 0
    policy_images: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    rationale: str = ""
    frames: dict[str, np.ndarray] | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("frames")
        return to_jsonable(d)


def to_jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float):
        return round(x, 6)
    return x


class BeliefPlanner:
    """``react``: decide from the prior and the current real frame only. Base of the other planners.

    Args:
        policy: a :class:`genex.policy.Policy` (answers "is <fact> visible?" per frame).
        world_model: a :class:`genex.world_model.WorldModel` (imagining planners only). An oracle
            (``context_is_state=False``) is given the live env's snapshot at each decision.
        options: the planner options (:class:`~genex.planners.options.PlannerOptions`, a mapping of them, or
            None: the defaults); see its table for what each means and which planners read it. ``memory``: a
            fact counts as seen if it was seen in any of the last ``memory`` real frames (the largest
            ``P(visible)``), as imagined branches already count a fact seen at any imagined step. A pedestrian
            close in front of the bonnet is below the camera's view; with ``memory=1`` the belief forgets it the
            moment it leaves the frame. Sightings are remembered, not every unseen frame multiplied in:
            successive frames of the same occluded view are not independent evidence. ``decision``: ``"plan"``
            (plans over short action sequences under the belief, ``planners.plans``), ``"table"`` (the one-step
            cost table), or ``None``: ``"plan"`` where the env draws hypotheses (the driving scenes), else
            ``"table"``.
        save_frames: keep the real and imagined frames in each trace (for ``genex viz``).
        seed: base seed of the world model's sampling (per decision: ``seed + step``).
    """

    name = "react"
    imagines = False

    def __init__(self, policy: Any, world_model: Any = None, options: PlannerOptions | Mapping[str, Any] | None = None,
                 *, save_frames: bool = False, seed: int = 0) -> None:
        self.options = as_options(options)
        if self.imagines and world_model is None:
            raise ValueError(f"the {self.name} planner needs a world model")
        self.policy = policy
        self.world_model = world_model
        self.save_frames = save_frames
        self.seed = seed
        self.env: Any = None
        self.task: Task | None = None
        self.plans: HypothesisPlans | None = None

    # ------------------------------------------------------------------ episode
    def reset(self, env: Any, seed: int | None = None) -> None:
        self.env = env
        self.task = task_from_env(env, self.options.horizon)
        self.episode_seed = self.seed if seed is None else int(seed)
        self.frames: deque[np.ndarray] = deque(maxlen=self.options.context)
        self.recent_p: deque[dict[str, float]] = deque(maxlen=self.options.memory)  # P(visible) of recent frames
        self.memory: dict[int, dict[str, np.ndarray]] = {}  # choice -> likelihoods seen after carrying it out
        self.current: int | None = None  # GUI: the action choice being carried out
        self.step = 0
        self.rng = np.random.default_rng(self.episode_seed)
        if hasattr(self.policy, "reset"):
            self.policy.reset()
        self.plans = None
        self.last_action: int | None = None
        self._p_now: dict[str, float] = {}  # P(visible) per fact on the current real frame (none read yet)
        if self.decision_rule == "plan":
            self.plans = HypothesisPlans(env, len(self.task.action_names), particles=self.options.particles,
                                         horizon=self.options.plan_horizon, seed=self.episode_seed,
                                         guarded=self.sees_road_users)

    @property
    def decision_rule(self) -> str:
        """The rule in force for the current env: ``"plan"`` or ``"table"`` (see the class docstring)."""
        if self.task is None:
            raise RuntimeError("call reset(env) before asking for the decision rule")
        can_plan = self.task.mode == "direct" and not self.task.generic and plans_available(self.env)
        if self.options.decision == "plan" and not can_plan:
            raise ValueError(f"decision='plan' needs an env that draws hypotheses of its hidden state (the driving "
                             f"scenes); {self.task.env_id} has none: use decision='table'")
        return self.options.decision or ("plan" if can_plan else "table")

    @property
    def unwrapped(self) -> Any:
        return getattr(self.env, "unwrapped", self.env)

    def act(self, obs: Any, info: Mapping[str, Any] | None = None) -> tuple[Any, DecisionTrace | None]:
        if self.task is None:
            raise RuntimeError("call reset(env) before act()")
        if info is not None and any(k in info for k in PRIVILEGED_INFO_KEYS):
            raise ValueError("planners must not see privileged info; pass genex.envs.spec.public_info(info)")
        frame = image_of(obs)
        self.frames.append(frame)
        self.prompt = prompt_of(obs)
        t = self.step
        self.step += 1
        task = self.task
        if task.generic:
            return self._act_generic(frame, t)
        self._observe(info)
        if task.mode == "direct":
            if self.plans is not None and self.last_action is not None:  # bring the hypotheses to the present
                self.plans.advance(self.last_action)
            action, trace = self._decide(frame, t)
            self.last_action = int(action)
            return action, trace
        if task.mode == "choice":
            if self.current is not None:
                a = self.unwrapped.choice_action(self.current)
                if a is not None:
                    return a, None
                self._pending_memory = self.current  # the choice is done: the current screen shows its outcome
            elif t == 0 and task.initial_view_choice is not None:
                self._pending_memory = task.initial_view_choice
            else:
                self._pending_memory = None
        return self._decide(frame, t)

    def _observe(self, info: Mapping[str, Any] | None) -> None:
        """Hook: what a subclass keeps of each step's public ``info`` before deciding (nothing here)."""

    # ------------------------------------------------------------------ decisions
    def _decide(self, frame: np.ndarray, t: int) -> tuple[Any, DecisionTrace]:
        task = self.task
        t0 = time.perf_counter()
        self._timers = {"policy": 0.0, "world_model": 0.0}
        self._policy_images = 0
        self._plan_summary: dict[str, Any] = {}
        belief = Belief(task.questions, priors=task.priors or None)
        p_real = self._p_seen([frame], imagined=False)[0]  # {fact: p}
        self._p_now = p_real
        self.recent_p.append(p_real)
        p_kept = {f: max(p[f] for p in self.recent_p) for f in p_real}
        if task.mode == "choice" and self._pending_memory is not None:
            self.memory[self._pending_memory] = self._likelihoods(p_real, task.probes_for(self._pending_memory),
                                                                  conditional_only=True)
        real = self._likelihoods(p_kept, task.probes_for(None))
        for q in task.questions:
            lik = real.get(q.id)
            if lik is not None:
                belief.update_real(q.id, lik)
            for mem in self.memory.values():
                if q.id in mem:
                    belief.update_real(q.id, mem[q.id])
        belief_real = belief.as_dict()
        branches, frames = self._imagine(belief, frame, t)
        decision, costs = self._choose(belief, branches)
        action, decision = self._to_action(decision, costs)
        trace = DecisionTrace(
            step=t, decision=decision, decision_name=task.action_names[decision], action=to_jsonable(action),
            belief_real=belief_real, belief=belief.as_dict(), expected_costs=[float(c) for c in costs],
            real_p_seen={k: float(v) for k, v in p_real.items()},
            kept_p_seen={k: float(v) for k, v in p_kept.items()} if self.options.memory > 1 else {}, branches=branches,
            plan=self._plan_summary,
            imagined_frames=sum(int(b.get("frames", 0)) for b in branches), policy_images=self._policy_images,
            seconds={**{k: round(v, 5) for k, v in self._timers.items()}, "total": round(time.perf_counter() - t0, 5)},
            frames=({"real": frame.copy(), **frames} if self.save_frames else None),
        )
        return action, trace

    def _imagine(self, belief: Belief, frame: np.ndarray, t: int) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
        """Add imagined evidence to ``belief``; returns branch summaries and (optionally) frames."""
        return [], {}

    def _choose(self, belief: Belief, branches: list[dict[str, Any]]) -> tuple[int, np.ndarray]:
        return self._by_rule(belief)

    def _by_rule(self, belief: Belief) -> tuple[int, np.ndarray]:
        """The decision under ``belief`` by the rule in force (the plan rule's summary goes to the trace)."""
        if self.plans is None:
            costs = belief.expected_costs(self.task.action_costs)
            return int(np.argmin(costs)), costs
        probs = belief.probs(self.task.questions[0].id)
        choice = self.plans.choose(probs)
        return self._carry_out(choice, lambda: self.plans.hazard_now(probs))

    #: whether the planner reads road users in the real frames; one that does not (prior, amortized) plans without
    #: the guarded behaviour, whose score assumes a reaction to what steps into view that it could not make
    sees_road_users: bool = True

    #: facts whose sighting in the current real frame makes a guarded plan brake (road users that step out)
    hazard_facts: tuple[str, ...] = ("pedestrian", "ball", "oncoming_vehicle", "emergency_vehicle")

    def _hazard_seen(self) -> bool:
        """Whether the policy reads a road user that steps out (``hazard_facts``) in the current real frame."""
        return any(self._p_now.get(f, 0.0) > 0.5 for f in self.hazard_facts)

    def _carry_out(self, choice: Any, hazard_share: Any) -> tuple[int, np.ndarray]:
        """The env action for a plan choice: a guarded plan brakes where a hazard is seen in the current frame or
        sits in the path in most of the hypotheses (``hazard_share()``), and cruises otherwise."""
        self._plan_summary = dict(choice.summary)
        action = choice.action
        if choice.guarded:
            seen = self._hazard_seen()
            share = float(hazard_share())
            if seen or share >= 0.5:
                action = self.task.action_names.index("brake")
            self._plan_summary.update(guarded=True, hazard_seen=seen, hazard_share=round(share, 3))
        return action, choice.costs

    def _to_action(self, decision: int, costs: np.ndarray) -> tuple[Any, int]:
        """The env action for ``decision``; GUI choices with nothing left to do fall back to the next best."""
        if self.task.mode == "direct":
            return decision, decision
        order = [decision] + [int(i) for i in np.argsort(costs, kind="stable") if int(i) != decision]
        for choice in order:
            a = self.unwrapped.choice_action(choice)
            if a is not None:
                self.current = choice
                return a, choice
        self.current = None
        from genex.envs.gui.actions import wait

        return wait(mode=self.unwrapped.config.action_mode), decision

    # ------------------------------------------------------------------ perception
    def _questions(self) -> list[PolicyQuestion]:
        """The fact questions, and for every fact read as a comparison (``Task.readings``) the fact its number
        belongs to and one text question per candidate number (ids ``read:<fact>:<k>``)."""
        read = {f for r in self.task.readings for f in (r.fact_le, r.fact_gt)}
        qs = [PolicyQuestion(f, fact_question(f), YES_NO) for f in self.task.facts if f not in read]
        for r in self.task.readings:
            if r.given not in {q.id for q in qs}:
                qs.append(PolicyQuestion(r.given, fact_question(r.given), YES_NO))
            qs += [PolicyQuestion(f"read:{r.fact_le}:{k}", text_question(text), YES_NO)
                   for k, text in enumerate(r.texts(self.prompt))]
        return qs

    def _p_seen(self, frames: Sequence[np.ndarray], imagined: bool, step: int = 0) -> list[dict[str, float]]:
        """``P(fact visible)`` for each frame (one batched policy call)."""
        facts = self.task.facts
        if not facts or len(frames) == 0:
            return [{} for _ in frames]
        images = [TaggedImage(np.ascontiguousarray(f), step=step, imagined=imagined, sample=i if imagined else 0)
                  for i, f in enumerate(frames)]
        t0 = time.perf_counter()
        r = self.policy.answer(images, self.prompt, self._questions())
        self._timers["policy"] += time.perf_counter() - t0
        self._policy_images += len(images)
        out = []
        for i in range(len(images)):
            p = {f: float(r.per_image[f][i][0]) for f in facts if f in r.per_image}
            for rd in self.task.readings:  # a comparison of two numbers: the policy reads, the reading compares
                n = len(rd.candidates(self.prompt))
                texts = [float(r.per_image[f"read:{rd.fact_le}:{k}"][i][0]) for k in range(n)]
                p.update(rd.read(self.prompt, float(r.per_image[rd.given][i][0]), texts))
            out.append(p)
        return out

    def _likelihoods(self, p_seen: Mapping[str, float], probes: Sequence[Any],
                     conditional_only: bool = False) -> dict[str, np.ndarray]:
        """Naive-Bayes product of the probes' likelihoods, per question, normalised."""
        out: dict[str, np.ndarray] = {}
        answers = {q.id: tuple(q.answers) for q in self.task.questions}
        for pr in probes:
            if conditional_only and pr.after_choice is None:
                continue
            lik = pr.likelihood(p_seen[pr.fact], answers[pr.question])
            out[pr.question] = out.get(pr.question, 1.0) * lik
        return {q: v / v.sum() for q, v in out.items()}

    # ------------------------------------------------------------------ generic envs
    def _act_generic(self, frame: np.ndarray, t: int) -> tuple[Any, DecisionTrace]:
        """No questions declared: ask the policy for an action (uniformly random if it gives none)."""
        t0 = time.perf_counter()
        self._timers = {"policy": 0.0, "world_model": 0.0}
        names = list(self.task.action_names)
        r = self.policy.answer([TaggedImage(frame, step=t)], self.prompt,
                               [PolicyQuestion("progress", "Is the goal visible?", YES_NO)], actions=names)
        self._timers["policy"] += time.perf_counter() - t0
        a = int(r.action) if r.action is not None else int(self.rng.integers(len(names)))
        return a, DecisionTrace(step=t, decision=a, decision_name=names[a], action=a, policy_images=1,
                                rationale=r.rationale or "", seconds={**self._timers,
                                                                      "total": round(time.perf_counter() - t0, 5)})
