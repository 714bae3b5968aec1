"""One training loop for the world model: ``Denoiser.forward(batch) -> (loss, logs)``.

Output folder ``out``::

    run.json                 model + train config and data (a resume must match it)
    state/latest.json        step, NumPy RNG state, elapsed time, file name + SHA-256 of the state below
    state/state_XXXXXXX.safetensors   model, EMA, optimizer tensors and the torch RNG state
    model/                   the exported EMA checkpoint (weights.safetensors + config.json)
    metrics.csv              step, loss, lr, eval metrics, seconds
    tb/                      TensorBoard events (when tensorboard is installed)

Every write is atomic (temp file + rename), ``latest.json`` last, so a run
killed at any moment resumes from its last complete checkpoint; a resumed run
draws the same batches and noise as an uninterrupted one (bitwise on CPU).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file

from genex.devices import select_device

from .checkpoint import (CorruptCheckpointError, atomic_save_tensors, atomic_write_bytes, load_denoiser, save_world_model,
                         sha256_file)
from .config import SAMPLING_ONLY, TRAINING_ONLY, TrainConfig, WorldModelConfig
from .data import WindowDataset, load_recordings, split_episodes
from .denoiser import Denoiser
from .sampler import sample_next_frame

__all__ = ["train_world_model", "TrainingStateError"]

log = logging.getLogger(__name__)

CSV_FIELDS = ["step", "loss", "lr", "val_loss", "val_psnr1", "copy_psnr1", "seconds"]


class TrainingStateError(ValueError):
    """The output folder holds another run, or its training state is unusable."""


def _lr_factor(step: int, tc: TrainConfig) -> float:
    if step < tc.warmup_steps:
        return (step + 1) / tc.warmup_steps
    progress = min(1.0, (step - tc.warmup_steps) / max(1, tc.max_steps - tc.warmup_steps))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per item between uint8-range tensors ``[..., H, W, 3]`` (capped at 60 dB)."""
    mse = (a.float() - b.float()).pow(2).flatten(-3).mean(-1)
    return (10 * torch.log10(255.0**2 / mse.clamp_min(255.0**2 * 1e-6)))


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}


class _Logger:
    def __init__(self, out: Path, resume_step: int | None) -> None:
        self.path = out / "metrics.csv"
        rows = []
        if resume_step is not None and self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            w.writeheader()
            w.writerows(rows)
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"))
        except ImportError:
            log.info("tensorboard not installed: metrics go to %s only", self.path)

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=CSV_FIELDS).writerow({k: row.get(k, "") for k in CSV_FIELDS})
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, float):
                    self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


@torch.no_grad()
def _evaluate(denoiser: Denoiser, val: WindowDataset | None, device: torch.device, n: int = 64) -> dict[str, float]:
    """Validation loss and 1-step PSNR (model vs copy-last-frame) on fixed validation windows."""
    if val is None or len(val) == 0:
        return {}
    rng = np.random.default_rng(12345)
    batch = val.sample(rng, min(n, len(val))).to(device)
    cpu_state = torch.get_rng_state()
    torch.manual_seed(0)
    loss, _ = denoiser(batch)
    torch.set_rng_state(cpu_state)
    x = sample_next_frame(denoiser, denoiser.stack_context(batch.context), batch.action,
                          generator=torch.Generator().manual_seed(0))
    pred = x.clamp(-1, 1).add(1).mul(127.5).round().movedim(-3, -1)
    return {"val_loss": float(loss), "val_psnr1": float(psnr(pred, batch.target).mean()),
            "copy_psnr1": float(psnr(batch.context[:, -1], batch.target).mean())}


def train_world_model(
    data_dirs: Sequence[str | Path],
    out: str | Path,
    model_cfg: WorldModelConfig,
    train_cfg: TrainConfig,
    *,
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
    command: str | None = None,
    stop_after: int | None = None,
    init_from: str | Path | None = None,
) -> dict[str, Any]:
    """Train (or resume training) a world model; returns the final metrics.

    ``stop_after``: return after that many steps in this call (the run stays resumable).
    ``init_from``: a checkpoint folder whose weights start the run (fine-tuning; its model config must match
    ``model_cfg`` up to the sampling-only fields); the optimizer and the schedule start afresh.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    tc = train_cfg
    dev = select_device(device)
    run = {"model": model_cfg.to_dict(), "train": asdict(tc), "data": [str(Path(d)) for d in data_dirs]}
    state_dir = out / "state"
    latest_path = state_dir / "latest.json"
    if latest_path.exists() and not resume:
        raise TrainingStateError(f"{out} already holds a training run; pass --resume to continue it or use "
                                 "another --out")
    old = None
    if resume and (out / "run.json").exists():
        old = json.loads((out / "run.json").read_text())
        # a run from before a config field existed was trained with that field's default: fill it in, so adding
        # an option to genex does not make every half-finished run unresumable
        for key, defaults in (("model", WorldModelConfig().to_dict()), ("train", asdict(TrainConfig()))):
            if isinstance(old.get(key), dict):
                old[key] = {**defaults, **old[key]}
    init = None
    if resume and latest_path.exists():
        # the weights come from the run's own state: the start checkpoint is only provenance (it may have moved)
        if old is not None and "init_from" in old:
            run["init_from"] = old["init_from"]
        if init_from is not None and str(Path(init_from)) != run.get("init_from", {}).get("path"):
            log.warning("--init-from %s is ignored: %s resumes from its own checkpoint", init_from, out)
    elif init_from is not None:
        init, init_meta = load_denoiser(init_from)
        theirs, ours = init.cfg.to_dict(), model_cfg.to_dict()
        diff = [f"{k} ({theirs.get(k)!r} vs {ours[k]!r})" for k in sorted(ours)
                if k not in SAMPLING_ONLY + TRAINING_ONLY and theirs.get(k) != ours[k]]
        if diff:
            raise ValueError(f"--init-from {init_from}: its model config differs in {', '.join(diff)}; fine-tune "
                             "with the same --config and network options")
        run["init_from"] = {"path": str(Path(init_from)), "sha256": init_meta.get("sha256")}
    if old is not None and old != run:
        diff = sorted(k for k in run.keys() | old.keys() if old.get(k) != run.get(k))
        hint = (f"; it started from --init-from {old['init_from']['path']}: pass it again"
                if "init_from" in diff and "init_from" in old else "")
        fields_ = []  # name the fields, with the run's value first ("train.precision 'bf16' vs now 'auto'")
        for k in diff:
            a, b = old.get(k), run.get(k)
            if isinstance(a, dict) and isinstance(b, dict):
                fields_ += [f"{k}.{f} {a.get(f)!r} vs now {b.get(f)!r}" for f in sorted(a.keys() | b.keys())
                            if a.get(f) != b.get(f)]
            else:
                fields_.append(k)
        raise TrainingStateError(f"--resume: {out} was started with other settings ({'; '.join(fields_)}){hint}; "
                                 "resume with the same --data, --config and options, or use another --out")
    state_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "run.json", json.dumps(run, indent=2).encode())

    episodes = load_recordings(data_dirs, model_cfg)
    train_eps, val_eps = split_episodes(episodes)
    data = WindowDataset(train_eps, model_cfg.context)
    val = WindowDataset(val_eps, model_cfg.context) if val_eps else None
    log.info("%d training windows from %d episodes, %d validation episodes", len(data), len(train_eps), len(val_eps))

    torch.manual_seed(tc.seed)
    denoiser = Denoiser(model_cfg).to(dev)
    opt = torch.optim.AdamW(denoiser.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    ema = EMAModel(denoiser.parameters(), decay=tc.ema_decay)
    rng = np.random.default_rng(tc.seed)
    step, elapsed = 0, 0.0

    if resume and latest_path.exists():
        latest = json.loads(latest_path.read_text())
        path = state_dir / latest["file"]
        if not path.exists() or sha256_file(path) != latest["sha256"]:
            raise CorruptCheckpointError(f"training state {path} is missing or corrupt; delete {latest_path} to "
                                         "restart from scratch")
        tensors = load_file(str(path))
        denoiser.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        opt.load_state_dict(_unflatten_optimizer(tensors, latest["optimizer"]))
        names = [n for n, _ in denoiser.named_parameters()]
        ema.shadow_params = [tensors[f"ema.{n}"].to(dev) for n in names]
        ema.optimization_step = latest["ema_step"]
        torch.set_rng_state(tensors["rng.torch"])
        rng.bit_generator.state = latest["numpy_rng"]
        step, elapsed = latest["step"], latest["seconds"]
        log.info("resumed %s at step %d", out, step)
    elif init is not None:
        denoiser.load_state_dict(init.state_dict())
        del init
        # a fresh average of the loaded weights (the one made above holds the random init; it matters for an
        # export before the first step, since diffusers' EMA copies the weights at step 1 anyway)
        ema = EMAModel(denoiser.parameters(), decay=tc.ema_decay)
        log.info("starting from the weights of %s", init_from)
    elif resume:
        log.info("--resume: no checkpoint in %s yet, starting from scratch", out)
    logger = _Logger(out, step)
    autocast = _use_bf16(tc.precision, dev)
    log.info("training precision: %s (--precision %s on %s)", "bf16 autocast" if autocast else "fp32",
             tc.precision, dev.type)
    if data.env_ids and tc.source_balance > 0:
        for changed_only in (True, False):
            shares = data.env_shares(tc.source_balance, changed_only=changed_only)
            log.info("batch shares per env (%s windows): %s", "changing" if changed_only else "all",
                     ", ".join(f"{e} {s:.2f}" for e, s in zip(data.env_ids, shares)))

    def export(final: bool = False) -> None:
        ema.store(denoiser.parameters())
        ema.copy_to(denoiser.parameters())
        save_world_model(denoiser, out / "model", extra={
            "data": [_data_info(d) for d in data_dirs], "command": command, "train_seconds": round(elapsed, 1),
            **({"init_from": run["init_from"]} if "init_from" in run else {}),
            "steps": step, "train": asdict(tc), "final": final,
            "precision_used": "bf16" if autocast else "fp32"})
        ema.restore(denoiser.parameters())

    def checkpoint() -> None:
        tensors = {f"model.{k}": v for k, v in denoiser.state_dict().items()}
        for (n, _), s in zip(denoiser.named_parameters(), ema.shadow_params):
            tensors[f"ema.{n}"] = s
        opt_t, opt_meta = _flatten_optimizer(opt)
        tensors.update(opt_t)
        tensors["rng.torch"] = torch.get_rng_state()
        name = f"state_{step:07d}.safetensors"
        atomic_save_tensors(tensors, state_dir / name)
        latest = {"step": step, "file": name, "sha256": sha256_file(state_dir / name), "seconds": elapsed,
                  "numpy_rng": rng.bit_generator.state, "optimizer": opt_meta, "ema_step": ema.optimization_step}
        atomic_write_bytes(latest_path, json.dumps(latest).encode())
        for old in state_dir.glob("state_*.safetensors"):
            if old.name != name:
                old.unlink()
        export()

    metrics: dict[str, Any] = {}
    denoiser.train()
    bar = tqdm(total=tc.max_steps, initial=step, disable=not progress, desc="train world model", unit="step")
    run_steps = 0
    t_last = time.perf_counter()
    try:
        while step < tc.max_steps:
            for g in opt.param_groups:
                g["lr"] = tc.lr * _lr_factor(step, tc)
            batch = data.sample(rng, tc.batch_size, changed_share=tc.changed_share,
                                source_balance=tc.source_balance).to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                loss, logs = denoiser(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(denoiser.parameters(), tc.grad_clip)
            opt.step()
            ema.step(denoiser.parameters())
            step += 1
            run_steps += 1
            now = time.perf_counter()
            elapsed += now - t_last
            t_last = now
            bar.update(1)
            if step % tc.log_every == 0 or step == tc.max_steps:
                row = {"step": step, "loss": logs["loss"], "lr": opt.param_groups[0]["lr"], "seconds": round(elapsed, 2)}
                if step % tc.eval_every == 0 or step == tc.max_steps:
                    ema.store(denoiser.parameters())
                    ema.copy_to(denoiser.parameters())
                    denoiser.eval()
                    row.update(_evaluate(denoiser, val, dev))
                    denoiser.train()
                    ema.restore(denoiser.parameters())
                    t_last = time.perf_counter()  # eval time does not count as training time
                bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if isinstance(v, float)})
                logger.write(row)
                metrics = row
            if step % tc.checkpoint_every == 0 or step == tc.max_steps:
                checkpoint()
            if stop_after is not None and run_steps >= stop_after:
                break
        if step >= tc.max_steps:
            export(final=True)
    finally:
        bar.close()
        logger.close()
    metrics["step"] = step
    return metrics


def _use_bf16(precision: str, dev: torch.device) -> bool:
    """Whether to autocast training to bfloat16 for ``precision`` (fp32 | bf16 | auto) on ``dev``.

    ``auto`` picks bf16 only where it is native: emulated bf16 on a CPU without AVX512-BF16 / AMX ran a
    ``small`` step in ~9.5 s instead of 0.65 s in fp32 (AMD EPYC, 2 threads), which would turn the 40-minute
    driving preset into a 16-hour one. An explicit ``bf16`` is honoured there, with a warning.
    """
    if precision == "fp32":
        return False
    if dev.type == "mps":
        if precision == "bf16":
            log.warning("bf16 autocast is not used on MPS; training in float32")
        return False
    if dev.type == "cuda":
        if not torch.cuda.is_bf16_supported():
            if precision == "bf16":
                log.warning("this GPU has no bfloat16 support: training in float32")
            return False
        return True
    native = _cpu_has_native_bf16()
    if precision == "bf16" and not native:
        log.warning("this CPU may have no native bfloat16 (AVX512-BF16 / AMX-BF16 not found in /proc/cpuinfo): "
                    "bf16 training may be ~10x slower than fp32 (--precision fp32 or auto)")
    return precision == "bf16" or native


def _cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16, from ``/proc/cpuinfo``); False
    where that cannot be read (then the warning says "may")."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _data_info(d: str | Path) -> dict[str, Any]:
    from ..recording import episode_paths, read_manifest

    m = read_manifest(d)
    return {"dir": str(d), "env_id": m.env_id, "driver": m.driver, "base_seed": m.base_seed,
            "episodes": len(episode_paths(d)),
            "env_kwargs": m.env_kwargs}
