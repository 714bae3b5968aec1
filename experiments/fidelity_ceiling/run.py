"""Experiment: what recall and false alarm could a *perfect* world model reach on fidelity.json's windows?

Question: issue 28 asks the driving world model for pedestrian recall >= 0.6 with false alarms <= 0.10
    (``genex measure-fidelity``: over held-out windows where the pedestrian is not in view in the last context
    frame, the share of imagined futures showing it where it really comes within 8 steps, and where it does not).
    A model that knows nothing privileged can only draw the pedestrian as often as the frames so far make it
    likely. How high is that for the fair upper bound, the simulator with the hidden agents drawn from the
    posterior given the real frames (``genex.world_model.PosteriorWorldModel``, what ``posterior-imagine``
    imagines), read by a perfect detector (the env's visibility labels)?
Status: measured 2026-12-08 on 2 shared CPU cores; docs/world_model.md ("The fidelity target against its ceiling").
Result: 150 held-out episodes (158 windows where the pedestrian comes, 601 of the 2,404 where it does not;
    8 hypotheses per answer): the calibrated posterior recalls 0.33 at false alarm 0.06, read perfectly; drawing
    the pedestrian in every sample where the posterior share is >= 0.28 (uncalibrated) would give 0.63 at 0.10.
    Read by ``tiny-driving`` (``--policy``): 0.68 / 0.25, the policy's own false alarms over 8 frames. So the
    issue's target (>= 0.6 with <= 0.10, read by the shipped policy) cannot be met through that policy, nor read
    perfectly by a calibrated model. (A first run drew the hypotheses at the episode's own seed, which
    reproduces the true pedestrian as the first crossing hypothesis: 0.37; fixed to seed + 7919 as the planner.)
Command:
    MUJOCO_GL=egl python experiments/fidelity_ceiling/run.py --data runs/layout_probe2/data/heldout \\
        --max-episodes 150 --policy checkpoints/policy/tiny-driving --out runs/fidelity_ceiling

Each recorded held-out episode is replayed in a live env (its seed, its recorded actions; the replay's labels are
checked against the recording's). A posterior world model (``--hypotheses`` per answer, drawn from the documented
prior at the episode's seed, as the planners draw them) is weighed by every real frame's visibility labels. At
each of fidelity.json's windows (context 4, stride 2, horizon 8) it plays *every* live hypothesis forward under the
recorded actions and takes the posterior-weighted share whose camera shows the pedestrian within the horizon: the
expected share of S posterior samples that would show it, read perfectly. Its mean over the windows where the
pedestrian comes is the ceiling's recall; over those where it stays out of view (every ``--negative-every``-th of
them, for time), the false alarm.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

import genex.envs  # noqa: F401  (registers the envs)
from genex.evaluation.fidelity import SEEN_P
from genex.evaluation.windows import label_window
from genex.io import atomic_write_bytes
from genex.policy import make_policy
from genex.policy.data import fact_question
from genex.policy.protocol import PolicyQuestion, TaggedImage
from genex.recording import iter_episodes, read_manifest
from genex.world_model.posterior import PosteriorWorldModel

FACT = "pedestrian"
#: ``posterior-imagine`` resets its world model with ``episode_seed + 7919`` (planners/imagining.py)
HYPOTHESIS_SEED_OFFSET = 7919


def _mean(x: list[float]) -> float | None:
    return float(np.mean(x)) if x else None


def _best_recall(comes: list[float], stays: list[float], max_fa: float) -> dict | None:
    """The threshold ``tau`` on the posterior share (draw the pedestrian in every sample above it, never below)
    with the highest recall whose false alarm is at most ``max_fa``: ``{"tau", "recall", "false_alarm"}``."""
    if not comes or not stays:
        return None
    c, s = np.asarray(comes), np.asarray(stays)
    best = None
    for tau in np.unique(np.concatenate([c, s])):
        recall, fa = float((c >= tau).mean()), float((s >= tau).mean())
        if fa <= max_fa and (best is None or recall > best["recall"]):
            best = {"tau": float(tau), "recall": recall, "false_alarm": fa}
    return best


def future_of(model: PosteriorWorldModel, i: int, actions: list[int], fact: str) -> tuple[bool, np.ndarray]:
    """Hypothesis ``i``'s future under ``actions`` (from its present): whether its camera shows ``fact`` at any
    step, and its frames ``uint8[T, H, W, 3]`` (the last repeated after its episode ends)."""
    env = model.env.unwrapped
    env.restore(model.snapshots[i], render=False)
    shown, frames, done = False, [], False
    for a in actions:
        if not done:
            obs, _, terminated, truncated, info = model.env.step(a)
            shown = shown or bool(info["visible"].get(fact, False))
            done = bool(terminated or truncated)
        frames.append(np.asarray(obs["image"]))
    return shown, np.stack(frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="runs/layout_probe2/data/heldout", help="held-out crosswalk recording folder")
    ap.add_argument("--max-episodes", type=int, default=150)
    ap.add_argument("--hypotheses", type=int, default=8, help="hypotheses per answer of the hidden question")
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--context", type=int, default=4)
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--negative-every", type=int, default=4,
                    help="score every n-th window where the pedestrian stays out of view (they are ~20x as many)")
    ap.add_argument("--policy", default=None,
                    help="also read each hypothesis's future frames with this tiny policy (P(visible) > 0.5 in any "
                         "frame, fidelity.json's event): the fair reference for fidelity.json read by that policy")
    ap.add_argument("--out", default="runs/fidelity_ceiling")
    args = ap.parse_args()
    m = read_manifest(args.data)
    probe_env = gym.make(m.env_id, **m.env_kwargs)
    prompt = str(getattr(probe_env.unwrapped, "instruction", ""))  # as measure_fidelity asks
    probe_env.close()
    col = list(m.facts).index(FACT)
    reader = make_policy("tiny", checkpoint=args.policy) if args.policy else None
    question = [PolicyQuestion(FACT, fact_question(FACT), ("yes", "no"))]
    rows: list[dict] = []
    mismatched = negatives_seen = 0
    for n, ep in enumerate(tqdm(iter_episodes(args.data), total=args.max_episodes, desc="episodes")):
        if n >= args.max_episodes:
            break
        seed = int(ep.meta["seed"])
        live = gym.make(m.env_id, **m.env_kwargs)
        model = PosteriorWorldModel(gym.make(m.env_id, **m.env_kwargs), hypotheses_per_answer=args.hypotheses)
        _, info = live.reset(seed=seed)
        # the hypotheses' seed as the planners draw it: never the episode's own, whose first draw of the crossing
        # answer would reproduce the true pedestrian (the env draws the episode with the same generator)
        model.reset(live, seed=seed + HYPOTHESIS_SEED_OFFSET)
        model.observe(None, info["visible"])
        acts = [int(a) for a in ep.discrete_actions]
        shown = ep.visible[:, col]
        for t, a in enumerate(acts):
            if t >= args.context - 1 and t + args.horizon <= len(acts) and (t - args.context + 1) % args.stride == 0:
                label = label_window(shown, t, context=1, horizon=args.horizon)
                if label == "stays":
                    negatives_seen += 1
                if label == "comes" or (label == "stays" and negatives_seen % args.negative_every == 1 % args.negative_every):
                    w = model.posterior()
                    alive = np.flatnonzero(w > 1e-9)
                    futures = [future_of(model, i, acts[t:t + args.horizon], FACT) for i in alive]
                    row = {"episode": n, "seed": seed, "t": t, "label": label,
                           "share": float(sum(w[i] for i, (shown, _) in zip(alive, futures) if shown)),
                           "p_answer_yes": float(model.answer_posterior()[0])}
                    if reader is not None:
                        flat = np.concatenate([f for _, f in futures])
                        r = reader.answer([TaggedImage(np.ascontiguousarray(x), step=t + 1, imagined=True)
                                           for x in flat], prompt, question)
                        read = (r.per_image[FACT][:, 0].reshape(len(alive), -1) > SEEN_P).any(axis=1)
                        row["read_share"] = float(w[alive][read].sum())
                    rows.append(row)
            _, _, terminated, truncated, info = live.step(a)
            mismatched += int(bool(info["visible"].get(FACT, False)) != bool(shown[t + 1]))
            model.observe(a, info["visible"])
            if terminated or truncated:
                break
        live.close()
        model.env.close()
    comes = [r["share"] for r in rows if r["label"] == "comes"]
    stays = [r["share"] for r in rows if r["label"] == "stays"]
    result = {"data": args.data, "episodes": min(args.max_episodes, n + 1), "hypotheses_per_answer": args.hypotheses,
              "horizon": args.horizon, "negative_every": args.negative_every, "replay_label_mismatches": mismatched,
              "recall": float(np.mean(comes)) if comes else None, "positives": len(comes),
              "false_alarm": float(np.mean(stays)) if stays else None, "negatives": len(stays),
              # fidelity.json draws half its windows from each kind: the recall that a sample of 4 would see is the
              # same in expectation; its spread over windows tells how much of it is certain
              "recall_windows_above_0.5": float(np.mean(np.asarray(comes) > 0.5)) if comes else None,
              # a model that is not calibrated can trade false alarms for recall: drawing the pedestrian in every
              # sample where the posterior share exceeds a threshold, the best recall at false alarm <= 0.10
              "thresholded_recall_at_fa_0.10": _best_recall(comes, stays, 0.10),
              "policy": args.policy,
              "policy_recall": _mean([r["read_share"] for r in rows if r["label"] == "comes" and "read_share" in r]),
              "policy_false_alarm": _mean([r["read_share"] for r in rows if r["label"] == "stays" and "read_share" in r]),
              "windows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "result.json", json.dumps(result, indent=2).encode())
    best = result["thresholded_recall_at_fa_0.10"]
    if best is not None:
        print(f"thresholded (not calibrated): recall {best['recall']:.3f} at false alarm {best['false_alarm']:.3f} "
              f"(share >= {best['tau']:.3f})")
    print(f"posterior world model, read perfectly, on {len(comes)} windows where the pedestrian comes and "
          f"{len(stays)} where it does not ({result['episodes']} episodes of {args.data}; replay label mismatches "
          f"{mismatched}): recall {result['recall']:.3f}, false alarm {result['false_alarm']:.3f}; wrote "
          f"{out / 'result.json'}")
    if reader is not None:
        print(f"read by {args.policy}: recall {result['policy_recall']:.3f}, false alarm "
              f"{result['policy_false_alarm']:.3f}")


if __name__ == "__main__":
    main()
