"""Experiment: does the policy see the pedestrian that the v2 renderer draws, when the layout is the true one?

Question: ``genex measure-fidelity`` reads the whole chain: the layout stage samples whether a pedestrian comes, the
    renderer draws it, the policy reads the frames. On the driving model v2 it gave recall 0.24 and false alarms
    0.19 (issue 28 asks >= 0.6 / <= 0.10), while the layout stage alone samples a pedestrian in 0.30 of the
    futures of windows where one comes and 0.08 where none does (``experiments/layout_stage_probe``). How much do
    the renderer and the policy lose? Rendering the *recorded* layouts of the real future (``imagine_batch(...,
    layouts=...)``) takes the stage out: recall is then what the renderer + policy see of a pedestrian who is
    drawn for sure, false alarm what they see where the layout has none.
Status: measured 2026-12-08 on 2 shared CPU cores; docs/world_model.md ("Where the chain loses the pedestrian").
Result: the renderer loses most of the pedestrian. On fidelity.json's 158 held-out windows where one comes and 217
    where none does (4 samples, horizon 8), ``tiny-driving`` sees it in 0.27 of the futures drawn around the
    recorded layouts (false alarm 0.19), where it sees it in 0.68 of the real futures (false alarm 0.27: its own
    per-frame false positives over 8 frames). A copy fine-tuned on imagined frames: 0.27 / 0.20 (real: 0.64 /
    0.24). The renderer fine-tuned 2,000 steps on a 16x16 layout grid (``--data`` recorded with
    ``occupancy_cell`` 4): 0.35 / 0.19. Controls (2026-12-08, later; ``--data runs/layout_probe_app/data/heldout``,
    the same episodes with colours): the 8x8 renderer trained the same 2,000 more steps, 0.32 / 0.21, so most of
    the 16x16 gain was the steps; told the recorded colours (``small-layout-v3``, ``--colours recorded``), 0.31 /
    0.20: the colour does not help.
Command:
    MUJOCO_GL=egl python experiments/renderer_reading/run.py --world-model runs/wm_v2/model_v2 \\
        --policy checkpoints/policy/tiny-driving --data runs/layout_probe2/data/heldout --out runs/renderer_reading

The windows are fidelity.json's (:func:`genex.evaluation.fidelity.measure_fidelity`'s selection over the env's probed
facts: context 4, stride 2, horizon 8, up to ``--max-windows``, half where a fact comes; the pedestrian's are read,
the others skipped); each is imagined ``--samples`` times
(pixel noise only) around the recorded layouts and read by the policy with the same event, ``P(visible) > 0.5``
in any imagined frame.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

import genex.envs  # noqa: F401  (registers the envs)
from genex.evaluation.fidelity import SEEN_P, choose_windows
from genex.evaluation.windows import label_window
from genex.io import atomic_write_bytes
from genex.policy import make_policy
from genex.policy.data import fact_question
from genex.policy.protocol import PolicyQuestion, TaggedImage
from genex.recording import iter_episodes, read_manifest
from genex.world_model.checkpoint import load_denoiser
from genex.world_model.data import layout_of
from genex.world_model.model import DiffusionWorldModel

FACT = "pedestrian"


def _mean(x: list[float]) -> float | None:
    return float(np.mean(x)) if x else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world-model", default="runs/wm_v2/model_v2",
                    help="a layout world model or renderer folder (driving v2; its layout stage is not needed)")
    ap.add_argument("--policy", action="extend", nargs="+", default=None,
                    help="tiny policy checkpoint(s) to read the frames with (default: the shipped driving policy)")
    ap.add_argument("--data", default="runs/layout_probe2/data/heldout")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--context", type=int, default=4)
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--max-windows", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--colours", choices=("recorded", "unknown"), default="recorded",
                    help="a renderer told its facts' colours (appearance_facts): give the recorded colours, or none")
    ap.add_argument("--real-only", action="store_true",
                    help="read only the recorded future frames (the reader's own recall and false alarm)")
    ap.add_argument("--out", default="runs/renderer_reading")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    policies = args.policy or ["checkpoints/policy/tiny-driving"]
    # the renderer alone: the layouts are given, so a folder without a layout stage (a renderer run's model/) works
    denoiser, meta = load_denoiser(args.world_model)
    model = DiffusionWorldModel(denoiser, info=meta, device="cpu")
    if not model.cfg.layout_channels:
        raise SystemExit(f"{args.world_model} draws no layouts: this experiment needs a layout world model")
    m = read_manifest(args.data)
    model.action_names = tuple(m.action_names)
    env = gym.make(m.env_id, **m.env_kwargs)
    prompt = str(getattr(env.unwrapped, "instruction", ""))  # as measure_fidelity asks
    facts = list(dict.fromkeys(p.fact for p in getattr(env.unwrapped, "probes", ())))  # as genex measure-fidelity
    env.close()
    col = list(m.facts).index(FACT)
    windows = []  # (episode, t, {fact: "pos" | "neg"}), selected as measure_fidelity selects them
    for ep in iter_episodes(args.data):
        for t in range(args.context - 1, len(ep.discrete_actions) - args.horizon + 1, args.stride):
            kinds = {}
            for f in facts:
                label = label_window(ep.visible[:, list(m.facts).index(f)], t, context=1, horizon=args.horizon)
                if label != "in_view":
                    kinds[f] = "pos" if label == "comes" else "neg"
            windows.append((ep, t, kinds))
    chosen = [windows[i] for i in choose_windows([w[2] for w in windows], args.max_windows, args.seed)]
    readers = {p: make_policy("tiny", checkpoint=p) for p in policies}
    question = [PolicyQuestion(FACT, fact_question(FACT), ("yes", "no"))]
    seen: dict[str, dict[str, list[float]]] = {p: {"pos": [], "neg": []} for p in policies}
    real: dict[str, dict[str, list[float]]] = {p: {"pos": [], "neg": []} for p in policies}
    drawn_pos = []
    futures: dict[int, np.ndarray] = {}
    for i, (ep, t, kinds) in enumerate(tqdm(chosen, desc="windows")):
        kind = kinds.get(FACT)
        if kind is None:  # chosen for another fact; the pedestrian is in view
            continue
        s, h = args.samples, args.horizon
        instruction = str(ep.meta.get("instruction") or prompt)
        for p, policy in readers.items():  # the real future, read by the same event
            r = policy.answer([TaggedImage(np.ascontiguousarray(x), step=t + 1) for x in ep.frames[t + 1:t + 1 + h]],
                              instruction, question)
            real[p][kind].append(float((r.per_image[FACT][:, 0] > SEEN_P).any()))
        if args.real_only:
            continue
        ctx = np.repeat(ep.frames[t - args.context + 1:t + 1][None], s, 0)
        acts = np.repeat(np.asarray(ep.discrete_actions[t:t + h])[None], s, 0)
        # the recorded layouts of the real future (with the facts' recorded colours for a renderer told them)
        if id(ep) not in futures:  # once per episode
            futures = {id(ep): layout_of(model.model_cfg, ep, args.data) if args.colours == "recorded"
                       else ep.occupancy > 0}
        lay = np.repeat(futures[id(ep)][t + 1:t + 1 + h][None], s, 0)
        frames = model.imagine_batch(ctx, acts, seed=args.seed + i, layouts=lay)  # uint8[S, T, H, W, 3]
        if kind == "pos":
            drawn_pos.append(bool(lay[0, :, col].any()))
        flat = frames.reshape((-1,) + frames.shape[2:])
        for p, policy in readers.items():
            r = policy.answer([TaggedImage(np.ascontiguousarray(x), step=t + 1, imagined=True) for x in flat],
                              instruction, question)
            hit = (r.per_image[FACT][:, 0].reshape(s, -1) > SEEN_P).any(axis=1)
            seen[p][kind].append(float(hit.mean()))
    result = {"world_model": args.world_model, "data": args.data, "samples": args.samples, "horizon": args.horizon,
              "positives": len(real[policies[0]]["pos"]), "negatives": len(real[policies[0]]["neg"]),
              # a pedestrian who "comes" by the visibility labels can still occupy no cell (a few pixels)
              "positives_with_pedestrian_cells": float(np.mean(drawn_pos)) if drawn_pos else None,
              "policies": {p: {"recall": _mean(v["pos"]), "false_alarm": _mean(v["neg"]),
                               "real_recall": _mean(real[p]["pos"]), "real_false_alarm": _mean(real[p]["neg"])}
                           for p, v in seen.items()}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "result.json", json.dumps(result, indent=2).encode())
    for p, r in result["policies"].items():
        drawn = "" if args.real_only else \
            f"recall {r['recall']:.3f}, false alarm {r['false_alarm']:.3f} with the recorded layouts; "
        print(f"{p}: {drawn}the real future: recall {r['real_recall']:.3f}, false alarm {r['real_false_alarm']:.3f} "
              f"({result['positives']} / {result['negatives']} windows)")
    print(f"wrote {out / 'result.json'}")


if __name__ == "__main__":
    main()
