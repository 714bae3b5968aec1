"""``genex train-policy`` and ``genex serve-policy``."""

from __future__ import annotations

import argparse
import logging
import shlex

log = logging.getLogger(__name__)

__all__ = ["add_commands"]


_TRAIN_OPTIONS = ("data", "eval_data", "out", "labels", "image_size", "patch_size", "dim", "heads", "vision_layers",
                  "fusion_layers", "stem", "fusion", "glimpse", "glimpse_labels", "steps", "minutes", "batch_frames",
                  "lr", "frame_stride", "numeric_negatives", "seed", "save_every", "threads", "init", "no_balance",
                  "eval_max_frames", "eval_every", "device", "precision", "grad_accum", "workers", "stream",
                  "cache_episodes")


_ARCH_OPTIONS = ("patch_size", "dim", "heads", "vision_layers", "fusion_layers", "stem", "fusion", "glimpse",
                 "glimpse_labels")


def _command_line(args: argparse.Namespace) -> str:
    """The full ``genex train-policy`` command that reproduces ``args`` (every option spelled out)."""
    parts = ["genex", "train-policy"]
    for name in _TRAIN_OPTIONS:
        if args.init and name in _ARCH_OPTIONS:
            continue  # with --init the checkpoint's architecture is used, not these
        value = getattr(args, name)
        if value is None or value is False:
            continue
        if value is True:
            parts.append("--" + name.replace("_", "-"))
            continue
        for v in value if isinstance(value, list) else [value]:
            parts += ["--" + name.replace("_", "-"), str(v)]
    return " ".join(shlex.quote(p) for p in parts)


def cmd_train_policy(args: argparse.Namespace) -> int:
    """One process of ``genex train-policy`` (alone, or one of ``accelerate launch``'s): an error that every
    process hit is printed once, by the main process (the others exit 1 quietly)."""
    import os

    from genex.policy.train import TrainConfig, train_policy

    cfg = TrainConfig(
        data=args.data, out=args.out, eval_data=args.eval_data or [], labels=args.labels,
        image_size=args.image_size, patch_size=args.patch_size, dim=args.dim, heads=args.heads,
        vision_layers=args.vision_layers, fusion_layers=args.fusion_layers, stem=args.stem,
        fusion=args.fusion, glimpse=args.glimpse, glimpse_labels=args.glimpse_labels, steps=args.steps,
        minutes=args.minutes, batch_frames=args.batch_frames, lr=args.lr, frame_stride=args.frame_stride,
        numeric_negatives=args.numeric_negatives, seed=args.seed, save_every=args.save_every, threads=args.threads,
        init=args.init, balance=not args.no_balance, eval_max_frames=args.eval_max_frames or None,
        eval_every=args.eval_every, device=args.device, precision=args.precision, grad_accum=args.grad_accum,
        workers=args.workers, stream=args.stream, cache_episodes=args.cache_episodes,
        command=_command_line(args),
    )
    rank = int(os.environ.get("RANK", "0"))  # set by accelerate launch / torchrun
    try:
        meta = train_policy(cfg, progress=not args.quiet, resume=args.resume, stop_after=args.stop_after)
    except (FileNotFoundError, ValueError) as e:
        if rank and getattr(e, "collective", False):
            raise SystemExit(1) from e  # the main process says it
        raise SystemExit(f"genex train-policy{f' (process {rank})' if rank else ''}: {e}") from e
    if rank:
        return 0
    if not meta.get("finished", True):
        print(f"checkpoint: {args.out}  (stopped at step {meta['steps_done']} of {args.steps}, "
              f"{meta['train_seconds']} s; continue with --resume)")
        return 0
    print(f"checkpoint: {args.out}  ({meta['steps_done']} steps, {meta['train_seconds']} s)")
    for key, value in meta.get("heldout", {}).items():
        print(f"  held-out {key:32s} acc={value['acc']:.3f} balanced={value['balanced_acc']:.3f} n={value['n']}")
    return 0


