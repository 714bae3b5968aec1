"""How much a driving scene's frames say about its hidden event: the joint statistics of each cue and the event.

For each scene, ``--episodes`` episodes are driven by a scripted driver (``mixed``, the recordings' driver, by
default) and every frame's visibility labels and pixel counts are kept. Per cue it prints:

* ``P(event | cue)``: of the episodes in which the cue was seen before the hidden agent, the share with the event;
* ``P(cue | event)``: of the episodes with the event, the share in which the cue was seen before the agent;
* warning: seconds from the cue's first frame to the hidden agent's first frame (median, 10th-90th percentile),
  over the episodes with both;
* size: the cue's visible pixels in its first frame at the env's resolution (median, 10th-90th percentile).

Cues per scene (what a frame can show before the hidden agent itself is in view):

* OccludedCrosswalk (event: a pedestrian comes): ``ball`` (a ball rolls out), ``feet`` (pedestrian pixels while
  it still stands beside the truck: its legs under the truck's body);
* StoppedLeadCar (event: each cause): ``brake_lights``, ``hazard_lights``; the agents ``pedestrian`` and
  ``emergency_vehicle`` are the events' own sightings;
* OccludedLeftTurn (event: an oncoming car): none; the warning row is the time from the car's first frame to
  the moment it reaches the ego's path.

This is an analysis script: it reads the hidden state (``info["hidden"]``, whether the pedestrian is moving) to
label episodes, as metrics do; planners never see it.

    python scripts/cue_statistics.py --episodes 1000 --out docs/cue_statistics.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

DT = 0.25  # seconds per env step


def _quantiles(x: list[float]) -> str:
    if not x:
        return "–"
    q = np.percentile(x, [10, 50, 90])
    return f"{q[1]:.2f} ({q[0]:.2f}-{q[2]:.2f})"


def _first(flags: list[bool]) -> int | None:
    return next((t for t, f in enumerate(flags) if f), None)


def record(env_id: str, episodes: int, seed: int, driver: str, **env_kwargs: Any) -> list[dict[str, Any]]:
    """One dict per episode: ``hidden``, per-step ``visible``/``pixels`` and (crosswalk) ``ped_moving``."""
    import gymnasium as gym
    from tqdm.auto import tqdm

    import genex.envs

    env = gym.make(env_id, **env_kwargs)
    drv = genex.envs.make_driver(env_id, driver)
    u = env.unwrapped
    slot = {s.role: i for i, s in enumerate(u.scenario.scene.slots)}
    out = []
    for k in tqdm(range(episodes), desc=env_id.split("/")[-1], unit="episode"):
        obs, info = env.reset(seed=seed + k)
        drv.reset(env, seed=seed + k)
        ep: dict[str, Any] = {"hidden": info["hidden"], "visible": [], "pixels": [], "moving": [], "t_conflict": None}
        done = False
        while True:
            ep["visible"].append(dict(info["visible"]))
            ep["pixels"].append(dict(info["visible_pixels"]))
            agents = u._world_np.agents  # analysis only: is the hidden agent moving yet?
            ep["moving"].append({r: bool(agents.moving[i]) for r, i in slot.items()})
            if done:
                break
            obs, _, term, trunc, info = env.step(drv.act(obs, info))  # scripted drivers may read hidden info
            done = bool(term or trunc)
        out.append(ep)
    env.close()
    return out


def crosswalk_rows(eps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for cue in ("ball", "feet"):
        seen_cue, with_event, warn, size = 0, 0, [], []
        event_n, event_cued = 0, 0
        for ep in eps:
            event = bool(ep["hidden"]["pedestrian_crossing"])
            ped_seen = [v.get("pedestrian", False) and m["pedestrian"] for v, m in zip(ep["visible"], ep["moving"])]
            t_ped = _first(ped_seen)
            if cue == "ball":
                flags = [v.get("ball", False) for v in ep["visible"]]
            else:  # pedestrian pixels while it still stands
                flags = [v.get("pedestrian", False) and not m["pedestrian"] for v, m in zip(ep["visible"], ep["moving"])]
            t_cue = _first(flags)
            cued = t_cue is not None and (t_ped is None or t_cue < t_ped)
            event_n += event
            event_cued += event and cued
            if cued:
                seen_cue += 1
                with_event += event
                size.append(ep["pixels"][t_cue].get("ball" if cue == "ball" else "pedestrian", 0))
                if event and t_ped is not None:
                    warn.append((t_ped - t_cue) * DT)
        rows.append({"scene": "OccludedCrosswalk", "event": "pedestrian comes", "cue": cue, "episodes": len(eps),
                     "cue_episodes": seen_cue, "p_event_given_cue": with_event / seen_cue if seen_cue else float("nan"),
                     "p_cue_given_event": event_cued / event_n if event_n else float("nan"),
                     "warning_s": _quantiles(warn), "pixels": _quantiles(size),
                     "p_event": event_n / len(eps)})
    return rows


def lead_rows(eps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    causes = ("pedestrian", "emergency_vehicle", "breakdown")
    for cue in ("brake_lights", "hazard_lights", "pedestrian", "emergency_vehicle"):
        for cause in causes:
            seen = [ep for ep in eps if any(v.get(cue, False) for v in ep["visible"])]
            with_cause = [ep for ep in eps if ep["hidden"]["cause"] == cause]
            cued = [ep for ep in with_cause if any(v.get(cue, False) for v in ep["visible"])]
            if not cued:
                continue
            warn, size = [], []
            for ep in cued:
                t_cue = _first([v.get(cue, False) for v in ep["visible"]])
                size.append(ep["pixels"][t_cue].get(cue, 0))
                if cause != "breakdown":
                    t_agent = _first([v.get(cause, False) for v in ep["visible"]])
                    if t_agent is not None and cue not in causes:
                        warn.append((t_agent - t_cue) * DT)
            rows.append({"scene": "StoppedLeadCar", "event": f"cause = {cause}", "cue": cue, "episodes": len(eps),
                         "cue_episodes": len(seen),
                         "p_event_given_cue": sum(ep["hidden"]["cause"] == cause for ep in seen) / len(seen),
                         "p_cue_given_event": len(cued) / len(with_cause), "warning_s": _quantiles(warn),
                         "pixels": _quantiles(size), "p_event": len(with_cause) / len(eps)})
    return rows


def left_turn_rows(eps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    warn, size, n_event, seen = [], [], 0, 0
    for ep in eps:
        if not ep["hidden"]["oncoming_vehicle"]:
            continue
        n_event += 1
        t = _first([v.get("oncoming_vehicle", False) for v in ep["visible"]])
        if t is None:
            continue
        seen += 1
        size.append(ep["pixels"][t].get("oncoming_vehicle", 0))
        warn.append(float(ep["hidden"]["arrival_s"]) - t * DT)  # its arrival at the ego's path, from the start
    return [{"scene": "OccludedLeftTurn", "event": "oncoming car", "cue": "none (the car itself)",
             "episodes": len(eps), "cue_episodes": seen, "p_event_given_cue": 1.0 if seen else float("nan"),
             "p_cue_given_event": seen / n_event if n_event else float("nan"), "warning_s": _quantiles(warn),
             "pixels": _quantiles(size), "p_event": n_event / len(eps)}]


ROWS = {"genex/OccludedCrosswalk-v0": crosswalk_rows, "genex/StoppedLeadCar-v0": lead_rows,
        "genex/OccludedLeftTurn-v0": left_turn_rows}


def format_rows(rows: list[dict[str, Any]]) -> str:
    head = ("| scene | event (base rate) | cue | episodes with the cue | P(event \\| cue) | P(cue \\| event) | "
            "warning, s: median (p10-p90) | cue size, px: median (p10-p90) |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['scene']} | {r['event']} ({r['p_event']:.2f}) | {r['cue']} | {r['cue_episodes']} of "
                     f"{r['episodes']} | {r['p_event_given_cue']:.2f} | {r['p_cue_given_event']:.2f} | "
                     f"{r['warning_s']} | {r['pixels']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default=",".join(ROWS), help="driving env ids, comma-separated")
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0, help="first seed (0..: the training range of the recordings)")
    p.add_argument("--driver", default="mixed")
    p.add_argument("--env-kwargs", default="{}", help="JSON object of env options (e.g. a structure variant)")
    p.add_argument("--out", default=None, help="write the table (.md) and the rows (.json beside it)")
    args = p.parse_args(argv)
    envs = [e.strip() for e in args.env.split(",") if e.strip()]
    unknown = [e for e in envs if e not in ROWS]
    if unknown:
        raise SystemExit(f"cue_statistics: no cue definitions for {unknown}; choose from {', '.join(ROWS)}")
    if args.episodes < 1:
        raise SystemExit("cue_statistics: --episodes must be >= 1")
    kwargs = json.loads(args.env_kwargs)
    rows: list[dict[str, Any]] = []
    for env_id in envs:
        rows += ROWS[env_id](record(env_id, args.episodes, args.seed, args.driver, **kwargs))
    table = format_rows(rows)
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + "\n")
        out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
