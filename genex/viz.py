"""Pictures of what planners saw, imagined and believed (matplotlib + imageio; headless-safe).

* :func:`plot_comparison`: success and collision rates per planner and env, with 95% CIs;
* :func:`plot_compute`: success vs imagined frames per decision (accuracy vs compute);
* :func:`imagination_strip`: the real frame, then each imagined branch's S samples over time;
* :func:`belief_timeline`: the belief in the true answer over an episode, with the decisions;
* :func:`decision_timeline`: per decision, the expected cost of every option (chosen one marked)
  and how much was imagined;
* :func:`episode_gif`: an episode's real frames, each next to what was imagined at that step;
* :func:`driving_map`: a driving scene from above with the ego's field of view, the region its
  occluders hide (shaded) and the hidden agents (red, dashed);
* :func:`viz_run`: the episode pictures above for one episode of a ``genex compare`` run (``genex viz RUN``).

Every function returns the figure / writes the file and never opens a window.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["plot_comparison", "plot_compute", "imagination_strip", "belief_timeline", "decision_timeline",
           "episode_gif", "driving_map", "viz_run", "load_episode"]


def _plt():
    import matplotlib

    # Headless-safe without stealing a notebook's inline backend: force Agg only where there is no
    # screen and no backend was chosen (Jupyter's inline backend is kept, so figures show there).
    if not os.environ.get("DISPLAY") and "inline" not in str(matplotlib.get_backend()).lower():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path | None) -> Any:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        _plt().close(fig)
    return fig


def plot_comparison(summary: Sequence[Mapping[str, Any]], path: str | Path | None = None,
                    planners_order: Sequence[str] | None = None) -> Any:
    """Grouped bars (one group per env) of success and collision rates with 95% CI whiskers."""
    plt = _plt()
    envs = sorted({s["env"] for s in summary})
    planners = _planner_order(summary, planners_order)
    by = {(s["env"], s["planner"]): s for s in summary}
    fig, axes = plt.subplots(1, 2, figsize=(max(6, 1.6 * len(envs) * 2 + 2), 3.4), sharey=True)
    width = 0.8 / max(1, len(planners))
    cmap = plt.get_cmap("tab10")
    for ax, (metric, title) in zip(axes, [("success", "success rate"), ("collision", "collision / irreversible error")]):
        for j, p in enumerate(planners):
            xs, ms, cis = [], [], []
            for i, e in enumerate(envs):
                s = by.get((e, p))
                if s is None:
                    continue
                xs.append(i + (j - (len(planners) - 1) / 2) * width)
                ms.append(s[metric])
                cis.append(0 if math.isnan(s[f"{metric}_ci"]) else s[f"{metric}_ci"])
            ax.bar(xs, ms, width, yerr=cis, capsize=2, label=p, color=cmap(j % 10))
        ax.set_xticks(range(len(envs)), [e.split("/")[-1].replace("-v0", "") for e in envs], fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _save(fig, path)


def _planner_order(summary: Sequence[Mapping[str, Any]], planners_order: Sequence[str] | None) -> list[str]:
    """Planners in the given order, then the rest sorted: one colour per planner across every figure."""
    first = list(planners_order or [])
    return [p for p in first + sorted({s["planner"] for s in summary} - set(first))
            if any(s["planner"] == p for s in summary)]


def plot_compute(summary: Sequence[Mapping[str, Any]], path: str | Path | None = None,
                 planners_order: Sequence[str] | None = None) -> Any:
    """Success rate vs imagined frames per decision, one marker per (env, planner)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    envs = sorted({s["env"] for s in summary})
    planners = _planner_order(summary, planners_order)
    cmap = plt.get_cmap("tab10")
    markers = "osD^v<>"
    for i, e in enumerate(envs):  # colour = planner, marker = env
        for s in summary:
            if s["env"] != e:
                continue
            ax.errorbar(s["imagined_per_decision"] + 0.5, s["success"],
                        yerr=0 if math.isnan(s["success_ci"]) else s["success_ci"], fmt=markers[i % len(markers)],
                        color=cmap(planners.index(s["planner"]) % 10), capsize=2, alpha=0.85,
                        label=f"{e.split('/')[-1].replace('-v0', '')}: {s['planner']}")
    ax.set_xscale("log")
    ax.set_xlabel("imagined frames per decision (+0.5, log scale)")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.05)
    ax.legend(fontsize=6, ncol=1, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return _save(fig, path)


def imagination_strip(real: np.ndarray, imagined: Mapping[str, np.ndarray], path: str | Path | None = None,
                      title: str = "", max_steps: int = 8, p_seen: Mapping[str, Mapping[str, Sequence[float]]] | None = None
                      ) -> Any:
    """Real frame (left), then per branch its ``S`` samples (rows) over imagined time (columns).

    ``imagined``: ``{branch name: uint8[S, T, H, W, 3]}``; ``p_seen``: optional
    ``{branch: {fact: [S]}}`` printed beside each sample (what the policy saw in it).
    """
    plt = _plt()
    rows = [(b, s) for b, arr in imagined.items() for s in range(arr.shape[0])] or [("", 0)]
    t_max = min(max_steps, max([arr.shape[1] for arr in imagined.values()] or [0]))
    tile = 1.0
    fig = plt.figure(figsize=(tile * (t_max + 1) + 2.2, tile * len(rows) + 0.6))
    grid = fig.add_gridspec(len(rows), t_max + 2, width_ratios=[2.2 / tile] + [1] * (t_max + 1),
                            wspace=0.05, hspace=0.12)
    for r, (b, s) in enumerate(rows):
        label = f"{b}\nsample {s}"
        if p_seen and b in p_seen:
            label += "\n" + "\n".join(f"P({f}) {v[s]:.2f}" for f, v in p_seen[b].items() if s < len(v))
        ax = fig.add_subplot(grid[r, 0])
        ax.axis("off")
        ax.text(1.0, 0.5, label, ha="right", va="center", fontsize=7, transform=ax.transAxes)
        for c in range(t_max + 1):
            ax = fig.add_subplot(grid[r, c + 1])
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                if r == 0:
                    ax.imshow(real)
                    ax.set_title("real now", fontsize=7, color="green")
                    for sp in ax.spines.values():
                        sp.set_color("green")
                        sp.set_linewidth(2)
                else:
                    ax.axis("off")
                continue
            arr = imagined.get(b)
            if arr is not None and c - 1 < arr.shape[1]:
                ax.imshow(arr[s, c - 1])
                if r == 0:
                    ax.set_title(f"imagined +{c}", fontsize=7)
            else:
                ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def load_episode(run: str | Path, env: str | None = None, planner: str | None = None,
                 seed: int | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Traces (and frames, if saved) of one episode of a ``genex compare`` run (the first match)."""
    run = Path(run)
    files = sorted((run / "traces").rglob("seed_*.json"))
    for f in files:
        body = json.loads(f.read_text())
        k = body["key"]
        if (env is None or k["env"] == env or k["env"].split("/")[-1] == env) and \
                (planner is None or k["planner"] == planner) and (seed is None or int(k["seed"]) == int(seed)):
            npz = run / "frames" / f.relative_to(run / "traces").with_suffix(".npz")
            frames = dict(np.load(npz)) if npz.exists() else {}
            return body, frames
    raise FileNotFoundError(f"no episode matching env={env} planner={planner} seed={seed} in {run}/traces")


def belief_timeline(body: Mapping[str, Any], path: str | Path | None = None) -> Any:
    """The belief in each answer over the decisions (true answer bold), with the decisions below."""
    plt = _plt()
    decisions = body["decisions"]
    answers = body.get("answers", {})
    qids = list(decisions[0]["belief"]) if decisions else []
    fig, axes = plt.subplots(len(qids) + 1, 1, figsize=(7, 1.9 * len(qids) + 1.3), sharex=True, squeeze=False)
    steps = [d["step"] for d in decisions]
    for ax, q in zip(axes[:, 0], qids):
        probs = np.array([d["belief"][q] for d in decisions])
        real = np.array([d["belief_real"].get(q, d["belief"][q]) for d in decisions])
        names = body.get("answer_names", {}).get(q) or [f"answer {a}" for a in range(probs.shape[1])]
        for a in range(probs.shape[1]):
            truth = answers.get(q) == a
            line, = ax.plot(steps, probs[:, a], lw=2.5 if truth else 1.0,
                            label=names[a] + (" (truth)" if truth else ""))
            ax.plot(steps, real[:, a], ls=":", lw=1.0, color=line.get_color())
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(f"P({q})", fontsize=7)
        ax.legend(fontsize=6, loc="upper right")
    ax = axes[-1, 0]
    names = [d["decision_name"] for d in decisions]
    uniq = list(dict.fromkeys(names))
    ax.scatter(steps, [uniq.index(n) for n in names], s=12)
    ax.set_yticks(range(len(uniq)), uniq, fontsize=7)
    ax.set_xlabel("step (dotted: belief from real frames only; solid: after imagination)")
    k = body.get("key", {})
    fig.suptitle(f"{k.get('env', '')} {k.get('planner', '')} seed {k.get('seed', '')}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def decision_timeline(body: Mapping[str, Any], path: str | Path | None = None,
                      option_names: Sequence[str] | None = None) -> Any:
    """Why each action was chosen: expected cost of every option per decision (colour, lower is
    better; the chosen option ringed), and imagined frames per decision below.

    ``body``: a trace file of ``genex compare`` (:func:`load_episode`); ``option_names``: names of
    the options in cost order (default: the decision names seen, else ``option i``).
    """
    plt = _plt()
    decisions = [d for d in body["decisions"] if d.get("expected_costs")]
    if not decisions:
        raise ValueError("no decision in this episode carries expected costs")
    costs = np.array([d["expected_costs"] for d in decisions], float)  # [D, options]
    steps = [d["step"] for d in decisions]
    n_opt = costs.shape[1]
    names = list(option_names or body.get("option_names") or [])
    if len(names) != n_opt:
        names = [f"option {i}" for i in range(n_opt)]
        for d in decisions:  # fill in the names we saw chosen
            if d.get("decision") is not None and d.get("decision_name") and 0 <= d["decision"] < n_opt:
                names[d["decision"]] = d["decision_name"]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(max(6, 0.22 * len(decisions) + 3), 0.35 * n_opt + 2.6),
                                  sharex=True, gridspec_kw={"height_ratios": [max(2, n_opt), 1.4]})
    rel = costs - costs.min(axis=1, keepdims=True)  # regret of each option at that decision
    im = ax.imshow(rel.T, aspect="auto", cmap="viridis_r", interpolation="nearest",
                   extent=(-0.5, len(decisions) - 0.5, n_opt - 0.5, -0.5))
    chosen = [d.get("decision") for d in decisions]
    xs = [i for i, c in enumerate(chosen) if c is not None]
    ax.scatter(xs, [chosen[i] for i in xs], s=40, facecolors="none", edgecolors="red", linewidths=1.5,
               label="chosen")
    ax.set_yticks(range(n_opt), names, fontsize=7)
    ax.legend(fontsize=7, loc="upper right")
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01, label="expected cost - best")
    ax2.bar(range(len(decisions)), [d.get("imagined_frames", 0) for d in decisions], color="tab:purple")
    ax2.set_ylabel("imagined\nframes", fontsize=7)
    tick = max(1, len(decisions) // 12)
    ax2.set_xticks(range(0, len(decisions), tick), [str(steps[i]) for i in range(0, len(decisions), tick)], fontsize=7)
    ax2.set_xlabel("env step of the decision")
    k = body.get("key", {})
    fig.suptitle(f"{k.get('env', '')} {k.get('planner', '')} seed {k.get('seed', '')}: "
                 "expected cost of each option per decision", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def driving_map(scene_map: Any, ax: Any = None, path: str | Path | None = None, title: str | None = None,
                resolution: float = 0.25) -> Any:
    """Draw a :class:`genex.envs.driving.topdown.SceneMap` (``env.unwrapped.scene_map()``).

    Yellow: the ego cameras' field of view; dark grey inside it: ground the occluders hide from
    the ego; red dashed outline: an agent that carries the hidden fact (labelled "in view" or
    "hidden"). ``ax``: draw into this axes (e.g. beside the egocentric frame) instead of a new
    figure. Returns the figure.
    """
    plt = _plt()
    from matplotlib.patches import Patch, Polygon, Wedge

    if ax is None:
        fig, ax = plt.subplots(figsize=(4.6, 4.6))
    else:
        fig = ax.figure
    m = scene_map
    cx, cy = m.center
    half = m.extent / 2
    for b in sorted(m.statics, key=lambda b: b.occludes):  # ground and paint first, buildings on top
        ax.add_patch(Polygon(b.corners(), closed=True, facecolor=b.rgba[:3], edgecolor="none", zorder=1))
    for cam_x, cam_y, yaw in m.cameras:
        ax.add_patch(Wedge((cam_x, cam_y), 2 * m.extent, np.degrees(yaw - m.hfov / 2), np.degrees(yaw + m.hfov / 2),
                           facecolor=(1.0, 0.9, 0.2, 0.22), edgecolor=(0.9, 0.7, 0.0, 0.9), lw=0.8, zorder=2))
    xs = np.arange(cx - half, cx + half, resolution) + resolution / 2
    ys = np.arange(cy - half, cy + half, resolution) + resolution / 2
    gx, gy = np.meshgrid(xs, ys)
    shade = m.in_view_cone(gx, gy, max_range=2 * m.extent) & m.occluded(gx, gy)
    rgba = np.zeros((*shade.shape, 4))
    rgba[shade] = (0.05, 0.05, 0.2, 0.62)
    ax.imshow(rgba, origin="lower", extent=(xs[0] - resolution / 2, xs[-1] + resolution / 2,
                                            ys[0] - resolution / 2, ys[-1] + resolution / 2), zorder=3,
              interpolation="nearest")
    for a in m.agents:
        ax.add_patch(Polygon(a.corners(), closed=True, facecolor=a.rgba[:3], zorder=4,
                             edgecolor="red" if a.hidden else "black", lw=1.8 if a.hidden else 0.5,
                             ls="--" if a.hidden else "-"))
        if a.hidden:
            ax.annotate(f"{a.label}\n({'in view' if a.visible else 'hidden'})", (a.x, a.y), xytext=(6, 6),
                        textcoords="offset points", fontsize=7, color="red", zorder=6,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.75))
    e = m.ego
    ax.add_patch(Polygon(e.corners(), closed=True, facecolor=e.rgba[:3], edgecolor="black", lw=0.8, zorder=5))
    ax.annotate("", (e.x + 3.2 * np.cos(e.yaw), e.y + 3.2 * np.sin(e.yaw)), (e.x, e.y), zorder=6,
                arrowprops=dict(arrowstyle="->", color="black", lw=1.2))
    ax.legend(handles=[Patch(facecolor=(1.0, 0.9, 0.2, 0.5), label="field of view"),
                       Patch(facecolor=(0.05, 0.05, 0.2, 0.62), label="hidden from the ego"),
                       Patch(facecolor="white", edgecolor="red", ls="--", label="hidden-fact agent")],
              fontsize=6, loc="lower left", framealpha=0.8)
    ax.set_xlim(cx - half, cx + half)
    ax.set_ylim(cy - half, cy + half)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title if title is not None else f"t = {m.t} (from above; privileged view)",
                 fontsize=8)
    return _save(fig, path) if path is not None else fig


def episode_gif(body: Mapping[str, Any], frames: Mapping[str, np.ndarray], path: str | Path, fps: int = 4,
                scale: int = 3) -> Path:
    """GIF (or MP4 by suffix, through imageio-ffmpeg) of an episode: the real frame beside the first imagined
    sample's last frame of each branch at that step (blank where nothing was imagined)."""
    import imageio.v3 as iio

    pics = []
    for d in body["decisions"]:
        pre = f"step_{d['step']:04d}/"
        real = frames.get(pre + "real")
        if real is None:
            continue
        tiles = [real]
        for b in d.get("branches", []):
            arr = frames.get(pre + f"imagined/{b['name']}")
            tiles.append(arr[0, -1] if arr is not None and arr.shape[1] else np.zeros_like(real))
        row = np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0))) for t in tiles], axis=1)
        pics.append(np.kron(row, np.ones((scale, scale, 1), np.uint8)) if scale > 1 else row)
    if not pics:
        raise ValueError("no saved frames in this episode: run genex compare with --save-frames")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # steps imagine different numbers of branches (imagine_every > 1, GUI macros): pad to one size
    h, w = max(p.shape[0] for p in pics), max(p.shape[1] for p in pics)
    movie = np.stack([np.pad(p, ((0, h - p.shape[0]), (0, w - p.shape[1]), (0, 0))) for p in pics])
    if path.suffix == ".gif":
        iio.imwrite(path, movie, duration=1000 / fps, loop=0)
    else:
        # H.264 wants even frame sizes; pad by a pixel where needed
        movie = np.pad(movie, ((0, 0), (0, movie.shape[1] % 2), (0, movie.shape[2] % 2), (0, 0)))
        iio.imwrite(path, movie, fps=fps)
    return path


