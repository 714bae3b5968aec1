"""Token reduction trade-off: the tiny VLM's accuracy and decision latency vs the number of visual tokens.

For each reducer setting (``none``: all tokens; ``cls``: CLS + the ``k`` patches most
cosine-similar to CLS; ``packer``: CLS + ``k`` learned queries) on held-out frames:

* accuracy and balanced accuracy of the tiny VLM on the frames' questions
  (:func:`genex.policy.train.evaluate`), optionally with the CLS token dropped
  (an ablation: do the kept patch tokens carry the answer?);
* latency of one decision: ``frames`` frames (1 real + the rest imagined) and up
  to 8 of the family's questions through :meth:`TinyPolicy.answer`, prefix cache
  warm, median over ``repeats``.

Used by ``bench/token_reduction.py`` (the CLI) and the VLM tutorial notebook::

    model, tok, _ = load_tiny_vlm("checkpoints/policy/tiny-gui")
    data = load_family(["data/wm/heldout/SettingsTabs"], model, FAMILIES["gui-text"], max_frames=300)
    rows = measure_token_reduction(model, tok, data, "gui-text", repeats=10, ablate_cls=True)
    print(markdown_table(rows))

Never imports ``genex.envs``; matplotlib only in :func:`plot_token_reduction`.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from genex.policy.data import FrameSet, load_examples, subsample
from genex.policy.model import TinyVLM
from genex.policy.protocol import PolicyQuestion, TaggedImage
from genex.policy.tiny import TinyPolicy
from genex.policy.tokenizer import WordTokenizer
from genex.policy.train import evaluate

__all__ = ["SETTINGS", "FAMILIES", "load_family", "family_questions", "decision_latency",
           "measure_token_reduction", "markdown_table", "plot_token_reduction"]

#: (reducer mode, k); ``k=None`` keeps every token
SETTINGS: tuple[tuple[str, int | None], ...] = (("none", None),) + tuple(
    (mode, k) for mode in ("cls", "packer") for k in (1, 4, 16))

#: question kinds asked per family: driving visibility facts vs GUI text reading
FAMILIES: dict[str, set[str]] = {"driving": {"fact"}, "gui-text": {"text"}}

ROW_KEYS = ("family", "reducer", "k", "visual_tokens", "accuracy", "balanced_accuracy", "questions", "decision_ms")


def load_family(folders: Sequence[str | Path], model: TinyVLM, kinds: set[str] | None, max_frames: int | None,
                seed: int = 12345) -> FrameSet:
    """Held-out frames (at the model's image size) with their questions of ``kinds``, at most ``max_frames``
    frames spread evenly over every env and episode of the recordings."""
    return subsample(load_examples(folders, model.config.image_size, seed=seed), max_frames, kinds)


def family_questions(data: FrameSet, limit: int = 8) -> list[PolicyQuestion]:
    """Up to ``limit`` distinct yes/no questions of ``data`` (sorted), as :class:`PolicyQuestion` s."""
    texts = sorted({e.prompt.split(" <sep> ", 1)[1] for e in data.examples})[:limit]
    return [PolicyQuestion(f"q{i}", q, ("yes", "no")) for i, q in enumerate(texts)]


def decision_latency(policy: TinyPolicy, data: FrameSet, repeats: int, frames: int = 4, seed: int = 0,
                     questions: Sequence[PolicyQuestion] | None = None) -> float:
    """Median seconds of one decision (``frames`` random frames of ``data``, 1 real + imagined, the family's
    questions), prefix cache warm (a first, untimed call fills it), visual history reset every call."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    qs = list(questions) if questions is not None else family_questions(data)
    rng = np.random.default_rng(seed)
    times = []
    for r in range(repeats + 1):
        idx = rng.choice(len(data.frames), min(frames, len(data.frames)), replace=False)
        ims = [TaggedImage(data.frames[i], step=r, imagined=j > 0, sample=j) for j, i in enumerate(idx)]
        policy.reset()
        t0 = time.perf_counter()
        policy.answer(ims, "Complete the task.", qs)
        if r:  # the first call warms the prefix cache
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_token_reduction(model: TinyVLM, tokenizer: WordTokenizer, data: FrameSet, family: str, *,
                            settings: Sequence[tuple[str, int | None]] = SETTINGS, repeats: int = 20,
                            ablate_cls: bool = False, latency: bool = True,
                            progress: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """One row per setting: ``family, reducer, k ("all" for none), visual_tokens, accuracy,
    balanced_accuracy, questions, decision_ms`` (NaN without ``latency``). ``ablate_cls`` adds the same
    settings with the CLS token dropped (reducer ``"<mode> (no CLS)"``, no latency). ``progress`` is
    called with each row as it is measured."""
    n_patches = model.config.num_patches
    rows: list[dict[str, Any]] = []

    def add(row: dict[str, Any]) -> None:
        rows.append(row)
        if progress is not None:
            progress(row)

    for keep_cls in (True, False) if ablate_cls else (True,):
        for mode, k in settings:
            kk = n_patches if k is None else k
            acc = evaluate(model, tokenizer, data, mode, kk, keep_cls=keep_cls)["all"]
            ms = float("nan")
            if latency and keep_cls:
                ms = 1000 * decision_latency(TinyPolicy(model, tokenizer, reducer=mode, k=kk), data, repeats)
            add({"family": family, "reducer": mode if keep_cls else f"{mode} (no CLS)",
                 "k": "all" if k is None else k, "visual_tokens": int(keep_cls) + kk,
                 "accuracy": round(acc["acc"], 4), "balanced_accuracy": round(acc["balanced_acc"], 4),
                 "questions": acc["n"], "decision_ms": round(ms, 2)})
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table (the one ``bench/token_reduction.py`` prints and writes)."""
    lines = ["| family | reducer | k | visual tokens | accuracy | balanced acc. | decision ms |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['family']} | {r['reducer']} | {r['k']} | {r['visual_tokens']} | {r['accuracy']:.3f} | "
              f"{r['balanced_accuracy']:.3f} | {r['decision_ms']:.1f} |" for r in rows]
    return "\n".join(lines) + "\n"


def plot_token_reduction(rows: Sequence[dict[str, Any]], axes: Any = None) -> Any:
    """Accuracy (left) and decision latency (right) vs visual tokens per frame, one line per
    (family, reducer); ``axes``: two matplotlib axes (default: a new figure). Returns the figure."""
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    else:
        fig = axes[0].figure
    for family, marker in (("driving", "o"), ("gui-text", "s")):
        full = next((r for r in rows if r["family"] == family and r["reducer"] == "none"), None)
        if full is None:
            continue
        for mode, style in (("cls", "-"), ("packer", "--")):
            rs = [r for r in rows if r["family"] == family and r["reducer"] == mode]
            if not rs:
                continue
            xs = [r["visual_tokens"] for r in rs] + [full["visual_tokens"]]
            axes[0].plot(xs, [r["accuracy"] for r in rs] + [full["accuracy"]], style, marker=marker,
                         label=f"{family} / {mode}")
            axes[1].plot(xs, [r["decision_ms"] for r in rs] + [full["decision_ms"]], style, marker=marker,
                         label=f"{family} / {mode}")
    for ax, label in zip(axes, ("accuracy (held-out)", "decision latency (ms, 4 frames)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("visual tokens per frame (1 + k; rightmost = all)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig
