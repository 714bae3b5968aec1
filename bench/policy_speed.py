"""Tiny policy speed: decisions/s with and without the prefix cache, batched vs one-by-one frame encoding.

One decision = 1 real frame + S imagined frames, all of a family's questions,
with the same instruction every step (as in an episode). All four settings run
in the same process on the same frames, 1 CPU thread; the history of real
frames (kept as visual tokens) is on in every setting and its hit count is printed.

    python bench/policy_speed.py --checkpoint checkpoints/policy/tiny-driving \
        --data data/wm/heldout/OccludedCrosswalk --samples 8 --decisions 30
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from genex.policy import PolicyQuestion, TaggedImage, TinyPolicy, load_tiny_vlm
from genex.policy.data import load_examples


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/policy/tiny-driving")
    p.add_argument("--data", nargs="+", default=["data/wm/heldout/OccludedCrosswalk"])
    p.add_argument("--samples", type=int, default=8, help="imagined frames per decision")
    p.add_argument("--decisions", type=int, default=30)
    p.add_argument("--reducer", default=None, help="none / cls / packer (default: the checkpoint's)")
    p.add_argument("--k", type=int, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    model, tok, _ = load_tiny_vlm(args.checkpoint)
    data = load_examples(args.data, model.config.image_size, seed=0)
    questions = sorted({e.prompt.split(" <sep> ", 1)[1] for e in data.examples if e.kind == "fact"})
    qs = [PolicyQuestion(f"q{i}", q, ("yes", "no")) for i, q in enumerate(questions)]
    instruction = next(e.prompt.split(" <sep> ", 1)[0] for e in data.examples)
    rng = np.random.default_rng(0)
    steps = [rng.choice(len(data.frames), 1 + args.samples, replace=False) for _ in range(args.decisions)]
    print(f"{args.checkpoint}: {len(qs)} questions, 1 real + {args.samples} imagined frames per decision, "
          f"{args.decisions} decisions, {model.config.image_size}px, 1 thread")
    print(f"{'prefix cache':>12s} {'frame encoding':>15s} {'decisions/s':>12s} {'ms/decision':>12s} "
          f"{'prompt hits':>11s} {'history hits':>12s}")
    results = {}
    for cache in (False, True):
        for batched in (False, True):
            policy = TinyPolicy(model, tok, reducer=args.reducer, k=args.k, prefix_cache=cache,
                                batch_frames=batched)
            def decide(t: int, idx: np.ndarray) -> None:
                ims = [TaggedImage(data.frames[idx[0]], step=t)]
                ims += [TaggedImage(data.frames[i], step=t + 1, imagined=True, sample=s) for s, i in enumerate(idx[1:])]
                policy.answer(ims, instruction, qs)
            decide(0, steps[0])  # warm-up (also fills the prompt cache, as the first step of an episode does)
            t0 = time.perf_counter()
            for t, idx in enumerate(steps):
                decide(t, idx)
            dt = time.perf_counter() - t0
            results[(cache, batched)] = args.decisions / dt
            print(f"{'on' if cache else 'off':>12s} {'batched' if batched else 'one-by-one':>15s} "
                  f"{args.decisions / dt:12.1f} {1000 * dt / args.decisions:12.1f} "
                  f"{policy.stats['prompt_hits']:11d} {policy.stats['history_hits']:12d}")
    base = results[(False, False)]
    print(f"speed-up vs no cache, one-by-one: cache {results[(True, False)] / base:.2f}x, "
          f"batching {results[(False, True)] / base:.2f}x, both {results[(True, True)] / base:.2f}x")


if __name__ == "__main__":
    main()
