"""``genex measure-fidelity`` (added to the ``genex`` CLI): how far to believe imagination, written as
``fidelity.json`` beside the world model (:mod:`genex.evaluation.fidelity`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_commands"]


def cmd_measure_fidelity(args: argparse.Namespace) -> int:
    import gymnasium as gym
    import torch

    import genex.envs  # noqa: F401
    from genex.io import atomic_write_bytes
    from genex.evaluation.fidelity import FIDELITY_FILE, measure_fidelity, policy_sha256, pool_fidelity, weights_sha256
    from genex.policy import make_policy
    from genex.recording import read_manifest
    from genex.world_model import load_world_model

    torch.set_num_threads(args.threads)
    facts: list[str] = []
    env = None
    try:  # the envs only declare the probed facts and check the checkpoint's frames: close each one
        for d in args.data:
            if env is not None:
                env.close()
            env = gym.make(read_manifest(d).env_id)
            facts += [f for f in dict.fromkeys(p.fact for p in getattr(env.unwrapped, "probes", ())) if f not in facts]
        try:
            wm = load_world_model(args.world_model, env=env, device="cpu")
            policy = make_policy("tiny", checkpoint=args.policy)
        except Exception as e:  # checkpoint errors carry their own advice
            raise SystemExit(f"genex measure-fidelity: {e}") from e
    finally:
        if env is not None:
            env.close()
    by_env = measure_fidelity(wm, policy, args.data, facts, horizon=args.horizon, samples=args.samples,
                              max_windows=args.max_windows, seed=args.seed, progress=not args.quiet, by_env=True)
    result = pool_fidelity(by_env, facts)
    out = Path(args.out) if args.out else Path(args.world_model) / FIDELITY_FILE
    body = {"facts": result, "by_env": by_env, "horizon": args.horizon, "samples": args.samples, "data": args.data,
            "policy": args.policy, "command": args.invocation,
            # binds the numbers to these weights and this reader: load_fidelity refuses them for others
            "world_model_sha256": weights_sha256(args.world_model), "policy_sha256": policy_sha256(args.policy)}
    atomic_write_bytes(out, json.dumps(body, indent=2).encode())
    rows = [("all", result)] + (sorted(by_env.items()) if len(by_env) > 1 else [])
    for where, rates in rows:
        for f, r in rates.items():
            print(f"{where:28s} {f:20s} recall {r['recall']:.3f} ({r['positives']} windows)  "
                  f"false alarm {r['false_alarm']:.3f} ({r['negatives']} windows)")
    print(f"wrote {out}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("measure-fidelity", help="measure how often imagination shows what really comes "
                       "(recall, false alarms per fact) on held-out recordings; writes fidelity.json")
    s.add_argument("--world-model", required=True, help="world-model checkpoint folder")
    s.add_argument("--policy", required=True, help="tiny policy checkpoint folder")
    s.add_argument("--data", action="extend", nargs="+", required=True,
                   help="held-out recording folder(s) (repeatable; several after one flag too, e.g. DIR/{A,B})")
    s.add_argument("--horizon", type=int, default=8)
    s.add_argument("--samples", type=int, default=4)
    s.add_argument("--max-windows", type=int, default=400)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--out", default=None, help="default: WORLD_MODEL/fidelity.json")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_measure_fidelity)
