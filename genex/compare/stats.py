"""Statistics over episode rows: means with one CI helper, gap shares, paired comparisons with a baseline."""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np

#: summary columns: (row key, label, kind) -- "rate" columns are proportions
METRICS: tuple[tuple[str, str, str], ...] = (
    ("success", "success", "rate"),
    ("collision", "collision / irreversible error", "rate"),
    ("return", "return", "mean"),
    ("steps", "real steps", "mean"),
    ("brier", "belief Brier", "mean"),
    ("log_loss", "belief log loss", "mean"),
    ("imagined_per_decision", "imagined frames / decision", "mean"),
    ("seconds_per_decision", "s / decision", "mean"),
)


def mean_ci(values: Sequence[float | None], rate: bool = False) -> tuple[float, float]:
    """Mean and 95% CI half-width (Wilson-style for rates is overkill at our n; normal approx)."""
    x = np.asarray([v for v in values if v is not None], np.float64)
    if len(x) == 0:
        return float("nan"), float("nan")
    m = float(x.mean())
    if len(x) < 2:
        return m, float("nan")
    sd = math.sqrt(m * (1 - m)) if rate else float(x.std(ddof=1))
    return m, 1.96 * sd / math.sqrt(len(x))


def condition_keys(by: str) -> list[str]:
    return [k.strip() for k in by.split(",") if k.strip()]


def _condition(row: dict[str, Any], keys: Sequence[str]) -> str:
    vals = [str(row.get("conditions", {}).get(k, "n/a")) for k in keys]
    return vals[0] if len(keys) == 1 else ", ".join(f"{k}={v}" for k, v in zip(keys, vals))


def summarize(rows: Iterable[dict[str, Any]], by: str | None = None) -> list[dict[str, Any]]:
    """One dict per (env, planner): ``n`` and ``<metric>``/``<metric>_ci`` for every metric in :data:`METRICS`.

    ``by``: also split by the value of that hidden condition (``row["conditions"][by]``, as
    recorded by the runner), given as ``condition`` in each dict ("n/a" where the env has no such fact);
    several comma-separated conditions split by their combinations.
    """
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    keys = None if by is None else condition_keys(by)
    for r in rows:
        cond = "" if keys is None else _condition(r, keys)
        groups.setdefault((r["env"], r["planner"], cond), []).append(r)
    out = []
    for (env, planner, cond), rs in groups.items():
        s: dict[str, Any] = {"env": env, "planner": planner, "n": len(rs)}
        if by is not None:
            s["condition"] = cond
        for key, _, kind in METRICS:
            vals = [float(r[key]) if r.get(key) is not None else None for r in rs]
            s[key], s[f"{key}_ci"] = mean_ci(vals, kind == "rate")
        out.append(s)
    return out


def gap_closed(summary: Sequence[dict[str, Any]], metric: str = "success", planner: str = "imagine",
               low: str = "react", high: str = "oracle-imagine") -> dict[str, float]:
    """Per env: ``(planner - low) / (high - low)`` of ``metric`` (the share of the react→oracle gap closed)."""
    by = {(s["env"], s["planner"]): s[metric] for s in summary}
    res = {}
    for env in sorted({s["env"] for s in summary}):
        if all((env, p) in by for p in (planner, low, high)):
            gap = by[(env, high)] - by[(env, low)]
            res[env] = float("nan") if abs(gap) < 1e-9 else (by[(env, planner)] - by[(env, low)]) / gap
    return res


def _common_seeds(rows: Sequence[dict[str, Any]], env: str, planners: Sequence[str]) -> set[int]:
    """The seeds of ``env`` that every one of ``planners`` ran."""
    sets = [{int(r["seed"]) for r in rows if r["env"] == env and r["planner"] == p} for p in planners]
    return set.intersection(*sets) if sets else set()


def paired_gap_closed(rows: Sequence[dict[str, Any]], metric: str = "success", planner: str = "imagine",
                      low: str = "react", high: str = "oracle-imagine") -> tuple[dict[str, float], dict[str, int]]:
    """:func:`gap_closed` on the seeds every one of the three planners ran (a fair, paired comparison)."""
    gaps, ns = {}, {}
    for env in sorted({r["env"] for r in rows}):
        common = _common_seeds(rows, env, (planner, low, high))
        if not common:
            continue
        sub = [r for r in rows if r["env"] == env and int(r["seed"]) in common and r["planner"] in (planner, low, high)]
        gaps.update(gap_closed(summarize(sub), metric, planner, low, high))
        ns[env] = len(common)
    return gaps, ns


