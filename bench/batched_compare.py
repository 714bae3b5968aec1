"""Episodes per hour of ``genex compare`` with today's executor and with the batched one, and whether the
per-episode outcomes depend on the batch size ``B``.

    python bench/batched_compare.py [--episodes 8] [--batch 8] [--threads 2] [--envs genex/OccludedCrosswalk-v0]
                                    [--planner imagine] [--samples S] [--horizon H] [--out runs/bench_batched]

Runs, each as its own ``genex compare`` process on the same seeds (start-up, imports and checkpoint loading
included, as a user pays them):

* ``default``: ``--executor process --workers THREADS`` (today's default: one process per core, one torch
  thread each);
* ``batched B=1`` and ``batched B=BATCH``: ``--executor batched --workers THREADS --batch-episodes B`` (THREADS
  processes, one torch thread each, each running its share of the seeds B at a time in lockstep; use
  ``--episodes`` >= THREADS x BATCH for full batches).

It prints episodes/hour of each and the ratio batched B=BATCH / default, then the share of episodes whose
outcome fields (success, collision, steps, return, decisions) or whose traces' decisions differ between
B=1 and B=BATCH (the same processes and threads: only the batching differs), and between default
and B=BATCH. ``--json`` also writes the numbers. ``--skip-default`` runs the batched settings only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from genex.compare.store import runs_differ

REPO = Path(__file__).resolve().parents[1]


def run_compare(name: str, out: Path, args: argparse.Namespace, executor: str, batch: int | None) -> dict:
    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    cmd = [sys.executable, "-m", "genex.cli", "--verbose", "compare", "--env", ",".join(args.envs), "--planners", args.planner,
           "--episodes", str(args.episodes), "--seed", str(args.seed), "--out", str(folder),
           "--executor", executor, "--workers", str(args.threads), "--quiet", "--no-plots"]
    if batch is not None:
        cmd += ["--batch-episodes", str(batch)]
    for opt in ("samples", "horizon"):
        if getattr(args, opt) is not None:
            cmd += [f"--{opt}", str(getattr(args, opt))]
    if args.env_kwargs:
        cmd += ["--env-kwargs", args.env_kwargs]
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)  # all processes of the run: less sensitive to
    # other jobs on the machine than the wall clock
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{name}: genex compare failed ({proc.returncode})")
    rows = [json.loads(line) for line in (folder / "episodes.jsonl").read_text().splitlines() if line.strip()]
    stats = [line.split("batched run", 1)[1] for line in proc.stderr.splitlines() if "batched run" in line]
    n = len(rows)
    res = {"name": name, "episodes": n, "wall_seconds": round(wall, 2), "episodes_per_hour": round(n / wall * 3600, 1),
           "cpu_seconds": round(cpu, 1), "episodes_per_cpu_hour": round(n / max(cpu, 1e-9) * 3600, 1),
           "world_model_seconds": round(sum(r["world_model_seconds"] for r in rows), 2),
           "policy_seconds": round(sum(r["policy_seconds"] for r in rows), 2),
           "episode_seconds": round(sum(r["wall_seconds"] for r in rows), 2), "batch_stats": stats[-1] if stats else None}
    print(f"{name:14s} {n:3d} episodes in {wall:7.1f} s: {res['episodes_per_hour']:7.1f} episodes/hour "
          f"({cpu:.0f} CPU s: {res['episodes_per_cpu_hour']:.1f} episodes per CPU hour)", flush=True)
    return res


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", default="genex/OccludedCrosswalk-v0", type=lambda s: s.split(","))
    p.add_argument("--planner", default="imagine")
    p.add_argument("--episodes", type=int, default=8, help="episodes per env (seeds seed..seed+N-1)")
    p.add_argument("--seed", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=8, help="B of the batched run")
    p.add_argument("--threads", type=int, default=2, help="worker processes of both executors (one torch thread each)")
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--horizon", type=int, default=None)
    p.add_argument("--env-kwargs", default=None, help="JSON object of env options (e.g. '{\"max_steps\": 4}')")
    p.add_argument("--skip-default", action="store_true", help="run the batched settings only")
    p.add_argument("--out", default=str(REPO / "runs" / "bench_batched"))
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {}
    if not args.skip_default:
        runs["default"] = run_compare("default", out, args, "process", None)
    runs["batched_1"] = run_compare("batched_1", out, args, "batched", 1)
    runs[f"batched_{args.batch}"] = run_compare(f"batched_{args.batch}", out, args, "batched", args.batch)
    big = f"batched_{args.batch}"
    result: dict = {"runs": runs, "threads": args.threads, "envs": args.envs, "planner": args.planner}
    result["b1_vs_b"] = runs_differ(out / "batched_1", out / big)
    d = result["b1_vs_b"]
    print(f"B=1 vs B={args.batch}: outcome fields differ in {d['outcome_differs']}/{d['episodes']} episodes "
          f"({100 * d['share_outcome']:.1f}%), traces' decisions in {d['decisions_differ']}/{d['episodes']} "
          f"({100 * d['share_decisions']:.1f}%) {d['which'] or ''}")
    if "default" in runs:
        result["ratio"] = round(runs[big]["episodes_per_hour"] / runs["default"]["episodes_per_hour"], 3)
        result["cpu_ratio"] = round(runs[big]["episodes_per_cpu_hour"] / runs["default"]["episodes_per_cpu_hour"], 3)
        result["default_vs_b"] = runs_differ(out / "default", out / big)
        d = result["default_vs_b"]
        print(f"batched B={args.batch} / default: {result['ratio']:.2f}x episodes/hour, "
              f"{result['cpu_ratio']:.2f}x episodes per CPU hour")
        print(f"default vs B={args.batch}: outcome fields differ in {d['outcome_differs']}/{d['episodes']}, "
              f"decisions in {d['decisions_differ']}/{d['episodes']} {d['which'] or ''}")
    for name, r in runs.items():
        print(f"{name:14s} summed over episodes: world model {r['world_model_seconds']} s, policy "
              f"{r['policy_seconds']} s, episode wall {r['episode_seconds']} s; {r['batch_stats'] or ''}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
