"""World model: EDM denoiser, sampling, protocol, ImaginedEnv, training loop, resume, checkpoints."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from genex.world_model import (  # noqa: E402
    CheckpointMismatchError, CopyLastFrameWorldModel, CorruptCheckpointError, Denoiser, DiffusionWorldModel,
    ImaginedEnv, OracleWorldModel, WorldModel, load_world_model, preset, save_world_model,
)
from genex.world_model.actions import encode_action, hash_text  # noqa: E402
from genex.world_model.data import WindowDataset, load_recordings  # noqa: E402
from genex.world_model.evaluate import load_episodes  # noqa: E402
from genex.world_model.config import SamplerConfig, WorldModelConfig  # noqa: E402
from genex.world_model.network import ConditionedUNet, click_glimpse, click_map  # noqa: E402
from genex.world_model.synthetic import write_synthetic_recording  # noqa: E402
from genex.world_model.train import train_world_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return write_synthetic_recording(tmp_path_factory.mktemp("wm") / "rec", episodes=8, steps=12, size=16, seed=0)


def tiny_model(seed: int = 0) -> DiffusionWorldModel:
    torch.manual_seed(seed)
    cfg, _ = preset("tiny")
    return DiffusionWorldModel(Denoiser(cfg), action_names=("accelerate", "cruise", "brake", "creep", "wait"),
                               device="cpu")


def test_edm_preconditioning_is_skip_at_init():
    cfg, _ = preset("tiny")
    torch.manual_seed(0)
    d = Denoiser(cfg)  # conv_out is zero-initialised: F = 0, so D(x) = c_skip * x
    x = torch.randn(2, 3, 16, 16)
    sigma = torch.tensor([0.5, 2.0])
    ctx = torch.zeros(2, 3 * cfg.context, 16, 16)
    a = torch.tensor([[0.0, -1, -1, -1] + [0] * cfg.text_length] * 2)
    out = d.denoise(x, sigma, ctx, a)
    c_skip = cfg.sigma_data**2 / (sigma**2 + cfg.sigma_data**2)
    torch.testing.assert_close(out, c_skip.view(-1, 1, 1, 1) * x)


def test_sampling_shapes_and_determinism():
    wm = tiny_model()
    ctx = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    actions = ["accelerate", 2, "wait"]
    a = wm.imagine(ctx, actions, num_samples=3, seed=7)
    b = wm.imagine(ctx, actions, num_samples=3, seed=7)
    c = wm.imagine(ctx, actions, num_samples=3, seed=8)
    assert a.shape == (3, 3, 16, 16, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[0], a[1])  # samples are independent draws
    assert wm.imagine(ctx, [], num_samples=2, seed=0).shape == (2, 0, 16, 16, 3)
    with pytest.raises(ValueError, match="vocabulary"):
        wm.imagine(ctx, ["fly"], seed=0)


def test_set_sampling_changes_only_sampling_fields():
    """Evaluations and sweeps override sampling in place; a field the weights depend on is refused, and the
    CLI helper passes on only the flags that were given."""
    import argparse

    from genex.world_model.cli import add_sampling_arguments, sampling_overrides

    wm = tiny_model()
    ctx = np.zeros((2, 16, 16, 3), np.uint8)
    one = wm.imagine(ctx, ["wait"], seed=0)
    assert wm.set_sampling(steps=5, sigma_min=0.5) is wm
    assert wm.sampler.steps == 5 and wm.sampler.sigma_min == 0.5
    assert not hasattr(wm.denoiser.cfg, "steps")  # the network's config holds no sampling field
    assert not np.array_equal(wm.imagine(ctx, ["wait"], seed=0), one)  # it really samples differently
    with pytest.raises(ValueError, match="sampling-only"):
        wm.set_sampling(channels=(8, 16))
    ap = argparse.ArgumentParser()
    add_sampling_arguments(ap)
    assert sampling_overrides(ap.parse_args(["--steps", "4", "--min-changed-pixels", "0"])) == {
        "steps": 4, "min_changed_pixels": 0}
    assert sampling_overrides(ap.parse_args([])) == {}


def test_snap_copies_small_changes_exactly():
    from genex.world_model.sampler import sample_next_frame

    cfg, _ = preset("tiny")
    torch.manual_seed(0)
    sc = SamplerConfig(steps=1, sigma_max=5.0)
    d = Denoiser(cfg)  # F = 0 at init: the sample is c_skip * noise, a small change
    ctx = torch.rand(3, 3 * cfg.context, 16, 16) * 2 - 1
    a = torch.zeros(3, 4 + cfg.text_length)
    noisy = sample_next_frame(d, ctx, a, sc, generator=torch.Generator().manual_seed(0))
    assert (noisy - ctx[:, -3:]).abs().amax() > 0  # without the snap the leftover noise changes the frame
    sc = sc.replace(snap=8.0)
    snapped = sample_next_frame(d, ctx, a, sc, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(snapped, ctx[:, -3:])  # ... with it, a static frame is copied exactly
    # large changes pass through untouched
    d.denoise = lambda x, s, c, act, layout=None: torch.full_like(x, 0.5)  # type: ignore[method-assign]
    moved = sample_next_frame(d, ctx * 0, a, sc, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(moved, torch.full_like(moved, 0.5))
    with pytest.raises(ValueError, match="snap"):
        sc.replace(snap=-1.0)


def test_min_changed_pixels_drops_faint_outlines_but_keeps_real_moves():
    from genex.world_model.sampler import sample_next_frame

    cfg, _ = preset("tiny")
    sc = SamplerConfig(steps=1, sigma_max=5.0, snap=8.0)
    d = Denoiser(cfg)
    ctx = torch.zeros(2, 3 * cfg.context, 16, 16)
    a = torch.zeros(2, 4 + cfg.text_length)
    change = torch.zeros(2, 3, 16, 16)
    change[0, :, 2, 3:6] = 0.8  # sample 0: a 3-pixel outline
    change[1, :, 4:12, 4:12] = 0.8  # sample 1: a 64-pixel object moves
    d.denoise = lambda x, s, c, act, layout=None: change  # type: ignore[method-assign]  # the one Euler step lands on it
    plain = sample_next_frame(d, ctx, a, sc, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(plain, change)  # off by default (0): both changes survive the snap
    sc = sc.replace(min_changed_pixels=4)
    gated = sample_next_frame(d, ctx, a, sc, generator=torch.Generator().manual_seed(0))
    assert (gated[0] == 0).all()  # fewer than 4 changed pixels: an exact copy of the last frame
    torch.testing.assert_close(gated[1], change[1])  # 64 pixels: kept as sampled
    sc = sc.replace(min_changed_pixels=3)  # the threshold is inclusive: 3 pixels are kept
    torch.testing.assert_close(sample_next_frame(d, ctx, a, sc)[0], change[0])
    for bad in (-1, 2.5):
        with pytest.raises(ValueError, match="min_changed_pixels"):
            sc.replace(min_changed_pixels=bad)
    with pytest.raises(ValueError, match="snap > 0"):  # without the snap the gate would silently never fire
        SamplerConfig(min_changed_pixels=30)
    with pytest.raises(ValueError, match="residual"):  # the gate acts on the change from the last frame
        sc.check_model(cfg.replace(residual=False))


def test_protocol_honoured_by_all_three_and_oracle_leaves_live_env_alone():
    gym = pytest.importorskip("gymnasium")
    pytest.importorskip("mujoco")
    import genex.envs  # noqa: F401

    env = gym.make("genex/OccludedCrosswalk-v0", width=16, height=16)
    twin = gym.make("genex/OccludedCrosswalk-v0", width=16, height=16)
    obs, _ = env.reset(seed=3)
    twin.reset(seed=3)
    for _ in range(2):
        obs, *_ = env.step(1)
        twin.step(1)
    ctx = np.stack([obs["image"]] * 2)
    actions = [0, 0, 2]
    oracle = OracleWorldModel(env)
    models = {"diffusion": tiny_model().bind(env), "copy_last": CopyLastFrameWorldModel(), "oracle": oracle}
    for name, wm in models.items():
        assert isinstance(wm, WorldModel), name
        out = wm.imagine(ctx, actions, num_samples=2, seed=0)
        assert out.shape == (2, 3, 16, 16, 3) and out.dtype == np.uint8, name
        batch = wm.imagine_batch(np.stack([ctx, ctx]), [actions, actions], seed=0)
        assert batch.shape == (2, 3, 16, 16, 3), name
    np.testing.assert_array_equal(models["copy_last"].imagine(ctx, actions)[0, 2], obs["image"])
    # the oracle rendered the truth, and the live episode continues as if nothing happened
    truth = oracle.imagine(ctx, actions)[0]
    real = [twin.step(a)[0]["image"] for a in actions]
    np.testing.assert_array_equal(truth, np.stack(real))
    after, *_ = env.step(0)
    np.testing.assert_array_equal(after["image"], real[0])
    env.close()
    twin.close()


def test_imagined_env_runs_code_written_for_the_real_env():
    gym = pytest.importorskip("gymnasium")
    pytest.importorskip("mujoco")
    import genex.envs  # noqa: F401

    env = gym.make("genex/StoppedLeadCar-v0", width=16, height=16)
    obs, _ = env.reset(seed=1)
    snap = env.unwrapped.snapshot()
    ctx = np.stack([obs["image"]] * 2)
    for wm in (tiny_model().bind(env), CopyLastFrameWorldModel(), OracleWorldModel(env, snapshot=snap)):
        ienv = ImaginedEnv.like(env, wm, num_envs=3, max_steps=2, seed=0)
        iobs, info = ienv.reset(ctx, observation=obs)
        assert iobs["image"].shape == (3, 16, 16, 3) and info["imagined"]
        assert iobs["text"] == [obs["text"]] * 3
        for t in range(2):
            iobs, rew, term, trunc, _ = ienv.step([env.action_space.sample() for _ in range(3)])
            assert iobs["image"].shape == (3, 16, 16, 3) and iobs["image"].dtype == np.uint8
            assert env.observation_space["image"].contains(iobs["image"][0])
        assert trunc.all() and not term.any() and rew.shape == (3,)
    # oracle in imagination == reality
    ienv = ImaginedEnv.like(env, OracleWorldModel(env, snapshot=snap), num_envs=1)
    ienv.reset(ctx)
    env.unwrapped.restore(snap)
    for a in (0, 2, 0):
        iobs, *_ = ienv.step([a])
        real, *_ = env.step(a)
        np.testing.assert_array_equal(iobs["image"][0], real["image"])
    env.close()


def test_gui_action_conditioning():
    cfg, _ = preset("gui-small")
    v = encode_action({"type": 0, "x": 31, "y": 95, "text": "ignored", "key": 3}, cfg)
    assert v[0] == 0 and v[1] == pytest.approx(31.5 / 128) and v[2] == pytest.approx(95.5 / 128) and v[3] == -1
    m = click_map(torch.from_numpy(v[None, 1:3]), 128, 128, 4.0)[0, 0]
    assert tuple(int(i) for i in divmod(int(m.argmax()), 128)) == (95, 31)
    typed = encode_action({"type": 1, "text": "Paris"}, cfg)
    assert typed[1] == -1 and (typed[4:9] > 0).all() and (typed[9:] == 0).all()
    assert not np.array_equal(hash_text("Paris", 512, 16), hash_text("Parsi", 512, 16))
    assert encode_action({"type": 2, "key": 4}, cfg)[3] == 4
    assert click_map(torch.tensor([[-1.0, -1.0]]), 8, 8, 2.0).abs().sum() == 0
    torch.manual_seed(0)
    wm = DiffusionWorldModel(Denoiser(cfg.replace(height=32, width=32, channels=(16, 16), patch=2, cond_dim=32)),
                             device="cpu")
    out = wm.imagine(np.zeros((2, 32, 32, 3), np.uint8), [{"type": 0, "x": 3, "y": 4}, {"type": 1, "text": "hi"}],
                     num_samples=2, seed=0)
    assert out.shape == (2, 2, 32, 32, 3)


def test_click_text_conditions_clicks_on_their_label_and_needs_labelled_recordings(tmp_path):
    """``click_text``: a click carries the text of its target ("Display"), so two clicks at the same place on two
    screens are told apart by a learned embedding; models without it ignore the label (old checkpoints)."""
    from genex.recording import record_episodes

    click = {"type": 0, "x": 40, "y": 18}
    on, _ = preset("gui-small")
    assert on.click_text
    off = on.replace(click_text=False)
    assert (encode_action({**click, "label": "Display"}, off)[4:] == 0).all()
    display, sound = (encode_action({**click, "label": w}, on) for w in ("Display", "Sound"))
    assert (display[4:11] > 0).all() and not np.array_equal(display, sound)
    assert (encode_action(click, on)[4:] == 0).all()  # no label: nothing to read
    small = on.replace(height=32, width=32, channels=(16, 16), patch=2, cond_dim=32, glimpse=(8, 16), glimpse_map=4)
    torch.manual_seed(0)
    net = ConditionedUNet(small)
    ctx = torch.zeros(1, 3 * small.context, 32, 32)
    a, b = (torch.from_numpy(encode_action({**click, "x": 10, "y": 5, "label": w}, small)[None]) for w in ("Display", "Sound"))
    assert (net.embed(torch.zeros(1), a, ctx) - net.embed(torch.zeros(1), b, ctx)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="click_text"):
        preset("small", click_text=True)
    old = small.to_dict()
    del old["click_text"]  # checkpoints from before the label load without it
    assert WorldModelConfig.from_dict(old).click_text is False
    rec = record_episodes("genex/SettingsTabs-v0", tmp_path / "gui", 1, driver="expert", seed=0, progress=False)
    del rec
    assert load_recordings([tmp_path / "gui"], on)[0].actions[:, 4:].any()
    ep_path = next((tmp_path / "gui" / "episodes").glob("*.npz"))
    with np.load(ep_path) as z:  # the same episode as recorded before labels were stored
        np.savez(ep_path, **{k: z[k] for k in z.files if k != "action_labels_json"})
    with pytest.raises(ValueError, match="record it again"):
        load_recordings([tmp_path / "gui"], on)
    with pytest.raises(ValueError, match="record it again"):  # evaluation and calibration load the same way
        load_episodes([tmp_path / "gui"], on)


def test_windows_drop_labels_a_planner_could_not_have():
    """A recorded label after a window's first click was read off a real *future* screen (the target file in a
    folder not yet opened): evaluation windows keep only the first, as a planner has only that one."""
    from genex.world_model.actions import without_hindsight
    from genex.evaluation.windows import make_windows
    from genex.world_model.data import EpisodeData

    acts = [{"type": 0, "x": 1, "y": 1, "label": "Games"}, {"type": 0, "x": 2, "y": 2, "label": "data.txt"}, 3]
    assert without_hindsight(acts) == [acts[0], {"type": 0, "x": 2, "y": 2}, 3]
    assert acts[1]["label"] == "data.txt"  # the input is left alone
    ep = EpisodeData(np.zeros((4, 8, 8, 3), np.uint8), np.zeros((3, 4), np.float32), acts, "e", 0, {})
    w0, w1 = make_windows([ep], context=1, horizon=2, stride=1)
    assert "label" in w0.actions[0] and "label" not in w0.actions[1]
    assert w1.actions[0]["label"] == "data.txt"  # the first click of its own window: read off the real present


def test_click_glimpse_crops_under_the_click_and_pads_black():
    frame = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    xy = torch.tensor([[4.5 / 8, 2.5 / 8], [-1.0, -1.0]])  # pixel (x=4, y=2); no position
    g = click_glimpse(frame, xy, (4, 4))
    assert g.shape == (2, 3, 4, 4)
    torch.testing.assert_close(g[0], frame[0, :, 0:4, 2:6])  # rows y-2..y+1, columns x-2..x+1
    assert g[1].abs().sum() == 0
    corner = click_glimpse(frame, torch.tensor([[0.5 / 8, 0.5 / 8]]), (4, 4))[0]
    assert (corner[:, :2] == -1).all() and (corner[:, :, :2] == -1).all()
    torch.testing.assert_close(corner[:, 2:, 2:], frame[0, :, :2, :2])


def test_glimpse_conditions_on_the_pixels_under_the_click_only():
    """The point of the glimpse: the conditioning vector sees what is under the click (a tab's name) and nothing
    else, so clicks on two tabs at the same place in two screens can be told apart."""
    cfg, _ = preset("gui-small", glimpse=(8, 16))
    cfg = cfg.replace(height=32, width=32, channels=(16, 16), patch=2, cond_dim=32)
    torch.manual_seed(0)
    net = ConditionedUNet(cfg)
    ctx = torch.zeros(1, 3 * cfg.context, 32, 32)
    action = torch.from_numpy(encode_action({"type": 0, "x": 10, "y": 5}, cfg)[None])
    base = net.embed(torch.zeros(1), action, ctx)
    far, near = ctx.clone(), ctx.clone()
    far[:, -3:, 20:, 20:] = 1.0  # outside the 8x16 patch around (10, 5)
    near[:, -3:, 3:7, 6:14] = 1.0  # under the click, in the last context frame
    torch.testing.assert_close(net.embed(torch.zeros(1), action, far), base)
    assert (net.embed(torch.zeros(1), action, near) - base).abs().max() > 1e-3
    with pytest.raises(ValueError, match="glimpse"):
        net.embed(torch.zeros(1), action)
    with pytest.raises(ValueError, match="action_family='gui'"):
        preset("small", glimpse=(8, 16))
    with pytest.raises(ValueError, match="multiple of 4"):
        preset("gui-small", glimpse=(6, 16))
    assert WorldModelConfig.from_dict(cfg.to_dict()) == cfg
    old = cfg.to_dict()
    del old["glimpse"]  # a checkpoint from before the glimpse loads without one
    assert WorldModelConfig.from_dict(old).glimpse == (0, 0)


def test_glimpse_map_feeds_the_name_under_the_click_to_every_position(monkeypatch):
    """With ``glimpse_map`` the glimpse code also enters the UNet as a spatial map: what the glimpse shows changes
    the output far from the click (a tab's page) through the map alone, with the same context frames."""
    import genex.world_model.network as network

    cfg, _ = preset("gui-small", glimpse=(8, 16), glimpse_map=4)
    cfg = cfg.replace(height=32, width=32, channels=(16, 16), patch=2, cond_dim=32)
    torch.manual_seed(0)
    net = ConditionedUNet(cfg)
    for p in net.parameters():  # a trained-looking net: the zero-initialised output conv would hide any difference
        torch.nn.init.normal_(p, std=0.1) if p.dim() > 1 else None
    torch.nn.init.zeros_(net.cond_mlp[1].weight)  # the vector path is off: only the map can carry the glimpse
    torch.nn.init.zeros_(net.cond_mlp[1].bias)
    ctx = torch.zeros(1, 3 * cfg.context, 32, 32)  # the same context every time: only the glimpse differs
    action = torch.from_numpy(encode_action({"type": 0, "x": 10, "y": 5}, cfg)[None])
    x = torch.zeros(1, 3, 32, 32)

    def run(value: float) -> torch.Tensor:
        monkeypatch.setattr(network, "click_glimpse", lambda f, xy, size: torch.full((f.shape[0], 3, *size), value))
        return net(x, torch.zeros(1), ctx, action)

    assert (run(0.0) - run(1.0))[..., 20:, :].abs().max() > 1e-4  # rows far below the click change with the word
    torch.nn.init.zeros_(net.glimpse_to_map[1].weight)  # ... and only through the map
    torch.nn.init.zeros_(net.glimpse_to_map[1].bias)
    torch.testing.assert_close(run(0.0), run(1.0))
    assert net.unet.conv_in.in_channels == (3 * (cfg.context + 1) + 1) * 4 + 4
    with pytest.raises(ValueError, match="glimpse_map"):
        preset("gui-small", glimpse=(0, 0), glimpse_map=4)
    old = cfg.to_dict()
    del old["glimpse_map"]  # older checkpoints load without the map
    assert WorldModelConfig.from_dict(old).glimpse_map == 0


def test_windows_pad_with_the_reset_frame(synthetic):
    cfg, _ = preset("tiny")
    eps = load_recordings([synthetic], cfg)
    ds = WindowDataset(eps[:1], context=3)
    b = ds.get(np.array([0, 5]))
    f = torch.from_numpy(eps[0].frames)
    assert torch.equal(b.context[0], f[[0, 0, 0]]) and torch.equal(b.target[0], f[1])
    assert torch.equal(b.context[1], f[[3, 4, 5]]) and torch.equal(b.target[1], f[6])
    assert torch.equal(b.action[1], torch.from_numpy(eps[0].actions[5]))


def test_strided_windows_skip_frames_and_average_actions(synthetic):
    cfg, _ = preset("tiny")
    eps = load_recordings([synthetic], cfg)[:2]
    ds = WindowDataset(eps, context=3, stride=4)
    n0 = len(eps[0].actions) - 3  # windows of the first episode: the target t + 4 must exist
    assert len(ds) == n0 + len(eps[1].actions) - 3
    b = ds.get(np.array([1, 6, n0]))
    f = torch.from_numpy(eps[0].frames)
    assert torch.equal(b.context[0], f[[0, 0, 1]]) and torch.equal(b.target[0], f[5])
    assert torch.equal(b.context[1], f[[0, 2, 6]]) and torch.equal(b.target[1], f[10])
    torch.testing.assert_close(b.action[1], torch.from_numpy(eps[0].actions[6:10].mean(0)))
    # the second episode's first window starts at its own reset frame
    assert torch.equal(b.context[2], torch.from_numpy(eps[1].frames[[0, 0, 0]]))
    assert torch.equal(b.target[2], torch.from_numpy(eps[1].frames[4]))
    assert ds.changed_fraction().shape == (len(ds),)
    short = WindowDataset([eps[0]], context=3, stride=len(eps[0].actions) + 1)  # no window fits: none, no crash
    assert len(short) == 0 and short.actions.shape == (0, eps[0].actions.shape[1])
    with pytest.raises(ValueError, match="stride"):
        WindowDataset(eps, context=3, stride=0)


def _fixed_batch_losses(synthetic: Path, cfg, tc, model_dir: Path) -> tuple[float, float, DiffusionWorldModel]:
    """Loss on one fixed batch of ``synthetic`` at initialisation (seed ``tc.seed``) and after training (the model
    in ``model_dir``), with the same noise draw; also returns the trained model."""
    batch = WindowDataset(load_recordings([synthetic], cfg), cfg.context).sample(np.random.default_rng(0), 64)

    def loss_of(d: Denoiser) -> float:
        torch.manual_seed(123)
        with torch.no_grad():
            return float(d(batch)[0])

    torch.manual_seed(tc.seed)
    before = loss_of(Denoiser(cfg))
    trained = load_world_model(model_dir, device="cpu")
    return before, loss_of(trained.denoiser), trained


def test_training_reduces_loss(synthetic, tmp_path):
    cfg, tc = preset("tiny")
    train_world_model([synthetic], tmp_path / "run", cfg, tc, progress=False)
    before, after, _ = _fixed_batch_losses(synthetic, cfg, tc, tmp_path / "run" / "model")
    assert after < 0.6 * before, (before, after)
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss") and len(rows) > 5


def _train_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "genex.cli", "train-world-model", "--data", str(data), "--config", "tiny",
            "--out", str(out), "--threads", "1", "--quiet", "--max-steps", "40", "--checkpoint-every", "10",
            "--device", "cpu", *extra]


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted(synthetic, tmp_path):
    """Kill a training subprocess after a checkpoint, resume it: the weights equal an uninterrupted run's."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    full = tmp_path / "full"
    subprocess.run(_train_cmd(synthetic, full), check=True, env=env, capture_output=True, timeout=300)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(synthetic, killed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    latest = killed / "state" / "latest.json"
    deadline = time.time() + 120
    step = 0
    while time.time() < deadline and proc.poll() is None:
        if latest.exists():
            try:
                step = json.loads(latest.read_text())["step"]
            except (json.JSONDecodeError, KeyError):
                step = 0
            if step >= 10:
                break
        time.sleep(0.02)
    interrupted = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert interrupted, "training finished before it could be killed"
    stopped = json.loads(latest.read_text())["step"]
    assert 10 <= stopped < 40
    from genex.world_model.train import TrainingStateError

    cfg, tc = preset("tiny", max_steps=40, checkpoint_every=10)
    with pytest.raises(TrainingStateError, match="--resume"):  # refuses to overwrite a run without --resume
        train_world_model([synthetic], killed, cfg, tc, progress=False)
    subprocess.run(_train_cmd(synthetic, killed, "--resume"), check=True, env=env, capture_output=True, timeout=300)
    from safetensors.torch import load_file

    a = load_file(str(full / "model" / "weights.safetensors"))
    b = load_file(str(killed / "model" / "weights.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (full / "metrics.csv").read_text().count("\n") == (killed / "metrics.csv").read_text().count("\n")


def test_corrupt_and_mismatched_checkpoints(tmp_path):
    pytest.importorskip("gymnasium")
    from gymnasium import spaces

    wm = tiny_model()
    path = save_world_model(wm.denoiser, tmp_path / "ckpt")
    weights = path / "weights.safetensors"
    assert weights.read_bytes()[8:9] == b"{"  # a safetensors JSON header, not a pickle
    assert load_world_model(path, device="cpu").cfg == wm.cfg

    class FakeEnv:
        def __init__(self, h: int, w: int, action_space) -> None:
            self.observation_space = spaces.Dict({"image": spaces.Box(0, 255, (h, w, 3), np.uint8)})
            self.action_space = action_space
            self.action_names = ("accelerate", "cruise", "brake", "creep", "wait")

    load_world_model(path, env=FakeEnv(16, 16, spaces.Discrete(5)), device="cpu")
    with pytest.raises(CheckpointMismatchError, match="16x16 frames but .* renders 64x64"):
        load_world_model(path, env=FakeEnv(64, 64, spaces.Discrete(5)), device="cpu")
    gui_space = spaces.Dict({"type": spaces.Discrete(5), "x": spaces.Discrete(16), "y": spaces.Discrete(16)})
    with pytest.raises(CheckpointMismatchError, match="GUI"):
        load_world_model(path, env=FakeEnv(16, 16, gui_space), device="cpu")

    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(CorruptCheckpointError, match="truncated or corrupt"):
        load_world_model(path, device="cpu")
    with pytest.raises(CorruptCheckpointError, match="truncated or corrupt"):
        load_world_model(path, device="cpu", verify_hash=False)
    flipped = bytearray(good)
    flipped[-5] ^= 0xFF
    weights.write_bytes(bytes(flipped))
    with pytest.raises(CorruptCheckpointError, match="SHA-256"):
        load_world_model(path, device="cpu")
    weights.write_bytes(good)
    (path / "config.json").write_text("{not json")
    with pytest.raises(CorruptCheckpointError, match="not valid JSON"):
        load_world_model(path, device="cpu")
    with pytest.raises(CorruptCheckpointError, match="not a world-model checkpoint folder"):
        load_world_model(tmp_path / "nope", device="cpu")


def test_window_sampling_can_oversample_changing_frames():
    """GUI videos are mostly static: ``changed_share`` draws that share of a batch from windows that change."""
    from genex.world_model.config import TrainConfig
    from genex.world_model.data import EpisodeData, WindowDataset

    frames = np.zeros((11, 8, 8, 3), np.uint8)
    frames[6:] = 255  # only the window 5 -> 6 changes
    ep = EpisodeData(frames=frames, actions=np.zeros((10, 1), np.float32), raw_actions=[0] * 10, env_id="toy", seed=0,
                     meta={})
    data = WindowDataset([ep], context=2)
    assert np.flatnonzero(data.changed_fraction()).tolist() == [5]
    rng = np.random.default_rng(0)
    batch = data.sample(rng, 8, changed_share=1.0)
    assert (batch.target.float().mean((1, 2, 3)) == 255).all() and (batch.context[:, -1] == 0).all()
    uniform = data.sample(np.random.default_rng(0), 200)
    assert 0 < (uniform.target.float().mean((1, 2, 3)) == 255).float().mean() < 0.7  # frames 6..10 are white
    with pytest.raises(ValueError, match="changed_share"):
        TrainConfig(changed_share=1.5)


def test_window_sampling_can_balance_envs():
    """``source_balance`` 1 gives a small app as many draws as a big one (0 keeps the old uniform draw), and the
    changing part of the batch still comes from windows that change."""
    from genex.world_model.config import TrainConfig
    from genex.world_model.data import EpisodeData, WindowDataset

    def episode(env_id: str, steps: int) -> EpisodeData:
        frames = np.zeros((steps + 1, 8, 8, 3), np.uint8)
        frames[1::4] = 255  # windows 0 and 1 of every four change the whole frame, 2 and 3 change nothing
        frames[2::4] = 255
        return EpisodeData(frames=frames, actions=np.zeros((steps, 1), np.float32), raw_actions=[0] * steps,
                           env_id=env_id, seed=0, meta={})

    data = WindowDataset([episode("big", 360), episode("small", 40)], context=1)
    np.testing.assert_allclose(data.env_shares(0.0), [0.9, 0.1])
    np.testing.assert_allclose(data.env_shares(1.0), [0.5, 0.5])
    np.testing.assert_allclose(data.env_shares(0.5), [3 / 4, 1 / 4])
    moving = data.changed_fraction() >= 0.05
    assert 0.45 < moving.mean() < 0.55
    drawn: list[np.ndarray] = []
    get = data.get
    data.get = lambda idx: (drawn.append(np.asarray(idx)), get(idx))[1]  # record what sample() draws
    small = data.env_ids.index("small")
    for balance, expected in ((1.0, 0.5), (0.0, 0.1)):
        drawn.clear()
        for i in range(40):
            data.sample(np.random.default_rng(i), 50, changed_share=0.6, source_balance=balance)
        idx = np.concatenate(drawn)
        assert abs((data.env_index[idx] == small).mean() - expected) < 0.04, balance
        assert moving[np.concatenate([d[:30] for d in drawn])].all()  # the changing 60% of every batch
    with pytest.raises(ValueError, match="source_balance"):
        TrainConfig(source_balance=2.0)
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp16")


def test_bf16_training_autocasts_and_reduces_loss(synthetic, tmp_path, monkeypatch):
    """``precision="bf16"`` runs the training forward pass under bfloat16 autocast; the weights stay float32,
    the loss on a fixed batch falls as much as in float32 (``test_training_reduces_loss``) and sampling works."""
    autocast_seen: list[bool] = []
    forward = Denoiser.forward

    def spy(self, batch):
        autocast_seen.append(torch.is_autocast_enabled("cpu"))
        return forward(self, batch)

    monkeypatch.setattr(Denoiser, "forward", spy)
    cfg, tc = preset("tiny", precision="bf16")
    train_world_model([synthetic], tmp_path / "bf16", cfg, tc, progress=False, device="cpu")
    monkeypatch.setattr(Denoiser, "forward", forward)
    assert sum(autocast_seen) == tc.max_steps  # every training step, not the validation passes
    before, after, wm = _fixed_batch_losses(synthetic, cfg, tc, tmp_path / "bf16" / "model")
    assert next(wm.denoiser.parameters()).dtype == torch.float32
    assert after < 0.6 * before
    out = wm.imagine(np.zeros((cfg.context, 16, 16, 3), np.uint8), ["wait"], num_samples=1, seed=0)
    assert out.shape == (1, 1, 16, 16, 3)


def test_auto_precision_uses_bf16_only_where_native(monkeypatch):
    """``precision="auto"`` (the presets) autocasts only where bfloat16 is native: emulated bf16 on a CPU
    without AVX512-BF16 ran ~10x slower than fp32. An explicit bf16 is honoured on any CPU."""
    import genex.world_model.train as train_mod

    cpu = torch.device("cpu")
    for native in (False, True):
        monkeypatch.setattr(train_mod, "_cpu_has_native_bf16", lambda native=native: native)
        assert train_mod._use_bf16("auto", cpu) is native
        assert train_mod._use_bf16("bf16", cpu) is True
        assert train_mod._use_bf16("fp32", cpu) is False
    assert train_mod._use_bf16("auto", torch.device("mps")) is False
    assert preset("small")[1].precision == preset("gui-small")[1].precision == "auto"


def test_init_from_starts_a_run_at_a_checkpoints_weights(synthetic, tmp_path):
    """Fine-tuning: with lr 0 the run keeps exactly the loaded weights (and the EMA of them); the checkpoint
    names where it started; another network is refused, other training noise is not (the sampler is no part of
    the model config any more: tests/test_sampler_config.py)."""
    from safetensors.torch import load_file

    cfg, tc = preset("tiny", max_steps=2, checkpoint_every=2, eval_every=2)
    train_world_model([synthetic], tmp_path / "a", cfg, tc, progress=False, device="cpu")
    still = tc.__class__(**{**tc.__dict__, "lr": 0.0, "seed": 1})
    # other training noise levels (p_mean, p_std) keep the weights' shapes: allowed
    train_world_model([synthetic], tmp_path / "b", cfg.replace(p_mean=0.0, p_std=2.0), still,
                      progress=False, device="cpu", init_from=tmp_path / "a" / "model")
    a, b = (load_file(str(tmp_path / x / "model" / "weights.safetensors")) for x in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    meta = json.loads((tmp_path / "b" / "model" / "config.json").read_text())
    assert meta["init_from"]["sha256"] == json.loads((tmp_path / "a" / "model" / "config.json").read_text())["sha256"]
    with pytest.raises(ValueError, match="channels"):
        train_world_model([synthetic], tmp_path / "c", cfg.replace(channels=(8, 16)), tc, progress=False,
                          device="cpu", init_from=tmp_path / "a" / "model")
    # a fine-tune resumes from its own state, with or without --init-from (the start may have moved since)
    tc1 = tc.__class__(**{**tc.__dict__, "checkpoint_every": 1})
    train_world_model([synthetic], tmp_path / "d", cfg, tc1, progress=False, device="cpu",
                      init_from=str(tmp_path / "a" / "model") + "/", stop_after=1)
    assert train_world_model([synthetic], tmp_path / "d", cfg, tc1, resume=True, progress=False,
                             device="cpu")["step"] == 2
    assert json.loads((tmp_path / "d" / "run.json").read_text())["init_from"]["path"] == str(tmp_path / "a" / "model")


def test_resume_accepts_a_run_from_before_new_config_fields(synthetic, tmp_path):
    """A run started before a config field existed was trained with its default: --resume fills it in instead
    of refusing the run; a real difference is still refused."""
    from genex.world_model.train import TrainingStateError

    cfg, tc = preset("tiny", max_steps=4, checkpoint_every=2)
    out = tmp_path / "old"
    train_world_model([synthetic], out, cfg, tc, progress=False, device="cpu", stop_after=2)
    run = json.loads((out / "run.json").read_text())
    del run["model"]["glimpse"], run["train"]["precision"], run["train"]["source_balance"]
    (out / "run.json").write_text(json.dumps(run))
    assert train_world_model([synthetic], out, cfg, tc, resume=True, progress=False, device="cpu")["step"] == 4
    with pytest.raises(TrainingStateError, match="train.precision 'fp32' vs now 'bf16'"):  # names the field
        train_world_model([synthetic], out, cfg, tc.__class__(**{**tc.__dict__, "precision": "bf16"}), resume=True,
                          progress=False, device="cpu")


def test_evaluate_models_samples_every_stochastic_model():
    """Two learned models on the same windows in one call: each gets S samples, copy-last one."""
    from genex.world_model import CopyLastFrameWorldModel
    from genex.evaluation.windows import Window
    from genex.world_model.evaluate import evaluate_models

    class Noisy:  # a stand-in for a learned model: random frames
        def imagine_batch(self, contexts, actions, seed=None):
            rng = np.random.default_rng(seed)
            return rng.integers(0, 256, (len(contexts), len(actions[0]), *contexts.shape[2:]), dtype=np.uint8)

    frames = np.zeros((2, 16, 16, 3), np.uint8)  # SSIM's window is 11 pixels
    windows = [Window(episode=0, t0=0, context=frames, actions=[0, 0], truth=frames, group="") for _ in range(3)]
    metrics, imagined = evaluate_models({"a": Noisy(), "b": Noisy(), "copy_last": CopyLastFrameWorldModel()},
                                        windows, num_samples=4, progress=False)
    assert imagined["a"].shape[:3] == imagined["b"].shape[:3] == (3, 4, 2)
    assert imagined["copy_last"].shape[:3] == (3, 1, 2)
    assert metrics["models"]["copy_last"]["psnr"] == [60.0, 60.0] and metrics["models"]["a"]["diversity"][0] > 50


def test_outcome_agreement_counts_samples_that_differ_on_the_hidden_agent():
    """A stand-in policy sees the pedestrian in bright frames: 2 of 4 samples show it in the first window (the
    samples disagree), none in the second; the real futures are dark (the policy sees nothing there)."""
    from types import SimpleNamespace

    from genex.evaluation.outcomes import outcome_agreement
    from genex.evaluation.windows import Window

    class Bright:  # "pedestrian" = a frame brighter than mid-grey
        def answer(self, images, prompt, questions):
            p = np.array([[0.9, 0.1] if im.image.mean() > 128 else [0.1, 0.9] for im in images])
            return SimpleNamespace(per_image={"pedestrian": p})

    frames = np.zeros((2, 8, 8, 3), np.uint8)
    windows = [Window(episode=0, t0=3, context=frames, actions=[0, 0], truth=frames, group=g)
               for g in ("unresolved", "resolved", "")]
    pred = np.zeros((3, 4, 2, 8, 8, 3), np.uint8)
    pred[0, :2, 1] = 255  # samples 0 and 1 of the uncertain window show it at h=2
    pred[2] = 255  # no group: skipped
    out = outcome_agreement(pred, windows, ["genex/OccludedCrosswalk-v0"] * 3, Bright(), {"genex/OccludedCrosswalk-v0": ""})
    assert out["outcome_seen_unresolved"] == 0.5 and out["outcome_seen_resolved"] == 0.0
    assert out["outcome_disagreement_unresolved"] == pytest.approx(2 * 0.5 * 0.5 * 4 / 3)  # 4 of 6 pairs differ
    assert out["outcome_disagreement_resolved"] == 0.0 and out["outcome_split_unresolved"] == 1.0
    assert out["outcome_seen_real_unresolved"] == 0.0 and out["windows_unresolved"] == out["windows_resolved"] == 1
    with pytest.raises(ValueError, match="2 samples"):
        outcome_agreement(pred[:, :1], windows, ["genex/OccludedCrosswalk-v0"] * 3, Bright(), {})


def test_change_weight_counts_changed_pixels_more():
    cfg, _ = preset("tiny")
    torch.manual_seed(0)
    plain = Denoiser(cfg)
    weighted = Denoiser(cfg.replace(change_weight=9.0))
    weighted.load_state_dict(plain.state_dict())
    ctx = torch.full((2, cfg.context, 16, 16, 3), 100, dtype=torch.uint8)
    action = torch.zeros(2, len(encode_action("cruise", cfg, ("cruise",))))
    static = ctx[:, -1].clone()
    from genex.world_model.denoiser import Batch

    def loss(d, target):
        torch.manual_seed(1)
        return float(d(Batch(ctx, action, target))[0].detach())

    # nothing changes: every weight is 1 + 0, the weighted loss is the plain one
    assert loss(weighted, static) == pytest.approx(loss(plain, static), rel=1e-6)
    moved = static.clone()
    moved[:, :4, :4] = 250  # 16 of 256 pixels change
    # the zero-initialised network predicts "no change", so its error sits on the changed pixels: weighting them
    # 10x (normalised by the mean weight, 1 + 9 * 16/256) scales the loss by about 10 / 1.56
    assert loss(weighted, moved) > 4 * loss(plain, moved)
    with pytest.raises(ValueError, match="change_weight"):
        cfg.replace(change_weight=-1.0)
    with pytest.raises(ValueError, match="residual"):
        cfg.replace(change_weight=1.0, residual=False)


def test_cli_overrides_network_widths(synthetic, tmp_path):
    from genex.cli import main

    out = tmp_path / "narrow"
    assert main(["train-world-model", "--data", str(synthetic), "--config", "tiny", "--out", str(out), "--threads", "1",
                 "--quiet", "--max-steps", "2", "--checkpoint-every", "2", "--eval-every", "2", "--device", "cpu",
                 "--channels", "8,16", "--patch", "2", "--change-weight", "4"]) == 0
    model = json.loads((out / "model" / "config.json").read_text())["model"]
    assert (model["channels"], model["patch"], model["change_weight"]) == ([8, 16], 2, 4.0)
    with pytest.raises(SystemExit, match="comma-separated integers"):
        main(["train-world-model", "--data", str(synthetic), "--config", "tiny", "--out", str(out), "--channels", "8;16"])


def test_cli_eval_world_model_writes_its_outputs_and_checks_policy_first(synthetic, tmp_path, monkeypatch):
    """`genex eval-world-model` end to end on a 2-step model; `--policy` on recordings without a hidden agent
    fails at once, not after the evaluation; with `--no-oracle` it runs where Gymnasium cannot be imported (a GPU
    machine with torch and diffusers alone)."""
    from genex.cli import main

    run = tmp_path / "run"
    assert main(["train-world-model", "--data", str(synthetic), "--config", "tiny", "--out", str(run), "--threads", "1",
                 "--quiet", "--max-steps", "2", "--checkpoint-every", "2", "--eval-every", "2", "--device", "cpu"]) == 0
    args = ["eval-world-model", "--checkpoint", str(run / "model"), "--data", str(synthetic), "--horizon", "2",
            "--samples", "2", "--stride", "4", "--no-oracle", "--threads", "1", "--device", "cpu"]
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "gymnasium", None)  # any `import gymnasium` now raises ImportError
        assert main(args + ["--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"diffusion", "copy_last"} and metrics["horizon"] == 2 and metrics["samples"] == 2
    assert (tmp_path / "eval" / "metrics.csv").exists() and (tmp_path / "eval" / "strips.png").exists()
    with pytest.raises(SystemExit, match="hidden agent"):
        main(args + ["--out", str(tmp_path / "eval2"), "--policy", str(tmp_path / "no-such-policy")])
    assert not (tmp_path / "eval2").exists()


def test_psnr_splits_static_and_moving_frames_and_has_an_uncapped_dataset_form():
    """A static next frame gives copy-last the 60 dB cap; the moving/static split and the PSNR of the mean MSE
    show what happens where something moves."""
    from genex.world_model import CopyLastFrameWorldModel
    from genex.evaluation.windows import Window
    from genex.world_model.evaluate import evaluate_models

    ctx = np.zeros((2, 16, 16, 3), np.uint8)
    moved = ctx[0].copy()
    moved[:8] = 100  # half the frame changes by 100 levels
    windows = [Window(0, 0, ctx, [0], ctx[:1], ""), Window(0, 0, ctx, [0], moved[None], "")]  # static, moving
    metrics, _ = evaluate_models({"copy_last": CopyLastFrameWorldModel()}, windows, 1, progress=False)
    m = metrics["models"]["copy_last"]
    moving_db = 10 * np.log10(255**2 / (100**2 / 2))
    assert m["windows_moving"] == [1] and m["windows_static"] == [1]
    assert m["psnr_static"][0] == 60.0 and m["psnr_moving"][0] == pytest.approx(moving_db, abs=1e-4)
    assert m["psnr"][0] == pytest.approx((60 + moving_db) / 2, abs=1e-4)  # the capped mean flatters copy-last
    assert m["psnr_dataset"][0] == pytest.approx(10 * np.log10(255**2 / (100**2 / 4)), abs=1e-3)


@pytest.mark.parametrize("name", ["small", "gui-small"])
def test_presets_sample_from_noise_that_hides_screen_wide_changes(name):
    """Recipe v3 (docs/world_model.md): at sigma_max the noise must hide even a change of the whole frame (its
    mean has std sigma_max / sqrt(pixels)), or the network learns to read such changes off the noisy target
    instead of predicting them from the action; and most training batches must be at that kind of noise."""
    cfg, _ = configs = preset(name)
    assert configs.sampler.sigma_max / math.sqrt(cfg.height * cfg.width * 3) > 0.3
    share_above_5 = 0.5 * math.erfc((math.log(5.0) - cfg.p_mean) / (cfg.p_std * math.sqrt(2)))
    assert share_above_5 > 0.5


def test_click_test_scores_the_truth_and_the_floor(tmp_path):
    """The GUI click test: imagining the true next screen passes every big click, copying the current one
    passes none; the result is also broken down per env."""
    from genex.recording import record_episodes
    from genex.world_model.evaluate import click_transitions

    record_episodes("genex/SettingsTabs-v0", tmp_path, 4, driver="mixed", seed=0, progress=False)
    cfg, _ = preset("gui-small")
    eps = load_recordings([tmp_path], cfg)

    class Truth:  # imagines exactly what the recording shows next
        def __init__(self) -> None:
            self.cfg = cfg
            self.next = {}
            for ep in eps:
                for t in range(len(ep.frames) - 1):  # the same screen and click always lead to the same screen
                    self.next[ep.frames[t].tobytes() + ep.actions[t:t + 1].astype(np.float32).tobytes()] = ep.frames[t + 1]

        def imagine_batch(self, contexts, actions, seed=0):
            return np.stack([self.next[c[-1].tobytes() + a.astype(np.float32).tobytes()]
                             for c, a in zip(contexts, actions)])[:, None]

    class Copy(Truth):
        def imagine_batch(self, contexts, actions, seed=0):
            return np.asarray(contexts)[:, -1:]

    truth, copy = click_transitions(Truth(), eps), click_transitions(Copy(), eps)
    assert truth["clicks"] == copy["clicks"] > 0
    assert truth["closer_to_next"] == 1.0 and copy["closer_to_next"] == 0.0
    assert truth["per_env"] == {"genex/SettingsTabs-v0": {"clicks": truth["clicks"], "closer_to_next": 1.0}}
