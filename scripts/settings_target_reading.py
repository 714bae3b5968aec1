"""Does a GUI policy see the instruction's setting on each SettingsTabs page, and where does it misread?

For each seed (held-out: 200000 onwards, as `genex compare`), every tab's page is opened from the start
state (snapshot / restore, so the pages are the real ones a planner would see) and the policy is asked
the planners' question "Is the item named in the instruction visible?". A page is read right when
P(yes) > 0.5 exactly where the target is. Prints the error rate and the (target, page) pairs it gets wrong
most often: the planners' belief about the target's tab is only as good as this reading.

    python scripts/settings_target_reading.py --policy checkpoints/policy/tiny-gui --seeds 300
"""

from __future__ import annotations

import argparse
import collections
import json

import gymnasium as gym
import numpy as np
import torch

import genex.envs  # noqa: F401  (registers the envs)
from genex.policy import PolicyQuestion, TaggedImage, TinyPolicy
from genex.policy.data import fact_question

N_TABS = 4


def tab_pages(env: gym.Env, obs: dict) -> list[np.ndarray]:
    """uint8[H, W, 3] screens of tab 1..4 opened from the current state (the env is left as it was)."""
    base = env.unwrapped
    pages = [obs["image"]]  # tab 1 is open at the start
    snap = base.snapshot()
    for k in range(1, N_TABS):
        page, *_ = env.step(base.choice_action(k))
        pages.append(page["image"])
        base.restore(snap)
    return pages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--policy", default="checkpoints/policy/tiny-gui")
    ap.add_argument("--seeds", type=int, default=300)
    ap.add_argument("--first-seed", type=int, default=200_000)
    ap.add_argument("--env-kwargs", default="{}", help="JSON env options, e.g. '{\"tab_layout\": \"random\"}'")
    ap.add_argument("--top", type=int, default=12, help="misread (target, page) pairs listed")
    args = ap.parse_args()

    torch.set_num_threads(1)
    policy = TinyPolicy.from_checkpoint(args.policy)
    question = [PolicyQuestion("target", fact_question("target"), ("yes", "no"))]
    env = gym.make("genex/SettingsTabs-v0", **json.loads(args.env_kwargs))
    misread: collections.Counter = collections.Counter()
    pages = errors = missed = false_alarms = 0
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        obs, _ = env.reset(seed=seed)
        state = env.unwrapped.app.state
        screens = tab_pages(env, obs)
        r = policy.answer([TaggedImage(x, step=0) for x in screens], obs["text"], question)
        p_yes = np.asarray(r.per_image["target"])[:, 0]
        for k in range(N_TABS):
            truth, seen = k == state.target_tab, bool(p_yes[k] > 0.5)
            pages += 1
            if seen != truth:
                errors += 1
                missed += truth
                false_alarms += not truth
                misread[(state.target, state.tab_names[k], "missed" if truth else "false alarm")] += 1
    print(f"policy {args.policy}: {pages} pages of {args.seeds} seeds, {errors} misread ({errors / pages:.1%}): "
          f"{missed} targets missed, {false_alarms} false alarms")
    print("| target | page | error | pages |\n|---|---|---|---|")
    for (target, page, kind), n in misread.most_common(args.top):
        print(f"| {target} | {page} | {kind} | {n} |")


if __name__ == "__main__":
    main()
