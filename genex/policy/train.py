"""Training and evaluating the tiny VLM (``genex train-policy``), on one CPU, one GPU or many, via Accelerate.

One loop: sample frames, gather their questions, ``loss, logs = model(batch)``, step. The visual token
reducer is randomized per step (none / cls / packer with k in {1, 4, 16}) so one checkpoint serves every
reduction setting. The same command runs as one process or under ``accelerate launch`` (DDP through
:class:`accelerate.Accelerator`; gloo on CPUs, NCCL on GPUs); the launcher picks the world size.

Global batch. ``batch_frames`` and ``max_questions`` are per optimizer step over all processes. With the
data in memory every process draws the same global batch from one ``random.Random(seed)`` stream (the
single-process sampler, unchanged), splits its frames into ``world_size x grad_accum`` parts and trains on
its own ``grad_accum`` parts; each part's loss is weighted by its share of the step's questions, so the
averaged gradient is the single-process gradient of the whole batch (up to float rounding): the world size
and ``grad_accum`` change the memory per process, not the run. ``batch_frames`` must be a multiple of
``world_size x grad_accum``.

Streaming (``stream=True``): the frames are read episode by episode (:class:`genex.policy.data.EpisodeCache`)
instead of all in memory. Episodes are dealt out to ``world_size x readers`` shards (readers: DataLoader
``workers``, at least 1); a shard draws each of its steps' ``batch_frames / world_size`` frames from a
window of ``cache_episodes`` of its episodes that slides one episode every ~(episode length / frames per step)
steps, in a per-pass shuffled order; each step is a function of (seed, shard, step) alone. Balancing weights
and the question cap apply as in memory, within the window.

Precision (``precision``): ``auto`` is bf16 autocast on a CUDA GPU with bfloat16, fp32 elsewhere (CPU, MPS);
``bf16`` asks for it anywhere (on a CPU without native bfloat16 it is slow); ``fp32`` never autocasts.

Checkpoints (written by the main process only, atomically: a staging folder renamed over ``out``) are the
usual tiny-VLM folder (:mod:`genex.policy.checkpoint`) plus ``training_state.pt``: step, optimizer, sampler
and torch RNG states, elapsed seconds, the per-step loss/accuracy curve. They are written every
``save_every`` steps, when ``stop_after`` ends a call, and at the end (the final one keeps the curve, not
the optimizer). Resume rules (``resume=True``):

* ``out`` must hold a checkpoint of this run: same train config except how it runs (:data:`RESUME_FREE`:
  threads, device, workers, grad_accum, precision, ...) and the same number of frames and questions;
* the world size and ``grad_accum`` may change (the global batch stays): in memory the run continues with
  the batches it would have drawn (bit-identical on CPU in one process); streamed, the shards change with
  the number of processes x readers, so the data order does too;
* a finished run resumes to itself (nothing to do); without ``resume`` an ``out`` holding a run (or anything
  else) is refused rather than overwritten.

Every process checks the same things before training starts and they agree on the outcome (one collective,
:func:`genex.training.fail_together`, as the world-model trainer does), so a missing data folder or a bad
``--resume`` stops every process with the same one-line error, no hang.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
import shutil
import time
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from genex.devices import reset_plain_accelerate_state, select_device
from genex.io import replace_folder
from genex.training import fail_together
from genex.policy.checkpoint import encode_texts, load_tiny_vlm, save_tiny_vlm
from genex.policy.data import EpisodeCache, Example, FrameIndex, FrameSet, index_examples, load_examples, subsample
from genex.policy.model import TinyVLM, TinyVLMConfig
from genex.policy.tokenizer import WordTokenizer

__all__ = ["TrainConfig", "TrainingStateError", "train_policy", "evaluate", "make_batch", "build_tokenizer",
           "PRECISIONS", "RESUME_FREE", "STATE_FILE"]

log = logging.getLogger(__name__)

REDUCER_SCHEDULE = (("none", 0), ("none", 0), ("cls", 1), ("cls", 4), ("cls", 16),
                    ("packer", 1), ("packer", 4), ("packer", 16))


@dataclass
class TrainConfig:
    data: list[str]
    out: str
    eval_data: list[str] = field(default_factory=list)
    labels: str = "visible"
    # architecture (ignored with ``init``); defaults are the model's own
    image_size: int = TinyVLMConfig.image_size
    patch_size: int = TinyVLMConfig.patch_size
    dim: int = TinyVLMConfig.dim
    heads: int = TinyVLMConfig.heads
    vision_layers: int = TinyVLMConfig.vision_layers
    fusion_layers: int = TinyVLMConfig.fusion_layers
    stem: str = TinyVLMConfig.stem
    fusion: str = TinyVLMConfig.fusion
    glimpse: int = TinyVLMConfig.glimpse
    glimpse_labels: bool = TinyVLMConfig.glimpse_labels
    steps: int = 3000
    minutes: float | None = None
    batch_frames: int = 32
    max_questions: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 100
    frame_stride: int = 1
    max_text: int = 3
    numeric_negatives: int = 0  # per frame: labels with digits asked as shown and with a digit changed
    seed: int = 0
    save_every: int = 500
    threads: int = 1
    balance: bool = True
    eval_max_frames: int | None = 2000
    init: str | None = None
    eval_every: int = 0
    device: str = "cpu"
    # how it runs (may change on resume, see RESUME_FREE) and what it reads
    precision: str = "auto"  # auto | fp32 | bf16
    grad_accum: int = 1  # micro-batches per optimizer step: the global batch is split, not multiplied
    workers: int = 0  # DataLoader worker processes per training process (0: batches built in the loop)
    stream: bool = False  # read episodes on demand instead of loading every frame (see genex.policy.data)
    cache_episodes: int = 8  # with stream: resized episodes kept per reader
    command: str = ""


PRECISIONS = ("auto", "fp32", "bf16")
STATE_FILE = "training_state.pt"
STATE_FORMAT = "genex-tiny-vlm-train-state"
#: TrainConfig fields that may differ on ``--resume`` (how the run is executed, not what it trains)
RESUME_FREE = ("out", "command", "threads", "device", "precision", "grad_accum", "workers", "cache_episodes",
               "save_every", "eval_every", "eval_max_frames")


class TrainingStateError(ValueError):
    """``--out`` holds another run, nothing to resume, or a training state that cannot be used."""


def build_tokenizer(examples: Sequence[Example]) -> WordTokenizer:
    texts = {e.prompt for e in examples} | {o for e in examples for o in e.options}
    return WordTokenizer.build(sorted(texts) + ["yes no"])


def make_batch(frames: np.ndarray, examples: Sequence[Example], tokenizer: WordTokenizer,
               cfg: TinyVLMConfig) -> dict[str, Any]:
    """Frames referenced by ``examples`` and their questions -> the tensors of :meth:`TinyVLM.forward`.

    ``frames``: all frames, or anything that ``frames[list of frame ids]`` turns into them (an
    :class:`~genex.policy.data.EpisodeCache`)."""
    used = sorted({e.frame for e in examples})
    where = {f: i for i, f in enumerate(used)}
    prompt = encode_texts(tokenizer, [e.prompt for e in examples], cfg.max_prompt_len)
    n_opt = max(len(e.options) for e in examples)
    flat = [o for e in examples for o in (list(e.options) + [""] * (n_opt - len(e.options)))]
    options = encode_texts(tokenizer, flat, cfg.max_option_len, keep="start").view(len(examples), n_opt, -1)
    valid = torch.tensor([[i < len(e.options) for i in range(n_opt)] for e in examples])
    return {
        "images": torch.from_numpy(np.ascontiguousarray(frames[used])),
        "frame": torch.tensor([where[e.frame] for e in examples]),
        "prompt": prompt, "options": options, "valid": valid,
        "target": torch.tensor([e.target for e in examples]),
        "texts": [e.prompt for e in examples],
    }


@torch.no_grad()
def evaluate(model: TinyVLM, tokenizer: WordTokenizer, data: FrameSet, mode: str = "none", k: int = 16,
             batch_frames: int = 64, keep_cls: bool = True, by_question: bool = False) -> dict[str, Any]:
    """Accuracy on ``data`` overall, per env, per question kind, per (env, kind); balanced accuracy for yes/no.

    ``by_question`` adds one row per (env, question) for the fixed-wording kinds (``fact``, ``hidden``), keyed
    ``"<env>:<kind>:<question>"`` (text and state questions name a different label each, so they stay pooled).
    """
    model.eval()
    by_frame: dict[int, list[Example]] = defaultdict(list)
    for e in data.examples:
        by_frame[e.frame].append(e)
    frames = sorted(by_frame)
    hits: dict[str, list[int]] = defaultdict(list)
    yes_hits: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for i in range(0, len(frames), batch_frames):
        exs = [e for f in frames[i: i + batch_frames] for e in by_frame[f]]
        batch = _to(make_batch(data.frames, exs, tokenizer, model.config), _device(model))
        pred = model.batch_logits(batch, mode, k, keep_cls).argmax(-1)
        for e, p in zip(exs, pred.cpu().tolist()):
            ok = int(p == e.target)
            family = "gui" if e.env_id.split("/")[-1] in GUI_NAMES else "driving"
            keys = ["all", e.env_id, e.kind, f"{e.env_id}:{e.kind}", family, f"{family}:{e.kind}"]
            if by_question and e.kind in ("fact", "hidden"):
                keys.append(f"{e.env_id}:{e.kind}:{e.prompt.rsplit('<sep>', 1)[-1].strip()}")
            for key in keys:
                hits[key].append(ok)
                yes_hits[key].append((e.target, ok))
    out: dict[str, Any] = {}
    for key, v in hits.items():
        by_class = defaultdict(list)
        for t, ok in yes_hits[key]:
            by_class[t].append(ok)
        out[key] = {"acc": float(np.mean(v)), "n": len(v),
                    "balanced_acc": float(np.mean([np.mean(x) for x in by_class.values()]))}
    return out


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# the "gui" family rows of the metrics; spelled out because genex.policy never imports genex.envs (layering);
# tests/test_policy.py checks it against genex.envs.GUI_ENV_IDS
GUI_NAMES = {"SettingsTabs-v0", "EditDocument-v0", "TicketShop-v0", "FileManager-v0", "MailCompose-v0"}


def frame_sampling_weights(examples: Sequence[Example], frame_ids: Sequence[int], cap: float = 10.0) -> list[float]:
    """Class-balancing frame weights: a frame weighs as much as its rarest (question, answer) pair.

    The weight of an answer is ``1 / (n_answers * its frequency for that question)``, clipped to ``cap``,
    so frames showing a rare fact (a pedestrian in 11% of frames, an ambulance in 2%) are drawn more often.
    """
    per_q: dict[str, int] = defaultdict(int)
    per_qa: dict[tuple[str, int], int] = defaultdict(int)
    for e in examples:
        q = e.prompt.rsplit("<sep>", 1)[-1]
        per_q[q] += 1
        per_qa[(q, e.target)] += 1
    best: dict[int, float] = defaultdict(float)
    for e in examples:
        q = e.prompt.rsplit("<sep>", 1)[-1]
        w = min(cap, per_q[q] / (len(e.options) * per_qa[(q, e.target)]))
        best[e.frame] = max(best[e.frame], w)
    return [best[f] for f in frame_ids]


def _overall(metrics: dict[str, Any]) -> dict[str, Any]:
    """The summary rows of :func:`evaluate` (overall, per env, per kind, per family and family:kind), without
    the per (env, kind) rows."""
    return {k: v for k, v in metrics.items() if ":" not in k or k.split(":")[0] in ("gui", "driving")}


def _lr(cfg: TrainConfig, step: int, elapsed: float) -> float:
    frac = step / max(cfg.steps, 1)
    if cfg.minutes:
        frac = max(frac, elapsed / (cfg.minutes * 60))
    warm = min(1.0, (step + 1) / max(cfg.warmup, 1))
    return cfg.lr * warm * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))



# -- batches: who draws what -------------------------------------------------------------------------------

def _split(exs: list[Example], parts: int) -> list[list[Example]]:
    """``exs`` in ``parts`` groups by frame (a frame and all its questions in one group; consecutive frame ids
    together), order kept within a group; ``parts == 1`` returns ``[exs]``."""
    if parts == 1:
        return [exs]
    used = sorted({e.frame for e in exs})
    part_of = {f: i * parts // len(used) for i, f in enumerate(used)}
    out: list[list[Example]] = [[] for _ in range(parts)]
    for e in exs:
        out[part_of[e.frame]].append(e)
    return out


class _GlobalPlans:
    """Data in memory: every process draws the step's global batch from one ``random.Random(seed)`` stream (the
    single-process sampler of old, draw for draw) and keeps parts ``rank*accum .. rank*accum+accum-1``."""

    def __init__(self, by_frame: dict[int, list[Example]], frame_ids: list[int], weights: list[float] | None,
                 cfg: TrainConfig, rank: int, world: int, rng_state: Any = None) -> None:
        self.by_frame, self.frame_ids = by_frame, frame_ids
        # precomputed cumulative weights: what rng.choices(weights=...) computes on every call, same draws
        self.cum = list(itertools.accumulate(weights)) if weights is not None else None
        self.batch_frames, self.max_questions, self.seed = cfg.batch_frames, cfg.max_questions, cfg.seed
        self.rank, self.world, self.accum = rank, world, cfg.grad_accum
        self.rng_state = rng_state

    def steps(self, start: int, stop: int, readers: int, residue: int) -> Iterator[tuple]:
        """``(step, parts of this process, global question count, sampler state after the step, fallback)`` for
        the steps ``s`` in ``[start, stop)`` with ``s % readers == residue``; every step is drawn (cheap)."""
        rng = random.Random(self.seed)
        if self.rng_state is not None:
            rng.setstate(self.rng_state)
        for step in range(start, stop):
            if self.cum is not None:
                chosen = sorted(set(rng.choices(self.frame_ids, cum_weights=self.cum, k=self.batch_frames)))
            else:
                chosen = rng.sample(self.frame_ids, min(self.batch_frames, len(self.frame_ids)))
            exs = [e for f in chosen for e in self.by_frame[f]]
            if len(exs) > self.max_questions:
                exs = rng.sample(exs, self.max_questions)
            if step % readers == residue:
                parts = _split(exs, self.world * self.accum)[self.rank * self.accum: (self.rank + 1) * self.accum]
                yield step, parts, len(exs), rng.getstate(), exs[0]


class _StreamPlans:
    """Streamed data: shard ``rank * readers + step % readers`` draws its process's share of a step from a
    sliding window of its own episodes (see the module docstring); a step is a function of (seed, shard, step)."""

    def __init__(self, index: FrameIndex, by_frame: dict[int, list[Example]], weight_of: dict[int, float] | None,
                 cfg: TrainConfig, rank: int, world: int, readers: int) -> None:
        self.by_frame, self.weight_of, self.seed = by_frame, weight_of, cfg.seed
        self.frames_per_step = cfg.batch_frames // world
        self.questions_per_step = max(1, -(-cfg.max_questions // world))
        self.accum = cfg.grad_accum
        frames_of: dict[int, list[int]] = defaultdict(list)
        for f in sorted(by_frame):
            frames_of[index.episode_of(f)].append(f)
        self.frames_of = frames_of
        order = sorted(frames_of)
        random.Random(f"{cfg.seed}:shards").shuffle(order)
        shards = world * readers
        if len(order) < shards:
            raise ValueError(f"--stream: {len(order)} episodes with questions cannot feed {world} processes x "
                             f"{readers} readers (one shard each); use fewer --workers or processes")
        self.shards = {j: order[rank * readers + j:: shards] for j in range(readers)}
        self.rank, self.readers = rank, readers
        self.window = {j: min(cfg.cache_episodes, len(eps)) for j, eps in self.shards.items()}
        self._orders: dict[tuple[int, int], list[int]] = {}
        self.swap_every = {}
        for j, eps in self.shards.items():  # an episode stays ~window x swap_every steps: about one draw a frame
            mean = sum(len(frames_of[e]) for e in eps) / len(eps)
            self.swap_every[j] = max(1, round(mean / self.frames_per_step))

    def resident(self, j: int, step: int) -> list[int]:
        """The episodes in shard ``j``'s window at ``step`` (of the steps it serves)."""
        eps, t = self.shards[j], step // self.readers
        first = t // self.swap_every[j]
        out: list[int] = []
        for q in range(first, first + self.window[j]):
            key = (j, q // len(eps))  # one shuffled order per pass over the shard
            if key not in self._orders:
                if len(self._orders) > 4:
                    self._orders.pop(next(iter(self._orders)))
                order = list(eps)
                random.Random(f"{self.seed}:{self.rank}:{j}:{key[1]}").shuffle(order)
                self._orders[key] = order
            e = self._orders[key][q % len(eps)]
            if e not in out:  # a window across two passes may meet an episode twice
                out.append(e)
        return out

    def steps(self, start: int, stop: int, readers: int, residue: int) -> Iterator[tuple]:
        j = residue
        for step in range(start, stop):
            if step % readers != residue:
                continue
            rng = random.Random(f"{self.seed}:{self.rank}:{j}:{step}")
            pool = [f for e in self.resident(j, step) for f in self.frames_of[e]]
            if self.weight_of is not None:
                cum = list(itertools.accumulate(self.weight_of[f] for f in pool))
                chosen = sorted(set(rng.choices(pool, cum_weights=cum, k=self.frames_per_step)))
            else:
                chosen = sorted(rng.sample(pool, min(self.frames_per_step, len(pool))))
            exs = [e for f in chosen for e in self.by_frame[f]]
            if len(exs) > self.questions_per_step:
                exs = rng.sample(exs, self.questions_per_step)
            yield step, _split(exs, self.accum), None, None, self.by_frame[pool[0]][0]


class _Batches(torch.utils.data.IterableDataset):
    """``(step, [(batch, n_questions)] per micro-batch, global question count or None, sampler state)`` for
    steps ``start .. stop-1`` in order; with DataLoader workers, worker ``w`` builds steps ``start + w``,
    ``start + w + workers``, ... (the DataLoader takes them round-robin, so the order holds)."""

    def __init__(self, plans: _GlobalPlans | _StreamPlans, frames: np.ndarray | FrameIndex, tokenizer: WordTokenizer,
                 mcfg: TinyVLMConfig, start: int, stop: int, cache_episodes: int = 8) -> None:
        self.plans, self.frames, self.tokenizer, self.mcfg = plans, frames, tokenizer, mcfg
        self.start, self.stop, self.cache_episodes = start, stop, cache_episodes

    def __iter__(self) -> Iterator[tuple]:
        info = torch.utils.data.get_worker_info()
        readers, w = (info.num_workers, info.id) if info is not None else (1, 0)
        frames: Any = self.frames
        if isinstance(frames, FrameIndex):  # each reader its own cache: its window plus the episode coming in
            frames = EpisodeCache(frames, self.cache_episodes + 1)
        for step, parts, n_global, state, fallback in self.plans.steps(self.start, self.stop, readers,
                                                                      (self.start + w) % readers):
            micro = [(make_batch(frames, part or [fallback], self.tokenizer, self.mcfg), len(part)) for part in parts]
            yield step, micro, n_global, state


def _identity(x: Any) -> Any:
    return x


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


# -- the output folder: refuse, resume, write ------------------------------------------------------------

def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _checkpoint_in(out: Path) -> Path | None:
    """The checkpoint folder of ``out``: ``out`` itself, or ``out.old`` left by a write interrupted between its
    two renames."""
    for p in (out, out.with_name(out.name + ".old")):
        if (p / "config.json").is_file():
            return p
    return None


def _finished(meta: dict[str, Any]) -> bool:
    # checkpoints from before resume existed: the final one has train_seconds, the periodic ones do not
    return bool(meta.get("finished", "train_seconds" in meta))


@dataclass
class _ResumePoint:
    path: Path
    meta: dict[str, Any]
    state: dict[str, Any] | None  # None for a finished run


def _resume_point(cfg: TrainConfig, resume: bool) -> _ResumePoint | None:
    """Check ``cfg.out`` against ``resume``: the run to continue, None to start afresh, or a one-line error."""
    out = Path(cfg.out)
    ckpt = _checkpoint_in(out)
    meta: dict[str, Any] = {}
    if ckpt is not None:
        try:
            meta = json.loads((ckpt / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise TrainingStateError(f"{ckpt / 'config.json'} is unreadable ({_one_line(e)}); use another --out") from e
    steps = meta.get("train_config", {}).get("steps", "?")
    if not resume:
        if ckpt is not None:
            if _finished(meta):
                raise TrainingStateError(f"{out} already holds a finished training run ({meta.get('steps_done')} "
                                         "steps); use another --out (or delete it to train again)")
            raise TrainingStateError(f"{out} already holds a training run stopped at step {meta.get('steps_done')} "
                                     f"of {steps}; pass --resume to continue it, or use another --out")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise TrainingStateError(f"--out {out} exists and is not a tiny-VLM checkpoint folder; use another --out")
        return None
    if ckpt is None:
        raise TrainingStateError(f"--resume: {out} holds no checkpoint to resume; train without --resume first")
    saved = meta.get("train_config")
    if not isinstance(saved, dict):
        raise TrainingStateError(f"--resume: {ckpt / 'config.json'} records no train config; use another --out")
    saved = {**asdict(TrainConfig(data=[], out="")), **saved}  # fields added since: their defaults
    now = asdict(cfg)
    diff = [f"{k} {saved.get(k)!r} vs now {now[k]!r}" for k in now if k not in RESUME_FREE and saved.get(k) != now[k]]
    if diff:
        raise TrainingStateError(f"--resume: {out} was trained with other settings ({'; '.join(diff)}); resume with "
                                 "the same options, or use another --out")
    if _finished(meta):
        return _ResumePoint(ckpt, meta, None)
    path = ckpt / STATE_FILE
    if not path.is_file():
        raise TrainingStateError(f"--resume: {ckpt} has no {STATE_FILE} (written by a genex without resume); "
                                 "retrain into another --out, or start from its weights with --init")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a torn or foreign file: say which, in one line
        raise TrainingStateError(f"--resume: {path} is unreadable ({_one_line(e)}); delete {ckpt} to start over") from e
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("step") != meta.get("steps_done"):
        raise TrainingStateError(f"--resume: {path} does not belong to the checkpoint beside it; delete {ckpt} to "
                                 "start over")
    return _ResumePoint(ckpt, meta, state)


def _write_checkpoint(out: Path, model: TinyVLM, tokenizer: WordTokenizer, meta: dict[str, Any],
                      state: dict[str, Any]) -> None:
    """Checkpoint + training state into ``out.staging``, then renamed over ``out``: readers (and a resume after a
    kill at any moment) see the previous checkpoint or this one, never a mix."""
    staging = out.with_name(out.name + ".staging")
    if staging.exists():
        shutil.rmtree(staging)
    save_tiny_vlm(staging, model, tokenizer, **meta)
    torch.save(state, staging / STATE_FILE)
    replace_folder(staging, out)


# -- processes -------------------------------------------------------------------------------------------

def _mixed_precision(precision: str, device: torch.device) -> str:
    """``--precision`` on ``device`` -> Accelerate's ``mixed_precision`` (``"bf16"`` or ``"no"``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return "no"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16"
        if precision == "bf16":
            log.warning("this GPU has no bfloat16 support: training in float32")
        return "no"
    if device.type == "mps":
        if precision == "bf16":
            log.warning("bf16 autocast is not used on MPS: training in float32")
        return "no"
    if precision == "bf16":
        log.warning("--precision bf16 on a CPU: emulated bfloat16 can be much slower than fp32 (auto picks fp32)")
        return "bf16"
    return "no"


def _check_config(cfg: TrainConfig, stop_after: int | None) -> None:
    for name in ("steps", "batch_frames", "max_questions", "grad_accum", "cache_episodes"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {cfg.workers}")
    if stop_after is not None and stop_after < 1:
        raise ValueError(f"--stop-after must be >= 1, got {stop_after}")


def train_policy(cfg: TrainConfig, progress: bool = True, *, resume: bool = False,
                 stop_after: int | None = None) -> dict[str, Any]:
    """Train a tiny VLM per ``cfg`` in this process and its peers (``accelerate launch``); writes the checkpoint
    folder ``cfg.out`` (main process only); returns the final metrics (the held-out ones on the main process).

    ``resume``: continue the run in ``cfg.out`` (see the module docstring for what must match).
    ``stop_after``: return after that many steps in this call, leaving a checkpoint to ``resume``.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    try:  # the options alone: every process finds the same (so the CLI prints it once)
        _check_config(cfg, stop_after)
        device = select_device(cfg.device)  # "cuda" without CUDA: a clear error before anything starts
        mixed_precision = _mixed_precision(cfg.precision, device)
    except ValueError as e:
        e.collective = True  # type: ignore[attr-defined]
        raise
    torch.set_num_threads(cfg.threads)
    reset_plain_accelerate_state()  # an earlier run in this process must not fix this one's device or precision
    # find_unused_parameters: the reducer modes of a step leave the packer (none, cls) unused
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=mixed_precision,
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    return _train(accelerator, cfg, progress, resume, stop_after)


@dataclass
class _Setup:
    point: _ResumePoint | None
    examples: list[Example] = field(default_factory=list)
    frames: Any = None  # np.ndarray (in memory) or FrameIndex (streamed)
    n_frames: int = 0
    held: FrameSet | None = None
    model: TinyVLM | None = None
    tokenizer: WordTokenizer | None = None
    previous_init: dict[str, Any] | None = None


def _setup(cfg: TrainConfig, resume: bool, world: int, main: bool) -> _Setup:
    """What every process checks and loads before training: the same on all (the held-out set: main only)."""
    if cfg.batch_frames % (world * cfg.grad_accum):
        unit = world * cfg.grad_accum
        raise ValueError(f"--batch-frames {cfg.batch_frames} is the global batch: it must divide evenly over "
                         f"{world} processes x {cfg.grad_accum} accumulation steps (use a multiple of {unit})")
    point = _resume_point(cfg, resume)
    setup = _Setup(point)
    if point is not None and point.state is None:
        return setup  # a finished run: nothing to load
    t0 = time.time()
    kw = dict(labels=cfg.labels, frame_stride=cfg.frame_stride, max_text=cfg.max_text, seed=cfg.seed,
              numeric_negatives=cfg.numeric_negatives)
    if cfg.stream:
        index = index_examples(cfg.data, cfg.image_size, **kw)
        setup.examples, setup.frames, setup.n_frames = index.examples, index, index.n_frames
        shards, episodes = world * max(1, cfg.workers), len({index.episode_of(e.frame) for e in index.examples})
        if episodes < shards:
            raise ValueError(f"--stream: {episodes} episodes with questions cannot feed {world} processes x "
                             f"{max(1, cfg.workers)} readers (one shard each); use fewer --workers or processes")
    else:
        train = load_examples(cfg.data, cfg.image_size, **kw)
        setup.examples, setup.frames, setup.n_frames = train.examples, train.frames, len(train.frames)
    if cfg.eval_data and main:  # the same frames and questions as subsample(load_examples(...)), read alone
        setup.held = index_examples(cfg.eval_data, cfg.image_size, labels=cfg.labels, max_text=cfg.max_text,
                                    seed=12345, numeric_negatives=cfg.numeric_negatives).subsample(cfg.eval_max_frames)
    log.info("data indexed/loaded in %.0fs: %d frames, %d questions", time.time() - t0, setup.n_frames,
             len(setup.examples))
    torch.manual_seed(cfg.seed)
    if point is not None:  # the run's own weights and tokenizer
        then = point.meta.get("data", {})
        if (then.get("train_frames"), then.get("train_questions")) != (setup.n_frames, len(setup.examples)):
            raise TrainingStateError(
                f"--resume: the training data changed since {cfg.out} was started ({then.get('train_frames')} frames "
                f"and {then.get('train_questions')} questions then, {setup.n_frames} and {len(setup.examples)} now); "
                "resume on the same recordings, or use another --out")
        setup.model, setup.tokenizer, _ = load_tiny_vlm(point.path)
    elif cfg.init:  # continue from a checkpoint: its architecture and tokenizer win over cfg's
        model, tokenizer, init_meta = load_tiny_vlm(cfg.init)
        setup.previous_init = {"path": cfg.init, "command": init_meta.get("command"),
                               "steps_done": init_meta.get("steps_done"),
                               "train_seconds": init_meta.get("train_seconds"), "init": init_meta.get("init")}
        if model.config.image_size != cfg.image_size:
            raise ValueError(f"--init checkpoint takes {model.config.image_size}px frames, not --image-size "
                             f"{cfg.image_size}")
        unknown = {w for e in setup.examples for w in tokenizer.unknown_words(e.prompt)}
        if unknown:
            log.warning("%d words of the data are unknown to the --init tokenizer (e.g. %s)", len(unknown),
                        sorted(unknown)[:5])
        setup.model, setup.tokenizer = model, tokenizer
    else:
        tokenizer = build_tokenizer(setup.examples)
        mcfg = TinyVLMConfig(image_size=cfg.image_size, patch_size=cfg.patch_size, dim=cfg.dim, heads=cfg.heads,
                             vision_layers=cfg.vision_layers, fusion_layers=cfg.fusion_layers,
                             stem=cfg.stem, fusion=cfg.fusion, glimpse=cfg.glimpse,
                             glimpse_labels=cfg.glimpse_labels, vocab_size=len(tokenizer),
                             tokenizer_fingerprint=tokenizer.fingerprint)
        setup.model, setup.tokenizer = TinyVLM(mcfg), tokenizer
    return setup


def _train(accelerator: Any, cfg: TrainConfig, progress: bool, resume: bool,
           stop_after: int | None) -> dict[str, Any]:
    from tqdm.auto import tqdm

    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    dev = accelerator.device
    out = Path(cfg.out)
    try:
        setup, error = _setup(cfg, resume, world, main), None
    except Exception as e:  # noqa: BLE001 - every process learns that one failed (see fail_together)
        setup, error = None, e
    fail_together(accelerator.num_processes, error)
    assert setup is not None
    point = setup.point
    if point is not None and point.state is None:
        log.info("%s holds a finished run of %s steps: nothing to resume", out, point.meta.get("steps_done"))
        return point.meta
    model, tokenizer = setup.model, setup.tokenizer
    assert model is not None and tokenizer is not None
    mcfg = model.config
    state = point.state if point is not None else {}
    n_params = sum(p.numel() for p in model.parameters())
    log.info("%d frames, %d questions; vocab %d; %d parameters; %d process(es) x %d micro-batches on %s, %s",
             setup.n_frames, len(setup.examples), len(tokenizer), n_params, world, cfg.grad_accum, dev,
             "bf16 autocast" if accelerator.mixed_precision == "bf16" else "fp32")
    held = setup.held
    held_quick = subsample(held, max(1, len(held.frames) // 4)) if held is not None else None
    by_frame: dict[int, list[Example]] = defaultdict(list)
    for e in setup.examples:
        by_frame[e.frame].append(e)
    frame_ids = sorted(by_frame)
    weights = frame_sampling_weights(setup.examples, frame_ids) if cfg.balance else None

    model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if state:
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
    model, opt = accelerator.prepare(model, opt)
    plain = accelerator.unwrap_model(model)

    meta: dict[str, Any] = {"labels": cfg.labels, "command": cfg.command, "train_config": asdict(cfg),
                            "data": {"train": cfg.data, "eval": cfg.eval_data, "train_frames": setup.n_frames,
                                     "train_questions": len(setup.examples)},
                            "parameters": n_params}
    if point is not None:
        for key in ("init", "eval_history"):
            if key in point.meta:
                meta[key] = point.meta[key]
        meta["resumed_at"] = point.meta.get("resumed_at", []) + [state["step"]]
    elif cfg.init:
        meta["init"] = setup.previous_init
    meta["distributed"] = {"world_size": world, "grad_accum": cfg.grad_accum, "device": dev.type,
                           "precision": "bf16" if accelerator.mixed_precision == "bf16" else "fp32",
                           "workers": cfg.workers, "stream": cfg.stream}

    start_step = int(state.get("step", 0))
    stop = cfg.steps if stop_after is None else min(cfg.steps, start_step + stop_after)
    readers = max(1, cfg.workers)
    if cfg.stream:
        weight_of = dict(zip(frame_ids, weights)) if weights is not None else None
        plans: _GlobalPlans | _StreamPlans = _StreamPlans(setup.frames, by_frame, weight_of, cfg, rank, world,
                                                          readers)
    else:
        rng_state = state.get("sampler_rng")
        if rng_state is not None:
            rng_state = (rng_state[0], tuple(rng_state[1]), rng_state[2])
        plans = _GlobalPlans(by_frame, frame_ids, weights, cfg, rank, world, rng_state)
    batches = _Batches(plans, setup.frames, tokenizer, mcfg, start_step, stop, cfg.cache_episodes)
    loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=cfg.workers, collate_fn=_identity,
                                         worker_init_fn=_worker_init if cfg.workers else None,
                                         pin_memory=dev.type == "cuda")
    history = {k: [float(x) for x in state.get(k, [])] for k in ("loss", "acc")}
    ema_acc = state.get("ema_acc")
    sampler_state = state.get("sampler_rng")
    start = time.time() - float(state.get("seconds", 0.0))
    elapsed = time.time() - start
    steps_done = start_step
    budget_hit = False

    def save(final: bool) -> None:
        if not main:
            return
        meta.update(steps_done=steps_done, finished=final, train_seconds=round(elapsed, 1), train_acc_ema=ema_acc)
        st: dict[str, Any] = {
            "format": STATE_FORMAT, "version": 1, "step": steps_done, "finished": final, "seconds": elapsed,
            "ema_acc": ema_acc, "loss": torch.tensor(history["loss"], dtype=torch.float64),
            "acc": torch.tensor(history["acc"], dtype=torch.float64), "sampler_rng": sampler_state,
            "torch_rng": torch.get_rng_state(), "world_size": world, "grad_accum": cfg.grad_accum}
        if not final:
            st["optimizer"] = opt.state_dict()
        _write_checkpoint(out, plain, tokenizer, meta, st)
        log.info("checkpoint written to %s at step %d by process %d of %d", out, steps_done, rank, world)

    bar = tqdm(total=cfg.steps, initial=start_step, disable=not (progress and main), desc="train-policy",
               unit="step")
    for step, micro, n_global, rng_state in loader:
        if step != steps_done:
            raise RuntimeError(f"batch of step {step} arrived at step {steps_done} (a DataLoader ordering bug)")
        elapsed = time.time() - start
        n_local = sum(n for _, n in micro)
        if world > 1:  # the main process's clock (the lr and the time budget must agree) and the question count
            sync = torch.tensor([n_local, elapsed if main else 0.0], dtype=torch.float64, device=dev)
            sync = accelerator.reduce(sync, "sum")
            if n_global is None:
                n_global = int(sync[0].item())
            elapsed = float(sync[1].item())
        n_total = n_global if n_global is not None else n_local
        if cfg.minutes and elapsed > cfg.minutes * 60:
            log.info("time budget of %.1f min reached at step %d", cfg.minutes, step)
            budget_hit = True
            break
        model.train()
        for g in opt.param_groups:
            g["lr"] = _lr(cfg, step, elapsed)
        mode, k = REDUCER_SCHEDULE[step % len(REDUCER_SCHEDULE)]
        sums = [0.0, 0.0]
        for a, (batch, n) in enumerate(micro):
            if n == 0 and world == 1:
                continue  # in one process an empty part is simply skipped; DDP needs every process's backward
            with accelerator.no_sync(model) if a < len(micro) - 1 else nullcontext():
                loss, logs = model(_to(batch, dev), mode, k)
                weight = world * n / max(n_total, 1)  # the part's share of the global batch (x world: DDP averages)
                accelerator.backward(loss if weight == 1 else loss * weight)
            sums[0] += n * logs["loss"]
            sums[1] += n * logs["acc"]
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if world > 1:
            sums = accelerator.reduce(torch.tensor(sums, dtype=torch.float64, device=dev), "sum").tolist()
        step_loss, step_acc = sums[0] / max(n_total, 1), sums[1] / max(n_total, 1)
        history["loss"].append(step_loss)
        history["acc"].append(step_acc)
        ema_acc = step_acc if ema_acc is None else 0.98 * ema_acc + 0.02 * step_acc
        steps_done, sampler_state = step + 1, rng_state
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.3f}", acc=f"{ema_acc:.3f}")
        if main and held_quick is not None and cfg.eval_every and steps_done % cfg.eval_every == 0:
            # a fixed quarter of the held-out frames: a learning curve, cheap enough to run often
            m = evaluate(plain, tokenizer, held_quick)
            point_ = {"step": steps_done, "seconds": round(time.time() - start, 1), "train_acc_ema": ema_acc,
                      **{f"{key}_acc": round(v["acc"], 4) for key, v in sorted(_overall(m).items())}}
            meta.setdefault("eval_history", []).append(point_)
            log.info("step %d: held-out acc %.3f (quick subset)", steps_done, m["all"]["acc"])
        if cfg.save_every and steps_done % cfg.save_every == 0 and steps_done < stop:
            save(final=False)
    bar.close()
    del loader  # stops its workers
    elapsed = time.time() - start
    if not budget_hit and steps_done < cfg.steps:  # stop_after: a checkpoint to resume
        save(final=False)
        log.info("stopped at step %d of %d; resume with --resume", steps_done, cfg.steps)
    else:
        if main and held is not None:
            metrics = evaluate(plain, tokenizer, held)
            meta["heldout_frames"] = len(held.frames)
            meta["heldout"] = _overall(metrics)
            meta["heldout_by_env_kind"] = {k: v for k, v in metrics.items() if ":" in k}
        save(final=True)
    meta.update(steps_done=steps_done, finished=budget_hit or steps_done >= cfg.steps,
                train_seconds=round(elapsed, 1), train_acc_ema=ema_acc)
    if world > 1:
        accelerator.wait_for_everyone()
    return meta
