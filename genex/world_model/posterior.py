"""The fair upper bound of learned imagination: the simulator, with the hidden agents drawn from the posterior.

``OracleWorldModel`` restores the live simulator, so it imagines the *true*
hidden agents: no model conditioned on frames could show a pedestrian that
no frame has hinted at. :class:`PosteriorWorldModel` answers the fair
question instead: what would a perfect world model show that was trained on
video and knows nothing privileged?

* At reset it asks the env for hypotheses of the episode
  (``env.unwrapped.hypothesis_snapshots(n, seed)``): the start with the hidden
  agents redrawn from the documented prior given each answer, ``n`` per answer,
  weighted by the prior. Nothing of the true hidden agents is kept.
* After every real step it plays each hypothesis forward with the action really
  taken, renders it, and weighs it by how well what its camera would see agrees
  with what the real frame showed: per labelled fact, a factor ``1 - mismatch``
  where the hypothesis's visibility label equals the real frame's and
  ``mismatch`` where it does not (a hypothesis whose ego collided where the real
  one did not gets weight 0). What the real frame showed is read by the
  planner's own policy (``P(visible)`` per fact, the same perception as
  ``react``'s), or, for ``posterior-imagine-labels``, by the env's visibility
  labels (public information computed from the real frame: a perfect
  detector); never ``info["hidden"]``.
* ``imagine`` draws ``S`` hypotheses by weight (the posterior given the real
  frames so far) and renders each one's future under the actions with the real
  renderer.

So where the real frames carry no cue, the imagined futures show the hidden
agent at the rate the prior gives; where a cue was seen (a ball rolled out,
hazard lights), at the rate such a cue implies. ``posterior-imagine`` reads
them perfectly: its belief is :meth:`answer_posterior`, the share of the weighted
hypotheses that hold each answer (all of them, not just ``S`` draws).

The model drives a private copy of the env (``env``); it never touches the
live one. The planner passes what each real frame showed to :meth:`observe`
after each step.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["PosteriorWorldModel"]

#: log-weight below the best at which a hypothesis is dropped (e^-30: it can no longer matter to S draws)
PRUNE = 30.0


class PosteriorWorldModel:
    """See the module docstring.

    Args:
        env: a private env of the same scenario and configuration as the live one (a genex driving env).
        hypotheses_per_answer: hypotheses drawn per answer of the first question at reset.
        mismatch: probability that a perfect detector's reading of a fact disagrees with a hypothesis that is
            right (per fact and frame): the likelihood's floor, so that a hypothesis off by a step in timing
            is down-weighted, not discarded.
    """

    context_is_state = True  # imagines from its own state (the filtered hypotheses), not the live snapshot
    tracks_observations = True  # the planner calls reset(live_env, seed) and observe(action, visible) each step
    deterministic = False

    def __init__(self, env: Any, hypotheses_per_answer: int = 16, mismatch: float = 0.05) -> None:
        base = getattr(env, "unwrapped", env)
        if not all(hasattr(base, m) for m in ("hypothesis_snapshots", "snapshot", "restore")):
            raise TypeError(f"{type(base).__name__} cannot draw hypotheses of its hidden state "
                            "(hypothesis_snapshots()); the posterior world model needs a genex driving env")
        if hypotheses_per_answer < 1:
            raise ValueError(f"hypotheses_per_answer must be >= 1, got {hypotheses_per_answer}")
        if not 0.0 < mismatch < 0.5:
            raise ValueError(f"mismatch must be in (0, 0.5), got {mismatch}")
        self.env = base
        self.hypotheses_per_answer = hypotheses_per_answer
        self.mismatch = mismatch
        self.snapshots: list[Any] = []
        self.answers = np.zeros(0, np.int64)
        self.log_weights = np.zeros(0)
        self.done = np.zeros(0, bool)
        self.last_draw = np.zeros(0, np.int64)  # hypothesis indices of the last imagine call's samples

    # ------------------------------------------------------------------ filtering
    def reset(self, live_env: Any, seed: int) -> None:
        """Draw the hypotheses of the live env's new episode (call after ``live_env.reset``)."""
        live = getattr(live_env, "unwrapped", live_env)
        if not hasattr(live, "hypothesis_snapshots"):
            raise TypeError(f"{type(live).__name__} cannot draw hypotheses of its hidden state")
        self.snapshots, answers = live.hypothesis_snapshots(self.hypotheses_per_answer, seed=seed)
        self.answers = np.asarray(answers)
        prior = np.asarray(next(iter(live.priors.values())), np.float64)
        counts = np.bincount(self.answers, minlength=len(prior))
        self.log_weights = np.log(prior[self.answers] / counts[self.answers])
        self.done = np.zeros(len(self.snapshots), bool)
        self._first = True

    def observe(self, action: Any, visible: Mapping[str, bool | float] | None) -> None:
        """Weigh the hypotheses by the real frame that followed ``action`` (``None``: the episode's first frame).

        ``visible``: what the real frame shows, per fact: the env's visibility labels (``info["visible"]``,
        public: a perfect detector), or a reader's ``P(visible)`` in [0, 1] (the policy's reading, as
        ``posterior-imagine`` passes it). A probability ``p`` weighs a hypothesis that shows the fact by
        ``p (1 - mismatch) + (1 - p) mismatch`` and one that does not by the complement; 0/1 and booleans give
        the labels' factors exactly.
        """
        if not self.snapshots:
            raise RuntimeError("call reset(live_env, seed) before observe()")
        if not visible:
            raise ValueError("the posterior world model needs the real frames' visibility labels (info['visible']); "
                             "make the env with visibility_labels=True")
        if action is None and not self._first:
            raise ValueError("observe(None, ...) is for the first frame of an episode only; pass the action taken")
        self._first = False
        log_keep, log_miss = np.log1p(-self.mismatch), np.log(self.mismatch)
        # the same for every hypothesis: which facts are read with certainty (labels, or P = 0/1), and for the
        # others the log-likelihood of a hypothesis that shows the fact and of one that does not
        hard = {f: v for f, v in visible.items() if float(v) in (0.0, 1.0)}
        soft_logs = {}
        for f, v in visible.items():
            if f not in hard:
                shown = float(v) * (1.0 - self.mismatch) + (1.0 - float(v)) * self.mismatch
                soft_logs[f] = (np.log(shown), np.log(1.0 - shown))
        if np.isfinite(self.log_weights).any():  # below e^-30 of the best a hypothesis never comes back: drop it
            self.log_weights[self.log_weights < self.log_weights.max() - PRUNE] = -np.inf
        alive = self.log_weights > -np.inf
        for i in np.flatnonzero(alive):
            if action is None:
                seen, info, ended = self._look(self.snapshots[i])
            else:
                seen, info, ended = self._advance(i, action)
            if info.get("collision") or info.get("collisions", 0) > 0:
                self.log_weights[i] = -np.inf  # its ego collided; the real one is still driving
                continue
            agree = sum(bool(seen.get(f, False)) == bool(v) for f, v in hard.items())
            soft = 0.0
            for f, (log_shows, log_hides) in soft_logs.items():
                soft += log_shows if seen.get(f, False) else log_hides
            self.log_weights[i] += agree * log_keep + (len(hard) - agree) * log_miss + soft
            self.done[i] = ended

    def _look(self, snapshot: Any) -> tuple[dict[str, bool], dict[str, Any], bool]:
        _, info = self.env.restore(snapshot)
        return dict(info.get("visible", {})), info, False

    def _advance(self, i: int, action: Any) -> tuple[dict[str, bool], dict[str, Any], bool]:
        """Play hypothesis ``i`` one step forward; keeps its new snapshot."""
        if self.done[i]:  # its episode ended inside the hypothesis (e.g. reached the goal): it stays there
            return self._look(self.snapshots[i])
        self._restore_quietly(self.snapshots[i])
        _, _, terminated, truncated, info = self.env.step(action)
        self.snapshots[i] = self.env.snapshot()
        return dict(info.get("visible", {})), info, bool(terminated or truncated)

    def posterior(self) -> np.ndarray:
        """``float64[N]``: the hypotheses' normalised weights."""
        lw = self.log_weights
        if not np.isfinite(lw).any():  # nothing agrees with what happened: fall back to the hypotheses alive
            return np.full(len(lw), 1.0 / max(1, len(lw)))
        w = np.exp(lw - lw[np.isfinite(lw)].max())
        return w / w.sum()

    def answer_posterior(self) -> np.ndarray:
        """``float64[A]``: the posterior over the first question's answers (the weights summed per answer)."""
        return np.bincount(self.answers, weights=self.posterior(), minlength=int(self.answers.max()) + 1)

    def effective_size(self) -> float:
        w = self.posterior()
        return float(1.0 / (w ** 2).sum())

    # ------------------------------------------------------------------ imagination
    def draw(self, num_samples: int, seed: int | None) -> np.ndarray:
        """``int[S]``: hypotheses drawn by posterior weight (systematic resampling, reproducible with ``seed``)."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if not self.snapshots:
            raise RuntimeError("call reset(live_env, seed) before imagining")
        w = self.posterior()
        u = (np.random.default_rng(seed).random() + np.arange(num_samples)) / num_samples
        return np.minimum(np.searchsorted(np.cumsum(w), u, side="right"), len(w) - 1)

    def imagine(self, context_frames: Any, actions: Sequence[Any], num_samples: int = 1,
                seed: int | None = None) -> np.ndarray:
        """``uint8[S, T, H, W, 3]``: the futures of ``S`` posterior draws under ``actions`` (context ignored:
        the hypotheses carry the state). The same ``seed`` draws the same hypotheses."""
        idx = self.draw(num_samples, seed)
        self.last_draw = idx
        return np.stack([self._rollout(self.snapshots[i], list(actions)) for i in idx])

    def imagine_batch(self, contexts: Any, actions: Sequence[Sequence[Any]], seed: int | None = None) -> np.ndarray:
        """One posterior draw per action sequence (independent draws)."""
        idx = self.draw(len(actions), seed)
        self.last_draw = idx
        return np.stack([self._rollout(self.snapshots[i], list(a)) for i, a in zip(idx, actions)])

    def _restore_quietly(self, snapshot: Any) -> None:
        """Restore without drawing the frame where the env allows it (the next step draws anyway)."""
        try:
            self.env.restore(snapshot, render=False)
        except TypeError:  # an env whose restore always renders
            self.env.restore(snapshot)

    def _rollout(self, snapshot: Any, actions: list[Any]) -> np.ndarray:
        if not actions:
            obs, _ = self.env.restore(snapshot)
            return np.zeros((0,) + np.asarray(obs["image"]).shape, np.uint8)
        self._restore_quietly(snapshot)
        last, frames, done = None, [], False
        for a in actions:
            if not done:
                obs, _, terminated, truncated, _ = self.env.step(a)
                last = np.asarray(obs["image"])
                done = bool(terminated or truncated)
            frames.append(last)
        return np.stack(frames).astype(np.uint8)
