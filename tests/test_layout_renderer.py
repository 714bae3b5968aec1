"""Driving model v2, part 2 (issue 28): the renderer conditioned on a sampled layout.

A world model with ``layout_channels > 0`` draws each frame around the target frame's occupancy (where each kind of
road user shows); imagination samples that layout from the stochastic layout stage first, from the same generator
as the pixel noise. Tiny 16x16 models, seconds each; the CLI tests record two 16x16 crosswalk episodes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from genex.errors import CheckpointMismatchError, CorruptCheckpointError
from genex.world_model.config import WorldModelConfig, preset
from genex.world_model.denoiser import Batch, Denoiser
from genex.world_model.layout import LayoutConfig, LayoutModel, load_layout, save_layout
from genex.world_model.model import DiffusionWorldModel

ENV = "genex/OccludedCrosswalk-v0"
NAMES = ("accelerate", "cruise", "brake", "creep", "wait")  # the driving envs' action_names
CFG = WorldModelConfig(height=16, width=16, context=2, patch=1, channels=(16, 32), cond_dim=32, text_buckets=64,
                       text_length=8, layout_channels=2, agent_weight=4.0)
LAYOUT = LayoutConfig(facts=("pedestrian", "car"), n_actions=len(NAMES), grid=(4, 4), context=3, horizon=2,
                      components=2, channels=8, image_size=(16, 16), action_names=NAMES)


def renderer(cfg: WorldModelConfig = CFG, seed: int = 0) -> Denoiser:
    """A random tiny denoiser whose output depends on its input (``conv_out`` starts at zero in training)."""
    torch.manual_seed(seed)
    d = Denoiser(cfg)
    torch.nn.init.normal_(d.net.unet.conv_out.weight, std=0.3)
    return d.eval()


def stage(cfg: LayoutConfig = LAYOUT, seed: int = 1) -> LayoutModel:
    torch.manual_seed(seed)
    return LayoutModel(cfg).eval()


def inputs(b: int = 2, k: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (b, k, 16, 16, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------- config + network
def test_config_defaults_keep_old_checkpoints_and_the_preset():
    old = WorldModelConfig().to_dict()
    assert "layout_channels" not in old and "agent_weight" not in old  # byte-identical config.json without them
    assert WorldModelConfig.from_dict(old) == WorldModelConfig()
    assert WorldModelConfig.from_dict(CFG.to_dict()) == CFG
    with pytest.raises(ValueError, match="agent_weight"):
        WorldModelConfig(agent_weight=1.0)  # weighs the layout's pixels: needs a layout
    with pytest.raises(ValueError, match="layout_channels"):
        WorldModelConfig(layout_channels=-1)
    model, _ = preset("small-layout")
    assert model.layout_channels == 5 and model.agent_weight == 4.0
    assert model.replace(layout_channels=0, agent_weight=0.0) == preset("small").model


def test_the_layout_changes_the_rendered_frame(one_torch_thread):
    from genex.world_model.sampler import sample_next_frame

    d = renderer()
    rng = np.random.default_rng(0)
    ctx = d.stack_context(torch.from_numpy(inputs(2, CFG.context)))
    action = torch.zeros(2, 4 + CFG.text_length)
    empty = torch.zeros(2, 2, 4, 4, dtype=torch.bool)
    walker = empty.clone()
    walker[:, 0, 1, 2] = True  # a pedestrian in one cell
    x = torch.from_numpy(rng.standard_normal((2, 3, 16, 16)).astype(np.float32))
    sigma = torch.full((2,), 1.0)
    with torch.no_grad():
        a, b = d.denoise(x, sigma, ctx, action, empty), d.denoise(x, sigma, ctx, action, walker)
    assert not torch.allclose(a, b)
    # the cell's pixels move most: the UNet sees the layout where it is
    diff = (a - b).abs().mean((0, 1))
    assert float(diff[4:8, 8:12].mean()) > float(diff.mean())
    gen = torch.Generator().manual_seed(3)
    frame_a = sample_next_frame(d, ctx, action, generator=gen, layout=empty)
    frame_b = sample_next_frame(d, ctx, action, generator=torch.Generator().manual_seed(3), layout=walker)
    assert not torch.equal(frame_a, frame_b)
    with pytest.raises(ValueError, match="renders a sampled layout"):
        sample_next_frame(d, ctx, action, generator=gen)
    with pytest.raises(ValueError, match=r"layout must be \[2, 2, gh, gw\]"):
        d.denoise(x, sigma, ctx, action, torch.zeros(2, 3, 4, 4, dtype=torch.bool))
    plain = renderer(CFG.replace(layout_channels=0, agent_weight=0.0))
    with pytest.raises(ValueError, match="not conditioned on a layout"):
        plain.denoise(x, sigma, ctx, action, empty)


def test_agent_weight_weighs_the_pixels_the_target_layout_occupies(one_torch_thread):
    d = renderer()
    layout = torch.zeros(2, 2, 4, 4, dtype=torch.bool)
    layout[0, 1, 0, 0] = True  # a car in the top-left cell of row 0
    x0 = torch.zeros(2, 3, 16, 16)
    w = d.pixel_weight(x0, layout)
    assert w.shape == (2, 1, 16, 16)
    assert torch.all(w[0, 0, :4, :4] == 5.0) and float(w.sum()) == 2 * 256 + 4.0 * 16
    assert renderer(CFG.replace(agent_weight=0.0)).pixel_weight(x0, layout) is None  # the plain EDM loss
    both = renderer(CFG.replace(change_weight=2.0)).pixel_weight(x0 + torch.eye(16)[None, None], layout)
    assert float(both[1, 0, 0, 0]) == 3.0 and float(both[0, 0, 0, 0]) == 7.0  # changed + occupied: they add

    frames = torch.from_numpy(inputs(2, CFG.context + 1))
    batch = Batch(frames[:, :-1], torch.zeros(2, 4 + CFG.text_length), frames[:, -1], layout)
    torch.manual_seed(0)
    loss, logs = d(batch)
    loss.backward()
    assert np.isfinite(logs["loss"]) and d.net.unet.conv_in.weight.grad is not None
    unweighted = renderer(CFG.replace(agent_weight=0.0))
    torch.manual_seed(0)
    assert float(unweighted(batch)[0].detach()) != pytest.approx(float(loss.detach()))
    with pytest.raises(ValueError, match="renders a sampled layout"):
        d(Batch(batch.context, batch.action, batch.target))


# ------------------------------------------------------------------------------------------------ imagination
def world_model(with_stage: bool = True) -> DiffusionWorldModel:
    return DiffusionWorldModel(renderer(), action_names=NAMES, device="cpu", layout=stage() if with_stage else None)


def test_imagination_samples_layouts_reproducibly(one_torch_thread):
    model = world_model()
    ctx, acts = inputs(3, 4), [["accelerate", "brake", "cruise", "wait", "creep"]] * 3  # T=5 > horizon 2
    frames, layouts = model.imagine_batch(ctx, acts, seed=5, return_layouts=True)
    assert frames.shape == (3, 5, 16, 16, 3) and layouts.shape == (3, 5, 2, 4, 4) and layouts.dtype == bool
    again, again_layouts = model.imagine_batch(ctx, acts, seed=5, return_layouts=True)
    assert np.array_equal(frames, again) and np.array_equal(layouts, again_layouts)
    assert np.array_equal(model.imagine_batch(ctx, acts, seed=5), frames)
    other, other_layouts = model.imagine_batch(ctx, acts, seed=6, return_layouts=True)
    assert not np.array_equal(layouts, other_layouts) and not np.array_equal(frames, other)
    # integer actions (the env's indices) are the same actions
    ints = [[NAMES.index(a) for a in row] for row in acts]
    assert np.array_equal(model.imagine_batch(ctx, ints, seed=5), frames)
    # a short rollout (T < horizon) pads the stage's actions with the last one
    short, short_layouts = model.imagine_batch(ctx, [["brake"]] * 3, seed=5, return_layouts=True)
    assert short.shape == (3, 1, 16, 16, 3) and short_layouts.shape == (3, 1, 2, 4, 4)
    # the layout is drawn first from the seed's generator: step 0's layout is the stage's first sample
    gen = torch.Generator().manual_seed(5)
    hist = torch.from_numpy(ctx[:, -LAYOUT.context:])
    first = model.layout.sample(hist, torch.tensor([[NAMES.index("brake")] * 2] * 3), 1, generator=gen)[0]
    assert np.array_equal(short_layouts[:, 0], first[:, 0].numpy())


def test_imagine_calls_draw_each_calls_layouts_from_its_own_seed(one_torch_thread):
    model = world_model()
    ctx = inputs(3, 4, seed=1)
    calls = [(ctx[:2], [["cruise", "brake", "wait"]] * 2, 11), (ctx[2:, 1:], [["creep", "creep", "brake"]], 3)]
    together = model.imagine_calls(calls, return_layouts=True)
    for call, (frames, layouts) in zip(calls, together):
        alone, alone_layouts = model.imagine_batch(*call[:2], seed=call[2], return_layouts=True)
        assert np.array_equal(layouts, alone_layouts)
        diff = np.abs(alone.astype(int) - frames.astype(int))
        assert frames.shape == alone.shape and diff.max() <= 1 and (diff > 0).mean() < 1e-2
    plain = model.imagine_calls(calls)
    assert all(np.abs(a.astype(int) - f.astype(int)).max() <= 1 for a, (f, _) in zip(plain, together))


def test_a_layout_renderer_needs_its_stage_and_checks_it(one_torch_thread):
    model = world_model(with_stage=False)
    with pytest.raises(ValueError, match="no layout stage"):
        model.imagine_batch(inputs(1), [["cruise"]], seed=0)
    with pytest.raises(CheckpointMismatchError, match="3 facts"):
        model.layout = stage(LayoutConfig(**{**LAYOUT.to_dict(), "facts": ["a", "b", "c"]}))
    plain = DiffusionWorldModel(renderer(CFG.replace(layout_channels=0, agent_weight=0.0)), action_names=NAMES,
                                device="cpu")
    with pytest.raises(ValueError, match="not conditioned on a layout"):
        plain.layout = stage()
    with pytest.raises(ValueError, match="draws no layouts"):
        plain.imagine_batch(inputs(1), [["cruise"]], seed=0, return_layouts=True)
    unnamed = DiffusionWorldModel(renderer(), device="cpu",
                                  layout=stage(LayoutConfig(**{**LAYOUT.to_dict(), "action_names": []})))
    with pytest.raises(ValueError, match="bind the model"):  # names -> the stage's indices needs the env's names
        unnamed.imagine_batch(inputs(1), [["cruise"]], seed=0)
    unnamed.action_names = NAMES
    assert unnamed.imagine_batch(inputs(1), [["cruise"]], seed=0).shape == (1, 1, 16, 16, 3)


# ----------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_with_the_layout_stage(tmp_path, one_torch_thread):
    from genex.world_model.checkpoint import load_world_model, save_world_model

    model = world_model()
    save_world_model(model.denoiser, tmp_path / "ckpt", layout=model.layout)
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} >= {"layout.safetensors", "layout.json"}
    loaded = load_world_model(tmp_path / "ckpt", device="cpu")
    assert loaded.layout is not None and loaded.layout.cfg == LAYOUT
    ctx, acts = inputs(2), [["cruise", "brake", "wait"]] * 2
    want = model.imagine_batch(ctx, acts, seed=2, return_layouts=True)
    got = loaded.imagine_batch(ctx, acts, seed=2, return_layouts=True)
    assert all(np.array_equal(a, b) for a, b in zip(want, got))
    # the trainer's export (save without a stage) keeps the stage already in the folder
    save_world_model(model.denoiser, tmp_path / "ckpt")
    assert load_world_model(tmp_path / "ckpt", device="cpu").layout is not None

    missing = tmp_path / "missing"
    shutil.copytree(tmp_path / "ckpt", missing)
    (missing / "layout.safetensors").unlink()
    with pytest.raises(CorruptCheckpointError, match="no layout stage"):
        load_world_model(missing, device="cpu")
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "ckpt", other)
    save_layout(stage(LayoutConfig(**{**LAYOUT.to_dict(), "facts": ["a", "b", "c"]})), other)
    with pytest.raises(CheckpointMismatchError, match="3 facts"):
        load_world_model(other, device="cpu")


# --------------------------------------------------------------------------------------- data and the CLI
@pytest.fixture
def recording(crosswalk16_recording: Path) -> Path:
    return crosswalk16_recording


def without_occupancy(rec: Path, out: Path) -> Path:
    """A copy of ``rec`` whose episodes lack occupancy maps (as recordings made before they existed)."""
    shutil.copytree(rec, out)
    for path in (out / "episodes").glob("*.npz"):
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files if k != "occupancy"}
        np.savez_compressed(path, **arrays)
    return out


def test_windows_carry_the_target_frames_occupancy(recording, tmp_path):
    from genex.recording import iter_episodes
    from genex.world_model.data import StreamingWindowDataset, WindowDataset, load_recordings, scan_recordings

    tiny, _ = preset("tiny", layout_channels=5)
    refs = scan_recordings([recording], tiny)
    assert refs[0].occupancy is not None and refs[0].occupancy.shape[1:] == (5, 2, 2)
    episodes = list(iter_episodes(recording))
    idx = np.array([0, 5, len(episodes[0]) + 3])  # two windows of episode 0, one of episode 1
    for data in (WindowDataset.from_refs(refs, tiny.context, layout=True),
                 StreamingWindowDataset(refs, tiny.context, layout=True),
                 WindowDataset(load_recordings([recording], tiny), tiny.context, layout=True)):
        batch = data.get(idx)
        assert batch.layout is not None and batch.layout.dtype == torch.bool
        want = np.stack([episodes[0].occupancy[1], episodes[0].occupancy[6], episodes[1].occupancy[4]]) > 0
        assert np.array_equal(batch.layout.numpy(), want)  # window t's target is frame t + 1
    plain, _ = preset("tiny")
    assert scan_recordings([recording], plain)[0].occupancy is None  # nothing kept without a layout
    assert WindowDataset.from_refs(scan_recordings([recording], plain), plain.context).get(idx).layout is None

    old = without_occupancy(recording, tmp_path / "old")
    with pytest.raises(ValueError, match=r"old has no occupancy maps.*genex record"):
        scan_recordings([old], tiny)
    with pytest.raises(ValueError, match="records 5 facts"):
        scan_recordings([recording], preset("tiny", layout_channels=3).model)


@pytest.mark.slow
def test_train_layout_and_a_layout_renderer_from_the_cli(recording, tmp_path, one_torch_thread, capsys):
    from genex.cli import main
    from genex.world_model.checkpoint import load_world_model

    run = tmp_path / "wm"
    assert main(["train-world-model", "--data", str(recording), "--config", "tiny", "--layout-channels", "5",
                 "--agent-weight", "4", "--out", str(run), "--threads", "1", "--quiet", "--max-steps", "2",
                 "--checkpoint-every", "2", "--eval-every", "2", "--device", "cpu"]) == 0
    with pytest.raises(CorruptCheckpointError, match="no layout stage"):
        load_world_model(run / "model", device="cpu")  # the renderer alone cannot imagine
    assert main(["train-layout", "--data", str(recording), "--out", str(run / "model"), "--steps", "3",
                 "--components", "2", "--horizon", "4", "--channels", "8", "--quiet"]) == 0
    assert "fitted a layout stage" in capsys.readouterr().out
    assert load_layout(run / "model", facts=("pedestrian", "ball", "truck", "bus", "oncoming_car"),
                       grid=(2, 2)).cfg.action_names == NAMES
    model = load_world_model(run / "model", device="cpu")
    frames, layouts = model.imagine_batch(inputs(2), [["cruise"] * 5] * 2, seed=0, return_layouts=True)
    assert frames.shape == (2, 5, 16, 16, 3) and layouts.shape == (2, 5, 5, 2, 2)

    old = without_occupancy(recording, tmp_path / "old")
    with pytest.raises(SystemExit, match="old has no occupancy maps.*genex record"):
        main(["train-layout", "--data", str(old), "--out", str(tmp_path / "x"), "--steps", "1"])
    with pytest.raises(SystemExit, match="is conditioned on layout_channels=0"):  # a renderer without layout
        plain = tmp_path / "plain"
        from genex.world_model.checkpoint import save_world_model

        save_world_model(Denoiser(preset("tiny").model), plain)
        main(["train-layout", "--data", str(recording), "--out", str(plain), "--steps", "1", "--quiet"])


def test_widening_a_model_without_layout_keeps_its_output_and_adds_zero_weights(one_torch_thread):
    """--init-from a model without layout inputs (the shipped renderer): the widened v2 network computes what the
    old one did, whatever the layout, until training moves the new weights."""
    from dataclasses import replace

    from genex.world_model.network import widen_for_layout

    old_cfg, _ = preset("tiny")
    new_cfg = replace(old_cfg, layout_channels=3, agent_weight=2.0)
    torch.manual_seed(0)
    old = Denoiser(old_cfg).eval()
    torch.nn.init.normal_(old.net.unet.conv_out.weight, std=0.1)  # a non-zero output to compare
    new = Denoiser(new_cfg).eval()
    new.load_state_dict(widen_for_layout(old.state_dict(), old_cfg, new_cfg))
    g = torch.Generator().manual_seed(1)
    b, h, w, k = 2, old_cfg.height, old_cfg.width, old_cfg.context
    noisy = torch.randn(b, 3, h, w, generator=g)
    ctx = torch.rand(b, 3 * k, h, w, generator=g) * 2 - 1
    act = torch.tensor([[0.0], [1.0]])
    sigma = torch.full((b,), 1.0)
    layout = torch.rand(b, 3, 2, 2, generator=g) > 0.5
    with torch.no_grad():
        want = old.denoise(noisy, sigma, ctx, act)
        got = new.denoise(noisy, sigma, ctx, act, layout)
        other = new.denoise(noisy, sigma, ctx, act, ~layout)
    assert want.abs().max() > 0.01
    assert torch.allclose(want, got, atol=1e-6) and torch.allclose(got, other, atol=1e-6)
    with pytest.raises(ValueError, match="more than its layout channels"):
        widen_for_layout(old.state_dict(), old_cfg, replace(new_cfg, cond_dim=64))
    with pytest.raises(ValueError, match="adds layout channels"):
        widen_for_layout(new.state_dict(), new_cfg, new_cfg)


# ------------------------------------------------------------------------------- the layout encoder (v2 recipe)
ENC = CFG.replace(layout_encoder=8, agent_facts=(0,))


def test_layout_encoder_config_checks_and_preset():
    assert "layout_encoder" not in CFG.to_dict() and "agent_facts" not in CFG.to_dict()  # old layout configs
    assert WorldModelConfig.from_dict(ENC.to_dict()) == ENC
    with pytest.raises(ValueError, match="layout_encoder"):
        WorldModelConfig(layout_encoder=8)  # nothing to encode
    with pytest.raises(ValueError, match="agent_facts"):
        CFG.replace(agent_facts=(2,))  # only 2 facts
    with pytest.raises(ValueError, match="agent_facts"):
        CFG.replace(agent_weight=0.0, agent_facts=(0,))  # nothing to weigh with
    model, train = preset("small-layout-v2")
    assert (model.layout_encoder, model.agent_facts, train.layout_lr_scale) == (32, (0, 1, 4), 10.0)
    with pytest.raises(ValueError, match="layout_lr_scale"):
        preset("small-layout-v2", layout_lr_scale=0.0)


def test_the_layout_encoder_draws_the_layout_where_it_is(one_torch_thread):
    d = renderer(ENC)
    assert d.net.unet.conv_in.conv.in_channels == 3 * (CFG.context + 1)  # no layout maps among the inputs
    torch.nn.init.normal_(d.net.layout_encoder.out.weight, std=0.3)  # trained away from its zero start
    ctx = d.stack_context(torch.from_numpy(inputs(2, CFG.context)))
    action = torch.zeros(2, 4 + CFG.text_length)
    empty = torch.zeros(2, 2, 4, 4, dtype=torch.bool)
    walker = empty.clone()
    walker[:, 0, 1, 2] = True
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    sigma = torch.full((2,), 1.0)
    with torch.no_grad():
        a, b = d.denoise(x, sigma, ctx, action, empty), d.denoise(x, sigma, ctx, action, walker)
    diff = (a - b).abs().mean((0, 1))
    assert float(diff[4:8, 8:12].mean()) > 1.5 * float(diff.mean())  # strongest in and around the cell
    with pytest.raises(ValueError, match="renders a sampled layout"):
        d.denoise(x, sigma, ctx, action)


def test_agent_facts_weigh_only_those_facts_cells(one_torch_thread):
    d = renderer(ENC)
    layout = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    layout[0, 0, 0, 0] = True  # the weighed fact
    layout[0, 1, 3, 3] = True  # the other: weight 1
    w = d.pixel_weight(torch.zeros(1, 3, 16, 16), layout)
    assert torch.all(w[0, 0, :4, :4] == 5.0) and torch.all(w[0, 0, 12:, 12:] == 1.0) and float(w.sum()) == 256 + 64


def test_widening_into_a_layout_encoder_keeps_the_output_and_trains_it_faster(one_torch_thread):
    from genex.world_model.config import TrainConfig
    from genex.world_model.network import widen_for_layout
    from genex.world_model.train import param_groups

    old_cfg = CFG.replace(layout_channels=0, agent_weight=0.0)
    torch.manual_seed(0)
    old = Denoiser(old_cfg).eval()
    torch.nn.init.normal_(old.net.unet.conv_out.weight, std=0.1)
    new = Denoiser(ENC).eval()
    with pytest.raises(ValueError, match="initial weights"):
        widen_for_layout(old.state_dict(), old_cfg, ENC)
    new.load_state_dict(widen_for_layout(old.state_dict(), old_cfg, ENC, new.state_dict()))
    ctx = old.stack_context(torch.from_numpy(inputs(2, CFG.context)))
    action = torch.zeros(2, 4 + CFG.text_length)
    x, sigma = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)), torch.full((2,), 1.0)
    layout = torch.rand(2, 2, 4, 4, generator=torch.Generator().manual_seed(2)) > 0.5
    with torch.no_grad():
        want = old.denoise(x, sigma, ctx, action)
        got = new.denoise(x, sigma, ctx, action, layout)
    assert want.abs().max() > 0.01 and torch.allclose(want, got, atol=1e-6)

    groups = param_groups(new, TrainConfig(lr=1e-3, weight_decay=0.01, layout_lr_scale=10.0))
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(1e-2) and groups[1]["weight_decay"] == 0.0
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in new.net.layout_encoder.parameters()}
    assert len(param_groups(old, TrainConfig())) == 1  # a model without an encoder: one group, as before
    # one step: the zero last convolution moves, so the next step reads the layout
    frames = torch.from_numpy(inputs(2, CFG.context + 1))
    opt = torch.optim.AdamW(groups, lr=1e-3)
    new.train()
    loss, _ = new(Batch(frames[:, :-1], action, frames[:, -1], layout))
    loss.backward()
    opt.step()
    assert new.net.layout_encoder.out.weight.abs().max() > 0


@pytest.mark.slow  # records two 64x64 episodes and runs the experiment in a fresh interpreter: ~1 min
def test_the_focus_experiment_trains_with_masked_contexts_and_measures(tmp_path, one_torch_thread):
    """experiments/layout_renderer_focus: a few focused, masked steps on the trainer, then its --measure."""
    import os
    import subprocess
    import sys

    from genex.cli import main

    root = Path(__file__).resolve().parents[1]
    rec = tmp_path / "rec"
    assert main(["record", "--env", "genex/OccludedCrosswalk-v0", "--episodes", "2", "--driver", "cautious",
                 "--out", str(rec), "--quiet"]) == 0
    base = tmp_path / "base"
    assert main(["train-world-model", "--data", str(rec), "--config", "small-layout", "--out", str(base), "--threads",
                 "1", "--quiet", "--max-steps", "1", "--batch-size", "4", "--checkpoint-every", "1", "--eval-every", "1",
                 "--device", "cpu"]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root))
    script = str(root / "experiments" / "layout_renderer_focus" / "run.py")
    out = tmp_path / "focus"
    r = subprocess.run([sys.executable, script, "--data", str(rec), "--init-from", str(base / "model"), "--out",
                        str(out), "--steps", "2", "--mask-share", "1.0"], cwd=root, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    run = json.loads((out / "run.json").read_text())
    assert run["trainer"]["mask_share"] == 1.0 and run["init_from"]["path"] == str(base / "model")
    assert main(["train-layout", "--data", str(rec), "--out", str(out / "model"), "--steps", "2", "--quiet"]) == 0
    r = subprocess.run([sys.executable, script, "--measure", str(out / "model"), "--data", str(rec)], cwd=root, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "windows whose target shows a pedestrian" in r.stdout


def test_keep_layout_spares_the_layout_cells_from_the_snap_and_the_gate(one_torch_thread):
    from genex.world_model.config import SamplerConfig
    from genex.world_model.sampler import sample_next_frame

    d = renderer(ENC)
    ctx = d.stack_context(torch.from_numpy(inputs(1, CFG.context)))
    action = torch.zeros(1, 4 + CFG.text_length)
    layout = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    layout[0, 0, 1, 2] = True  # the weighed fact: its cell is kept
    layout[0, 1, 3, 3] = True  # another fact: snapped like the rest
    strict = SamplerConfig(steps=2, sigma_max=80.0, snap=250.0, min_changed_pixels=4096)  # snaps everything
    kept = strict.replace(keep_layout=True)
    last = ctx[:, -3:]
    out = {}
    for name, sc in (("strict", strict), ("kept", kept)):
        out[name] = sample_next_frame(d, ctx, action, sc, generator=torch.Generator().manual_seed(0), layout=layout)
    assert torch.equal(out["strict"], last.clamp(-1, 1))  # an exact copy of the last frame
    changed = (out["kept"] != last.clamp(-1, 1)).any(1)[0]
    assert changed[4:8, 8:12].any() and not changed[~torch.kron(layout[0, 0].int(), torch.ones(4, 4, dtype=torch.int)).bool()].any()
    # the gate judges the rest of the frame: a kept cell does not count as a move of the whole frame
    gated = SamplerConfig(steps=2, sigma_max=80.0, snap=1.0, min_changed_pixels=16 * 16 - 15, keep_layout=True)
    frame = sample_next_frame(d, ctx, action, gated, generator=torch.Generator().manual_seed(0), layout=layout)
    outside = ~torch.kron(layout[0, 0].int(), torch.ones(4, 4, dtype=torch.int)).bool()
    assert torch.equal(frame[0][:, outside], last.clamp(-1, 1)[0][:, outside])
    # layout_snap: the kept cells snap at their own threshold (here above any change: nothing is kept)
    none_kept = kept.replace(layout_snap=255.0)
    assert torch.equal(sample_next_frame(d, ctx, action, none_kept, generator=torch.Generator().manual_seed(0),
                                         layout=layout), last.clamp(-1, 1))
    with pytest.raises(ValueError, match="layout_snap"):
        strict.replace(layout_snap=8.0)  # needs keep_layout
    assert "keep_layout" not in strict.to_dict() and SamplerConfig.from_dict(kept.to_dict()) == kept
    with pytest.raises(ValueError, match="keep_layout"):
        kept.check_model(CFG.replace(layout_channels=0, agent_weight=0.0))


# ------------------------------------------------------------------------------- drawing given (recorded) layouts
def test_given_layouts_are_drawn_instead_of_sampled(one_torch_thread):
    ctx, acts = inputs(2, 4, seed=3), [["cruise", "brake", "wait"]] * 2
    lay = np.zeros((2, 3, 2, 4, 4), bool)
    lay[:, :, 0, 1, 2] = True
    with_stage, without = world_model(), world_model(with_stage=False)
    frames, used = without.imagine_batch(ctx, acts, seed=4, return_layouts=True, layouts=lay)
    assert frames.shape == (2, 3, 16, 16, 3) and np.array_equal(used, lay)  # no stage needed
    assert np.array_equal(with_stage.imagine_batch(ctx, acts, seed=4, layouts=lay), frames)  # the stage is not used
    other = lay.copy()
    other[:, :, 0] = False
    assert not np.array_equal(without.imagine_batch(ctx, acts, seed=4, layouts=other), frames)
    with pytest.raises(ValueError, match=r"layouts must be bool\[2, 3, 2, gh, gw\]"):
        without.imagine_batch(ctx, acts, seed=4, layouts=lay[:, :2])
    plain = DiffusionWorldModel(renderer(CFG.replace(layout_channels=0, agent_weight=0.0)), action_names=NAMES,
                                device="cpu")
    with pytest.raises(ValueError, match="draws no layouts"):
        plain.imagine_batch(ctx, acts, seed=4, layouts=lay)


def test_imagined_recording_of_a_layout_renderer_draws_the_recorded_layouts(recording, tmp_path, one_torch_thread):
    """Each imagined frame is drawn around the recorded occupancy of the real frame it replaces, from the real
    frames ``unroll`` steps earlier; its labels are the real frame's."""
    from genex.recording import iter_episodes, read_manifest
    from genex.world_model.imagined_recording import imagine_recording

    model = DiffusionWorldModel(renderer(CFG.replace(layout_channels=5)), action_names=NAMES, device="cpu")
    calls = []
    real_imagine = model.imagine_batch

    def spy(contexts, actions, seed=None, return_layouts=False, *, layouts=None):
        calls.append((np.array(contexts), np.array(actions), None if layouts is None else np.array(layouts)))
        return real_imagine(contexts, actions, seed, return_layouts, layouts=layouts)

    model.imagine_batch = spy
    counts = imagine_recording(model, recording, tmp_path / "u3", min_psnr=0.0, unroll=3, progress=False)
    real = list(iter_episodes(recording))
    assert counts["imagined"] == counts["frames"] == sum(len(e) for e in real)
    ep = real[0]
    occ = ep.occupancy > 0
    depth3 = [c for c in calls if c[1].shape[1] == 3]
    assert depth3 and all(c[2] is not None for c in calls)
    ctx, acts, lay = depth3[0]
    # row r imagines frame r + 3 from the real frames up to r, drawing the recorded layouts of frames r + 1..r + 3
    for r in range(len(ctx)):
        assert np.array_equal(ctx[r], ep.frames[np.maximum(np.arange(r - model.cfg.context + 1, r + 1), 0)])
        assert np.array_equal(lay[r], occ[r + 1:r + 4])
    # the first frames are imagined from as many steps as there are (1 and 2), the rest from 3
    assert sorted({c[1].shape[1] for c in calls}) == [1, 2, 3]
    notes = read_manifest(tmp_path / "u3").notes["imagined"]
    assert notes["unroll"] == 3 and notes["layouts"] == "recorded"
    out = list(iter_episodes(tmp_path / "u3"))
    assert np.array_equal(out[0].visible, ep.visible) and not np.array_equal(out[0].frames[1:], ep.frames[1:])
    with pytest.raises(ValueError, match="unroll must be an integer >= 1"):
        imagine_recording(model, recording, tmp_path / "bad", unroll=0, progress=False)
    with pytest.raises(ValueError, match="no occupancy maps"):
        imagine_recording(model, without_occupancy(recording, tmp_path / "old"), tmp_path / "o", progress=False)


