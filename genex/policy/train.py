"""Training and evaluating the tiny VLM (``genex train-policy``).

One loop: sample frames, gather their questions, ``loss, logs = model(batch)``,
step. The visual token reducer is randomized per step (none / cls / packer with
k in {1, 4, 16}) so one checkpoint serves every reduction setting. Checkpoints
are written atomically every ``save_every`` steps and at the end, with the
command, the data and the held-out metrics.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from genex.devices import select_device
from genex.policy.checkpoint import encode_texts, load_tiny_vlm, save_tiny_vlm
from genex.policy.data import Example, FrameSet, load_examples, subsample
from genex.policy.model import TinyVLM, TinyVLMConfig
from genex.policy.tokenizer import WordTokenizer

__all__ = ["TrainConfig", "train_policy", "evaluate", "make_batch", "build_tokenizer"]

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
    command: str = ""


def build_tokenizer(examples: Sequence[Example]) -> WordTokenizer:
    texts = {e.prompt for e in examples} | {o for e in examples for o in e.options}
    return WordTokenizer.build(sorted(texts) + ["yes no"])


def make_batch(frames: np.ndarray, examples: Sequence[Example], tokenizer: WordTokenizer,
               cfg: TinyVLMConfig) -> dict[str, Any]:
    """Frames referenced by ``examples`` and their questions -> the tensors of :meth:`TinyVLM.forward`."""
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


def train_policy(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train a tiny VLM per ``cfg``; writes the checkpoint folder ``cfg.out``; returns the final metrics."""
    from tqdm.auto import tqdm

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    t0 = time.time()
    train = load_examples(cfg.data, cfg.image_size, labels=cfg.labels, frame_stride=cfg.frame_stride,
                          max_text=cfg.max_text, seed=cfg.seed, numeric_negatives=cfg.numeric_negatives)
    held = (subsample(load_examples(cfg.eval_data, cfg.image_size, labels=cfg.labels, max_text=cfg.max_text,
                                    seed=12345, numeric_negatives=cfg.numeric_negatives), cfg.eval_max_frames)
            if cfg.eval_data else None)
    if cfg.init:  # continue from a checkpoint: its architecture and tokenizer win over cfg's
        model, tokenizer, init_meta = load_tiny_vlm(cfg.init)
        previous = {"path": cfg.init, "command": init_meta.get("command"), "steps_done": init_meta.get("steps_done"),
                    "train_seconds": init_meta.get("train_seconds"), "init": init_meta.get("init")}
        mcfg = model.config
        if mcfg.image_size != cfg.image_size:
            raise ValueError(f"--init checkpoint takes {mcfg.image_size}px frames, not --image-size {cfg.image_size}")
        unknown = {w for e in train.examples for w in tokenizer.unknown_words(e.prompt)}
        if unknown:
            log.warning("%d words of the data are unknown to the --init tokenizer (e.g. %s)", len(unknown),
                        sorted(unknown)[:5])
    else:
        tokenizer = build_tokenizer(train.examples)
        mcfg = TinyVLMConfig(image_size=cfg.image_size, patch_size=cfg.patch_size, dim=cfg.dim, heads=cfg.heads,
                             vision_layers=cfg.vision_layers, fusion_layers=cfg.fusion_layers,
                             stem=cfg.stem, fusion=cfg.fusion, glimpse=cfg.glimpse,
                             glimpse_labels=cfg.glimpse_labels, vocab_size=len(tokenizer),
                             tokenizer_fingerprint=tokenizer.fingerprint)
        model = TinyVLM(mcfg)
    device = select_device(cfg.device)
    model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("data loaded in %.0fs: %d frames, %d questions; vocab %d; %d parameters", time.time() - t0,
             len(train.frames), len(train.examples), len(tokenizer), n_params)
    held_quick = subsample(held, max(1, len(held.frames) // 4)) if held is not None else None
    by_frame: dict[int, list[Example]] = defaultdict(list)
    for e in train.examples:
        by_frame[e.frame].append(e)
    frame_ids = sorted(by_frame)
    frame_weights = frame_sampling_weights(train.examples, frame_ids) if cfg.balance else None
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    meta: dict[str, Any] = {"labels": cfg.labels, "command": cfg.command, "train_config": asdict(cfg),
                            "data": {"train": cfg.data, "eval": cfg.eval_data, "train_frames": len(train.frames),
                                     "train_questions": len(train.examples)},
                            "parameters": n_params}
    if cfg.init:
        meta["init"] = previous
    start = time.time()
    bar = tqdm(total=cfg.steps, disable=not progress, desc="train-policy", unit="step")
    logs: dict[str, float] = {}
    ema_acc = None
    step = 0
    for step in range(cfg.steps):
        elapsed = time.time() - start
        if cfg.minutes and elapsed > cfg.minutes * 60:
            log.info("time budget of %.1f min reached at step %d", cfg.minutes, step)
            break
        model.train()
        for g in opt.param_groups:
            g["lr"] = _lr(cfg, step, elapsed)
        if frame_weights is not None:
            chosen = sorted(set(rng.choices(frame_ids, weights=frame_weights, k=cfg.batch_frames)))
        else:
            chosen = rng.sample(frame_ids, min(cfg.batch_frames, len(frame_ids)))
        exs = [e for f in chosen for e in by_frame[f]]
        if len(exs) > cfg.max_questions:
            exs = rng.sample(exs, cfg.max_questions)
        mode, k = REDUCER_SCHEDULE[step % len(REDUCER_SCHEDULE)]
        loss, logs = model(_to(make_batch(train.frames, exs, tokenizer, mcfg), device), mode, k)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema_acc = logs["acc"] if ema_acc is None else 0.98 * ema_acc + 0.02 * logs["acc"]
        bar.update(1)
        bar.set_postfix(loss=f"{logs['loss']:.3f}", acc=f"{ema_acc:.3f}")
        if held is not None and cfg.eval_every and (step + 1) % cfg.eval_every == 0:
            # a fixed quarter of the held-out frames: a learning curve, cheap enough to run often
            m = evaluate(model, tokenizer, held_quick)
            point = {"step": step + 1, "seconds": round(time.time() - start, 1), "train_acc_ema": ema_acc,
                     **{f"{key}_acc": round(v["acc"], 4) for key, v in sorted(_overall(m).items())}}
            meta.setdefault("eval_history", []).append(point)
            log.info("step %d: held-out acc %.3f (quick subset)", step + 1, m["all"]["acc"])
        if cfg.save_every and (step + 1) % cfg.save_every == 0:
            save_tiny_vlm(cfg.out, model.cpu(), tokenizer, **meta, steps_done=step + 1)
            model.to(device)
    bar.close()
    meta["steps_done"] = step + 1
    meta["train_seconds"] = round(time.time() - start, 1)
    meta["train_acc_ema"] = ema_acc
    if held is not None:
        metrics = evaluate(model, tokenizer, held)
        meta["heldout_frames"] = len(held.frames)
        meta["heldout"] = _overall(metrics)
        meta["heldout_by_env_kind"] = {k: v for k, v in metrics.items() if ":" in k}
    save_tiny_vlm(cfg.out, model.cpu(), tokenizer, **meta)
    return meta
