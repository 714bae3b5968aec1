"""One training loop for the world model: ``Denoiser.forward(batch) -> (loss, logs)``, on Hugging Face Accelerate.

The same call (and ``genex train-world-model``) runs on 1 CPU, 1 GPU or N GPUs/nodes: launched plainly it is
one process; under ``accelerate launch`` (or ``torchrun``) each process is a DDP rank (gloo on CPUs, NCCL on
GPUs). What a run means does not depend on how many processes run it:

* ``TrainConfig.batch_size`` is the *global* batch of one optimizer step. Each of N processes takes
  ``batch_size / N`` of it, split again into ``grad_accum`` micro-batches (it must divide evenly).
* Split into several shards (``N x grad_accum > 1``), the global batch of step ``s`` is drawn from
  ``numpy.random.default_rng([seed, s])`` and the diffusion noise of its shard ``k`` (``micro * N + rank``)
  from ``torch.manual_seed(f(seed, s, k))`` (:class:`~genex.world_model.data.StepBatchSampler`): 2 processes
  follow 1 process with 2 micro-batches up to float rounding (bitwise on this CPU), and nothing random needs
  checkpointing. One process with one micro-batch draws as genex always did (one NumPy generator and the
  torch RNG, both checkpointed): bit-identical to the loop before Accelerate, old half-finished runs included.
* A resumed run draws what an uninterrupted one would (bitwise on CPU). It may resume on another number of
  processes or micro-batches: the global batch (in ``run.json``, with the rest of the config, which must not
  change) is the same; from there on its random draws are those of the new split.
* Only the main process evaluates, writes metrics and checkpoints (between ``wait_for_everyone`` barriers) and
  keeps the EMA; a problem with the data or the run folder found on any process stops all of them with one
  message.

Output folder ``out``::

    run.json                 model + train config and data (a resume must match it)
    state/latest.json        step, elapsed time, processes x micro-batches, NumPy RNG state (one stream),
                             file name + SHA-256 of the state below
    state/state_XXXXXXX.safetensors   model, EMA, optimizer tensors and the torch RNG state
    model/                   the exported EMA checkpoint (weights.safetensors + config.json)
    metrics.csv              step, loss, lr, eval metrics, seconds
    tb/                      TensorBoard events (when tensorboard is installed)

Every write is atomic (temp file + rename), ``latest.json`` last, so a run killed at any moment resumes from
its last complete checkpoint.

The loop is :class:`WorldModelTrainer`; :func:`train_world_model` (``genex train-world-model``) runs it with
its default hooks. An experiment that trains differently (strided windows, oversampled windows, another loss)
subclasses it and overrides a hook, and so keeps everything above, instead of copying the loop::

    class PoolTrainer(WorldModelTrainer):
        def draw_indices(self, data, rng, n):  # every window of a batch from a pool
            return self.pool[rng.integers(0, len(self.pool), size=n)]

    PoolTrainer(data_dirs, out, model_cfg, train_cfg, init_from="checkpoints/world_model/driving").train()
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file

from genex.devices import reset_plain_accelerate_state, select_device
from genex.training import TrainingInputError, fail_together

from .checkpoint import (CorruptCheckpointError, atomic_save_tensors, atomic_write_bytes, load_denoiser, save_world_model,
                         sha256_file)
from .config import SAMPLING_ONLY, TRAINING_ONLY, SamplerConfig, TrainConfig, WorldModelConfig
from .data import (EpisodeRef, StepBatchSampler, StreamingWindowDataset, WindowDataset, collate_batch, scan_recordings,
                   split_episodes)
from .denoiser import Batch, Denoiser
from .network import widen_for_appearance, widen_for_layout
from .sampler import sample_next_frame

if TYPE_CHECKING:
    from accelerate import PartialState

__all__ = ["train_world_model", "WorldModelTrainer", "TrainingStateError", "TrainingInputError"]

log = logging.getLogger(__name__)

CSV_FIELDS = ["step", "loss", "lr", "val_loss", "val_psnr1", "copy_psnr1", "seconds"]


class TrainingStateError(ValueError):
    """The output folder holds another run, or its training state is unusable."""


def _lr_factor(step: int, tc: TrainConfig) -> float:
    if step < tc.warmup_steps:
        return (step + 1) / tc.warmup_steps
    progress = min(1.0, (step - tc.warmup_steps) / max(1, tc.max_steps - tc.warmup_steps))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(denoiser: Denoiser, tc: TrainConfig) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: everything at ``tc.lr`` with weight decay, and a layout encoder's
    parameters (if any) at ``tc.lr * tc.layout_lr_scale`` without it (the schedule keeps the ratio: ``lr_scale``)."""
    named = list(denoiser.named_parameters())
    layout = [p for n, p in named if ".layout_encoder." in f".{n}"]
    rest = [p for n, p in named if ".layout_encoder." not in f".{n}"]
    if not layout:
        return [{"params": rest}]
    return [{"params": rest},
            {"params": layout, "lr": tc.lr * tc.layout_lr_scale, "weight_decay": 0.0, "lr_scale": tc.layout_lr_scale}]


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
                          generator=torch.Generator().manual_seed(0), layout=batch.layout)
    pred = x.clamp(-1, 1).add(1).mul(127.5).round().movedim(-3, -1)
    return {"val_loss": float(loss), "val_psnr1": float(psnr(pred, batch.target).mean()),
            "copy_psnr1": float(psnr(batch.context[:, -1], batch.target).mean())}


