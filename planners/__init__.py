"""Planners (installed as ``genex.planners``): decide from real and imagined frames through a belief.

=================  ==========================================================================
``react``          prior + the policy on the current real frame only
``imagine``        GenEx: imagine the env's exploration branches with the world model first
``imagine-voi``    ``imagine`` gated by the value of information: imagine a sample only where an outcome it could
                   show would change the decision by more than its frames cost (``planners.voi``)
``lookahead``      WebDreamer/MPC: imagine each candidate decision, score its outcome (``voi=True``: gated as
                   ``imagine-voi``)
``oracle-imagine`` ``imagine`` with the simulator as world model: the privileged upper bound (it restores the
                   live state, so it imagines the *true* hidden agents)
``posterior-imagine`` ``imagine`` with the simulator whose hidden agents are drawn from the posterior given the
                   real frames so far (as the policy reads them): the fair upper bound (driving only)
``posterior-imagine-labels`` the same with a perfect detector on the real frames (their visibility labels)
``explore``        take the exploration actions for real while uncertain
``particle``       belief-space MPC over simulator hypotheses with the JAX dynamics (driving only)
``prior``          the documented prior alone (never looks): what looking buys
``amortized``      a policy trained on hidden-state labels, asked the declared questions
=================  ==========================================================================

``make_planner(name, env, ...)`` builds one with the shipped checkpoints (or
the policy / world model you pass) and its options (:class:`PlannerOptions`: ``options=``, or the option
keywords, e.g. ``samples=2``). Every planner follows :class:`Planner`::

    planner.reset(env, seed)
    action, trace = planner.act(obs, public_info(info))   # trace: a DecisionTrace, or None mid-macro

Any Gymnasium env with ``uint8[H, W, 3]`` image observations (or a dict with
``"image"``) and a ``Discrete`` action space works: without declared questions
the policy picks the action (see :func:`~genex.planners.task.task_from_env`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .base import BeliefPlanner, DecisionTrace, Planner
from .imagining import ExplorePlanner, ImaginePlanner, LabelledPosteriorPlanner, LookaheadPlanner, VOIImaginePlanner
from .options import PlannerOptions, as_options, unknown_option_error
from .particle import ParticlePlanner
from .reference import AmortizedPlanner, PriorPlanner
from .task import Branch, Task, task_from_env

__all__ = [
    "PLANNERS", "Planner", "DecisionTrace", "BeliefPlanner", "ImaginePlanner", "VOIImaginePlanner", "LabelledPosteriorPlanner",
    "LookaheadPlanner", "ExplorePlanner",
    "PriorPlanner", "AmortizedPlanner", "ParticlePlanner", "Task", "Branch", "task_from_env", "make_planner", "default_checkpoint",
    "env_family", "posterior_env_ids", "check_posterior_env", "PlannerOptions",
]

#: name -> (class, which world model: None | "learned" | "oracle" | "posterior", which policy: "tiny" | "reference")
PLANNERS: dict[str, tuple[type, str | None, str]] = {
    "react": (BeliefPlanner, None, "tiny"),
    "imagine": (ImaginePlanner, "learned", "tiny"),
    "imagine-voi": (VOIImaginePlanner, "learned", "tiny"),
    "lookahead": (LookaheadPlanner, "learned", "tiny"),
    "oracle-imagine": (ImaginePlanner, "oracle", "tiny"),
    "oracle-lookahead": (LookaheadPlanner, "oracle", "tiny"),
    "posterior-imagine": (ImaginePlanner, "posterior", "tiny"),
    "posterior-imagine-labels": (LabelledPosteriorPlanner, "posterior", "tiny"),
    "explore": (ExplorePlanner, None, "tiny"),
    "particle": (ParticlePlanner, None, "tiny"),
    "prior": (PriorPlanner, None, "tiny"),
    "amortized": (AmortizedPlanner, None, "reference"),
}

#: the keywords of ``make_planner`` (and the planner constructors) that are not options: per episode, or objects
PLANNER_ARGUMENTS = ("fidelity", "save_frames", "seed")

_CHECKPOINTS = {
    ("policy", "driving"): "checkpoints/policy/tiny-driving",
    ("policy", "gui"): "checkpoints/policy/tiny-gui",
    ("reference", "driving"): "checkpoints/policy/reference-hidden-driving",
    ("reference", "gui"): "checkpoints/policy/reference-hidden-gui",
    ("world_model", "driving"): "checkpoints/world_model/driving",
    ("world_model", "gui"): "checkpoints/world_model/gui",
}


def env_family(env: Any) -> str:
    """``"gui"`` for the mock apps (action choices are macros), ``"driving"`` otherwise."""
    return "gui" if hasattr(getattr(env, "unwrapped", env), "choice_action") else "driving"


def default_checkpoint(kind: str, family: str) -> Path:
    """The shipped checkpoint folder for ``kind`` (policy | reference | world_model) and ``family``.

    Looked up relative to the working directory, then to the source checkout.
    """
    rel = _CHECKPOINTS[(kind, family)]
    for root in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (root / rel).is_dir():
            return root / rel
    raise FileNotFoundError(f"no shipped {kind} checkpoint for {family} envs ({rel} does not exist); "
                            f"train one (see README) and pass its path")


def posterior_env_ids() -> tuple[str, ...]:
    """The registered genex envs that can draw hypotheses of their hidden state (``posterior-imagine``)."""
    import gymnasium as gym

    import genex.envs

    out = []
    for env_id in genex.envs.ENV_IDS:
        entry = gym.spec(env_id).entry_point
        if isinstance(entry, str):
            module, cls = entry.split(":")
            import importlib

            entry = getattr(importlib.import_module(module), cls)
        if hasattr(entry, "hypothesis_snapshots"):
            out.append(env_id)
    return tuple(out)


def check_posterior_env(env: Any, planner: str = "posterior-imagine") -> None:
    """Raise ``ValueError`` naming the envs that can when ``env`` cannot draw hypotheses of its hidden state."""
    if not hasattr(getattr(env, "unwrapped", env), "hypothesis_snapshots"):
        env_id = getattr(getattr(env, "spec", None), "id", None) or type(getattr(env, "unwrapped", env)).__name__
        raise ValueError(f"{planner} needs an env that draws hypotheses of its hidden state (hypothesis_snapshots()); "
                         f"{env_id} has none. Envs that have them: {', '.join(posterior_env_ids())}")


def make_planner(name: str, env: Any, *, policy: Any = None, world_model: Any = None, oracle_env: Any = None,
                 options: PlannerOptions | Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
    """Build planner ``name`` for ``env``; loads the shipped policy / world model unless given.

    ``options``: the planner options (:class:`PlannerOptions` or a mapping of them); option keywords
    (``samples=2``, ``trust=0.9``, ...) are folded into them (a keyword wins over the same key in ``options``)
    and the whole is validated once. The other keywords are the planner's own arguments: ``seed``,
    ``save_frames`` and, for the imagining planners, ``fidelity``; any other keyword is refused, naming the
    valid ones.

    A defaulted learned world model comes with its ``fidelity.json`` (as in ``genex compare``)
    unless ``fidelity`` is passed (``fidelity=None``: take imagination at face value); it must have been
    measured through the defaulted policy (a policy you pass is not checked: pass its ``fidelity`` too).

    ``oracle_env``: a private copy of the env for the simulator world models. The oracle defaults to the
    live env (whose state it saves and restores around every rollout); the posterior model to a new env made
    from the live env's spec.
    """
    folded = {k: kwargs.pop(k) for k in list(kwargs) if k in PlannerOptions.names()}
    unknown = [k for k in kwargs if k not in PLANNER_ARGUMENTS]
    if unknown:
        raise unknown_option_error(unknown, others=PLANNER_ARGUMENTS)
    options = as_options(options).updated(folded) if folded else as_options(options)
    if name not in PLANNERS:
        raise ValueError(f"unknown planner {name!r}; choose from {sorted(PLANNERS)}")
    cls, wm_kind, policy_kind = PLANNERS[name]
    family = env_family(env)
    policy_dir = None  # known only for a defaulted policy: the fidelity check needs its folder
    if policy is None:
        from genex.policy import make_policy

        policy_dir = default_checkpoint("policy" if policy_kind == "tiny" else "reference", family)
        policy = make_policy("tiny", checkpoint=policy_dir)
    if world_model is None and wm_kind == "learned":
        from genex.world_model import load_world_model

        wm_dir = default_checkpoint("world_model", family)
        world_model = load_world_model(wm_dir, env=env, device="cpu")
        if "fidelity" not in kwargs:  # read the shipped model through its measured fidelity, as `genex compare` does
            from genex.evaluation.fidelity import load_fidelity

            spec = getattr(env, "spec", None)
            kwargs["fidelity"] = load_fidelity(wm_dir, env_id=getattr(spec, "id", None),
                                               env_kwargs=getattr(spec, "kwargs", None) or None, policy_dir=policy_dir)
    elif wm_kind == "oracle":
        from genex.world_model import OracleWorldModel

        world_model = OracleWorldModel(oracle_env if oracle_env is not None else env)
    elif wm_kind == "posterior" and world_model is None:
        from genex.world_model import PosteriorWorldModel

        check_posterior_env(env, name)
        if oracle_env is None:
            import gymnasium as gym

            spec = env.spec
            oracle_env = gym.make(spec.id, **(spec.kwargs or {}))
        world_model = PosteriorWorldModel(oracle_env)
    planner = cls(policy, world_model, options, **kwargs)
    planner.name = name
    return planner
