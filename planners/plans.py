"""Decisions that commit: expected return of short action sequences under the belief.

The one-step rule (``decision="table"``) picks the action of least expected
cost in the env's cost table. The table cannot say that a hazard has passed
(the van ahead has driven off, the oncoming car is gone), so a planner that is
unsure, or sure of the wrong thing, waits for ever or creeps into a pedestrian
it has already seen. ``decision="plan"`` (the default wherever the env can draw
hypotheses) plans instead:

1. at reset the env draws *hypotheses* of its hidden agents
   (``env.unwrapped.hypotheses(n, seed)``): ``n`` per answer of the first
   question, each the episode's start with the hidden agents redrawn from the
   documented prior given that answer, never the true ones (what the ego can
   see or knows, its own start, the occluders, the road, is kept);
2. after every real step they are advanced with the action actually taken;
3. each decision, ``candidate_plans`` ("action a for k steps, then b", about
   300 of 24 steps) are rolled out from every hypothesis in one ``vmap``ped JAX
   call (each followed by 8 steps of braking, so that a plan ending the horizon
   fast towards a hazard not yet in view pays for it), and each plan's return
   is averaged over the hypotheses with weights
   ``P(answer) / n`` from the planner's belief (real and imagined evidence);
   hypotheses in which the ego has already collided contradict what happened
   and get weight 0;
4. the first action of the best plan is taken (receding horizon).

The belief is what each planner contributes: ``react`` reads the current real
frame, ``imagine`` adds imagined frames read by the policy. The ``particle``
planner is this rule on ``react``'s belief.

The oracle world model's imagined future *is* the live simulator state, so
``oracle-imagine`` scores the plans in it instead
(:meth:`HypothesisPlans.choose_in`, the expected return of each plan under the
imagined outcome): the privileged bound, the expert's MPC. ``posterior-imagine``
hands the plan rule the belief its futures imply, read perfectly (the share of
its weighted hypotheses that hold each answer), so react, imagine and the fair
bound differ only in the belief the same plans are weighed by.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DECISION_RULES", "HypothesisPlans", "PlanChoice", "plans_available"]

#: ``plan``: expected return of candidate plans over belief-weighted hypotheses; ``table``: one-step cost table
DECISION_RULES = ("plan", "table")


def plans_available(env: Any) -> bool:
    """Whether ``env`` can draw hypotheses of its hidden state with batched dynamics (the driving scenes)."""
    return hasattr(getattr(env, "unwrapped", env), "hypotheses")


@dataclass(frozen=True)
class PlanChoice:
    """One plan decision: ``action`` (first action of the best plan), per-first-action ``costs`` (minus the best
    expected return of a plan starting with it; lower is better), and the summary kept in the trace.
    ``guarded``: the best plan starts with the guarded behaviour, carried out as ``action`` (cruise) unless the
    planner sees a hazard in the path now (then brake: :meth:`HypothesisPlans.hazard_now`)."""

    action: int
    costs: np.ndarray
    summary: dict[str, Any]
    guarded: bool = False


class HypothesisPlans:
    """Candidate plans rolled out over an env's hypotheses; see the module docstring.

    Args:
        env: a genex env with ``hypotheses(n_per_answer, seed)`` (the driving scenes).
        n_actions: the env's number of discrete actions.
        particles: hypotheses per answer of the first question.
        horizon: steps per candidate plan.
        seed: seed of the hypothesis draw (the episode's seed: the same hypotheses for every planner).
        tail: steps of braking appended to every plan when it is scored (its rewards and collisions count).
        guarded: let plans use the "guarded" behaviour (``dynamics.GUARDED``; carried out as ``cruise``).
    """

    def __init__(self, env: Any, n_actions: int, *, particles: int = 8, horizon: int = 24, seed: int = 0,
                 tail: int = 8, guarded: bool = True) -> None:
        import jax

        from genex.envs.driving import dynamics as dyn
        from genex.envs.driving.drivers import candidate_plans

        if particles < 1 or horizon < 1:
            raise ValueError(f"particles and plan horizon must be >= 1, got {particles}, {horizon}")
        u = getattr(env, "unwrapped", env)
        if not plans_available(u):
            raise ValueError(f"plan decisions need an env that draws hypotheses of its hidden state (the driving "
                             f"scenes); {type(u).__name__} has none: use decision='table'")
        self._dyn = dyn
        try:
            params, states, answers = u.hypotheses(particles, seed=seed)
        except RuntimeError as e:
            raise RuntimeError(f"{e}: call env.reset(...) before planner.reset(env)") from e
        self.n_actions = n_actions
        names = tuple(getattr(u, "action_names", ()))
        # plans may also use "guarded" (index n_actions): hold the speed, brake for a road user stepping into the
        # path. It stands for the driver's feedback, which an open-loop plan lacks: without it, a planner that is
        # honestly unsure whether a pedestrian waits behind the truck finds every plan that moves on too risky and
        # stops for ever. It is carried out as "cruise" (the next decision brakes if one does step out).
        self.guarded = guarded and "cruise" in names
        self.cruise = names.index("cruise") if self.guarded else None
        self.params, self.states = dyn.to_jax(self._with_guarded(params)), dyn.to_jax(states)
        self.answers = np.asarray(answers)
        self.plans = candidate_plans(n_actions + int(self.guarded), horizon)
        # every plan is scored with a braking tail: a plan that ends the horizon fast, towards a hazard that has not
        # shown yet, pays for the collision it could no longer avoid (without the tail, "wait, then accelerate
        # at the end of the horizon" always looks safe, and a replanning car waits for ever)
        brake = [a for a, name in enumerate(getattr(u, "action_names", ())) if name == "brake"] if tail else []
        if tail and not brake:
            raise ValueError(f"{type(u).__name__} has no brake action for the plans' braking tail; use tail=0")
        self.tail = tail
        self._scored = np.concatenate([self.plans, np.full((len(self.plans), tail), brake[0] if brake else 0,
                                                           np.int32)], axis=1) if tail else self.plans
        self._step = _jitted(jax, dyn)[0]
        self._returns = _jitted(jax, dyn)[1]

    def _with_guarded(self, params: Any) -> Any:
        """``params`` (NumPy, leading hypothesis axis) whose action table also maps index ``n_actions`` to GUARDED."""
        if not self.guarded:
            return params
        codes = np.asarray(params.action_codes)
        extra = np.full(codes.shape[:-1] + (1,), self._dyn.GUARDED, codes.dtype)
        return params._replace(action_codes=np.concatenate([codes, extra], axis=-1))

    def advance(self, action: int) -> None:
        """Bring the hypotheses to the present with the action really taken."""
        self.states, _ = self._step(self.params, self.states, np.int32(action))

    def weights(self, answer_probs: np.ndarray) -> np.ndarray:
        """``float64[N]``: ``P(answer) / n`` per hypothesis, 0 where its ego has collided; sums to 1."""
        probs = np.asarray(answer_probs, np.float64)
        counts = np.bincount(self.answers, minlength=len(probs)).astype(np.float64)
        w = probs[self.answers] / counts[self.answers]
        w = w * ~np.asarray(self.states.collided)
        if w.sum() <= 0:  # every hypothesis contradicts what happened: fall back to all of them
            w = np.ones_like(w)
        return w / w.sum()

    def returns(self) -> np.ndarray:
        """``float64[P, N]``: each plan's summed reward from each hypothesis's present state."""
        return np.asarray(self._returns(self.params, self.states, self._scored), np.float64)

    def choose(self, answer_probs: np.ndarray, returns: np.ndarray | None = None,
               first_actions: np.ndarray | None = None) -> PlanChoice:
        """The best plan under ``answer_probs``; ``first_actions`` restricts the plans to those starting there."""
        w = self.weights(answer_probs)
        r = self.returns() if returns is None else returns
        summary = {"particles": int(len(w)), "answer_weights": np.round(np.bincount(
            self.answers, weights=w, minlength=len(answer_probs)), 4).tolist()}
        return self._pick(r @ w, w, first_actions, summary)

    def choose_in(self, worlds: tuple[Any, Any, np.ndarray], first_actions: np.ndarray | None = None) -> PlanChoice:
        """The best plan over imagined *worlds* ``(params, states, weights)`` (NumPy pytrees with a leading axis
        ``[M]``, ``float[M]`` weights) instead of the belief-weighted hypotheses: for world models whose futures
        are simulator states (the oracle's true one, the posterior's filtered hypotheses)."""
        params, states, w = worlds
        w = np.asarray(w, np.float64)
        w = w / w.sum()
        params = self._dyn.to_jax(self._with_guarded(self._dyn.to_numpy(params)))
        r = np.asarray(self._returns(params, self._dyn.to_jax(states), self._scored), np.float64)
        return self._pick(r @ w, w, first_actions, {"particles": int(len(w)), "imagined_worlds": True})

    def _pick(self, expected: np.ndarray, w: np.ndarray, first_actions: np.ndarray | None,
              summary: dict[str, Any]) -> PlanChoice:
        first = self.plans[:, 0]
        if self.guarded:  # guarded is carried out as cruise: one option for the env
            first = np.where(first == self.n_actions, self.cruise, first)
        costs = np.full(self.n_actions, np.inf)
        for a in range(self.n_actions):
            m = first == a
            if m.any():
                costs[a] = -float(expected[m].max())
        allowed = np.arange(self.n_actions) if first_actions is None else np.asarray(first_actions)
        masked = np.where(np.isin(first, allowed), expected, -np.inf)
        best = int(np.argmax(masked))
        summary = {**summary, "effective_particles": round(float(1.0 / (w ** 2).sum()), 3),
                   "plans": int(len(self.plans)), "best_plan": [int(a) for a in self.plans[best][:8]],
                   "expected_return": round(float(expected[best]), 4)}
        return PlanChoice(int(first[best]), costs, summary,
                          guarded=bool(self.guarded and self.plans[best, 0] == self.n_actions))

    def hazard_now(self, answer_probs: np.ndarray | None = None, worlds: tuple[Any, Any, np.ndarray] | None = None
                   ) -> float:
        """The weighted share of the hypotheses (or of ``worlds``) in which a road user is in the ego's path now
        (``dynamics.hazard_ahead``): what the guarded behaviour brakes for."""
        if worlds is not None:
            params, states, w = worlds
            params, states = self._dyn.to_jax(params), self._dyn.to_jax(states)
        else:
            params, states, w = self.params, self.states, self.weights(answer_probs)
        hit = np.asarray(_jitted_hazard(self._dyn)(params, states), np.float64)
        w = np.asarray(w, np.float64)
        return float(hit @ (w / w.sum()))


_JITTED: dict[str, Any] = {}


def _jitted_hazard(dyn: Any) -> Any:
    if "hazard" not in _JITTED:
        import jax

        _JITTED["hazard"] = jax.jit(jax.vmap(dyn.hazard_ahead))
    return _JITTED["hazard"]


def _jitted(jax: Any, dyn: Any) -> tuple[Any, Any]:
    """The vmapped step and plan-return functions, compiled once per process."""
    if not _JITTED:
        _JITTED["step"] = jax.jit(jax.vmap(dyn.step, in_axes=(0, 0, None)))
        #: float[P, N]: plans x hypotheses, summed reward
        _JITTED["returns"] = jax.jit(jax.vmap(
            lambda params, states, plan: jax.vmap(dyn.rollout, in_axes=(0, 0, None))(params, states, plan)[1]
            .reward.sum(-1), in_axes=(None, None, 0)))
    return _JITTED["step"], _JITTED["returns"]
