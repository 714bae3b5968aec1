"""The world-model trainer's hooks: a subclass changes which windows a step draws or the loss it trains on, the
default trainer is ``train_world_model`` bit for bit, and the experiments built on it train a few steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from genex.recording import episode_paths, load_episode, save_episode  # noqa: E402
from genex.world_model.config import preset  # noqa: E402
from genex.world_model.data import WindowDataset  # noqa: E402
from genex.world_model.synthetic import write_synthetic_recording  # noqa: E402
from genex.world_model.train import WorldModelTrainer, train_world_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> Path:
    return write_synthetic_recording(tmp_path_factory.mktemp("hooks") / "rec", episodes=8, steps=12, size=16, seed=0)


def _configs(steps: int = 3):
    return preset("tiny", max_steps=steps, checkpoint_every=steps, eval_every=100, log_every=1)


class _SeenWindows(WindowDataset):
    """Windows that remember which indices the loader asked for."""

    seen: list[int]

    def __getitems__(self, idx):
        self.seen.extend(int(i) for i in idx)
        return super().__getitems__(idx)


class _Watching(WorldModelTrainer):
    def windows(self, refs, stream):
        data = _SeenWindows.from_refs(refs, self.model_cfg.context)
        data.seen = []
        return data


class _PoolOnly(_Watching):
    """Draws every window of a step from a fixed pool (the first window of each episode)."""

    def draw_indices(self, data, rng, n):
        pool = np.flatnonzero(data.frame_index == data.first_index)
        return pool[rng.integers(0, len(pool), size=n)]


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_the_index_hook_decides_which_windows_are_drawn(rec, tmp_path, grad_accum):
    model_cfg, train_cfg = _configs()
    default = _Watching([rec], tmp_path / "default", model_cfg, train_cfg, device="cpu", progress=False,
                        grad_accum=grad_accum)
    default.train()
    pooled = _PoolOnly([rec], tmp_path / "pool", model_cfg, train_cfg, device="cpu", progress=False,
                       grad_accum=grad_accum)
    pooled.train()
    data = pooled.data
    pool = set(np.flatnonzero(data.frame_index == data.first_index).tolist())
    assert len(pooled.data.seen) == len(default.data.seen) == 3 * train_cfg.batch_size
    assert set(pooled.data.seen) <= pool
    assert not set(default.data.seen) <= pool  # uniform draws leave the pool


def test_the_loss_hook_is_what_trains_and_logs(rec, tmp_path):
    calls = []

    class Halved(WorldModelTrainer):
        def compute_loss(self, model, batch):
            loss, logs = model(batch)
            calls.append(loss.item())
            return loss * 0.5, {**logs, "loss": 123.0}

    model_cfg, train_cfg = _configs()
    metrics = Halved([rec], tmp_path / "run", model_cfg, train_cfg, device="cpu", progress=False).train()
    assert len(calls) == 3 and metrics["step"] == 3 and metrics["loss"] == 123.0


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _assert_bitwise(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_the_default_trainer_is_train_world_model_bit_for_bit(rec, tmp_path):
    model_cfg, train_cfg = _configs()
    kw = dict(device="cpu", progress=False)
    m1 = train_world_model([rec], tmp_path / "fn", model_cfg, train_cfg, **kw)
    m2 = WorldModelTrainer([rec], tmp_path / "cls", model_cfg, train_cfg, **kw).train()
    assert {k: v for k, v in m1.items() if k != "seconds"} == {k: v for k, v in m2.items() if k != "seconds"}
    _assert_bitwise(_tensors(tmp_path / "fn" / "model" / "weights.safetensors"),
                    _tensors(tmp_path / "cls" / "model" / "weights.safetensors"))
    _assert_bitwise(_tensors(tmp_path / "fn" / "state" / "state_0000003.safetensors"),
                    _tensors(tmp_path / "cls" / "state" / "state_0000003.safetensors"))
    assert "trainer" not in json.loads((tmp_path / "cls" / "run.json").read_text())  # no settings: run.json as before


def _with_pedestrian(src: Path, dst: Path) -> Path:
    """A copy of recording ``src`` whose episodes label a "pedestrian" fact visible in every third frame."""
    (dst / "episodes").mkdir(parents=True)
    manifest = json.loads((src / "manifest.json").read_text())
    (dst / "manifest.json").write_text(json.dumps({**manifest, "facts": ["pedestrian"]}))
    for path in episode_paths(src):
        ep = load_episode(path)
        visible = (np.arange(len(ep.frames)) % 3 == 0)[:, None]
        save_episode(dst / "episodes" / path.name, replace(ep, visible=visible))
    return dst


def _experiment(name: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, str(ROOT / "experiments" / name / "run.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow  # two fresh Python processes: ~10 s of imports each
def test_the_experiments_train_a_few_steps_on_the_trainer(rec, tmp_path):
    model_cfg, train_cfg = _configs(1)
    train_world_model([rec], tmp_path / "base", model_cfg, train_cfg, device="cpu", progress=False)
    ckpt = tmp_path / "base" / "model"
    agents = _with_pedestrian(rec, tmp_path / "agents")
    common = ["--steps", "3", "--batch-size", "4", "--threads", "1", "--device", "cpu"]
    procs = {
        "stride": _experiment("stride_experiment", "train", "--init", str(ckpt), "--data", str(rec), "--stride", "2",
                              "--out", str(tmp_path / "stride"), *common),
        "finetune": _experiment("finetune_agent_windows", "--checkpoint", str(ckpt), "--data", str(agents),
                                "--agent-share", "0.5", "--out", str(tmp_path / "finetune"), *common),
    }
    outputs = {}
    for name, proc in procs.items():
        outputs[name], _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, (name, outputs[name])
        assert "step 3" in outputs[name], (name, outputs[name])
    stride_run = json.loads((tmp_path / "stride" / "run.json").read_text())
    assert stride_run["trainer"] == {"stride": 2, "max_episodes": None}
    assert stride_run["init_from"]["path"] == str(ckpt)
    assert json.loads((tmp_path / "stride" / "model" / "config.json").read_text())["stride"] == 2
    assert json.loads((tmp_path / "finetune" / "run.json").read_text())["trainer"]["agent_share"] == 0.5
    assert "96 windows, 32 with a hidden agent in the next frame" in outputs["finetune"]  # frames 3, 6, 9, 12 of 8
    assert (tmp_path / "finetune" / "model" / "weights.safetensors").exists()


def test_start_up_errors_stop_every_process_with_one_message(monkeypatch):
    """One home for both trainers' start-up agreement: the process that failed alone is named to the others."""
    from genex.training import TrainingInputError, fail_together

    fail_together(1, None)  # nothing failed: nothing raised
    with pytest.raises(FileNotFoundError) as alone:
        fail_together(1, FileNotFoundError("no data"))
    assert alone.value.collective  # what the world-model and policy CLIs read
    monkeypatch.setattr("accelerate.utils.gather_object", lambda mine: [(None, "node-a"), ("no data", "node-b")])
    with pytest.raises(TrainingInputError, match=r"^process 1 \(of 2, on node-b\) could not start: no data$") as other:
        fail_together(2, None)
    assert other.value.collective