def test_the_committed_v2_checkpoint_loads_with_its_stage_and_imagines_reproducibly(one_torch_thread):
    """checkpoints/world_model/driving-v2 (work in progress, issue 28) is what the next training chunk starts from."""
    import gymnasium as gym

    import genex.envs  # noqa: F401  (registers the envs)
    from genex.world_model.checkpoint import load_world_model

    path = Path(__file__).resolve().parents[1] / "checkpoints" / "world_model" / "driving-v2"
    model = load_world_model(path, device="cpu")
    assert model.layout is not None and model.layout.cfg.facts[0] == "pedestrian"
    assert model.cfg.appearance_facts == (0, 1, 4) and model.layout.cfg.colour_facts == (0, 1, 4)  # the v3 recipe
    assert model.sampler.keep_layout and model.info["sha256"].startswith("7cdb866f")
    env = gym.make(ENV)
    obs, _ = env.reset(seed=0)
    model.bind(env)
    ctx = np.repeat(obs["image"][None], model.cfg.context, 0)
    frames = model.imagine(ctx, ["cruise", "cruise"], num_samples=2, seed=3)
    assert frames.shape == (2, 2, 64, 64, 3) and np.array_equal(frames, model.imagine(ctx, ["cruise", "cruise"],
                                                                                     num_samples=2, seed=3))
    env.close()
