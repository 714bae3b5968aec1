"""``genex train-world-model`` on Accelerate: 2 CPU processes (gloo) against 1, checkpoints written once, resume
on the same or another number of processes, streaming data, and bad input failing every process with one message.

The multi-process tests launch the real command (``accelerate launch --multi_gpu --num_processes 2 -m genex.cli
...``; ``--multi_gpu`` is accelerate's torchrun/DDP launcher, gloo on CPUs) on a tiny synthetic recording; each
launch costs ~10 s on 2 cores, almost all of it importing diffusers twice.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("accelerate")

from genex.world_model import preset  # noqa: E402
from genex.world_model.data import (StepBatchSampler, StreamingWindowDataset, WindowDataset,  # noqa: E402
                                    scan_recordings)
from genex.world_model.synthetic import write_synthetic_recording  # noqa: E402
from genex.world_model.train import TrainingStateError, train_world_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 8  # tiny preset: global batch 8, lr warm-up 5 steps, a checkpoint and an evaluation every 4 steps
#: 2 processes x 1 micro-batch and 1 process x 2 micro-batches train on the same shards (same windows, same
#: noise); they differ only in how the gradient mean is summed (all-reduce vs accumulation), float rounding
#: that 8 Adam steps may grow to ~1e-6 of a weight. With 2 shards the division by 2 is exact, so on this machine
#: they agree bitwise; the tolerance leaves room for another all-reduce order (a ring over more ranks, another
#: BLAS), while a real difference (other windows or noise: 1 process x 1 micro-batch) moves the loss by ~10%.
RTOL = 1e-4


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> Path:
    # 20 episodes: split_episodes holds one out, so the runs report a validation loss on fixed windows and noise
    return write_synthetic_recording(tmp_path_factory.mktemp("dist") / "rec", episodes=20, steps=12, size=16, seed=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accelerate_launch() -> list[str]:
    exe = Path(sys.executable).with_name("accelerate")
    return [str(exe), "launch"] if exe.exists() else [sys.executable, "-m", "accelerate.commands.launch"]


def _launch(tmp: Path, target: list[str], *args: str, timeout: float = 120) -> tuple[int, str, float]:
    """``accelerate launch`` 2 CPU processes of ``target`` (``-m genex.cli`` or a script); (rc, output, seconds)."""
    cmd = _accelerate_launch() + ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_port", str(_free_port()), *target, *args]
    # HF_HOME: no accelerate config file of this machine's user changes the launch
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HOME=str(tmp / "hf"), PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, time.perf_counter() - t0


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["-v", "train-world-model", "--data", str(data), "--config", "tiny", "--out", str(out), "--threads", "1",
            "--quiet", "--max-steps", str(STEPS), "--checkpoint-every", "4", "--eval-every", "4", "--device", "cpu",
            *extra]


def _rows(out: Path) -> dict[int, dict[str, str]]:
    with open(out / "metrics.csv", newline="") as f:
        return {int(r["step"]): r for r in csv.DictReader(f)}


def _weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "model" / "weights.safetensors"))


def _assert_same_run(a: Path, b: Path) -> None:
    ra, rb = _rows(a)[STEPS], _rows(b)[STEPS]
    for key in ("loss", "val_loss", "val_psnr1"):
        assert float(ra[key]) == pytest.approx(float(rb[key]), rel=RTOL), (key, ra, rb)
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=RTOL, atol=RTOL * 1e-2, msg=k)


def _one_checkpoint_set(out: Path, step: int) -> None:
    state = out / "state"
    assert sorted(p.name for p in state.iterdir()) == ["latest.json", f"state_{step:07d}.safetensors"]
    assert sorted(p.name for p in (out / "model").iterdir()) == ["config.json", "weights.safetensors"]


@pytest.mark.slow
def test_two_processes_follow_one_process_write_once_and_resume(rec, tmp_path):
    """2 processes (gloo) with global batch 8 match 1 process with 2 micro-batches of 4 (in memory, no workers)
    also when streamed through DataLoader workers; only process 0 writes checkpoints; ``--resume`` continues the
    step count, on 2 processes or on 1 (the global batch is the same)."""
    dist = tmp_path / "dist"
    rc, log, secs = _launch(tmp_path, ["-m", "genex.cli"], *_train_args(rec, dist, "--stop-after", "4"))
    assert rc == 0, log
    assert log.count("checkpoint of step 4 written by process 0 of 2") == 1, log
    assert "written by process 1" not in log
    _one_checkpoint_set(dist, 4)
    latest = json.loads((dist / "state" / "latest.json").read_text())
    assert (latest["step"], latest["processes"], latest["grad_accum"]) == (4, 2, 1)
    assert log.count("trained to step 4") == 1  # the summary line too is printed once
    moved = tmp_path / "moved"  # the same checkpoint, resumed below on 1 process
    shutil.copytree(dist, moved)

    # resumed streaming from disk through a DataLoader worker per process: the same batches as in memory
    rc, log, secs2 = _launch(tmp_path, ["-m", "genex.cli"], *_train_args(rec, dist, "--resume", "--stream",
                                                                        "--cache-episodes", "4", "--workers", "1"))
    assert rc == 0, log
    assert "resumed" in log and "at step 4" in log and "streaming 19 training episodes" in log
    assert log.count("checkpoint of step 8 written by process 0 of 2") == 1 and "of step 4 written" not in log, log
    _one_checkpoint_set(dist, STEPS)
    assert sorted(_rows(dist)) == [5, 8]  # logged every 5 steps and at the end, none twice
    assert json.loads((dist / "model" / "config.json").read_text())["steps"] == STEPS

    cfg, tc = preset("tiny", max_steps=STEPS, checkpoint_every=4, eval_every=4)
    one = tmp_path / "one"
    train_world_model([rec], one, cfg, tc, progress=False, device="cpu", grad_accum=2)
    _assert_same_run(dist, one)
    # re-sharding: the 2-process checkpoint resumed by 1 process (2 micro-batches) continues it
    assert train_world_model([rec], moved, cfg, tc, resume=True, progress=False, device="cpu",
                             grad_accum=2)["step"] == STEPS
    _assert_same_run(moved, one)
    # the tolerance tells splits apart: 1 process x 1 micro-batch (the same windows, other noise shards) ends elsewhere
    plain = tmp_path / "plain"
    train_world_model([rec], plain, cfg, tc, progress=False, device="cpu")
    assert abs(float(_rows(plain)[STEPS]["loss"]) / float(_rows(one)[STEPS]["loss"]) - 1) > 10 * RTOL
    print(f"2-process launches: {secs:.1f} s and {secs2:.1f} s")


SCRIPT = """
import os, sys
from genex.cli import main

