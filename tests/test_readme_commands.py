"""Smoke tests, on tiny data, for README commands that no other test runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_record_train_and_eval_world_model_with_the_oracle(tmp_path):
    """The tour's record -> train-world-model -> eval-world-model chain, the oracle included (it replays the env
    from the recording's seeds), on two 16x16 crosswalk episodes and a 2-step tiny model."""
    from genex.cli import main

    rec = tmp_path / "rec"
    kwargs = json.dumps({"width": 16, "height": 16})
    assert main(["record", "--env", "genex/OccludedCrosswalk-v0", "--episodes", "2", "--driver", "cautious",
                 "--env-kwargs", kwargs, "--out", str(rec)]) == 0
    run = tmp_path / "wm"
    assert main(["train-world-model", "--data", str(rec), "--config", "tiny", "--out", str(run), "--threads", "1",
                 "--quiet", "--max-steps", "2", "--checkpoint-every", "2", "--eval-every", "2", "--device", "cpu"]) == 0
    out = tmp_path / "eval"
    assert main(["eval-world-model", "--checkpoint", str(run / "model"), "--data", str(rec), "--horizon", "2",
                 "--samples", "1", "--stride", "16", "--max-episodes", "1", "--threads", "1", "--device", "cpu",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["models"]) == {"diffusion", "copy_last", "oracle"}
    # the oracle replays the simulator from the recorded state: its imagined frames are the real ones
    oracle = metrics["models"]["oracle"]
    psnr = oracle.get("psnr") or oracle.get("psnr_per_h")
    assert psnr is not None and min(psnr) >= 59.9, oracle


@pytest.mark.slow
def test_bench_train_speed_one_and_two_processes(tmp_path):
    """`python bench/train_speed.py --processes 1,2` (the README's Scale out line), tiny and short."""
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "train_speed.py"), "--config", "tiny", "--steps", "12",
                        "--processes", "1,2", "--data", str(tmp_path / "none")], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "samples/s" in r.stdout and "| 2" in r.stdout
