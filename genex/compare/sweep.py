"""Success vs compute: one ``genex compare`` per (samples, horizon) setting, and what each setting buys.

``genex sweep-compute`` (and :func:`sweep_compute`) runs the planners of a :class:`CompareConfig` once per
setting of the grid ``samples x horizons``, each into its own resumable compare folder::

    OUT/samples_<S>-horizon_<H>/     a genex compare --out folder (run.json, episodes.jsonl, traces/)
    OUT/sweep.md, OUT/sweep.csv      one row per (env, planner, samples, horizon): success, errors, imagined
                                     frames and seconds per decision, each with its 95% CI
    OUT/sweep.png                    success, errors and real steps against imagined frames per decision
                                     (symlog), one column per env, one line per (planner, horizon) through its
                                     sample counts
    OUT/sweep_seconds.png            the same against seconds per decision

Every setting runs the same held-out seeds, so two points of one env differ only by the setting. Planners
that imagine nothing (``react``, ``prior``, ...) run once per setting too and sit at 0 frames: a reference
(cheap next to the imagining ones). A rerun with the same ``OUT`` resumes (each folder skips its finished episodes); a
rerun with a wider grid adds folders, and the table and figures cover every setting folder in ``OUT``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from genex.io import atomic_write_bytes

from .config import CompareConfig
from .execute import compare
from .report import format_cell, write_csv
from .stats import summarize
from .store import load_rows

__all__ = ["SweepSetting", "sweep_settings", "sweep_compute", "load_sweep", "format_sweep", "write_sweep",
           "plot_sweep"]

_FOLDER = re.compile(r"^samples_(\d+)-horizon_(\d+)$")
#: columns of sweep.csv beyond the keys: (summary key, label) -- each with a ``_ci`` column
SWEEP_METRICS = (("success", "success"), ("collision", "errors / collisions"), ("steps", "real steps"),
                 ("imagined_per_decision", "imagined frames / decision"), ("seconds_per_decision", "s / decision"))
#: the rows of the figures: (summary key, axis label)
_PLOT_ROWS = (("success", "success rate"), ("collision", "errors / collisions"), ("steps", "real steps"))


@dataclass(frozen=True, order=True)
class SweepSetting:
    """One point of the grid: imagined futures per branch (``samples``) and steps per branch (``horizon``)."""

    samples: int
    horizon: int

    def __post_init__(self) -> None:
        for name in ("samples", "horizon"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")

    @property
    def folder(self) -> str:
        return f"samples_{self.samples}-horizon_{self.horizon}"

    @classmethod
    def from_folder(cls, name: str) -> SweepSetting | None:
        m = _FOLDER.match(name)
        return None if m is None else cls(int(m.group(1)), int(m.group(2)))


def sweep_settings(samples: Sequence[int], horizons: Sequence[int]) -> list[SweepSetting]:
    """The grid ``samples x horizons`` (duplicates dropped, sorted); ``ValueError`` on an empty or bad value."""
    if not samples or not horizons:
        raise ValueError("a sweep needs at least one samples value and one horizon")
    return sorted({SweepSetting(s, h) for s in samples for h in horizons})


def sweep_compute(base: CompareConfig, out: str | Path, samples: Sequence[int], horizons: Sequence[int],
                  workers: int | None = None, executor: str = "process", progress: bool = True,
                  stale: str = "error") -> list[dict[str, Any]]:
    """Run ``base`` once per setting of ``samples x horizons`` (its other options kept) into ``out``.

    Returns :func:`load_sweep` of ``out`` (every setting folder there, this grid's and earlier ones').
    ``workers``, ``executor`` and ``stale`` are :func:`genex.compare.compare`'s.
    """
    from tqdm.auto import tqdm

    settings = sweep_settings(samples, horizons)
    out = Path(out)
    bar = tqdm(settings, desc="sweep", unit="setting", disable=not progress)
    for setting in bar:
        bar.set_postfix_str(setting.folder)
        cfg = replace(base, options=replace(base.options, samples=setting.samples, horizon=setting.horizon))
        compare(cfg, out / setting.folder, workers=workers, executor=executor, progress=progress, stale=stale)
    return load_sweep(out)


def load_sweep(out: str | Path) -> list[dict[str, Any]]:
    """One summary dict per (env, planner, setting) over every ``samples_<S>-horizon_<H>`` folder in ``out``.

    Each is :func:`genex.compare.summarize`'s dict plus ``samples`` and ``horizon``; sorted by env, planner,
    horizon, samples. ``FileNotFoundError`` when ``out`` holds no setting folder with episodes.
    """
    out = Path(out)
    found = []
    for folder in sorted(out.iterdir()) if out.is_dir() else []:
        setting = SweepSetting.from_folder(folder.name)
        if setting is None or not (folder / "episodes.jsonl").exists():
            continue
        for s in summarize(load_rows(folder / "episodes.jsonl")):
            found.append({**s, "samples": setting.samples, "horizon": setting.horizon})
    if not found:
        raise FileNotFoundError(f"{out} holds no sweep results (folders samples_<S>-horizon_<H> with episodes.jsonl)")
    return sorted(found, key=lambda s: (s["env"], s["planner"], s["horizon"], s["samples"]))


def format_sweep(summary: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`load_sweep`: one row per (env, planner, horizon, samples), 95% CIs."""
    lines = ["| env | planner | horizon | samples | n | " + " | ".join(label for _, label in SWEEP_METRICS) + " |",
             "|" + "---|" * (5 + len(SWEEP_METRICS))]
    for s in summary:
        cells = [format_cell(s, k) for k, _ in SWEEP_METRICS]
        lines.append(f"| {s['env'].split('/')[-1]} | {s['planner']} | {s['horizon']} | {s['samples']} | {s['n']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_sweep(summary: Sequence[dict[str, Any]], out: str | Path, plots: bool = True) -> str:
    """Write ``sweep.md``, ``sweep.csv`` (and ``sweep.png``, ``sweep_seconds.png``) into ``out``; returns the table."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = format_sweep(summary) + "\n"
    atomic_write_bytes(out / "sweep.md", table.encode())
    write_csv(summary, out / "sweep.csv", ["env", "planner", "horizon", "samples", "n"], [k for k, _ in SWEEP_METRICS])
    if plots and summary:
        plot_sweep(summary, out / "sweep.png", x="imagined_per_decision")
        plot_sweep(summary, out / "sweep_seconds.png", x="seconds_per_decision")
    return table


def plot_sweep(summary: Sequence[dict[str, Any]], path: str | Path | None = None,
               x: str = "imagined_per_decision") -> Any:
    """Success (top), errors / collisions and real steps (bottom) against ``x`` (``imagined_per_decision`` on a symlog axis,
    or ``seconds_per_decision`` on a log axis), one column per env; one line per (planner, horizon) through its
    sample counts (labelled S at each point); whiskers are 95% CIs. Returns the figure."""
    from genex.viz import _plt, _save

    if x not in ("imagined_per_decision", "seconds_per_decision"):
        raise ValueError(f"x must be imagined_per_decision or seconds_per_decision, got {x!r}")
    plt = _plt()
    envs = sorted({s["env"] for s in summary})
    lines = sorted({(s["planner"], s["horizon"]) for s in summary})
    planners = list(dict.fromkeys(p for p, _ in lines))
    horizons = sorted({h for _, h in lines})
    fig, axes = plt.subplots(len(_PLOT_ROWS), len(envs), figsize=(3.6 * len(envs) + 1.6, 7.2), squeeze=False,
                             sharex="col")
    cmap = plt.get_cmap("tab10")
    styles = ["-", "--", ":", "-."]
    for j, env in enumerate(envs):
        for row, (metric, label) in enumerate(_PLOT_ROWS):
            ax = axes[row][j]
            for planner, horizon in lines:
                pts = sorted((s for s in summary if s["env"] == env and s["planner"] == planner
                              and s["horizon"] == horizon), key=lambda s: s["samples"])
                if not pts:
                    continue
                xs = [s[x] for s in pts]
                ys = [s[metric] for s in pts]
                err = [0.0 if math.isnan(s[f"{metric}_ci"]) else s[f"{metric}_ci"] for s in pts]
                ax.errorbar(xs, ys, yerr=err, fmt="o", ls=styles[horizons.index(horizon) % len(styles)],
                            color=cmap(planners.index(planner) % 10), capsize=2, ms=3.5, alpha=0.85,
                            label=planner if len(horizons) == 1 else f"{planner}, horizon {horizon}")
                if row == 0:
                    for s, xv, yv in zip(pts, xs, ys):
                        ax.annotate(str(s["samples"]), (xv, yv), textcoords="offset points", xytext=(2, 3), fontsize=6)
            if x == "imagined_per_decision":
                ax.set_xscale("symlog", linthresh=1.0)
            else:
                ax.set_xscale("log")
            if metric == "success":
                ax.set_ylim(-0.03, 1.05)
                ax.set_title(env.split("/")[-1].replace("-v0", ""), fontsize=9)
            elif metric == "collision":
                ax.set_ylim(bottom=-0.01)
            if row == len(_PLOT_ROWS) - 1:
                ax.set_xlabel("imagined frames / decision" if x == "imagined_per_decision" else "seconds / decision")
            if j == 0:
                ax.set_ylabel(label)
    axes[0][-1].legend(fontsize=6, bbox_to_anchor=(1.02, 1), loc="upper left", title="S = samples per branch",
                       title_fontsize=6)
    fig.tight_layout()
    return _save(fig, path)
