"""``genex train-policy`` on Accelerate: global batch over processes, gradient accumulation, streaming, resume,
bad input. The multi-process tests run 2 CPU processes (gloo) under ``accelerate launch`` (marked slow; they
run in ``make test``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genex.policy.data import EpisodeCache, index_examples, load_examples
from genex.policy.train import STATE_FILE, TrainConfig, TrainingStateError, train_policy
from test_policy import synthetic_recording

torch.set_num_threads(1)

# 2 processes vs 1 with the same global batch: the same batches and the same averaged gradient, so the losses
# differ only by float rounding (all-reduce order); measured ~1e-7 over 6 steps
LOSS_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("rec")
    return synthetic_recording(root / "train", 6, seed=0), synthetic_recording(root / "held", 2, seed=1000)


def tiny(recordings, out: Path, **kw) -> TrainConfig:
    train, held = recordings
    base = dict(data=[str(train)], eval_data=[str(held)], out=str(out), image_size=16, patch_size=4, dim=32,
                vision_layers=1, fusion_layers=1, steps=6, batch_frames=8, lr=3e-3, warmup=2, save_every=2,
                eval_every=3)
    return TrainConfig(**{**base, **kw})


def state(out: Path) -> dict:
    return torch.load(Path(out) / STATE_FILE, map_location="cpu", weights_only=True)


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(out) / "model.safetensors"))


def config(out: Path) -> dict:
    return json.loads((Path(out) / "config.json").read_text())


# -- one process ------------------------------------------------------------------------------------------

def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(recordings, tmp_path):
    """In one process on CPU a resumed run is bit-identical: weights, optimizer, sampler RNG and step restored."""
    full = train_policy(tiny(recordings, tmp_path / "full"), progress=False)
    cfg = tiny(recordings, tmp_path / "parts")
    part = train_policy(cfg, progress=False, stop_after=3)  # between two saves: the stop itself is saved
    assert part["steps_done"] == 3 and not part["finished"] and "heldout" not in part
    assert state(cfg.out)["step"] == 3 and "optimizer" in state(cfg.out)
    train_policy(cfg, progress=False, resume=True, stop_after=2)
    done = train_policy(cfg, progress=False, resume=True)
    assert done["steps_done"] == 6 and done["finished"] and done["resumed_at"] == [3, 5]
    a, b = weights(tmp_path / "full"), weights(cfg.out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(state(tmp_path / "full")["loss"], state(cfg.out)["loss"]) and len(state(cfg.out)["loss"]) == 6
    assert done["heldout"] == full["heldout"] and done["train_acc_ema"] == full["train_acc_ema"]
    assert [p["step"] for p in done["eval_history"]] == [3, 6]
    assert "optimizer" not in state(cfg.out)  # the final checkpoint keeps the curve, not the optimizer
    # resuming a finished run: nothing to do, the same checkpoint back
    again = train_policy(cfg, progress=False, resume=True)
    assert again["steps_done"] == 6 and again["train_seconds"] == done["train_seconds"]


def test_grad_accum_and_workers_split_the_global_batch_not_the_run(recordings, tmp_path):
    """--grad-accum splits each step's global batch into micro-batches (losses equal up to rounding);
    --workers build the same batches in other processes (bit-identical); both may change on --resume."""
    train_policy(tiny(recordings, tmp_path / "plain", save_every=0), progress=False)
    train_policy(tiny(recordings, tmp_path / "accum", grad_accum=4, workers=2, save_every=0), progress=False)
    ref, acc = state(tmp_path / "plain")["loss"], state(tmp_path / "accum")["loss"]
    assert len(acc) == 6 and torch.allclose(ref, acc, atol=LOSS_TOLERANCE)
    cfg = tiny(recordings, tmp_path / "mixed", save_every=0)
    train_policy(replace(cfg, workers=2), progress=False, stop_after=3)
    train_policy(cfg, progress=False, resume=True)
    assert torch.equal(state(cfg.out)["loss"], ref)
    with pytest.raises(ValueError, match="multiple of 3"):
        train_policy(tiny(recordings, tmp_path / "odd", grad_accum=3), progress=False)


def test_streaming_reads_episodes_on_demand_and_resumes_exactly(recordings, tmp_path):
    train, _ = recordings
    index = index_examples([train], 16)
    loaded = load_examples([train], 16)
    assert index.examples == loaded.examples and index.n_frames == len(loaded.frames)
    cache = EpisodeCache(index, capacity=2)
    ids = [0, 9, 17, 1, 40, 8]  # episodes 0, 1, 2, 0, 5, 1 (8 frames each)
    np.testing.assert_array_equal(cache[ids], loaded.frames[ids])
    assert cache.loads == 6 and len(cache._episodes) == 2  # LRU: episodes 0 and 1 were evicted before they came back
    np.testing.assert_array_equal(index.subsample(5).frames, loaded.frames[[0, 9, 19, 28, 38]])

    cfg = tiny(recordings, tmp_path / "full", stream=True, cache_episodes=2, workers=2)
    meta = train_policy(cfg, progress=False)
    assert meta["distributed"]["stream"] and meta["finished"] and 0 <= meta["heldout"]["all"]["acc"] <= 1
    part = replace(cfg, out=str(tmp_path / "parts"))
    train_policy(part, progress=False, stop_after=4)
    train_policy(part, progress=False, resume=True)
    assert torch.equal(state(cfg.out)["loss"], state(part.out)["loss"])
    with pytest.raises(TrainingStateError, match="stream True vs now False"):  # the data order differs
        train_policy(replace(cfg, stream=False), progress=False, resume=True)
    with pytest.raises(ValueError, match="episodes with questions cannot feed"):
        train_policy(tiny(recordings, tmp_path / "many", stream=True, workers=8), progress=False)


def test_bad_output_folders_and_resumes_are_one_line_errors(recordings, tmp_path):
    cfg = tiny(recordings, tmp_path / "run", save_every=0, eval_every=0)
    with pytest.raises(TrainingStateError, match="holds no checkpoint to resume"):
        train_policy(cfg, progress=False, resume=True)
    train_policy(cfg, progress=False, stop_after=2)
    with pytest.raises(TrainingStateError, match="stopped at step 2 of 6; pass --resume"):
        train_policy(cfg, progress=False)
    with pytest.raises(TrainingStateError, match=r"other settings \(dim 32 vs now 64\)"):
        train_policy(replace(cfg, dim=64), progress=False, resume=True)
    with pytest.raises(TrainingStateError, match=r"\(steps 6 vs now 9; lr 0.003 vs now 0.01\)"):
        train_policy(replace(cfg, lr=0.01, steps=9), progress=False, resume=True)
    grown = tmp_path / "grown"  # a recording that gains an episode between the start and the resume
    shutil.copytree(recordings[0], grown)
    train_policy(replace(cfg, data=[str(grown)], out=str(tmp_path / "g")), progress=False, stop_after=1)
    shutil.copy(grown / "episodes" / "episode_000000.npz", grown / "episodes" / "episode_000006.npz")
    with pytest.raises(TrainingStateError, match=r"data changed .* \(48 frames and 96 questions then, 56 and 112 now"):
        train_policy(replace(cfg, data=[str(grown)], out=str(tmp_path / "g")), progress=False, resume=True)
    (Path(cfg.out) / STATE_FILE).write_bytes(b"torn")
    with pytest.raises(TrainingStateError, match="unreadable"):
        train_policy(cfg, progress=False, resume=True)
    train_policy(replace(cfg, out=str(tmp_path / "done")), progress=False)
    with pytest.raises(TrainingStateError, match="finished training run"):
        train_policy(replace(cfg, out=str(tmp_path / "done")), progress=False)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(TrainingStateError, match="not a tiny-VLM checkpoint"):
        train_policy(replace(cfg, out=str(tmp_path / "notes")), progress=False)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="--precision"):
        train_policy(replace(cfg, out=str(tmp_path / "p"), precision="fp16"), progress=False)


def test_cli_resume_errors_and_bf16_on_cpu(recordings, tmp_path, capsys):
    from genex.cli import main

    train, _ = recordings
    common = ["--data", str(train), "--image-size", "16", "--patch-size", "4", "--dim", "32", "--vision-layers", "1",
              "--fusion-layers", "1", "--steps", "3", "--batch-frames", "4", "--quiet", "--out", str(tmp_path / "c")]
    with pytest.raises(SystemExit, match=r"^genex train-policy: --resume: .* holds no checkpoint to resume"):
        main(["train-policy", *common, "--resume"])
    assert main(["train-policy", *common, "--stop-after", "2", "--precision", "bf16"]) == 0
    assert "stopped at step 2 of 3" in capsys.readouterr().out
    assert config(tmp_path / "c")["distributed"]["precision"] == "bf16"
    with pytest.raises(SystemExit, match="pass --resume to continue it"):
        main(["train-policy", *common])
    assert main(["train-policy", *common, "--resume", "--precision", "bf16"]) == 0
    assert "checkpoint: " in capsys.readouterr().out and config(tmp_path / "c")["steps_done"] == 3
    assert "--precision bf16" in config(tmp_path / "c")["command"] and "--resume" not in config(tmp_path / "c")["command"]


def test_a_world_model_run_earlier_in_the_process_does_not_fix_the_policy_precision(recordings, tmp_path):
    """Accelerate's state is process-global: a world-model training (fp32) in the same process must not stop a
    policy training in bf16 from starting ("AcceleratorState has already been initialized")."""
    from genex.world_model import preset
    from genex.world_model.synthetic import write_synthetic_recording
    from genex.world_model.train import train_world_model

    data = write_synthetic_recording(tmp_path / "wm_rec", episodes=3, steps=12, size=16, seed=0)
    model_cfg, train_cfg = preset("tiny", max_steps=1, checkpoint_every=1, eval_every=100, precision="fp32")
    train_world_model([data], tmp_path / "wm", model_cfg, train_cfg, device="cpu", progress=False)
    metrics = train_policy(tiny(recordings, tmp_path / "p", steps=2, precision="bf16"), progress=False)
    assert metrics and config(tmp_path / "p")["distributed"]["precision"] == "bf16"


# -- two processes (accelerate launch, gloo on CPU) ---------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """``accelerate launch --num_processes 2 -m genex.cli -v train-policy ARGS`` on CPU."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), "-m", "genex.cli", "-v", "train-policy", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_two_processes_match_one_and_resume_across_world_sizes(recordings, tmp_path):
    train, held = recordings
    cfg = tiny(recordings, tmp_path / "one", warmup=100)  # the CLI has no --warmup: its default
    train_policy(cfg, progress=False)  # the reference: 1 process, same global batch
    args = ["--data", str(train), "--eval-data", str(held), "--image-size", "16", "--patch-size", "4", "--dim", "32",
            "--vision-layers", "1", "--fusion-layers", "1", "--steps", "6", "--batch-frames", "8", "--lr", "0.003",
            "--save-every", "2", "--eval-every", "3", "--quiet", "--out", str(tmp_path / "two"), "--stop-after", "4",
            "--workers", "1"]
    r = launch(args)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = r.stdout + r.stderr
    written = [line for line in log.splitlines() if "checkpoint written" in line]
    assert written == [f"INFO genex.policy.train: checkpoint written to {tmp_path / 'two'} at step {s} by process 0 "
                       "of 2" for s in (2, 4)], written  # each checkpoint once, by the main process
    assert "stopped at step 4 of 6" in r.stdout and r.stdout.count("checkpoint: ") == 1
    two = state(tmp_path / "two")
    assert two["step"] == 4 and two["world_size"] == 2
    ref = state(tmp_path / "one")["loss"]
    assert torch.allclose(two["loss"], ref[:4], atol=LOSS_TOLERANCE), (two["loss"], ref)
    assert not (tmp_path / "two.staging").exists() and not (tmp_path / "two.old").exists()
    # the same run resumed by one process: the global batch is kept, so it goes on with the same batches
    meta = train_policy(replace(cfg, out=str(tmp_path / "two"), workers=1), progress=False, resume=True)
    assert meta["steps_done"] == 6 and meta["resumed_at"] == [4] and meta["distributed"]["world_size"] == 1
    assert torch.allclose(state(tmp_path / "two")["loss"], ref, atol=LOSS_TOLERANCE)
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)


@pytest.mark.slow
def test_two_processes_stop_together_with_one_message(recordings, tmp_path):
    """A missing data folder: every process fails before training, the main one says why, nobody hangs."""
    r = launch(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x"), "--quiet"], timeout=90)
    lines = [line for line in (r.stdout + r.stderr).splitlines() if "genex train-policy" in line]
    assert r.returncode != 0 and lines == [f"genex train-policy: {tmp_path / 'missing' / 'manifest.json'} not found: "
                                           f"is {tmp_path / 'missing'} a genex recording folder?"], lines
    assert not (tmp_path / "x").exists()
