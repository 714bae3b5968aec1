"""``genex train-world-model``, ``train-layout``, ``eval-world-model`` and ``imagine-recording`` (added to the
``genex`` CLI)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import numpy as np

    from .config import SamplerConfig

__all__ = ["add_commands", "sampler_from_args"]

log = logging.getLogger(__name__)


def _set_threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def _yes_no(text: str) -> bool:
    """``--keep-layout yes|no`` (also true/false, 1/0)."""
    value = text.strip().lower()
    if value not in ("yes", "no", "true", "false", "1", "0"):
        raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")
    return value in ("yes", "true", "1")


#: the sampling-only fields a script or eval may override: (type, help)
SAMPLING_ARGUMENTS = {
    "steps": (int, "override the checkpoint's denoising steps"),
    "sigma_min": (float, "override the checkpoint's last noise level"),
    "sigma_max": (float, "override the checkpoint's first noise level"),
    "sampler": (str, "override the checkpoint's sampler (euler or heun)"),
    "snap": (float, "override the checkpoint's snap (uint8 levels)"),
    "min_changed_pixels": (int, "override the checkpoint's gate (0 turns it off)"),
    "keep_layout": (_yes_no, "layout models: yes spares the rendered layout's rare-fact cells from the snap and "
                             "the gate"),
    "layout_snap": (float, "with --keep-layout yes: the snap inside those cells (uint8 levels; 0 keeps all)"),
}


def add_sampling_arguments(parser: argparse.ArgumentParser, names: tuple[str, ...] = tuple(SAMPLING_ARGUMENTS)) -> None:
    """Add ``--steps``, ``--sigma-min``, ... (the ``names`` of :data:`SAMPLING_ARGUMENTS`) to ``parser``."""
    for name in names:
        kind, text = SAMPLING_ARGUMENTS[name]
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=text)


def add_window_arguments(parser: argparse.ArgumentParser, *, samples: int = 4, stride: int = 8,
                         horizon: int = 8) -> None:
    """Add ``--horizon``, ``--samples``, ``--stride``, ``--max-episodes`` and ``--seed``: which windows of held-out
    recordings an evaluation reads, and how many futures it imagines from each."""
    parser.add_argument("--horizon", type=int, default=horizon, help="imagined steps per window")
    parser.add_argument("--samples", type=int, default=samples, help="imagined futures per window")
    parser.add_argument("--stride", type=int, default=stride, help="steps between windows in an episode")
    parser.add_argument("--max-episodes", type=int, default=None, help="per data folder")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")


def sampling_overrides(args: argparse.Namespace) -> dict:
    """The sampling fields ``args`` sets (for :meth:`DiffusionWorldModel.set_sampling`)."""
    return {k: getattr(args, k) for k in SAMPLING_ARGUMENTS if getattr(args, k, None) is not None}


def sampler_from_args(args: argparse.Namespace, base: "SamplerConfig") -> "SamplerConfig":
    """The :class:`~genex.world_model.config.SamplerConfig` that ``base`` (the checkpoint's) becomes under the
    sampling flags ``args`` gives (``--steps``, ``--snap``, ``--min-changed-pixels``, ...; ``--steps 0`` keeps the
    checkpoint's). ``--snap 0`` without ``--min-changed-pixels`` also turns the gate off: it counts the pixels left
    after the snap. Invalid values raise ``ValueError``."""
    return base.overridden(sampling_overrides(args))


def _is_main_process() -> bool:
    """Rank 0 of a distributed launch (``accelerate launch`` / ``torchrun`` set ``RANK``), or a plain process."""
    return os.environ.get("RANK", "0") == "0"


def cmd_train(args: argparse.Namespace) -> int:
    """Train on one process, or as one rank under ``accelerate launch`` (each rank runs this same command).

    The start-up checks (run folder, data) are made on every process and agreed on: a problem found on any of them
    is printed once, by the main process, and every process exits with status 1. A later error is printed by the
    process that meets it (the launcher then stops the others).
    """
    from .checkpoint import CheckpointError
    from .config import preset
    from .train import TrainingStateError, train_world_model

    _set_threads(args.threads)
    overrides = {}
    for k in ("max_steps", "batch_size", "checkpoint_every", "eval_every", "seed", "lr", "changed_share", "source_balance",
              "precision", "glimpse_map", "click_text", "p_mean", "p_std", "patch", "change_weight",
              "layout_channels", "agent_weight", "layout_encoder", "layout_lr_scale"):
        v = getattr(args, k)
        if v is not None:
            overrides[k] = v
    for name in ("channels", "agent_facts"):
        text = getattr(args, name)
        if text:
            try:
                overrides[name] = tuple(int(c) for c in text.split(","))
            except ValueError:
                raise SystemExit(f"genex train-world-model: --{name.replace('_', '-')} takes comma-separated integers, "
                                 f"got {text!r}")
    if args.glimpse:
        try:
            overrides["glimpse"] = tuple(int(c) for c in args.glimpse.lower().split("x"))
        except ValueError:
            raise SystemExit(f"genex train-world-model: --glimpse takes HEIGHTxWIDTH (e.g. 16x48), got {args.glimpse!r}")
    try:
        chosen = preset(args.config, **overrides)
        model_cfg, train_cfg = chosen
    except ValueError as e:
        raise SystemExit(f"genex train-world-model: {e}") from e
    command = args.invocation if args.command_line is None else args.command_line
    t0 = time.time()
    try:
        metrics = train_world_model(args.data, args.out, model_cfg, train_cfg, sampler=chosen.sampler,
                                    resume=args.resume, device=args.device,
                                    progress=not args.quiet, command=command, stop_after=args.stop_after,
                                    init_from=args.init_from, grad_accum=args.grad_accum, workers=args.workers,
                                    stream=args.stream, cache_episodes=args.cache_episodes)
    except (TrainingStateError, CheckpointError, ValueError, FileNotFoundError) as e:
        if getattr(e, "collective", False) and not _is_main_process():
            raise SystemExit(1) from e  # the main process prints it
        where = "" if _is_main_process() else f" (process {os.environ.get('RANK')})"
        raise SystemExit(f"genex train-world-model{where}: {e}") from e
    finally:
        _leave_process_group()
    if _is_main_process():
        print(f"trained to step {metrics.get('step')} in {time.time() - t0:.0f}s; model in {Path(args.out) / 'model'}; "
              f"last metrics {json.dumps({k: v for k, v in metrics.items() if k != 'step'})}")
    return 0


def _leave_process_group() -> None:
    """Close the process group a launched run joined (a clean exit; torch warns about one left open)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def layout_data(dirs: list[str], context: int, horizon: int, colour_facts: Sequence[str] = (), palette: int = 8,
                ) -> tuple[dict[str, Any], tuple[np.ndarray, ...]]:
    """The layout windows (:func:`~genex.world_model.layout.layout_windows`) of every episode of recording folders
    ``dirs``: ``({"facts", "action_names", "image_size", "grid"}, (frames, actions, layouts, seen))``, ``seen``
    the last context frame's occupancy (:func:`~genex.world_model.layout.context_layouts`). With
    ``colour_facts`` (fact names), the spec also holds ``"colour_facts"`` (indices) and ``"palettes"`` (``palette``
    colours per fact, :func:`~genex.world_model.layout.fit_palette` on every frame where it shows) and the tuple
    a fifth array, each window's palette indices (:func:`~genex.world_model.layout.window_colours`). Raises
    ``ValueError`` (one line) for folders without occupancy maps (or colours) or that disagree on facts, actions
    or sizes."""
    import numpy as np

    from ..recording import iter_episodes, read_manifest
    from .layout import colour_shown, context_layouts, fit_palette, layout_windows, window_colours

    if colour_facts:  # before any episode is read
        if palette < 1:
            raise ValueError(f"--palette must be >= 1 colours, got {palette}")
        known = read_manifest(dirs[0]).facts
        unknown = sorted(set(colour_facts) - set(known))
        if unknown:
            raise ValueError(f"colour facts {unknown} are not among the recordings' facts {list(known)}")
    spec: dict[str, Any] | None = None
    parts: list[tuple[np.ndarray, ...]] = []
    appearances: list[tuple[Any, np.ndarray, int]] = []
    for d in dirs:
        m = read_manifest(d)
        this = {"facts": tuple(m.facts), "action_names": tuple(m.action_names), "image_size": tuple(m.image_shape[:2])}
        if spec is not None and {k: spec[k] for k in this} != this:
            raise ValueError(f"{d} ({m.env_id}) records other facts, actions or frame size than {dirs[0]}: a layout "
                             "stage serves one scene")
        for ep in iter_episodes(d):
            if ep.occupancy is None:
                raise ValueError(f"{d} has no occupancy maps (info['occupancy']): re-record it with `genex record` "
                                 "into a new folder")
            grid = tuple(int(g) for g in ep.occupancy.shape[-2:])
            if spec is None:
                spec = {**this, "grid": grid}
            elif grid != spec["grid"]:
                raise ValueError(f"{d} has occupancy grid {grid}, other episodes {spec['grid']}")
            parts.append((*layout_windows(ep.occupancy, ep.frames, ep.discrete_actions, context, horizon),
                          context_layouts(ep.occupancy, context, horizon)))
            if colour_facts:
                if ep.appearance is None:
                    raise ValueError(f"{d} has no colours of its facts (info['appearance']): re-record it with "
                                     "`genex record` into a new folder")
                appearances.append((ep.appearance, ep.occupancy, len(ep.discrete_actions)))
    if spec is None:
        raise ValueError(f"no episodes in {dirs}")
    frames, actions, layouts, seen = (np.concatenate([p[i] for p in parts]) for i in range(4))
    if not colour_facts:
        return spec, (frames, actions, layouts, seen)
    idx = [spec["facts"].index(f) for f in colour_facts]
    palettes = []
    for f in idx:
        shown = [a[colour_shown(a, o, f), f] for a, o, _ in appearances]
        palettes.append(fit_palette(np.concatenate(shown), palette).tolist())
    colours = np.concatenate([window_colours(a, o, n, context, horizon, idx, palettes) for a, o, n in appearances])
    return {**spec, "colour_facts": idx, "palettes": palettes}, (frames, actions, layouts, seen, colours)


def _check_renderer(folder: Path, facts: tuple[str, ...], image_size: tuple[int, ...]) -> None:
    """Refuse a layout stage that the renderer already in ``folder`` (if any) could not draw."""
    cfg_path = folder / "config.json"
    if not cfg_path.exists():
        return
    from .config import configs_from_dict

    cfg, _ = configs_from_dict(json.loads(cfg_path.read_text())["model"])
    if cfg.layout_channels != len(facts) or (cfg.height, cfg.width) != tuple(image_size):
        raise ValueError(f"the renderer in {folder} is conditioned on layout_channels={cfg.layout_channels} of "
                         f"{cfg.height}x{cfg.width} frames; this data has {len(facts)} facts of "
                         f"{image_size[0]}x{image_size[1]} frames")


def cmd_train_layout(args: argparse.Namespace) -> int:
    """Fit the stochastic layout stage (:mod:`.layout`) on recordings' occupancy maps and write it into a
    checkpoint folder (``layout.safetensors`` + ``layout.json``), beside the renderer of ``--config small-layout``
    or before it is trained."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from .layout import LayoutConfig, LayoutModel, fit_layout, save_layout

    _set_threads(args.threads)
    out = Path(args.out)
    try:
        colour_facts = [f for f in (args.colour_facts or "").split(",") if f]
        spec, arrays = layout_data(args.data, args.context, args.horizon, colour_facts, args.palette)
        frames, actions, layouts, seen = arrays[:4]
        colours = arrays[4] if colour_facts else None
        if not len(frames):
            raise ValueError(f"no window of {args.context} + {args.horizon} steps in {args.data}: episodes too short")
        _check_renderer(out, spec["facts"], spec["image_size"])
        cfg = LayoutConfig(facts=spec["facts"], n_actions=len(spec["action_names"]), grid=spec["grid"],
                           context=args.context, horizon=args.horizon, components=args.components,
                           channels=args.channels, image_size=spec["image_size"], action_names=spec["action_names"],
                           persistent=args.presence == "persistent", seen_weight=args.seen_weight,
                           colour_facts=spec.get("colour_facts", ()), palettes=spec.get("palettes", ()))
        torch.manual_seed(args.seed)
        model = LayoutModel(cfg)
    except (ValueError, KeyError, FileNotFoundError) as e:
        raise SystemExit(f"genex train-layout: {e}") from e
    t0 = time.time()
    with tqdm(total=args.steps, desc="train layout", unit="step", disable=args.quiet) as bar:
        def on_step(step: int, loss: float) -> None:
            bar.update(1)
            if step % 10 == 0 or step == args.steps:
                bar.set_postfix(loss=f"{loss:.3g}")

        losses = fit_layout(model, frames, actions, layouts, steps=args.steps, batch_size=args.batch_size,
                            lr=args.lr, seed=args.seed, on_step=on_step, seen=seen, colours=colours)
    save_layout(model, out)
    last = float(np.mean(losses[-min(50, len(losses)):])) if losses else float("nan")
    print(f"fitted a layout stage of {list(cfg.facts)} on {len(frames)} windows in {time.time() - t0:.0f}s "
          f"(loss {last:.3g} nats per window, mean of the last steps); wrote {out / 'layout.safetensors'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .checkpoint import CheckpointError
    from .evaluate import evaluate_cli

    _set_threads(args.threads)
    try:
        return evaluate_cli(args)
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        raise SystemExit(f"genex eval-world-model: {e}") from e


def cmd_imagine_recording(args: argparse.Namespace) -> int:
    from ..recording import ManifestMismatchError
    from .checkpoint import CheckpointError, load_world_model
    from .imagined_recording import imagine_recording

    _set_threads(args.threads)
    try:
        model = load_world_model(args.world_model, device=args.device)
        counts = imagine_recording(model, args.data, args.out, min_psnr=args.min_psnr, min_changed=args.min_changed,
                                   seed=args.seed, max_episodes=args.max_episodes, world_model_path=args.world_model,
                                   progress=not args.quiet, unroll=args.unroll)
    except (CheckpointError, ManifestMismatchError, ValueError, FileNotFoundError) as e:
        raise SystemExit(f"genex imagine-recording: {e}") from e
    print(f"{args.out}: {counts['imagined']} of {counts['frames']} frames imagined, {counts['kept_real']} kept real "
          f"(PSNR below {args.min_psnr:g} dB), {counts['unchanged']} not imagined (change below {args.min_changed:g}), "
          f"{counts['episodes']} episodes written, {counts['skipped_existing']} already there")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("train-world-model", help="train the action-conditioned diffusion world model (one process, or "
                                                 "N under `accelerate launch -m genex.cli train-world-model ...`)")
    s.add_argument("--data", action="extend", nargs="+", required=True,
                   help="recording folder(s) from `genex record` (repeatable; several after one flag too, "
                        "e.g. DIR/{A,B})")
    s.add_argument("--config", default="small",
                   help="preset: tiny, small (driving 64x64), small-layout (driving model v2: the renderer of a "
                        "sampled layout; then `genex train-layout` into OUT/model), driving-gpu, gui-small (GUI "
                        "128x128)")
    s.add_argument("--out", required=True, help="run folder (checkpoints, metrics.csv, model/)")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    s.add_argument("--device", default="auto",
                   help="auto (CUDA, MPS, CPU), cpu, cuda, mps; under accelerate launch each process takes its own GPU "
                        "(cpu: gloo DDP between CPU processes)")
    s.add_argument("--threads", type=int, default=None, help="torch CPU threads (per process)")
    s.add_argument("--max-steps", type=int, default=None)
    s.add_argument("--batch-size", type=int, default=None,
                   help="the global batch of an optimizer step, whatever the number of processes (preset's default)")
    s.add_argument("--lr", type=float, default=None)
    s.add_argument("--checkpoint-every", type=int, default=None)
    s.add_argument("--eval-every", type=int, default=None)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--channels", default=None,
                   help="UNet widths per resolution, e.g. 16,32,32 (default: the preset's); part of the checkpoint")
    s.add_argument("--patch", type=int, default=None,
                   help="pixel-unshuffle factor before the UNet (1: full resolution; preset small: 2); part of the "
                        "checkpoint")
    s.add_argument("--glimpse", default=None,
                   help="GUI: HEIGHTxWIDTH pixels of the click glimpse (the patch under a click; 0x0 disables it); "
                        "part of the checkpoint")
    s.add_argument("--glimpse-map", type=int, default=None,
                   help="GUI: channels of a coarse spatial map decoded from the glimpse and stacked with the UNet "
                        "input (0 disables it); part of the checkpoint")
    s.add_argument("--click-text", action=argparse.BooleanOptionalAction, default=None,
                   help="GUI: condition a click on the label of the widget it targets (recorded by genex record; "
                        "gui-small: on); part of the checkpoint")
    s.add_argument("--changed-share", type=float, default=None,
                   help="share of each batch from windows where >= 5%% of the pixels change (GUI videos are mostly static)")
    s.add_argument("--source-balance", type=float, default=None,
                   help="0: windows drawn uniformly; 1: every env (app, scene) gets the same share of each batch")
    s.add_argument("--precision", choices=("fp32", "bf16", "auto"), default=None,
                   help="training forward pass in float32 or bfloat16 autocast; auto (the presets): bf16 where native "
                        "(CUDA, CPUs with AVX512-BF16/AMX), else fp32")
    s.add_argument("--p-mean", type=float, default=None,
                   help="training noise levels: log(sigma) ~ N(p_mean, p_std^2) (preset small: 2.0)")
    s.add_argument("--p-std", type=float, default=None, help="see --p-mean (preset small: 1.5)")
    s.add_argument("--change-weight", type=float, default=None,
                   help="extra loss weight on pixels that change (0: plain EDM loss; see WorldModelConfig)")
    s.add_argument("--layout-channels", type=int, default=None,
                   help="driving model v2: condition on the target frame's occupancy of this many facts (the scene's "
                        "number of facts; preset small-layout: 5, OccludedCrosswalk); 0: no layout. Part of the "
                        "checkpoint")
    s.add_argument("--agent-weight", type=float, default=None,
                   help="with --layout-channels: extra loss weight on pixels inside occupied cells (small-layout: 4)")
    s.add_argument("--agent-facts", default=None,
                   help="comma-separated fact indices whose cells --agent-weight weighs (default: every fact's; "
                        "small-layout-v2: 0,1,4, the crosswalk's pedestrian, ball and oncoming car)")
    s.add_argument("--layout-encoder", type=int, default=None,
                   help="with --layout-channels: width of the CNN that reads the layout and adds to the UNet's first "
                        "feature map (0: layout maps as input channels; small-layout-v2: 32). Part of the checkpoint")
    s.add_argument("--layout-lr-scale", type=float, default=None,
                   help="learning rate of the layout encoder as a multiple of --lr, without weight decay "
                        "(small-layout-v2: 10)")
    s.add_argument("--init-from", default=None,
                   help="checkpoint folder whose weights start the run (fine-tuning; same --config and network; for "
                        "--config small-layout also a model without layout inputs, e.g. the shipped driving model: "
                        "the new input channels start at zero weights, so the run starts from that model exactly)")
    s.add_argument("--grad-accum", type=int, default=1,
                   help="micro-batches per optimizer step; --batch-size stays the global batch of a step, split over "
                        "processes x grad-accum (it must divide evenly)")
    s.add_argument("--workers", type=int, default=0,
                   help="DataLoader worker processes per training process (0: load batches in the training process)")
    s.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                   help="read episode frames from disk on demand (an LRU cache of --cache-episodes) instead of "
                        "holding all frames in memory; default: stream when the frames x processes on this machine "
                        "exceed half of the available memory")
    s.add_argument("--cache-episodes", type=int, default=64,
                   help="with --stream: decoded episodes kept per loading process")
    s.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
    s.add_argument("--command-line", default=None, help=argparse.SUPPRESS)
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("train-layout", help="fit the stochastic layout stage of the driving model v2 on recordings' "
                                            "occupancy maps, into a checkpoint folder")
    s.add_argument("--data", action="extend", nargs="+", required=True,
                   help="recording folder(s) from `genex record` of one scene, with occupancy maps")
    s.add_argument("--out", required=True,
                   help="checkpoint folder to write layout.safetensors and layout.json into (e.g. the model/ folder "
                        "of a `genex train-world-model --config small-layout` run)")
    s.add_argument("--steps", type=int, required=True, help="optimizer steps")
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--lr", type=float, default=1e-2)
    s.add_argument("--components", type=int, default=8, help="mixture components (distinct futures) per fact")
    s.add_argument("--horizon", type=int, default=8, help="future steps laid out at once")
    s.add_argument("--context", type=int, default=4, help="real frames the stage sees")
    s.add_argument("--channels", type=int, default=32, help="width of the stage's network")
    s.add_argument("--presence", choices=("persistent", "independent"), default="persistent",
                   help="whether a fact shows at a step: a two-state chain given the step before (persistent: a "
                        "road user in view stays in view) or independent steps (the first stage)")
    s.add_argument("--seen-weight", type=float, default=1.0,
                   help="weight of the auxiliary loss that teaches the stage's encoder to see what is in view (the "
                        "last context frame's occupancy); 0: none (the first stage)")
    s.add_argument("--colour-facts", default="",
                   help="comma-separated facts whose colour the stage also samples (e.g. pedestrian,ball,"
                        "oncoming_car), for a renderer told colours (--config small-layout-v3); needs recordings "
                        "with info['appearance']")
    s.add_argument("--palette", type=int, default=8, help="colours per colour fact (k-means on the recordings)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train_layout)

    s = sub.add_parser("eval-world-model", help="PSNR/SSIM per horizon vs copy-last and oracle on held-out episodes")
    s.add_argument("--checkpoint", required=True, help="checkpoint folder (weights.safetensors + config.json)")
    s.add_argument("--data", action="extend", nargs="+", required=True,
                   help="held-out recording folder(s) (repeatable; several after one flag too, e.g. DIR/{A,B})")
    s.add_argument("--out", required=True, help="folder for metrics.json, metrics.csv and the figure")
    add_window_arguments(s)
    s.add_argument("--no-oracle", action="store_true", help="skip the oracle (it replays the env)")
    s.add_argument("--steps", type=int, default=None, help="override the checkpoint's denoising steps")
    s.add_argument("--snap", type=float, default=None,
                   help="override the checkpoint's snap (changes below this many uint8 levels are copied exactly)")
    s.add_argument("--min-changed-pixels", type=int, default=None,
                   help="override the checkpoint's min_changed_pixels (a sampled change touching fewer pixels is "
                        "dropped: the last frame is copied)")
    s.add_argument("--policy", default=None,
                   help="tiny policy checkpoint: also report whether the samples agree on the hidden agent showing up")
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--device", default="auto")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("imagine-recording",
                       help="copy a recording with each frame imagined (one or --unroll steps ahead; a layout "
                            "renderer draws the recorded layouts): policy training data")
    s.add_argument("--world-model", required=True, help="world model checkpoint folder")
    s.add_argument("--data", required=True, help="recording folder from `genex record`")
    s.add_argument("--out", required=True, help="new recording folder (re-run to resume)")
    s.add_argument("--min-psnr", type=float, default=20.0,
                   help="keep the real frame where the imagined one is further than this (dB): its labels would lie")
    s.add_argument("--min-changed", type=float, default=0.0,
                   help="imagine only steps whose real frame changes at least this share of the pixels (others stay "
                        "real; GUI videos are mostly static)")
    s.add_argument("--unroll", type=int, default=1,
                   help="imagine each frame this many steps ahead of the real frames (the earlier ones fed back, "
                        "as in a planner's rollout)")
    s.add_argument("--max-episodes", type=int, default=None)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--device", default="auto")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_imagine_recording)