def viz_run(run: str | Path, out: str | Path | None = None, env: str | None = None, planner: str | None = None,
            seed: int | None = None, movie: str = "gif") -> list[Path]:
    """Belief timeline, decision timeline, imagination strip of the first imagining decision and a GIF
    (``movie="mp4"``: an MP4) for one episode."""
    if movie not in ("gif", "mp4"):
        raise ValueError(f"movie must be 'gif' or 'mp4', got {movie!r}")
    body, frames = load_episode(run, env, planner, seed)
    k = body["key"]
    out = Path(out or Path(run) / "viz")
    stem = f"{k['env'].split('/')[-1]}_{k['planner']}_seed{k['seed']}"
    written = [out / f"{stem}_belief.png"]
    belief_timeline(body, written[0])
    if any(d.get("expected_costs") for d in body["decisions"]):
        written.append(out / f"{stem}_decisions.png")
        decision_timeline(body, written[-1])
    for d in body["decisions"]:
        pre = f"step_{d['step']:04d}/"
        imagined = {b["name"]: frames[pre + f"imagined/{b['name']}"] for b in d.get("branches", [])
                    if pre + f"imagined/{b['name']}" in frames}
        if imagined and pre + "real" in frames:
            p = out / f"{stem}_step{d['step']}_imagined.png"
            imagination_strip(frames[pre + "real"], imagined, p,
                              title=f"step {d['step']}: decided {d['decision_name']}",
                              p_seen={b["name"]: b.get("p_seen", {}) for b in d.get("branches", [])})
            written.append(p)
            break
    if frames:
        written.append(episode_gif(body, frames, out / f"{stem}.{movie}"))
    return written
