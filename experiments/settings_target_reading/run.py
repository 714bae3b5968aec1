"""Experiment: does a GUI policy see the instruction's setting on each SettingsTabs page, and where does it misread?

Question: the planners' belief about the target's tab is only as good as the policy's reading of each page. How
    often does it answer "Is the item named in the instruction visible?" wrong on real pages, on MailCompose's
    screens after each toolbar click, and on the world model's imagined screens?
Status: measured 2026-11-26/27, results in docs/policy.md and checkpoints/policy/README.md; it drove the
    ``--glimpse-labels`` retrain and the fine-tune on imagined frames of the shipped ``tiny-gui``.
Result: the previous ``tiny-gui`` misread 68 of 1,200 SettingsTabs pages (300 seeds), the shipped one 0. Imagined
    MailCompose click outcomes (100 seeds): 350 of 400 read right before the fine-tune on imagined frames (all 50
    print dialogs missed), 400 of 400 after; real outcomes 1,200 of 1,200.
Command:
    python experiments/settings_target_reading/run.py --policy checkpoints/policy/tiny-gui --seeds 300
    python experiments/settings_target_reading/run.py --env genex/MailCompose-v0 --seeds 300
    python experiments/settings_target_reading/run.py --env genex/MailCompose-v0 --seeds 100 --imagined checkpoints/world_model/gui

For each seed (held-out: 200000 onwards, as `genex compare`), every tab's page is opened from the start
state (snapshot / restore, so the pages are the real ones a planner would see) and the policy is asked
the planners' question "Is the item named in the instruction visible?". A page is read right when
P(yes) > 0.5 exactly where the target is. Prints the error rate and the (target, page) pairs it gets wrong
most often.

With ``--env genex/MailCompose-v0`` the same for the screen after each toolbar click (is the instruction's
outcome, "Saved to Drafts" or "Print settings", on it?), the screens a planner reads after a click.

With ``--imagined WORLD_MODEL`` the screens are the world model's one-step imaginations of each choice from the
start screen (the click carries its target's label, as the imagining planners send it; one sample each), so the
count is how often the policy reads *imagination* right.
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
from genex.planners.imagining import labelled_action
from genex.policy.data import fact_question

N_TABS = 4
ENVS = ("genex/SettingsTabs-v0", "genex/MailCompose-v0")


def tab_pages(env: gym.Env, obs: dict) -> list[np.ndarray]:
    """uint8[H, W, 3] screens after choice 1..4 (tab k opened, icon k clicked) from the current state (the
    env is left as it was); a choice with nothing to do (tab 1 is open at the start) shows the current screen."""
    base = env.unwrapped
    pages = []
    snap = base.snapshot()
    for k in range(N_TABS):
        action = base.choice_action(k)
        if action is None:
            pages.append(obs["image"])
            continue
        page, *_ = env.step(action)
        pages.append(page["image"])
        base.restore(snap)
    return pages


def imagined_pages(env: gym.Env, obs: dict, model, seed: int) -> list[np.ndarray]:
    """uint8[H, W, 3] imagined screens after choice 1..4 from the current screen (one sample each)."""
    base = env.unwrapped
    pages = []
    for k in range(N_TABS):
        action = base.choice_action(k)
        if action is None:
            pages.append(obs["image"])
            continue
        click = labelled_action(env, action)
        pages.append(model.imagine(obs["image"][None], [click], num_samples=1, seed=seed * N_TABS + k)[0, 0])
    return pages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--policy", default="checkpoints/policy/tiny-gui")
    ap.add_argument("--env", default=ENVS[0], choices=ENVS)
    ap.add_argument("--seeds", type=int, default=300)
    ap.add_argument("--first-seed", type=int, default=200_000)
    ap.add_argument("--env-kwargs", default="{}", help="JSON env options, e.g. '{\"tab_layout\": \"random\"}'")
    ap.add_argument("--top", type=int, default=12, help="misread (target, page) pairs listed")
    ap.add_argument("--imagined", default=None, metavar="WORLD_MODEL",
                    help="read the world model's imagined screens instead of the real ones")
    args = ap.parse_args()

    torch.set_num_threads(1)
    policy = TinyPolicy.from_checkpoint(args.policy)
    question = [PolicyQuestion("target", fact_question("target"), ("yes", "no"))]
    env = gym.make(args.env, **json.loads(args.env_kwargs))
    model = None
    if args.imagined:
        from genex.world_model import load_world_model

        model = load_world_model(args.imagined, env=env, device="cpu")
    misread: collections.Counter = collections.Counter()
    pages = errors = missed = false_alarms = 0
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        obs, info = env.reset(seed=seed)
        (question_id, answer), = info["answers"].items()
        slot_names = info["answer_labels"][question_id]  # tab names / what each toolbar button does
        screens = tab_pages(env, obs) if model is None else imagined_pages(env, obs, model, seed)
        r = policy.answer([TaggedImage(x, step=0) for x in screens], obs["text"], question)
        p_yes = np.asarray(r.per_image["target"])[:, 0]
        for k in range(N_TABS):
            truth, seen = k == answer, bool(p_yes[k] > 0.5)
            pages += 1
            if seen != truth:
                errors += 1
                missed += truth
                false_alarms += not truth
                misread[(obs["text"], slot_names[k], "missed" if truth else "false alarm")] += 1
    print(f"policy {args.policy} on {args.env}{' (imagined by ' + args.imagined + ')' if model else ''}: {pages} "
          f"pages of {args.seeds} seeds, {errors} misread "
          f"({errors / pages:.1%}): "
          f"{missed} targets missed, {false_alarms} false alarms")
    print("| instruction | page | error | pages |\n|---|---|---|---|")
    for (target, page, kind), n in misread.most_common(args.top):
        print(f"| {target} | {page} | {kind} | {n} |")


if __name__ == "__main__":
    main()
