"""Reports: the Markdown summary table, gap shares and paired tables, CSV and plots."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Sequence

from genex.io import atomic_write_bytes

from .stats import GAP_REFERENCES, METRICS, condition_keys, gap_shares, summarize


def format_gap_shares(shares: Sequence[dict[str, Any]], metrics: Sequence[str] = ("success", "return"),
                      highs: Sequence[str] = GAP_REFERENCES) -> str:
    """Markdown table of :func:`gap_shares`: one column per metric and reference, the primary one first.

    A share is printed only where the gap is resolved (its paired 95% CI excludes 0); a share of a gap within
    noise (e.g. 1 seed in 30) says nothing, so the cell shows the gap and "within noise" instead."""
    if not shares:
        return ""
    cols = [(m, h) for m in metrics for h in highs]
    head = "| env | planner | " + " | ".join(f"{m}: react → {h}" for m, h in cols) + " |"
    lines = [head, "|" + "---|" * (2 + len(cols))]
    for s in shares:
        cells = []
        for m, h in cols:
            key = f"{m}:{h}"
            if key not in s:
                cells.append("n/a")
            elif math.isnan(s[key]):
                cells.append(f"– (no gap, n={s[key + ':n']})")
            else:
                gap, half = s[key + ":gap"], s.get(key + ":ci", float("nan"))
                pts = m in ("success", "collision")
                if not math.isnan(half) and abs(gap) <= half:
                    spread = f"{100 * gap:+.0f} ± {100 * half:.0f} pts" if pts else f"{gap:+.2f} ± {half:.2f}"
                    cells.append(f"– (gap {spread}: within noise, n={s[key + ':n']})")
                else:
                    size = f"{100 * gap:+.0f} pts" if pts else f"{gap:+.2f}"
                    cells.append(f"{100 * s[key]:.0f}% (gap {size}, n={s[key + ':n']})")
        lines.append(f"| {s['env'].split('/')[-1]} | {s['planner']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_paired(paired: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`paired_against`."""
    if not paired:
        return "(no planner shares seeds with the baseline)"
    base = paired[0]["baseline"]
    lines = [f"| env | planner | seeds | success (vs {base}) | irreversible errors (vs {base}) | errs where {base} "
             f"does not / the reverse | seeds both solve | real steps there (vs {base}) | paired difference, "
             "95% CI | fewer / more steps | difference over all seeds, 95% CI |",
             "|" + "---|" * 11]

    def num(x: float, fmt: str) -> str:
        return "–" if math.isnan(x) else format(x, fmt)

    for p in paired:
        lines.append(
            f"| {p['env'].split('/')[-1]} | {p['planner']} | {p['n']} | {p['success']} ({p['baseline_success']}) | "
            f"{p['errors']} ({p['baseline_errors']}) | {p['errors_only_planner']} / {p['errors_only_baseline']} | "
            f"{p['both']} | {num(p['steps'], '.2f')} ({num(p['baseline_steps'], '.2f')}) | "
            f"{num(p['steps_diff'], '+.2f')} ± {num(p['steps_diff_ci'], '.2f')} | {p['fewer']} / {p['more']} | "
            f"{num(p['steps_diff_all'], '+.2f')} ± {num(p['steps_diff_all_ci'], '.2f')} |")
    return "\n".join(lines)


def format_table(summary: Sequence[dict[str, Any]], planners_order: Sequence[str] | None = None) -> str:
    order = {p: i for i, p in enumerate(planners_order or [])}
    split = any("condition" in s for s in summary)
    rows = sorted(summary, key=lambda s: (s["env"], s.get("condition", ""), order.get(s["planner"], 99), s["planner"]))
    head = "| env | " + ("condition | " if split else "") + "planner | n | " + " | ".join(label for _, label, _ in METRICS) + " |"
    lines = [head, "|" + "---|" * (3 + split + len(METRICS))]
    for s in rows:
        cells = [format_cell(s, key) for key, _, _ in METRICS]
        cond = f"{s['condition']} | " if split else ""
        lines.append(f"| {s['env'].split('/')[-1]} | {cond}{s['planner']} | {s['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_cell(s: dict[str, Any], key: str) -> str:
    """The table cell of metric ``key`` of a summary dict: mean ± 95% CI half-width (rates in %), "n/a" where no
    episode reported it (e.g. a foreign env without success/collision info)."""
    m, ci = s[key], s[f"{key}_ci"]
    if math.isnan(m):
        return "n/a"
    if _KINDS[key] == "rate":
        return f"{100 * m:.0f}% ± {100 * ci:.0f}" if not math.isnan(ci) else f"{100 * m:.0f}%"
    prec = 3 if key in ("brier", "log_loss", "seconds_per_decision") else 1
    return f"{m:.{prec}f} ± {ci:.{prec}f}" if not math.isnan(ci) else f"{m:.{prec}f}"


_KINDS = {key: kind for key, _, kind in METRICS}


def write_csv(summary: Sequence[dict[str, Any]], path: Path, keys: Sequence[str],
              metrics: Sequence[str] = tuple(key for key, _, _ in METRICS)) -> None:
    """``summary`` as CSV at ``path`` (atomically): the columns ``keys``, then each metric and its ``_ci``."""
    import io

    fields = list(keys) + [k for key in metrics for k in (key, f"{key}_ci")]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    for s in summary:
        w.writerow({k: s[k] for k in fields})
    atomic_write_bytes(path, buf.getvalue().encode())


def write_summary(rows: Sequence[dict[str, Any]], out: str | Path, planners_order: Sequence[str] | None = None,
                  plots: bool = True, by: str | None = None) -> str:
    """Write ``summary.md``/``summary.csv`` (and plots) into ``out``; returns the Markdown table.

    ``by``: split every row by that hidden condition (:func:`summarize`) and write
    ``summary_by_<by>.md``/``.csv`` instead (no plots, no gap line).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if by is not None:
        summary = summarize(rows, by=by)
        text = format_table(summary, planners_order) + "\n"
        stem = "summary_by_" + "+".join(condition_keys(by))
        atomic_write_bytes(out / f"{stem}.md", text.encode())
        write_csv(summary, out / f"{stem}.csv", ["env", "condition", "planner", "n"])
        return text
    summary = summarize(rows)
    table = format_table(summary, planners_order)
    text = table + "\n"
    fell_back = sorted({(r["env"], r["planner"]) for r in rows if r.get("fell_back")})
    if fell_back:
        text += ("\nNo declared task (questions, costs, probes: a genex.envs.foreign.TaskSpec, --task-spec), so these "
                 "planners fell back to the policy's own actions and imagined nothing: "
                 + ", ".join(f"{p} on {e}" for e, p in fell_back) + ".\n")
    shares = format_gap_shares(gap_shares(rows))
    if shares:
        text += ("\nShare of the gap each planner closes, on the seeds it, react and the reference all ran. "
                 "react → posterior-imagine (the simulator with hidden agents drawn from what the real frames "
                 "showed: a perfect world model that knows nothing privileged) is the gap that counts; "
                 "react → oracle-imagine (the live simulator, true hidden agents included) is beside it. A share "
                 "is shown only where the gap's paired 95% CI excludes 0.\n\n"
                 + shares + "\n")
    atomic_write_bytes(out / "summary.md", text.encode())
    write_csv(summary, out / "summary.csv", ["env", "planner", "n"])
    if plots and summary:
        from genex.viz import plot_comparison, plot_compute

        plot_comparison(summary, out / "bars.png", planners_order)
        plot_compute(summary, out / "compute.png", planners_order)
    return text
