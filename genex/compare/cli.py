"""``genex compare``, ``genex summarize`` and ``genex viz`` (added to the ``genex`` CLI)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genex.compare import CompareConfig
    from genex.planners.options import PlannerOptions

__all__ = ["add_commands"]

DEFAULT_PLANNERS = "react,imagine,oracle-imagine"
SWEEP_PLANNERS = "imagine,imagine-voi,lookahead"


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _config_from_args(args: argparse.Namespace, command: str) -> "CompareConfig":
    """The :class:`CompareConfig` of ``genex compare`` / ``genex sweep-compute``; exits with one line on bad input."""
    import genex.envs
    from genex.planners import PLANNERS

    from genex.compare import CompareConfig

    envs = _split(args.env)
    for e in envs:
        if e not in genex.envs.ENV_IDS:
            _check_registered(e, command)
    planners = _split(args.planners)
    bad = [p for p in planners if p not in PLANNERS]
    if bad:
        raise SystemExit(f"genex {command}: unknown planner(s) {bad}; choose from {', '.join(PLANNERS)}")
    if args.episodes < 1:
        raise SystemExit(f"genex {command}: --episodes must be >= 1")
    if args.batch_episodes is not None:
        if args.executor != "batched":
            raise SystemExit(f"genex {command}: --batch-episodes needs --executor batched")
        if args.batch_episodes < 1:
            raise SystemExit(f"genex {command}: --batch-episodes must be >= 1")
    env_kwargs = {}
    if args.env_kwargs:
        try:
            env_kwargs = json.loads(args.env_kwargs)
        except json.JSONDecodeError as e:
            raise SystemExit(f"--env-kwargs must be a JSON object: {e}") from e
        if not isinstance(env_kwargs, dict):
            raise SystemExit(f"--env-kwargs must be a JSON object, got {type(env_kwargs).__name__}")
    try:  # one validated value: a bad or unknown option fails here, before any episode runs
        options = compare_options(args)
    except ValueError as e:
        raise SystemExit(f"genex {command}: {e}") from e
    cfg = CompareConfig(envs=envs, planners=planners, episodes=args.episodes, seed=args.seed, options=options,
                        world_model=args.world_model, policy=args.policy, fidelity=not args.no_fidelity,
                        save_frames=args.save_frames, env_kwargs=env_kwargs, task_spec=args.task_spec,
                        image_size=args.image_size,
                        **({} if args.batch_episodes is None else {"batch_episodes": args.batch_episodes}))
    if args.task_spec is not None:
        from genex.envs.foreign import load_task_spec

        try:  # a bad spec fails here, in one line, not once per episode in the workers
            load_task_spec(args.task_spec)
        except ValueError as e:
            raise SystemExit(f"genex {command}: {e}") from e
    return cfg


def cmd_compare(args: argparse.Namespace) -> int:
    from genex.compare import compare, write_summary

    cfg = _config_from_args(args, "compare")
    try:
        rows = compare(cfg, args.out, workers=args.workers, executor=args.executor, progress=not args.quiet,
                       stale="restart" if args.restart_stale else "error")
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"genex compare: {e}") from e
    text = write_summary(rows, args.out, cfg.planners, plots=not args.no_plots)
    print(text)
    print(f"rows: {Path(args.out) / 'episodes.jsonl'}; table: {Path(args.out) / 'summary.md'}")
    return 0


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(t) for t in _split(text)]
    except ValueError as e:
        raise SystemExit(f"genex sweep-compute: {flag} takes comma-separated integers, e.g. 1,2,4: {e}") from e
    if not values or min(values) < 1:
        raise SystemExit(f"genex sweep-compute: {flag} values must be integers >= 1, got {text!r}")
    return values


def cmd_sweep_compute(args: argparse.Namespace) -> int:
    from genex.compare.sweep import sweep_compute, write_sweep

    samples, horizons = _int_list(args.samples, "--samples"), _int_list(args.horizons, "--horizons")
    gridded = sorted({a.partition("=")[0].strip() for a in args.option or ()} & {"samples", "horizon"})
    if gridded:
        raise SystemExit(f"genex sweep-compute: {', '.join(gridded)} is set by the grid (--samples, --horizons), "
                         "not by --option")
    args.samples = args.horizon = None  # the grid sets them per run; the other options come from the flags
    cfg = _config_from_args(args, "sweep-compute")
    try:
        summary = sweep_compute(cfg, args.out, samples, horizons, workers=args.workers, executor=args.executor,
                                progress=not args.quiet, stale="restart" if args.restart_stale else "error")
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"genex sweep-compute: {e}") from e
    print(write_sweep(summary, args.out, plots=not args.no_plots))
    print(f"table: {Path(args.out) / 'sweep.md'}; figures: {Path(args.out) / 'sweep.png'}, "
          f"{Path(args.out) / 'sweep_seconds.png'}")
    return 0


#: the planner options ``genex compare`` has a flag for (``--imagine-every`` for imagine_every); ``--option
#: KEY=VALUE`` sets any option
OPTION_FLAGS = ("samples", "horizon", "trust", "imagine_every", "imagined_reading", "memory", "decision")


def compare_options(args: argparse.Namespace) -> "PlannerOptions":
    """The planner options of ``genex compare``: its option flags and ``--option KEY=VALUE`` (each parsed as its
    option's type; an option given by both is refused), validated as one :class:`PlannerOptions`. An option
    given by neither keeps its default; ``--decision auto`` is None."""
    from genex.planners import PlannerOptions

    given = {name: getattr(args, name) for name in OPTION_FLAGS if getattr(args, name) is not None}
    if given.get("decision") == "auto":
        given["decision"] = None
    extra = PlannerOptions.parse_assignments(args.option or ())
    twice = sorted(set(extra) & set(given))
    if twice:
        raise ValueError(f"{', '.join(twice)} given twice: by --option and by "
                         f"{', '.join('--' + t.replace('_', '-') for t in twice)}")
    return PlannerOptions.from_mapping({**given, **extra})


def _check_registered(env_id: str, command: str = "compare") -> None:
    """Exit with one line unless ``env_id`` is a registered Gymnasium id (``module:Env-v0`` imports module)."""
    import importlib

    import gymnasium as gym

    import genex.envs

    module, sep, name = env_id.rpartition(":")
    try:
        if sep:
            importlib.import_module(module)
        gym.spec(name)
    except ModuleNotFoundError as e:
        raise SystemExit(f"genex {command}: env {env_id!r}: {e} (install the package that registers it)") from e
    except gym.error.Error as e:
        raise SystemExit(f"genex {command}: unknown env {env_id!r} ({e}); use a genex env "
                         f"({', '.join(genex.envs.ENV_IDS)}) or any registered Gymnasium id, 'module:Env-v0' "
                         "importing the module that registers it (e.g. highway_env:intersection-v0)") from e


def cmd_viz(args: argparse.Namespace) -> int:
    from genex.viz import viz_run

    try:
        written = viz_run(args.run, args.out, env=args.env, planner=args.planner, seed=args.seed,
                          movie=args.movie)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"genex viz: {e}") from e
    for p in written:
        print(p)
    return 0


def cmd_summarize(args: argparse.Namespace) -> int:
    from genex.compare import load_rows, write_summary

    rows, seen = [], set()
    for run in args.runs:
        path = Path(run) / "episodes.jsonl"
        if not path.exists():
            raise SystemExit(f"genex summarize: {path} does not exist (is {run} a genex compare --out folder?)")
        for r in load_rows(path):
            key = (r["env"], r["planner"], int(r["seed"]))
            if key in seen:  # the same episode in two runs: keep the first
                continue
            seen.add(key)
            rows.append(r)
    planners = _split(args.planners) if args.planners else None
    if planners:
        rows = [r for r in rows if r["planner"] in planners]
    text = write_summary(rows, Path(args.out), planners, plots=not args.no_plots)
    print(text)
    if args.by:
        print(write_summary(rows, Path(args.out), planners, by=args.by))
    if args.paired:
        from genex.io import atomic_write_bytes
        from genex.compare import format_paired, paired_against

        table = format_paired(paired_against(rows, args.paired)) + "\n"
        atomic_write_bytes(Path(args.out) / "summary_paired.md", table.encode())
        print(table)
    return 0


def _add_run_arguments(s: argparse.ArgumentParser, sweep: bool = False) -> None:
    """The arguments ``genex compare`` and ``genex sweep-compute`` share (the sweep takes lists of samples and
    horizons)."""
    s.add_argument("--env", required=True,
                   help="env id(s), comma-separated: genex ids (e.g. genex/OccludedCrosswalk-v0) or any registered "
                        "Gymnasium id with image observations, 'module:Env-v0' importing module first "
                        "(e.g. highway_env:intersection-v0)")
    s.add_argument("--planners", default=SWEEP_PLANNERS if sweep else DEFAULT_PLANNERS,
                   help=f"comma-separated (default {SWEEP_PLANNERS if sweep else DEFAULT_PLANNERS})")
    s.add_argument("--episodes", type=int, default=20, help="episodes per env and planner (seeds seed..seed+N-1)")
    s.add_argument("--seed", type=int, default=200_000, help="first seed (held out from all training data)")
    s.add_argument("--out", required=True, help="output folder (created; rerun to resume)")
    s.add_argument("--restart-stale", action="store_true",
                   help="if --out holds episodes run with other weights or settings, move it aside to "
                        "OUT.stale-<time> and start over (default: refuse)")
    s.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    s.add_argument("--executor", choices=("process", "inline", "batched", "ray"), default="process",
                   help="process pool (default), inline (one process), batched (--batch-episodes episodes in lockstep "
                        "in each worker process, their world-model and policy calls batched; --workers 1: in this "
                        "process) or "
                        "Ray tasks (pip install 'genex[ray]'; a private local instance unless RAY_ADDRESS names a cluster)")
    s.add_argument("--batch-episodes", type=int, default=None, metavar="B",
                   help="--executor batched: episodes run in lockstep (default 8); results do not depend on B up to "
                        "the float arithmetic of batched convolutions")
    # the planner options (genex.planners.options.PlannerOptions): a flag left unset keeps the option's default
    if sweep:
        s.add_argument("--samples", default="1,2,4,8,16", help="imagined futures per branch, the grid's values "
                       "(comma-separated; default 1,2,4,8,16)")
        s.add_argument("--horizons", default="8", help="imagined steps per exploration branch (lookahead: steps each "
                       "candidate is held), the grid's values (comma-separated; default 8)")
    else:
        s.add_argument("--samples", type=int, default=None, help="imagined futures per branch (S; default 4)")
        s.add_argument("--horizon", type=int, default=None, help="imagined steps per exploration branch (default 8)")
    s.add_argument("--trust", type=float, default=None, help="weight of imagined evidence, in [0, 1] (default 0.7)")
    s.add_argument("--imagine-every", type=int, default=None,
                   help="imagining planners imagine every N-th decision and reuse that evidence in between (default 1)")
    s.add_argument("--imagined-reading", choices=("hard", "soft"), default=None,
                   help="how learned imagination is read through fidelity.json: an imagined sample counts as seen iff "
                        "P > 0.5, the event the rates were measured on (hard, the default), or P itself (soft)")
    s.add_argument("--memory", type=int, default=None,
                   help="real frames whose sightings the belief keeps (default 1: the current frame only)")
    s.add_argument("--decision", choices=("auto", "plan", "table"), default=None,
                   help="how belief planners decide: plan (expected return of short action sequences over "
                        "belief-weighted hypotheses, genex.planners.plans), table (the env's one-step cost table), "
                        "auto (the default: plan where the env draws hypotheses: the driving scenes; table elsewhere)")
    s.add_argument("--option", action="append", default=None, metavar="KEY=VALUE",
                   help="set a planner option (repeatable), e.g. those without a flag: particles=4, plan_horizon=16, "
                        "context=4, confidence=0.9, budget=16 (genex.planners.PlannerOptions lists them all)")
    s.add_argument("--world-model", default=None,
                   help="world-model checkpoint folder (default: shipped), or copy-last (the floor: every imagined "
                        "frame is the last real one)")
    s.add_argument("--no-fidelity", action="store_true",
                   help="take learned imagination at face value (ignore the checkpoint's fidelity.json)")
    s.add_argument("--policy", default=None, help="tiny policy checkpoint folder (default: shipped)")
    s.add_argument("--env-kwargs", default=None, help="JSON object of env options")
    s.add_argument("--task-spec", default=None, metavar="MODULE:ATTR",
                   help="foreign envs: a genex.envs.foreign.TaskSpec (or a function returning one) declaring the "
                        "questions, costs and probes the belief planners need, e.g. "
                        "genex.envs.foreign:highway_intersection; without one every planner takes the policy's "
                        "actions (the table says so)")
    s.add_argument("--image-size", type=int, default=None,
                   help="foreign envs: resize frames to SIZE x SIZE (e.g. the 64 a shipped world model imagines)")
    s.add_argument("--save-frames", action="store_true", help="keep real and imagined frames for genex viz")
    s.add_argument("--no-plots", action="store_true", help="skip bars.png / compute.png")
    s.add_argument("--quiet", action="store_true", help="no progress bar")


def add_commands(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("compare", help="run planners on held-out episodes; per-episode JSONL + summary table",
                       description="Run every planner on the same held-out seeds of every env. Resumable: rerun "
                                   "with the same --out to skip finished episodes.")
    _add_run_arguments(s)
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("sweep-compute", help="success vs compute: one compare per (samples, horizon) setting; "
                                              "table and figures",
                       description="Run the planners on the same held-out seeds once per setting of the grid "
                                   "--samples x --horizons (each setting a resumable compare folder OUT/samples_S-"
                                   "horizon_H), then write OUT/sweep.md, sweep.csv, sweep.png (success and errors vs "
                                   "imagined frames per decision) and sweep_seconds.png (vs seconds per decision).")
    _add_run_arguments(s, sweep=True)
    s.set_defaults(func=cmd_sweep_compute)

    s = sub.add_parser("summarize", help="one summary table over the episodes of several compare runs")
    s.add_argument("runs", nargs="+", help="genex compare --out folders (an episode in several: the first wins)")
    s.add_argument("--out", required=True, help="folder for summary.md / summary.csv / plots")
    s.add_argument("--planners", default=None, help="comma-separated: keep and order these planners")
    s.add_argument("--by", default=None, metavar="CONDITION",
                   help="also split the table by a hidden condition of the episodes (e.g. cue, occluder) into "
                        "summary_by_CONDITION.md")
    s.add_argument("--paired", default=None, metavar="BASELINE",
                   help="also compare every planner with BASELINE (e.g. react) seed by seed: errors, and real "
                        "steps on the seeds both solve with a 95%% CI of the difference (summary_paired.md)")
    s.add_argument("--no-plots", action="store_true")
    s.set_defaults(func=cmd_summarize)

    s = sub.add_parser("viz", help="pictures and a GIF/MP4 of one episode of a compare run")
    s.add_argument("run", help="a genex compare --out folder")
    s.add_argument("--env", default=None, help="env id or name (default: the first episode found)")
    s.add_argument("--planner", default=None)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--out", default=None, help="output folder (default RUN/viz)")
    s.add_argument("--movie", choices=("gif", "mp4"), default="gif", help="format of the episode movie")
    s.set_defaults(func=cmd_viz)


if __name__ == "__main__":  # pragma: no cover
    from .cli import main

    sys.exit(main(["compare", *sys.argv[1:]]))
