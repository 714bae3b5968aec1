"""Token reduction curve: accuracy and latency vs k for driving vs GUI text-reading questions.

For each reducer (``cls``: CLS-similarity top-k; ``packer``: k learned queries)
and k in 1, 4, 16, all, on held-out recordings:
  * accuracy of the tiny VLM on driving visibility questions (driving checkpoint)
    and on GUI text-reading questions "Is the text 'T' on screen?" (GUI checkpoint);
  * latency of one decision (1 real + 3 imagined frames, all the family's
    questions; prefix cache warm), median of repeats, 1 CPU thread.
Writes a Markdown table, a CSV and a figure to --out.

    python bench/token_reduction.py \
        --driving checkpoints/policy/tiny-driving --gui checkpoints/policy/tiny-gui \
        --driving-data data/wm/heldout/{OccludedCrosswalk,StoppedLeadCar,OccludedLeftTurn} \
        --gui-data data/wm/heldout/{SettingsTabs,EditDocument,TicketShop,FileManager} \
        --out runs/bench/token_reduction
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from genex.policy import PolicyQuestion, TaggedImage, TinyPolicy, load_tiny_vlm
from genex.policy.data import FrameSet, load_examples, subsample
from genex.policy.train import evaluate

SETTINGS = [("none", None)] + [(mode, k) for mode in ("cls", "packer") for k in (1, 4, 16)]


def subset(data: FrameSet, kinds: set[str], max_frames: int) -> FrameSet:
    return subsample(data, max_frames, kinds)


def decision_latency(policy: TinyPolicy, data: FrameSet, repeats: int) -> float:
    questions = sorted({e.prompt.split(" <sep> ", 1)[1] for e in data.examples})[:8]
    qs = [PolicyQuestion(f"q{i}", q, ("yes", "no")) for i, q in enumerate(questions)]
    rng = np.random.default_rng(0)
    times = []
    for r in range(repeats + 1):
        idx = rng.choice(len(data.frames), 4, replace=False)
        ims = [TaggedImage(data.frames[i], step=r, imagined=j > 0, sample=j) for j, i in enumerate(idx)]
        policy.reset()
        t0 = time.perf_counter()
        policy.answer(ims, "Complete the task.", qs)
        if r:  # the first call warms the prefix cache
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--driving", default="checkpoints/policy/tiny-driving")
    p.add_argument("--gui", default="checkpoints/policy/tiny-gui")
    p.add_argument("--driving-data", nargs="+", default=[f"data/wm/heldout/{n}" for n in
                                                          ("OccludedCrosswalk", "StoppedLeadCar", "OccludedLeftTurn")])
    p.add_argument("--gui-data", nargs="+", default=[f"data/wm/heldout/{n}" for n in
                                                      ("SettingsTabs", "EditDocument", "TicketShop", "FileManager")])
    p.add_argument("--max-frames", type=int, default=600, help="held-out frames per family")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--ablate-cls", action="store_true", help="also evaluate every setting without the CLS token")
    p.add_argument("--only", choices=("driving", "gui-text"), default=None, help="run one family")
    p.add_argument("--out", default="runs/bench/token_reduction")
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for family, ckpt, folders, kinds in (("driving", args.driving, args.driving_data, {"fact"}),
                                         ("gui-text", args.gui, args.gui_data, {"text"})):
        if args.only and family != args.only:
            continue
        model, tok, _ = load_tiny_vlm(ckpt)
        data = subset(load_examples(folders, model.config.image_size, seed=12345), kinds, args.max_frames)
        n_patches = model.config.num_patches
        for mode, k in SETTINGS:
            kk = n_patches if k is None else k
            acc = evaluate(model, tok, data, mode, kk)["all"]
            lat = decision_latency(TinyPolicy(model, tok, reducer=mode, k=kk), data, args.repeats)
            rows.append({"family": family, "reducer": mode, "k": "all" if k is None else k,
                         "visual_tokens": 1 + kk, "accuracy": round(acc["acc"], 4),
                         "balanced_accuracy": round(acc["balanced_acc"], 4), "questions": acc["n"],
                         "decision_ms": round(1000 * lat, 2)})
            print(rows[-1], flush=True)
        if args.ablate_cls:  # the same settings with the CLS token dropped: do patch tokens carry the answer?
            for mode, k in SETTINGS:
                kk = n_patches if k is None else k
                acc = evaluate(model, tok, data, mode, kk, keep_cls=False)["all"]
                rows.append({"family": family, "reducer": f"{mode} (no CLS)", "k": "all" if k is None else k,
                             "visual_tokens": kk, "accuracy": round(acc["acc"], 4),
                             "balanced_accuracy": round(acc["balanced_acc"], 4), "questions": acc["n"],
                             "decision_ms": float("nan")})
                print(rows[-1], flush=True)
    suffix = f"_{args.only}" if args.only else ""
    with open(out / f"token_reduction{suffix}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = ["| family | reducer | k | visual tokens | accuracy | balanced acc. | decision ms |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['family']} | {r['reducer']} | {r['k']} | {r['visual_tokens']} | {r['accuracy']:.3f} | "
              f"{r['balanced_accuracy']:.3f} | {r['decision_ms']:.1f} |" for r in rows]
    (out / f"token_reduction{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for family, marker in (("driving", "o"), ("gui-text", "s")):
        if not any(r["family"] == family for r in rows):
            continue
        full = next(r for r in rows if r["family"] == family and r["reducer"] == "none")
        for mode, style in (("cls", "-"), ("packer", "--")):
            rs = [r for r in rows if r["family"] == family and r["reducer"] == mode]
            xs = [r["visual_tokens"] for r in rs] + [full["visual_tokens"]]
            axes[0].plot(xs, [r["accuracy"] for r in rs] + [full["accuracy"]], style, marker=marker,
                         label=f"{family} / {mode}")
            axes[1].plot(xs, [r["decision_ms"] for r in rs] + [full["decision_ms"]], style, marker=marker,
                         label=f"{family} / {mode}")
    for ax, label in zip(axes, ("accuracy (held-out)", "decision latency (ms, 4 frames)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("visual tokens per frame (1 + k; rightmost = all)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"token_reduction{suffix}.png", dpi=120)
    print(f"wrote {out}/token_reduction{suffix}.{{csv,md,png}}")


if __name__ == "__main__":
    main()