@dataclass
class _Setup:
    """What every process checked before training: the run record, the episodes, the start weights."""

    run: dict[str, Any]
    init: Denoiser | None
    train: list[EpisodeRef] = field(default_factory=list)
    val: list[EpisodeRef] = field(default_factory=list)


def _prepare(data_dirs: Sequence[str | Path], out: Path, model_cfg: WorldModelConfig, tc: TrainConfig, *,
             resume: bool, init_from: str | Path | None, processes: int = 1, grad_accum: int = 1,
             main: bool = True, sampler: SamplerConfig | None = None,
             settings: dict[str, Any] | None = None) -> _Setup:
    """Check the run folder and the start checkpoint; raises on anything that would stop training.
    ``settings``: a trainer subclass's own (``run.json``'s ``"trainer"``, when not empty)."""
    sampler = sampler if sampler is not None else SamplerConfig()
    run: dict[str, Any] = {"model": model_cfg.to_dict(), "sampler": sampler.to_dict(), "train": asdict(tc),
                           "data": [str(Path(d)) for d in data_dirs]}
    if settings:
        run["trainer"] = settings
    latest_path = out / "state" / "latest.json"
    if latest_path.exists() and not resume:
        raise TrainingStateError(f"{out} already holds a training run; pass --resume to continue it or use "
                                 "another --out")
    if tc.batch_size % (processes * grad_accum):
        raise ValueError(f"the batch size {tc.batch_size} is the global batch of a step: it must be divisible by "
                         f"{processes} process(es) x --grad-accum {grad_accum} = {processes * grad_accum}, so that "
                         "every micro-batch is the same size; pick another --batch-size, --grad-accum or number of "
                         "processes")
    old = None
    if resume and (out / "run.json").exists():
        old = json.loads((out / "run.json").read_text())
        if isinstance(old.get("model"), dict) and "sampler" not in old:  # saved before the sampler had its config
            moved = {k: old["model"].pop(k) for k in list(old["model"]) if k in SAMPLING_ONLY}
            old["sampler"] = {**SamplerConfig().to_dict(), **moved}
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
        if main and init_from is not None and str(Path(init_from)) != run.get("init_from", {}).get("path"):
            log.warning("--init-from %s is ignored: %s resumes from its own checkpoint", init_from, out)
    elif init_from is not None:
        init, init_meta = load_denoiser(init_from)
        try:
            if model_cfg.layout_channels and not init.cfg.layout_channels:
                # the v2 renderer from a model without layout inputs: zero weights for the new channels (it starts
                # as that model, and learns to read the layout)
                # the new layers' start (layout_encoder) is seeded, whatever ran before; CPU only (every rank runs
                # this)
                with torch.random.fork_rng(devices=[]):
                    torch.random.default_generator.manual_seed(0)
                    widened = Denoiser(model_cfg)
                widened.load_state_dict(widen_for_layout(init.state_dict(), init.cfg, model_cfg,
                                                          widened.state_dict()))
                init = widened
            if model_cfg.appearance_facts and not init.cfg.appearance_facts:
                # told the colours too: zero weights for the colour channels (it starts as the model it came from)
                widened = Denoiser(model_cfg)
                widened.load_state_dict(widen_for_appearance(init.state_dict(), init.cfg, model_cfg))
                init = widened
        except ValueError as e:
            raise ValueError(f"--init-from {init_from}: {e}; fine-tune with the same --config and network "
                             "options") from e
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
    return _Setup(run=run, init=init)