def cmd_eval_policy(args: argparse.Namespace) -> int:
    import json

    import torch

    from genex.policy.checkpoint import load_tiny_vlm
    from genex.policy.data import load_examples, subsample
    from genex.policy.train import evaluate

    torch.set_num_threads(args.threads)
    try:
        model, tokenizer, meta = load_tiny_vlm(args.checkpoint)
        data = load_examples(args.data, model.config.image_size, labels=meta.get("labels", "visible"), seed=args.seed)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"genex eval-policy: {e}") from e
    data = subsample(data, args.max_frames or None)
    metrics = evaluate(model, tokenizer, data, args.reducer, args.k, by_question=args.by_question)
    print(f"{args.checkpoint}: {len(data.frames)} frames, {len(data.examples)} questions, reducer {args.reducer}")
    print("| split | questions | accuracy | balanced accuracy |\n|---|---|---|---|")
    for key in sorted(metrics, key=lambda k: (k != "all", k)):
        m = metrics[key]
        print(f"| {key} | {m['n']} | {m['acc']:.3f} | {m['balanced_acc']:.3f} |")
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(json.dumps({"checkpoint": args.checkpoint, "data": args.data,
                                              "frames": len(data.frames), "metrics": metrics}, indent=2))
    return 0


def cmd_serve_policy(args: argparse.Namespace) -> int:
    """Exit 2 with one line on stderr (no traceback) for anything that keeps the server from starting."""
    import sys

    def fail(message: str) -> int:
        print(f"genex serve-policy: {message}", file=sys.stderr)
        return 2

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        return fail(f"needs FastAPI and uvicorn ({e.name or e} is missing): pip install 'genex[serve]'")
    if args.max_body_mb <= 0 or args.read_timeout <= 0 or not 0 <= args.port <= 65535:
        return fail("--max-body-mb and --read-timeout must be > 0, --port in 0..65535")
    from genex.policy.server import ServeStartupError, serve

    try:
        serve(args.checkpoint, host=args.host, port=args.port, model_name=args.model_name,
              api_key_env=args.api_key_env, max_body_bytes=int(args.max_body_mb * 2 ** 20),
              read_timeout=args.read_timeout)
    except ServeStartupError as e:
        return fail(str(e))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("train-policy", help="train the tiny VLM policy on recorded episodes")
    s.add_argument("--data", action="extend", nargs="+", required=True,
                   help="recording folder(s) (repeatable; several after one flag too, e.g. DIR/{A,B})")
    s.add_argument("--eval-data", action="extend", nargs="+",
                   help="held-out recording folder(s) (repeatable; several after one flag too, e.g. DIR/{A,B})")
    s.add_argument("--out", required=True, help="checkpoint folder to write (atomically); one holding a run is "
                   "refused unless --resume")
    s.add_argument("--labels", choices=("visible", "hidden"), default="visible",
                   help="visible: perception labels (default); hidden: the amortized reference only")
    s.add_argument("--image-size", type=int, default=64, help="frames are resized to this square size")
    s.add_argument("--patch-size", type=int, default=8)
    s.add_argument("--dim", type=int, default=96)
    s.add_argument("--heads", type=int, default=4)
    s.add_argument("--vision-layers", type=int, default=3)
    s.add_argument("--fusion-layers", type=int, default=2)
    s.add_argument("--stem", choices=("patch", "conv"), default="patch",
                   help="patch: one linear map per patch (ViT); conv: 3x3 stride-2 convolutions (reads text faster)")
    s.add_argument("--fusion", choices=("full", "readout"), default="full",
                   help="full: visual tokens re-encoded per question; readout: only a readout token attends to "
                        "the frame's tokens (much cheaper per question)")
    s.add_argument("--glimpse", type=int, default=0,
                   help="pixel-phrase glimpse channels (0: off; needs --fusion readout): the model renders the "
                        "phrases a prompt is about and matches them on the screen (genex.policy.glimpse)")
    s.add_argument("--glimpse-labels", action="store_true",
                   help="with --glimpse: a multi-word label that ends the instruction is one phrase ('Turn on "
                        "Auto brightness' looks for 'Auto brightness', not 'Auto')")
    s.add_argument("--steps", type=int, default=3000)
    s.add_argument("--minutes", type=float, default=None, help="stop after this many minutes of training")
    s.add_argument("--batch-frames", type=int, default=32,
                   help="frames per optimizer step over all processes (the global batch; default 32)")
    s.add_argument("--lr", type=float, default=1e-3)
    s.add_argument("--frame-stride", type=int, default=1, help="keep every n-th recorded frame")
    s.add_argument("--numeric-negatives", type=int, default=0,
                   help="per frame, ask up to N labels with digits as shown (yes) and with one digit changed (no): "
                        "teaches reading numbers such as prices (default 0)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--save-every", type=int, default=500, help="write a resumable checkpoint every N steps")
    s.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    s.add_argument("--eval-max-frames", type=int, default=2000,
                   help="held-out frames evaluated, evenly spaced over all episodes (0: all)")
    s.add_argument("--eval-every", type=int, default=0,
                   help="every N steps, score a quarter of the held-out frames (a learning curve in config.json)")
    s.add_argument("--device", default="cpu", help="cpu (default, deterministic), cuda, mps or auto (under "
                   "`accelerate launch` each process takes its own GPU)")
    s.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto (default): bf16 autocast on a CUDA GPU that has it, fp32 on CPU and MPS")
    s.add_argument("--grad-accum", type=int, default=1,
                   help="split each process's share of the global batch into N micro-batches (less memory, same "
                        "run); --batch-frames must be a multiple of processes x N")
    s.add_argument("--workers", type=int, default=0, help="DataLoader worker processes per training process that "
                   "build the batches (default 0: built in the training loop)")
    s.add_argument("--stream", action="store_true",
                   help="read episode files on demand (a few per reader, see --cache-episodes) instead of loading "
                        "every frame: for data that does not fit in memory")
    s.add_argument("--cache-episodes", type=int, default=8,
                   help="with --stream: resized episodes each reader keeps in memory (default 8)")
    s.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (same options; the number of "
                        "processes, --workers, --grad-accum, --precision, --device and --threads may change)")
    s.add_argument("--stop-after", type=int, default=None,
                   help="return after N steps in this call, leaving a checkpoint to --resume (time-sliced jobs)")
    s.add_argument("--no-balance", action="store_true", help="sample frames uniformly (default: frames showing "
                   "rare answers are drawn more often)")
    s.add_argument("--init", default=None, help="continue training from this checkpoint (its architecture and "
                   "tokenizer are kept)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_train_policy)

    s = sub.add_parser("eval-policy", help="accuracy of a tiny VLM checkpoint on recorded (held-out) episodes")
    s.add_argument("--checkpoint", required=True, help="tiny VLM checkpoint folder")
    s.add_argument("--data", action="extend", nargs="+", required=True,
                   help="recording folder(s) (repeatable; several after one flag too, e.g. DIR/{A,B})")
    s.add_argument("--max-frames", type=int, default=0, help="evenly spaced frames to score (0: all)")
    s.add_argument("--reducer", default="none", choices=("none", "cls", "packer"))
    s.add_argument("--k", type=int, default=16, help="tokens kept by the cls/packer reducer")
    s.add_argument("--seed", type=int, default=12345, help="draws the negative text questions (as training's eval)")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--by-question", action="store_true",
                   help="also one row per fact question and env (where a checkpoint's errors are)")
    s.add_argument("--out", default=None, help="also write the metrics to this JSON file")
    s.set_defaults(func=cmd_eval_policy)

    s = sub.add_parser("serve-policy", help="serve the tiny policy over an OpenAI-compatible chat API")
    s.add_argument("--checkpoint", required=True, help="tiny VLM checkpoint folder")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--model-name", default="genex-tiny")
    s.add_argument("--api-key-env", default=None, help="require this env variable's value as Bearer key")
    s.add_argument("--max-body-mb", type=float, default=8.0,
                   help="largest request body in MiB (default 8); larger ones get 413 before being read")
    s.add_argument("--read-timeout", type=float, default=10.0,
                   help="seconds to wait for the next piece of a request body before answering 408 (default 10)")
    s.set_defaults(func=cmd_serve_policy)
