"""The ``genex`` command line.

Subcommands:
    ``genex envs``                       list registered envs, their actions and questions
    ``genex record --env ID --episodes N --out DIR [--driver NAME]``
                                         record exploration episodes (resumable)
    ``genex demo [--env ID ...] --out DIR``
                                         run one episode per env and write GIFs
                                         (egocentric view next to the top-down map)
    ``genex compare --env ID[,ID] --planners a,b --episodes N --out DIR``
                                         run planners on held-out seeds; JSONL + summary (resumable)
    ``genex summarize RUN [RUN ...] --out DIR``   one table over several compare runs
    ``genex viz RUN``                    belief and decision timelines, imagination strip and GIF/MP4
                                         of one episode
    ``genex measure-fidelity --world-model DIR --policy DIR --data DIR``
                                         how often imagination shows what really comes (fidelity.json)
    ``genex train-world-model`` / ``eval-world-model`` / ``train-policy`` / ``eval-policy`` / ``serve-policy``
                                         see docs/world_model.md and docs/policy.md
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Sequence

log = logging.getLogger("genex")


def _env_kwargs(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"--env-kwargs must be a JSON object, e.g. '{{\"width\": 96}}': {e}") from e
    if not isinstance(value, dict):
        raise SystemExit("--env-kwargs must be a JSON object, e.g. '{\"width\": 96}'")
    return value


def _check_env_id(env_id: str) -> None:
    import genex.envs  # registers

    if env_id not in genex.envs.ENV_IDS:
        raise SystemExit(f"unknown env {env_id!r}; choose one of: {', '.join(genex.envs.ENV_IDS)}")


def cmd_envs(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import genex.envs

    for env_id in genex.envs.ENV_IDS:
        env = gym.make(env_id)
        u = env.unwrapped
        print(f"{env_id}")
        print(f"  actions:   {', '.join(u.action_names)}")
        for q in u.questions:
            print(f"  question:  {q.text}  [{' / '.join(q.answers)}]")
        print(f"  facts:     {', '.join(u.facts)}")
        env.close()
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from genex.recording import ManifestMismatchError, episode_paths, record_episodes

    _check_env_id(args.env)
    try:
        manifest = record_episodes(
            args.env, args.out, args.episodes, driver=args.driver, seed=args.seed,
            env_kwargs=_env_kwargs(args.env_kwargs), progress=not args.quiet,
        )
    except (ManifestMismatchError, ValueError) as e:
        raise SystemExit(f"genex record: {e}") from e
    n = len(episode_paths(args.out))
    print(f"{n} episodes of {manifest.env_id} ({manifest.driver}) in {args.out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import gymnasium as gym
    import imageio.v3 as iio
    import numpy as np
    from PIL import Image

    import genex.envs

    env_ids = args.env or list(genex.envs.DRIVING_ENV_IDS)
    for env_id in env_ids:
        _check_env_id(env_id)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for env_id in env_ids:
        env = gym.make(env_id, render_mode="rgb_array")
        driver = genex.envs.make_driver(env_id, args.driver)
        obs, info = env.reset(seed=args.seed)
        driver.reset(env, seed=args.seed)
        frames, total, steps = [], 0.0, 0
        while True:
            view = env.render()
            ego = np.asarray(Image.fromarray(obs["image"]).resize((view.shape[0] * obs["image"].shape[1]
                                                                   // obs["image"].shape[0], view.shape[0]),
                                                                  Image.NEAREST))
            frames.append(np.concatenate([ego, view], axis=1))
            obs, reward, terminated, truncated, info = env.step(driver.act(obs, info))
            total += reward
            steps += 1
            if terminated or truncated:
                break
        name = env_id.split("/")[-1]
        path = out / f"{name}_{args.driver}_seed{args.seed}.gif"
        iio.imwrite(path, np.stack(frames), duration=int(1000 / env.metadata["render_fps"]), loop=0)
        hidden = {k: v for k, v in info["hidden"].items() if not isinstance(v, float)}
        print(f"{name:18s} driver={args.driver:10s} steps={steps:3d} return={total:6.2f} "
              f"success={info['success']} collisions={info.get('collisions', 0)} hidden={hidden} -> {path}")
        env.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genex", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("envs", help="list registered envs")
    s.set_defaults(func=cmd_envs)

    s = sub.add_parser("record", help="record exploration episodes to DIR (resumable)")
    s.add_argument("--env", required=True, help="env id, e.g. genex/OccludedCrosswalk-v0")
    s.add_argument("--episodes", type=int, required=True, help="number of episodes (episode i uses seed+i)")
    s.add_argument("--out", required=True, help="output folder (created; re-run to resume)")
    s.add_argument("--driver", default="mixed", help="scripted driver: random, cautious, aggressive, expert, mixed")
    s.add_argument("--seed", type=int, default=0, help="base seed")
    s.add_argument("--env-kwargs", default=None, help="JSON object of env options, e.g. '{\"width\": 96}'")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_record)

    s = sub.add_parser("demo", help="run one episode per env and write GIFs")
    s.add_argument("--env", action="append", help="env id (repeatable); default: every driving scene")
    s.add_argument("--driver", default="expert", help="scripted driver (default: expert)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="runs/demo", help="output folder for the GIFs")
    s.set_defaults(func=cmd_demo)

    # Subsystems add their own commands (train-world-model, eval-world-model, ...).
    for module in ("genex.world_model.cli", "genex.policy.cli", "genex.compare.cli", "genex.evaluation.cli"):
        try:
            mod = __import__(module, fromlist=["add_commands"])
        except ModuleNotFoundError as e:
            if e.name is not None and module.startswith(e.name):
                continue  # subsystem not built yet
            raise
        mod.add_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    # what was run, for the records that checkpoints and calibration files keep; from the argv parsed here,
    # so it is right when main() is called from Python too (sys.argv is then the caller's command line)
    args.invocation = "genex " + shlex.join(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