argv = sys.argv[1:]
if os.environ.get("RANK") == "1":  # on this process (another node, say) the recording folder does not exist
    i = argv.index("--data") + 1
    argv[i] += "-missing-here"
sys.exit(main(argv))
"""


@pytest.mark.slow
def test_data_missing_on_one_process_stops_all_with_one_message(rec, tmp_path):
    script = tmp_path / "train_on_two.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    rc, log, secs = _launch(tmp_path, [str(script)], *_train_args(rec, out), timeout=180)
    assert rc != 0
    assert log.count("genex train-world-model: process 1 (of 2") == 1, log
    assert log.count("-missing-here/manifest.json not found") == 1, log
    assert secs < 90, secs  # it fails together at start-up; no process waits for a peer that is gone
    assert not (out / "state" / "latest.json").exists()


def test_resume_refuses_another_config_and_global_batch_must_divide(rec, tmp_path):
    """Resuming with another global batch (or any other setting) is refused, naming the field; a batch that
    processes x --grad-accum do not divide is refused before anything is written."""
    cfg, tc = preset("tiny", max_steps=4, checkpoint_every=2, eval_every=2)
    out = tmp_path / "run"
    train_world_model([rec], out, cfg, tc, progress=False, device="cpu", stop_after=2)
    with pytest.raises(TrainingStateError, match="train.batch_size 8 vs now 16"):
        train_world_model([rec], out, cfg, tc.__class__(**{**tc.__dict__, "batch_size": 16}), resume=True,
                          progress=False, device="cpu")
    with pytest.raises(ValueError, match=r"divisible by 1 process\(es\) x --grad-accum 3 = 3"):
        train_world_model([rec], tmp_path / "odd", cfg, tc, progress=False, device="cpu", grad_accum=3)
    assert not (tmp_path / "odd").exists()
    # another number of micro-batches (or processes) with the same global batch is resumed, from one random
    # stream (1 x 1) to per-step draws (1 x 4) and back
    tc6 = tc.__class__(**{**tc.__dict__, "max_steps": 6})
    out6 = tmp_path / "six"
    train_world_model([rec], out6, cfg, tc6, progress=False, device="cpu", stop_after=2)
    assert train_world_model([rec], out6, cfg, tc6, resume=True, progress=False, device="cpu", grad_accum=4,
                             stop_after=2)["step"] == 4
    assert json.loads((out6 / "state" / "latest.json").read_text())["batches"] == "per step"
    assert train_world_model([rec], out6, cfg, tc6, resume=True, progress=False, device="cpu")["step"] == 6
    assert json.loads((out6 / "state" / "latest.json").read_text())["batches"] == "one stream"


def test_missing_folder_is_one_clear_message(rec, tmp_path):
    from genex.cli import main

    with pytest.raises(SystemExit, match=r"genex train-world-model: .*nowhere/manifest.json not found"):
        main(["train-world-model", "--data", str(rec), str(tmp_path / "nowhere"), "--config", "tiny", "--out",
              str(tmp_path / "run"), "--quiet", "--device", "cpu"])


def test_streaming_dataset_draws_the_same_batches_with_a_bounded_cache(rec, tmp_path):
    """Streaming windows equal in-memory ones (so training does not depend on the flag), the cache holds at most
    ``cache_episodes`` episodes, and a run streamed through a DataLoader worker trains to the same weights."""
    cfg, tc = preset("tiny", max_steps=3, checkpoint_every=3, eval_every=3, changed_share=0.5)
    refs = scan_recordings([rec], cfg)
    memory = WindowDataset.from_refs(refs, cfg.context)
    stream = StreamingWindowDataset(refs, cfg.context, cache_episodes=2)
    assert len(stream) == len(memory) and stream.frames is None
    np.testing.assert_array_equal(stream.changed_fraction(), memory.changed_fraction())
    idx = np.random.default_rng(0).integers(0, len(memory), 32)
    a, b = memory.get(idx), stream.get(idx)
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("context", "action", "target"))
    assert len(stream._cache) <= 2 and stream.decoded > 2
    runs = {}
    for name, kw in (("memory", {"stream": False}), ("stream", {"stream": True, "cache_episodes": 2, "workers": 1})):
        train_world_model([rec], tmp_path / name, cfg, tc, progress=False, device="cpu", **kw)
        runs[name] = _weights(tmp_path / name)
    assert all(torch.equal(runs["memory"][k], runs["stream"][k]) for k in runs["memory"])


def test_step_batches_shard_the_same_windows_over_any_number_of_processes(rec):
    """Shard k = micro * N + rank of a step holds the same windows for 1 process x 2 micro-batches as for 2
    processes x 1 (accelerate's own sharding of the batch sampler, as ``prepare`` does it)."""
    from accelerate.data_loader import BatchSamplerShard

    cfg, _ = preset("tiny")
    data = WindowDataset.from_refs(scan_recordings([rec], cfg), cfg.context)

    def shards(n: int, accum: int) -> list[list[int]]:
        sampler = StepBatchSampler(data, 8, start=3, stop=5, seed=7, accum=accum, changed_share=0.5)
        per_rank = [list(BatchSamplerShard(sampler, n, r, split_batches=True)) if n > 1 else list(sampler)
                    for r in range(n)]
        return [per_rank[r][i] for i in range(len(per_rank[0])) for r in range(n)]  # micro-major, then rank

    assert shards(1, 2) == shards(2, 1)
    assert [len(s) for s in shards(2, 1)] == [4] * 4 and [len(s) for s in shards(4, 2)] == [1] * 16
    flat = sum(shards(4, 2), [])
    assert flat == sum(shards(1, 1), [])  # the global batches themselves do not depend on the split
    resumed = StepBatchSampler(data, 8, start=4, stop=5, seed=7, changed_share=0.5)
    assert list(resumed) == list(StepBatchSampler(data, 8, start=3, stop=5, seed=7, changed_share=0.5))[1:]
