"""Experiment: imagination fidelity on the crosswalk, split by the episode's hidden cue.

Question: does the driving world model use the crosswalk's cues (a ball rolls out, or the pedestrian's feet show
    beside the truck)? Only where a cue shows can a model trained on video know more than the base rate.
Status: measured 2026-11-26 (the shipped model: no), result in docs/world_model.md ("Does the driving model use the
    crosswalk's cues?"); re-measured 2026-11-27 on the GPU-trained ``w`` weights (no either).
Result: a pedestrian appears in 0.23 of the imagined futures where a cue announces one (23 windows), in 0.13 where
    one comes without a cue (37), and as a false alarm in 0.21 of the windows of episodes with none (160): the model
    has not learned the cues. The ``w`` weights: 0.22, 0.18 and 0.16.
Command:
    MUJOCO_GL=egl python experiments/fidelity_by_cue/run.py [--checkpoint DIR] [--steps N --min-changed-pixels 0]

Copies the held-out and validation crosswalk recordings into /tmp/cuefid/<group>/ (cued pedestrian,
pedestrian without cue, no pedestrian), then measures, per group, how often a world model's imagined futures
(the shipped one by default; read by the shipped policy) show a pedestrian who really comes into view (recall)
and one who does not (false alarm). A diagnostic; nothing is written into the checkpoints.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import gymnasium as gym
import torch

import genex.envs  # noqa: F401  (registers the envs)
from genex.evaluation.fidelity import measure_fidelity
from genex.policy import make_policy
from genex.recording import iter_episodes
from genex.world_model import load_world_model
from genex.world_model.cli import add_sampling_arguments, sampling_overrides

DATA = ("data/wm/heldout/OccludedCrosswalk", "data/wm/val/OccludedCrosswalk")
GROUPS = ("cued", "no_cue", "no_pedestrian")
OUT = Path("/tmp/cuefid")


def group_of(hidden: dict) -> str:
    if not hidden["pedestrian_crossing"]:
        return "no_pedestrian"
    return "cued" if hidden["cue"] != "none" else "no_cue"


def split_recordings() -> None:
    """One recording folder per (group, source folder), each with its source's manifest."""
    for d in map(Path, DATA):
        files = sorted((d / "episodes").glob("episode_*.npz"))
        for f, ep in zip(files, iter_episodes(d)):
            out = OUT / group_of(ep.meta["hidden"]) / d.parent.name
            (out / "episodes").mkdir(parents=True, exist_ok=True)
            shutil.copy(d / "manifest.json", out / "manifest.json")
            shutil.copy(f, out / "episodes" / f.name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="checkpoints/world_model/driving")
    ap.add_argument("--threads", type=int, default=1)
    add_sampling_arguments(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    split_recordings()
    env = gym.make("genex/OccludedCrosswalk-v0")
    try:
        wm = load_world_model(args.checkpoint, env=env, device="cpu")
    finally:
        env.close()
    wm.set_sampling(**sampling_overrides(args))
    policy = make_policy("tiny", checkpoint="checkpoints/policy/tiny-driving")
    for g in GROUPS:
        dirs = sorted(str(p) for p in (OUT / g).iterdir())
        r = measure_fidelity(wm, policy, dirs, ["pedestrian", "ball"], max_windows=160, progress=False)
        print(g, json.dumps({f: {k: round(v, 3) if isinstance(v, float) else v for k, v in s.items()}
                             for f, s in r.items()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
