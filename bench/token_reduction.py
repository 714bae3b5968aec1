"""Token reduction curve: accuracy and latency vs k for driving vs GUI text-reading questions.

For each reducer (``cls``: CLS-similarity top-k; ``packer``: k learned queries)
and k in 1, 4, 16, all, on held-out recordings:
  * accuracy of the tiny VLM on driving visibility questions (driving checkpoint)
    and on GUI text-reading questions "Is the text 'T' on screen?" (GUI checkpoint);
  * latency of one decision (1 real + 3 imagined frames, all the family's
    questions; prefix cache warm), median of repeats, 1 CPU thread.
Writes a Markdown table, a CSV and a figure to --out. The measuring code lives in
``genex.policy.token_reduction`` (also used by notebooks/04_vlm_and_belief.ipynb).

    python bench/token_reduction.py \
        --driving checkpoints/policy/tiny-driving --gui checkpoints/policy/tiny-gui \
        --driving-data data/wm/heldout/{OccludedCrosswalk,StoppedLeadCar,OccludedLeftTurn} \
        --gui-data data/wm/heldout/{SettingsTabs,EditDocument,TicketShop,FileManager} \
        --out runs/bench/token_reduction
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch

from genex.policy import load_tiny_vlm
from genex.policy.token_reduction import (FAMILIES, load_family, markdown_table, measure_token_reduction,
                                          plot_token_reduction)


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
    for family, ckpt, folders in (("driving", args.driving, args.driving_data),
                                  ("gui-text", args.gui, args.gui_data)):
        if args.only and family != args.only:
            continue
        model, tok, _ = load_tiny_vlm(ckpt)
        data = load_family(folders, model, FAMILIES[family], args.max_frames)
        rows += measure_token_reduction(model, tok, data, family, repeats=args.repeats, ablate_cls=args.ablate_cls,
                                        progress=lambda row: print(row, flush=True))
    suffix = f"_{args.only}" if args.only else ""
    with open(out / f"token_reduction{suffix}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    table = markdown_table(rows)
    (out / f"token_reduction{suffix}.md").write_text(table)
    print(table, end="")

    import matplotlib

    matplotlib.use("Agg")
    fig = plot_token_reduction(rows)
    fig.savefig(out / f"token_reduction{suffix}.png", dpi=120)
    print(f"wrote {out}/token_reduction{suffix}.{{csv,md,png}}")


if __name__ == "__main__":
    main()