#: the references of the gap shares: the fair upper bound first (the primary figure), then the privileged one
GAP_REFERENCES = ("posterior-imagine", "oracle-imagine")


def gap_shares(rows: Sequence[dict[str, Any]], metrics: Sequence[str] = ("success", "return"),
               low: str = "react", highs: Sequence[str] = GAP_REFERENCES) -> list[dict[str, Any]]:
    """For every (env, planner): the share of the ``low -> high`` gap of each metric it closes, per reference.

    ``react -> posterior-imagine`` (imagination as good as a perfect world model trained on video, which knows
    nothing privileged) is the gap that counts; ``react -> oracle-imagine`` (the live simulator, true hidden
    agents included) is beside it. Each share, and the gap it divides by, is computed on the seeds the planner,
    ``low`` and that reference all ran. Keys: ``env``, ``planner``, and per reference ``h`` and metric ``m``:
    ``"<m>:<h>"`` (the share, NaN without a gap), ``"<m>:<h>:gap"`` (reference minus ``low`` on those seeds),
    ``"<m>:<h>:ci"`` (the gap's paired 95% half-width, NaN under 2 seeds) and ``"<m>:<h>:n"`` (common seeds).
    """
    planners = list(dict.fromkeys(r["planner"] for r in rows))
    out = []
    for env in sorted({r["env"] for r in rows}):
        env_rows = [r for r in rows if r["env"] == env]
        for planner in planners:
            row: dict[str, Any] = {"env": env, "planner": planner}
            for high in highs:
                common = _common_seeds(env_rows, env, (planner, low, high))
                if not common:
                    continue
                paired = [r for r in env_rows if int(r["seed"]) in common and r["planner"] in (low, high)]
                for m in metrics:
                    shares, ns = paired_gap_closed(env_rows, m, planner, low, high)
                    if env not in shares:
                        continue
                    per_seed = {(r["planner"], int(r["seed"])): float(r[m]) for r in paired}
                    diff = [per_seed[(high, sd)] - per_seed[(low, sd)] for sd in sorted(common)]
                    gap, half = mean_ci(diff)
                    row[f"{m}:{high}"], row[f"{m}:{high}:n"] = shares[env], ns[env]
                    row[f"{m}:{high}:gap"], row[f"{m}:{high}:ci"] = gap, half
            if len(row) > 2 and planner != low:
                out.append(row)
    return out


def paired_against(rows: Sequence[dict[str, Any]], baseline: str = "react") -> list[dict[str, Any]]:
    """Each planner against ``baseline`` on the seeds both ran, per env: a paired comparison.

    Per (env, planner): ``n`` common seeds; successes and irreversible errors (collisions) of each, and on how
    many seeds only one of the two errs; real steps on the seeds **both** solve (``both``): each one's mean,
    the mean paired difference (planner - baseline) with its 95% CI, and the seeds with fewer / more steps;
    ``steps_diff_all``: the same difference over every common seed (a failed episode counts its steps, i.e.
    usually the step limit). A CI that excludes 0 is what "fewer real steps" has to mean.
    """
    by: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["env"], r["planner"]), {})[int(r["seed"])] = r
    out = []
    for (env, planner), mine in sorted(by.items()):
        base = by.get((env, baseline))
        if planner == baseline or base is None:
            continue
        common = sorted(set(mine) & set(base))
        if not common:
            continue
        a, b = [mine[s] for s in common], [base[s] for s in common]
        both = [(x["steps"], y["steps"]) for x, y in zip(a, b) if x["success"] and y["success"]]
        diff, diff_ci = mean_ci([x - y for x, y in both])
        diff_all, diff_all_ci = mean_ci([x["steps"] - y["steps"] for x, y in zip(a, b)])
        out.append({
            "env": env, "planner": planner, "baseline": baseline, "n": len(common),
            "success": sum(bool(x["success"]) for x in a), "baseline_success": sum(bool(y["success"]) for y in b),
            "errors": sum(bool(x["collision"]) for x in a), "baseline_errors": sum(bool(y["collision"]) for y in b),
            "errors_only_planner": sum(bool(x["collision"]) and not y["collision"] for x, y in zip(a, b)),
            "errors_only_baseline": sum(bool(y["collision"]) and not x["collision"] for x, y in zip(a, b)),
            "both": len(both), "steps": mean_ci([x for x, _ in both])[0],
            "baseline_steps": mean_ci([y for _, y in both])[0],
            "steps_diff": diff, "steps_diff_ci": diff_ci,
            "fewer": sum(x < y for x, y in both), "more": sum(x > y for x, y in both),
            "steps_diff_all": diff_all, "steps_diff_all_ci": diff_all_ci,
        })
    return out
