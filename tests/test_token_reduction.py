"""genex.policy.token_reduction: the measuring code behind bench/token_reduction.py and the VLM notebook."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genex.policy import TinyPolicy, TinyVLM, TinyVLMConfig, WordTokenizer
from genex.policy.data import Example, FrameSet, format_prompt
from genex.policy.token_reduction import (SETTINGS, decision_latency, family_questions, markdown_table,
                                          measure_token_reduction)

torch.set_num_threads(1)

QUESTIONS = ("Is a red square visible?", "Is a blue square visible?")


def tiny_setup(n_frames: int = 6) -> tuple[TinyVLM, WordTokenizer, FrameSet]:
    tok = WordTokenizer.build(["Drive <sep> " + " ".join(QUESTIONS) + " yes no complete the task ."])
    torch.manual_seed(0)
    cfg = TinyVLMConfig(image_size=16, patch_size=4, dim=32, heads=4, vision_layers=1, fusion_layers=1,
                        vocab_size=len(tok), tokenizer_fingerprint=tok.fingerprint, packer_queries=16)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (n_frames, 16, 16, 3), dtype=np.uint8)
    examples = [Example(f, format_prompt("Drive", q), ("yes", "no"), int((f + j) % 2), "fact", "genex/Test-v0")
                for f in range(n_frames) for j, q in enumerate(QUESTIONS)]
    return TinyVLM(cfg), tok, FrameSet(frames, examples)


def test_rows_cover_every_setting_and_the_cls_ablation():
    model, tok, data = tiny_setup()
    seen = []
    rows = measure_token_reduction(model, tok, data, "driving", repeats=1, ablate_cls=True, progress=seen.append)
    assert seen == rows and len(rows) == 2 * len(SETTINGS)
    with_cls, without = rows[: len(SETTINGS)], rows[len(SETTINGS):]
    assert [(r["reducer"], r["k"]) for r in with_cls] == [(m, "all" if k is None else k) for m, k in SETTINGS]
    assert [r["visual_tokens"] for r in with_cls] == [17, 2, 5, 17, 2, 5, 17]
    assert [r["visual_tokens"] for r in without] == [16, 1, 4, 16, 1, 4, 16]
    assert all(r["reducer"].endswith("(no CLS)") and math.isnan(r["decision_ms"]) for r in without)
    for r in rows:
        assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["balanced_accuracy"] <= 1.0
        assert r["questions"] == len(data.examples) and r["family"] == "driving"
    assert all(r["decision_ms"] > 0 for r in with_cls)
    # cls with k >= the number of patches is exactly "none"
    full = measure_token_reduction(model, tok, data, "driving", settings=[("none", None), ("cls", 16)],
                                   latency=False)
    assert full[0]["accuracy"] == full[1]["accuracy"] and math.isnan(full[0]["decision_ms"])


def test_table_and_latency_helpers():
    model, tok, data = tiny_setup()
    qs = family_questions(data)
    assert [q.text for q in qs] == sorted(QUESTIONS) and all(q.answers == ("yes", "no") for q in qs)
    assert decision_latency(TinyPolicy(model, tok), data, repeats=2) > 0
    with pytest.raises(ValueError, match="repeats"):
        decision_latency(TinyPolicy(model, tok), data, repeats=0)
    rows = measure_token_reduction(model, tok, data, "gui-text", settings=[("cls", 4)], repeats=1)
    lines = markdown_table(rows).splitlines()
    assert lines[0].startswith("| family | reducer | k |") and len(lines) == 3
    assert lines[2].startswith("| gui-text | cls | 4 | 5 |")