def _process_state(device: str) -> "PartialState":
    """Accelerate's process state for ``device`` (auto | cpu | cuda[:i] | mps); under a launcher this joins the
    process group. A plain process starts afresh, so successive runs in one Python process may use another
    device or precision (accelerate's state is process-global)."""
    from accelerate.state import PartialState

    reset_plain_accelerate_state()
    if device not in ("auto", "cpu"):
        dev = select_device(device)  # a clear error where it is missing
        if dev.type == "cuda" and dev.index is not None and "LOCAL_RANK" not in os.environ:
            torch.cuda.set_device(dev.index)
    return PartialState(cpu=device == "cpu")


def _read_state(out: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """``(latest.json, state tensors)`` of the run in ``out``, checked against their hash; None if it has none."""
    latest_path = out / "state" / "latest.json"
    if not latest_path.exists():
        return None
    latest = json.loads(latest_path.read_text())
    path = out / "state" / latest["file"]
    if not path.exists() or sha256_file(path) != latest["sha256"]:
        raise CorruptCheckpointError(f"training state {path} is missing or corrupt; delete {latest_path} to "
                                     "restart from scratch")
    return latest, load_file(str(path))


def _noise_seed(seed: int, step: int, shard: int) -> int:
    """The torch seed of the diffusion noise of shard ``shard`` (``micro * processes + rank``) of step ``step``."""
    return int(np.random.SeedSequence([seed % 2**32, step, shard]).generate_state(1)[0])


def _available_memory() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover - psutil comes with accelerate
        return 8 << 30


class WorldModelTrainer:
    """The world-model training loop, with hooks that experiments override instead of copying the loop.

    ``WorldModelTrainer(data_dirs, out, model_cfg, train_cfg, **options).train()`` is
    :func:`train_world_model` (same arguments, bit-identical with the default hooks). The loop keeps what
    every run needs and a copy would lose: Accelerate DDP, bf16, gradient accumulation, the global batch
    split, streaming data, the EMA, resumable atomic checkpoints written by the main process, start-up errors
    shared by all processes. A subclass overrides only what its run changes:

    * :meth:`episodes`: which recorded episodes train and validate (e.g. a few, all for training);
    * :meth:`windows`: the window dataset over episodes (e.g. strided windows);
    * :meth:`draw_indices`: the window indices of each step's global batch (e.g. oversample a pool);
    * :meth:`lr_factor`: the learning-rate schedule;
    * :meth:`compute_loss`: the loss of a (micro-)batch (e.g. weight some pixels);
    * :meth:`evaluate`, :meth:`log_metrics`, :meth:`on_step_end`, :meth:`on_checkpoint`: metrics and callbacks;
    * :meth:`settings`, :meth:`export_extra`: what the subclass adds to ``run.json`` (a resume must match it)
      and to the exported checkpoint's ``config.json``.

    Fine-tuning needs no hook: ``init_from`` starts from a checkpoint's weights. Hooks run on every process
    (the callbacks and :meth:`evaluate`: on the main process only) and must draw the same on each, so a
    distributed run stays one run. Attributes set by :meth:`train` for the hooks: ``data`` (training windows),
    ``val`` (validation windows, main process), ``step`` (optimizer steps done), ``device``.
    """

    def __init__(self, data_dirs: Sequence[str | Path], out: str | Path, model_cfg: WorldModelConfig,
                 train_cfg: TrainConfig, *, resume: bool = False, device: str = "auto", progress: bool = True,
                 command: str | None = None, stop_after: int | None = None, init_from: str | Path | None = None,
                 grad_accum: int = 1, workers: int = 0, stream: bool | None = None, cache_episodes: int = 64,
                 sampler: SamplerConfig | None = None) -> None:
        self.data_dirs, self.out, self.model_cfg, self.tc = list(data_dirs), Path(out), model_cfg, train_cfg
        self.resume, self.device_name, self.progress, self.command = resume, device, progress, command
        self.stop_after, self.init_from, self.grad_accum, self.workers = stop_after, init_from, grad_accum, workers
        self.stream, self.cache_episodes = stream, cache_episodes
        self.sampler = sampler if sampler is not None else SamplerConfig()
        self.data: WindowDataset | None = None
        self.val: WindowDataset | None = None
        self.step = 0
        self.device = torch.device("cpu")
        self._logger: _Logger | None = None

    # -- hooks ----------------------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """What else defines this run (a subclass's options, e.g. its stride): recorded in ``run.json`` under
        ``"trainer"`` when not empty, so ``--resume`` with other settings is refused."""
        return {}

    def episodes(self) -> tuple[list[EpisodeRef], list[EpisodeRef]]:
        """``(train, validation)`` episodes: the deterministic split of every episode of ``data_dirs``."""
        return split_episodes(scan_recordings(self.data_dirs, self.model_cfg))

    def windows(self, refs: list[EpisodeRef], stream: bool) -> WindowDataset:
        """The windows of ``refs`` (training with ``stream`` as chosen; validation in memory)."""
        layout = self.model_cfg.layout_channels > 0  # batches carry the target frames' occupancy
        if stream:
            return StreamingWindowDataset(refs, self.model_cfg.context, cache_episodes=self.cache_episodes,
                                          layout=layout)
        return WindowDataset.from_refs(refs, self.model_cfg.context, layout=layout)

    def draw_indices(self, data: WindowDataset, rng: np.random.Generator, n: int) -> np.ndarray:
        """``int64[n]``: the window indices of one step's global batch, drawn from ``rng`` only (the step's own
        generator, or the run's single stream; see :class:`StepBatchSampler`, which also shuffles them across
        shards). Default: uniform, with the config's ``changed_share`` and ``source_balance``."""
        return data.draw_indices(rng, n, changed_share=self.tc.changed_share, source_balance=self.tc.source_balance)

    def lr_factor(self, step: int) -> float:
        """The learning rate of (0-based) step ``step`` over ``train_cfg.lr``: linear warm-up, cosine to 0.1."""
        return _lr_factor(step, self.tc)

    def compute_loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """``(loss, logs)`` of a micro-batch; ``logs["loss"]`` (a float) is what the metrics average. ``model``
        is the prepared (DDP, autocast) :class:`Denoiser`: call it for its forward pass so gradients sync.
        A subclass that changes the batch calls this with its batch (the colour dropout applies)."""
        return model(self.drop_colours(batch))

    def drop_colours(self, batch: Batch) -> Batch:
        """``batch`` with the colour channels of ``train_cfg.appearance_dropout`` of its windows zeroed ("colour
        unknown"), chosen by a generator seeded with the run's seed and the step (so a resumed run draws the same;
        the micro-batches of one step share the row pattern, not the windows); unchanged for a model without
        ``appearance_facts``."""
        cfg = self.model_cfg
        if not cfg.appearance_facts or self.tc.appearance_dropout <= 0 or batch.layout is None:
            return batch
        gen = torch.Generator().manual_seed(int(self.tc.seed) * 1_000_003 + int(self.step))
        drop = (torch.rand(batch.layout.shape[0], generator=gen) < self.tc.appearance_dropout).to(batch.layout.device)
        layout = batch.layout.clone()
        layout[drop, cfg.layout_channels:] = 0
        return Batch(batch.context, batch.action, batch.target, layout)

    def evaluate(self, model: Denoiser) -> dict[str, float]:
        """Metrics of the EMA weights ``model`` (main process, every ``eval_every`` steps): validation loss and
        1-step PSNR on fixed validation windows. Keys outside ``metrics.csv``'s columns go to TensorBoard."""
        return _evaluate(model, self.val, self.device)

    def log_metrics(self, row: dict[str, Any]) -> None:
        """Write a metrics row (main process, every ``log_every`` steps) to ``metrics.csv`` and TensorBoard."""
        if self._logger is not None:
            self._logger.write(row)

    def on_step_end(self, step: int, row: dict[str, Any] | None) -> None:
        """After optimizer step ``step`` (1-based, every process); ``row`` is the metrics row if one was logged."""

    def on_checkpoint(self, step: int) -> None:
        """After the main process wrote the checkpoint (and exported the EMA model) of step ``step``."""

    def export_extra(self) -> dict[str, Any]:
        """Entries added to the exported checkpoint's ``config.json`` (e.g. the subclass's settings)."""
        return {}

    # -- the loop -------------------------------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """Train (or resume training); returns the final metrics (on other than the main process, only the
        step). See :func:`train_world_model` for the options."""
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration
        from tqdm.auto import tqdm

        out, tc, model_cfg, grad_accum = self.out, self.tc, self.model_cfg, self.grad_accum
        workers, stream, cache_episodes, device = self.workers, self.stream, self.cache_episodes, self.device_name
        state = _process_state(device)
        main, n_proc, rank = state.is_main_process, state.num_processes, state.process_index
        say = log.info if main else (lambda *a, **k: None)
        error, setup, data, val, saved = None, None, None, None, None
        try:  # checks, missing folders, unreadable episodes: found on any process, they stop every process
            if grad_accum < 1 or workers < 0 or cache_episodes < 1:
                raise ValueError(f"--grad-accum and --cache-episodes must be >= 1 and --workers >= 0, got "
                                 f"{grad_accum}, {cache_episodes} and {workers}")
            setup = _prepare(self.data_dirs, out, model_cfg, tc, resume=self.resume, init_from=self.init_from,
                             sampler=self.sampler, processes=n_proc, grad_accum=grad_accum, main=main,
                             settings=self.settings())
            setup.train, setup.val = self.episodes()
            frame_bytes = sum(r.nbytes for r in setup.train)
            local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", n_proc))
            if stream is None:
                stream = frame_bytes * local_procs > _available_memory() // 2
            data = self.windows(setup.train, stream)
            if stream:
                say("streaming %d training episodes (%.2f GB of frames) from disk, at most %d decoded at a time per "
                    "loading process (<= %.0f MB)", len(setup.train), frame_bytes / 1e9, cache_episodes,
                    min(cache_episodes, len(setup.train)) * max(r.nbytes for r in setup.train) / 1e6)
            else:
                say("%.2f GB of training frames in memory in each of %d process(es) on this machine",
                    frame_bytes / 1e9, local_procs)
            val = self.windows(setup.val, False) if setup.val and main else None
            saved = _read_state(out) if self.resume else None
        except (ValueError, OSError, KeyError) as e:
            error = e
        fail_together(state.num_processes, error)
        assert setup is not None and data is not None
        self.data, self.val = data, val
        say("%d training windows from %d episodes, %d validation episodes", len(data), len(setup.train),
            len(setup.val))
        run = setup.run
        state_dir = out / "state"
        latest_path = state_dir / "latest.json"
        if main:
            state_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out / "run.json", json.dumps(run, indent=2).encode())

        precision = "bf16" if _use_bf16(tc.precision, state.device) else "no"
        if os.environ.get("ACCELERATE_MIXED_PRECISION", "no") not in ("no", precision):
            say("accelerate's mixed precision %r is not used: --precision %s decides (here: %s)",
                os.environ["ACCELERATE_MIXED_PRECISION"], tc.precision, precision)
        acc = Accelerator(cpu=device == "cpu", mixed_precision=precision, gradient_accumulation_steps=grad_accum,
                          dataloader_config=DataLoaderConfiguration(split_batches=True))
        dev = self.device = acc.device

        torch.manual_seed(tc.seed)
        denoiser = Denoiser(model_cfg).to(dev)
        denoiser.sampler = self.sampler  # what validation and the export sample with
        # one shard a step (1 process, 1 micro-batch): the NumPy generator and the torch RNG run on from step to
        # step, checkpointed, as genex always trained; several shards: per-step seeds
        one_stream = n_proc * grad_accum == 1
        rng = np.random.default_rng(tc.seed) if one_stream else None
        torch_rng = torch.get_rng_state()  # where the noise stream starts (restored before the first step)
        optimizer = torch.optim.AdamW(param_groups(denoiser, tc), lr=tc.lr, weight_decay=tc.weight_decay)
        ema = EMAModel(denoiser.parameters(), decay=tc.ema_decay) if main else None  # only the main process exports
        step, elapsed = 0, 0.0

        if saved is not None:
            latest, tensors = saved
            denoiser.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            optimizer.load_state_dict(_unflatten_optimizer(tensors, latest["optimizer"]))
            if ema is not None:
                names = [n for n, _ in denoiser.named_parameters()]
                ema.shadow_params = [tensors[f"ema.{n}"].to(dev) for n in names]
                ema.optimization_step = latest["ema_step"]
            step, elapsed = latest["step"], latest["seconds"]
            was = (latest.get("processes", 1), latest.get("grad_accum", 1))
            say("resumed %s at step %d", out, step)
            if rng is not None and "numpy_rng" in latest:  # the streams go on where they stopped
                rng.bit_generator.state = latest["numpy_rng"]
                torch_rng = tensors["rng.torch"]
            elif rng is not None:  # saved with per-step draws: the single streams start at this step
                rng = np.random.default_rng([tc.seed % 2**32, step])
                torch_rng = torch.random.manual_seed(_noise_seed(tc.seed, step, 0)).get_state()
            if was[0] * was[1] != n_proc * grad_accum:
                say("resuming with %d process(es) x %d micro-batch(es) a run saved with %d x %d: the same global "
                    "batch, other random draws than an uninterrupted run from here on", n_proc, grad_accum, *was)
            del tensors, saved
        elif setup.init is not None:
            denoiser.load_state_dict(setup.init.state_dict())
            setup.init = None
            # a fresh average of the loaded weights (the one made above holds the random init; it matters for an
            # export before the first step, since diffusers' EMA copies the weights at step 1 anyway)
            if main:
                ema = EMAModel(denoiser.parameters(), decay=tc.ema_decay)
            say("starting from the weights of %s", self.init_from)
        elif self.resume:
            say("--resume: no checkpoint in %s yet, starting from scratch", out)
        self.step = step
        acc.wait_for_everyone()  # every process has read the state before the main process may replace it
        self._logger = _Logger(out, step) if main else None
        eval_model = Denoiser(model_cfg).to(dev).eval() if main else None  # the EMA weights, outside DDP, autocast
        if eval_model is not None:
            eval_model.sampler = denoiser.sampler
        say("training precision: %s (--precision %s on %s); %d process(es) x %d micro-batch(es) of %d: global "
            "batch %d", "bf16 autocast" if precision == "bf16" else "fp32", tc.precision, dev.type, n_proc,
            grad_accum, tc.batch_size // (n_proc * grad_accum), tc.batch_size)
        if data.env_ids and tc.source_balance > 0:
            for changed_only in (True, False):
                shares = data.env_shares(tc.source_balance, changed_only=changed_only)
                say("batch shares per env (%s windows): %s", "changing" if changed_only else "all",
                    ", ".join(f"{e} {s:.2f}" for e, s in zip(data.env_ids, shares)))

        stop = tc.max_steps if self.stop_after is None else min(tc.max_steps, step + self.stop_after)
        batches = StepBatchSampler(data, tc.batch_size, start=step, stop=stop, seed=tc.seed, accum=grad_accum,
                                   rng=rng, draw=self.draw_indices)
        # its own generator for worker seeds: creating the iterator must not draw from the noise stream
        loader = torch.utils.data.DataLoader(data, batch_sampler=batches, collate_fn=collate_batch,
                                             num_workers=workers, generator=torch.Generator().manual_seed(tc.seed))
        model, opt, loader = acc.prepare(denoiser, optimizer, loader)

        def ema_weights() -> Denoiser:
            assert eval_model is not None and ema is not None
            eval_model.load_state_dict(denoiser.state_dict())
            ema.copy_to(eval_model.parameters())
            return eval_model

        def export(final: bool = False) -> None:
            save_world_model(ema_weights(), out / "model", extra={
                "data": [_data_info(d) for d in self.data_dirs], "command": self.command,
                "train_seconds": round(elapsed, 1), **({"init_from": run["init_from"]} if "init_from" in run else {}),
                "steps": step, "train": asdict(tc), "final": final,
                "precision_used": "bf16" if precision == "bf16" else "fp32", **self.export_extra()})

        def checkpoint() -> None:
            assert ema is not None
            tensors = {f"model.{k}": v for k, v in denoiser.state_dict().items()}
            for (n, _), s in zip(denoiser.named_parameters(), ema.shadow_params):
                tensors[f"ema.{n}"] = s
            opt_t, opt_meta = _flatten_optimizer(optimizer)
            tensors.update(opt_t)
            tensors["rng.torch"] = torch.get_rng_state()  # with per-step seeds only a record
            name = f"state_{step:07d}.safetensors"
            atomic_save_tensors(tensors, state_dir / name)
            latest = {"step": step, "file": name, "sha256": sha256_file(state_dir / name), "seconds": elapsed,
                      "optimizer": opt_meta, "ema_step": ema.optimization_step, "processes": n_proc,
                      "grad_accum": grad_accum, "batches": "one stream" if rng is not None else "per step"}
            if rng is not None:
                latest["numpy_rng"] = batches.rng_state_after(step)
            atomic_write_bytes(latest_path, json.dumps(latest).encode())
            for old in state_dir.glob("state_*.safetensors"):
                if old.name != name:
                    old.unlink()
            export()
            log.info("checkpoint of step %d written by process %d of %d", step, rank, n_proc)

        metrics: dict[str, Any] = {}
        model.train()
        bar = tqdm(total=tc.max_steps, initial=step, disable=not (self.progress and main), desc="train world model",
                   unit="step")
        micro, loss_sum = 0, 0.0
        torch.set_rng_state(torch_rng)
        t_last = time.perf_counter()
        try:
            for batch in loader:
                if micro == 0:
                    for g in opt.param_groups:
                        g["lr"] = tc.lr * g.get("lr_scale", 1.0) * self.lr_factor(step)
                if rng is None:
                    torch.manual_seed(_noise_seed(tc.seed, step, micro * n_proc + rank))
                with acc.accumulate(model):
                    loss, logs = self.compute_loss(model, batch)
                    acc.backward(loss)
                    if acc.sync_gradients:
                        acc.clip_grad_norm_(model.parameters(), tc.grad_clip)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                loss_sum += logs["loss"]
                micro += 1
                if micro < grad_accum:
                    continue
                micro = 0
                if ema is not None:
                    ema.step(denoiser.parameters())
                step = self.step = step + 1
                now = time.perf_counter()
                elapsed += now - t_last
                t_last = now
                bar.update(1)
                row = None
                if step % tc.log_every == 0 or step == tc.max_steps:
                    step_loss = float(acc.reduce(torch.tensor(loss_sum / grad_accum, device=dev), "mean"))
                    row = {"step": step, "loss": step_loss, "lr": opt.param_groups[0]["lr"],
                           "seconds": round(elapsed, 2)}
                    if main and (step % tc.eval_every == 0 or step == tc.max_steps):
                        row.update(self.evaluate(ema_weights()))
                        t_last = time.perf_counter()  # eval time does not count as training time
                    bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if isinstance(v, float)})
                    if main:
                        self.log_metrics(row)
                    metrics = row
                loss_sum = 0.0
                self.on_step_end(step, row)
                if step % tc.checkpoint_every == 0 or step == tc.max_steps:
                    acc.wait_for_everyone()
                    if main:
                        checkpoint()
                        self.on_checkpoint(step)
                    acc.wait_for_everyone()
            if step >= tc.max_steps and main:
                export(final=True)
            acc.wait_for_everyone()
        finally:
            bar.close()
            if self._logger is not None:
                self._logger.close()
        if not main:
            metrics = {}
        metrics["step"] = step
        return metrics


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
    grad_accum: int = 1,
    workers: int = 0,
    stream: bool | None = None,
    cache_episodes: int = 64,
    sampler: SamplerConfig | None = None,
) -> dict[str, Any]:
    """Train (or resume training) a world model; returns the final metrics (on other than the main process,
    only the step). :class:`WorldModelTrainer` with its default hooks.

    ``stop_after``: return after that many steps in this call (the run stays resumable).
    ``init_from``: a checkpoint folder whose weights start the run (fine-tuning; its model config must match
    ``model_cfg`` up to the sampling-only and training-only fields); the optimizer and the schedule start afresh.
    ``grad_accum``: micro-batches per optimizer step (``train_cfg.batch_size`` stays the global batch).
    ``workers``: ``DataLoader`` worker processes per training process (0: load in the training process).
    ``stream``: read episode frames from disk on demand (:class:`StreamingWindowDataset`, at most
    ``cache_episodes`` decoded episodes per loading process) instead of holding them all in memory; ``None``
    streams when the frames, times the processes on this machine, exceed half of the available memory.
    """
    return WorldModelTrainer(data_dirs, out, model_cfg, train_cfg, resume=resume, device=device, progress=progress,
                             command=command, stop_after=stop_after, init_from=init_from, grad_accum=grad_accum,
                             workers=workers, stream=stream, cache_episodes=cache_episodes, sampler=sampler).train()


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
