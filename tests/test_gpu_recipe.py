"""scripts/gpu_train_driving.sh, the one-GPU recipe, run tiny on the CPU: the plumbing that a device call trusts."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from genex.world_model.synthetic import write_synthetic_recording

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_recipe_trains_evaluates_and_packs_at_most_8_files(tmp_path):
    for split, seed in (("train", 0), ("heldout", 1000)):
        write_synthetic_recording(tmp_path / "data" / split / "Syn", episodes=3, steps=12, size=16, seed=seed)
    out = tmp_path / "out"
    env = {**os.environ, "PY": sys.executable, "DEV": "cpu", "PREC": "fp32", "CONFIG": "tiny", "STEPS": "4",
           "DATA_ROOT": str(tmp_path / "data"), "SCENES": "Syn", "OUT": str(out), "R": str(tmp_path / "work"),
           "EVAL_EPISODES": "1"}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_train_driving.sh")], env=env, capture_output=True,
                       text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and {"model.tar", "metrics.csv", "eval.json", "train.log"} <= set(files)
    with tarfile.open(out / "model.tar") as tar:
        names = tar.getnames()
    assert any(n.endswith("weights.safetensors") for n in names) and any(n.endswith("config.json") for n in names)
    assert "trained to step 4" in (out / "train.log").read_text()


def test_gpu_recipe_names_missing_data(tmp_path):
    env = {**os.environ, "PY": sys.executable, "DATA_ROOT": str(tmp_path / "nothing"), "OUT": str(tmp_path / "o"),
           "R": str(tmp_path / "w")}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_train_driving.sh")], env=env, capture_output=True,
                       text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "missing" in r.stderr and "OccludedCrosswalk" in r.stderr
