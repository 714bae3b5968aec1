"""Driving model v2, appearance (issue 28): the renderer is told the colour of the road users it draws, and the
layout stage samples that colour.

Told only *where* a pedestrian is, the renderer draws the mean over the five shirt colours, a faint grey. With
``appearance_facts`` the layout carries each such fact's colour (``info["appearance"]``) in its cells; the stage's
``colour_facts`` sample one palette colour per component. Tiny 16x16 models, seconds each.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genex.world_model.config import TrainConfig, WorldModelConfig, preset
from genex.world_model.denoiser import Batch, Denoiser
from genex.world_model.layout import LayoutConfig, LayoutModel, fit_layout, fit_palette, load_layout, save_layout, \
    window_colours
from genex.world_model.model import DiffusionWorldModel
from genex.world_model.network import widen_for_appearance, with_colours

ENV = "genex/OccludedCrosswalk-v0"
NAMES = ("accelerate", "cruise", "brake", "creep", "wait")
ENC = WorldModelConfig(height=16, width=16, context=2, patch=1, channels=(16, 32), cond_dim=32, text_buckets=64,
                       text_length=8, layout_channels=2, agent_weight=4.0, layout_encoder=8, agent_facts=(0,))
APP = ENC.replace(appearance_facts=(0,))
RED, BLUE = (230, 40, 40), (40, 60, 220)


def test_config_needs_an_encoder_counts_the_channels_and_round_trips():
    assert APP.layout_maps == 2 + 3 and ENC.layout_maps == 2 and WorldModelConfig().layout_maps == 0
    assert WorldModelConfig.from_dict(json.loads(APP.to_json())) == APP
    assert "appearance_facts" not in ENC.to_dict()  # older checkpoints keep their config.json
    with pytest.raises(ValueError, match="layout_encoder"):
        ENC.replace(layout_encoder=0, appearance_facts=(0,))
    with pytest.raises(ValueError, match="appearance_facts"):
        ENC.replace(appearance_facts=(2,))
    v3 = preset("small-layout-v3")
    assert v3.model.appearance_facts == (0, 1, 4) and v3.train.appearance_dropout == pytest.approx(0.2)
    with pytest.raises(ValueError, match="appearance_dropout"):
        TrainConfig(appearance_dropout=1.5)


def test_with_colours_writes_each_colour_into_its_facts_cells_only():
    occ = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    occ[0, 0, 1, 2] = occ[0, 1, 3, 3] = True
    colours = torch.tensor([[RED, BLUE]], dtype=torch.uint8)
    lay = with_colours(APP, occ, colours)
    assert lay.shape == (1, 5, 4, 4) and lay.dtype == torch.uint8
    assert torch.equal(lay[:, :2].bool(), occ)
    assert lay[0, 2:, 1, 2].tolist() == list(RED) and int(lay[0, 2:].sum()) == sum(RED)  # not the car's cell
    assert int(with_colours(APP, occ)[:, 2:].sum()) == 0  # no colours: unknown
    assert with_colours(APP, lay) is lay and with_colours(ENC, occ) is occ


def renderer(cfg: WorldModelConfig, seed: int = 0) -> Denoiser:
    torch.manual_seed(seed)
    d = Denoiser(cfg)
    torch.nn.init.normal_(d.net.unet.conv_out.weight, std=0.3)
    torch.nn.init.normal_(d.net.layout_encoder.out.weight, std=0.3)
    return d.eval()


def frames(b: int, k: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (b, k, 16, 16, 3), dtype=np.uint8))


def test_widening_adds_zero_colour_weights_then_the_colour_changes_the_frame(one_torch_thread):
    old = renderer(ENC)
    new = Denoiser(APP).eval()
    new.load_state_dict(widen_for_appearance(old.state_dict(), ENC, APP))
    ctx = old.stack_context(frames(2, ENC.context))
    action = torch.zeros(2, 4 + ENC.text_length)
    x, sigma = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)), torch.full((2,), 1.0)
    occ = torch.ones(2, 2, 4, 4, dtype=torch.bool)
    red = with_colours(APP, occ, torch.tensor([[RED, BLUE]] * 2, dtype=torch.uint8))
    with torch.no_grad():
        want = old.denoise(x, sigma, ctx, action, occ)
        assert torch.allclose(want, new.denoise(x, sigma, ctx, action, red), atol=1e-6)  # starts as the old one
        told = renderer(APP)
        blue = with_colours(APP, occ, torch.tensor([[BLUE, RED]] * 2, dtype=torch.uint8))
        assert (told.denoise(x, sigma, ctx, action, red) - told.denoise(x, sigma, ctx, action, blue)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="colour channels"):
        widen_for_appearance(old.state_dict(), ENC, APP.replace(channels=(16, 16)))
    with pytest.raises(ValueError, match=r"\[2, 5, gh, gw\]"):
        told.denoise(x, sigma, ctx, action, occ)  # the colour channels are missing


def test_colour_dropout_zeroes_a_share_of_the_windows_reproducibly():
    from genex.world_model.train import WorldModelTrainer

    trainer = WorldModelTrainer([], "unused", APP, TrainConfig(appearance_dropout=0.5, seed=3))
    occ = torch.ones(400, 2, 4, 4, dtype=torch.bool)
    lay = with_colours(APP, occ, torch.tensor([[RED, BLUE]] * 400, dtype=torch.uint8))
    batch = Batch(torch.zeros(400, 2, 16, 16, 3, dtype=torch.uint8), torch.zeros(400, 12),
                  torch.zeros(400, 16, 16, 3, dtype=torch.uint8), lay)
    out = trainer.drop_colours(batch)
    dropped = out.layout[:, 2:].flatten(1).amax(1) == 0
    assert 0.4 < float(dropped.float().mean()) < 0.6
    assert torch.equal(out.layout[:, :2], lay[:, :2]) and torch.equal(lay, batch.layout)  # occupancy kept, no mutation
    assert torch.equal(trainer.drop_colours(batch).layout, out.layout)  # same step: same windows
    trainer.step = 1
    assert not torch.equal(trainer.drop_colours(batch).layout, out.layout)
    plain = WorldModelTrainer([], "unused", ENC, TrainConfig(appearance_dropout=0.5))
    assert plain.drop_colours(batch) is batch


# ----------------------------------------------------------------------------------------------- the stage
STAGE = LayoutConfig(facts=("pedestrian", "car"), n_actions=len(NAMES), grid=(4, 4), context=2, horizon=4,
                     components=4, channels=16, image_size=(16, 16), action_names=NAMES,
                     colour_facts=(0,), palettes=((RED, BLUE),))


def toy(n: int, seed: int, p_red: float = 0.7) -> tuple[np.ndarray, ...]:
    """Windows where a pedestrian appears in half of them, red in ``p_red`` of those and blue otherwise; where a
    cue shows in the last context frame it is always blue. Returns frames, actions, layouts, colour codes, cue."""
    rng = np.random.default_rng(seed)
    f = rng.integers(0, 60, (n, 2, 16, 16, 3), dtype=np.uint8)
    cued = rng.random(n) < 0.3
    f[cued, -1, 2:5, 2:5] = 255
    a = rng.integers(0, len(NAMES), (n, 4))
    appears = rng.random(n) < 0.5
    code = np.where(appears, np.where(cued | (rng.random(n) > p_red), 1, 0), -1)
    lay = np.zeros((n, 4, 2, 4, 4), bool)
    lay[appears, 1:, 0, 1, 3] = True
    return f, a, lay, code[:, None], cued


def test_the_stage_samples_colours_at_their_rate_and_reads_a_cue(one_torch_thread):
    torch.manual_seed(0)
    model = LayoutModel(STAGE)
    f, a, y, c, _ = toy(2000, seed=1)
    with pytest.raises(ValueError, match="colours"):
        fit_layout(model, f, a, y, steps=1)
    fit_layout(model, f, a, y, steps=400, seed=0, colours=c)
    tf, ta, _, _, cued = toy(400, seed=2)
    lay, col = model.sample(torch.from_numpy(tf), torch.from_numpy(ta), 8, generator=torch.Generator().manual_seed(0),
                            return_colours=True)
    assert col.shape == (8, 400, 2, 3) and col.dtype == torch.uint8
    shown = lay[:, :, :, 0].flatten(2).any(-1)  # [8, 400]
    assert torch.equal(col[:, :, 0].amax(-1) > 0, shown) and int(col[:, :, 1].sum()) == 0  # colour iff it shows
    red = (col[:, :, 0, 0] == RED[0]) & shown
    share_plain = float(red[:, ~cued].sum() / shown[:, ~cued].sum())
    assert abs(share_plain - 0.7) < 0.08  # red in 70% of the uncued pedestrians
    assert float(red[:, cued].sum() / shown[:, cued].sum()) < 0.1  # the cue says blue
    # the layouts are those sampled without colours (colours are drawn after them)
    again = model.sample(torch.from_numpy(tf), torch.from_numpy(ta), 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, lay)


def test_the_colour_term_is_a_proper_likelihood():
    """Summed over the palette, the likelihood with a colour is the likelihood of the layout alone (colour None);
    a colour index where the fact does not show adds nothing."""
    torch.manual_seed(2)
    model = LayoutModel(STAGE).eval()
    f, a, y, _, _ = toy(6, seed=5)
    y[:, 1:, 0, 1, 3] = True  # the pedestrian shows in every window
    f, a, y = torch.from_numpy(f), torch.from_numpy(a), torch.from_numpy(y)
    with torch.no_grad():
        alone = model.log_likelihood(f, a, y)
        per_colour = torch.stack([model.log_likelihood(f, a, y, colours=torch.full((6, 1), k)) for k in range(2)])
        assert torch.allclose(torch.logsumexp(per_colour, 0), alone, atol=1e-5)
        assert (per_colour < alone).all()
        y[:, :, 0] = False  # nobody shows: a colour index is ignored
        assert torch.allclose(model.log_likelihood(f, a, y, colours=torch.zeros(6, 1, dtype=torch.long)),
                              model.log_likelihood(f, a, y))
    with pytest.raises(ValueError, match="colours"):
        model.training_loss(f, a, y)


def test_palette_and_window_colours():
    rng = np.random.default_rng(0)
    seen = np.concatenate([np.asarray(RED) + rng.integers(-5, 6, (50, 3)), np.asarray(BLUE) + rng.integers(-5, 6, (30, 3))])
    pal = fit_palette(seen.clip(0, 255).astype(np.uint8), 2)
    assert sorted(map(tuple, np.abs(pal.astype(int) - np.asarray(RED)).max(1, keepdims=True) <= 3)) == [(False,), (True,)]
    with pytest.raises(ValueError, match="no observed colours"):
        fit_palette(np.zeros((0, 3), np.uint8), 2)
    # an episode: pedestrian from frame 5 on, red; windows of context 2, horizon 4 over 10 actions
    occ = np.zeros((11, 2, 4, 4), np.uint8)
    app = np.zeros((11, 2, 3), np.uint8)
    occ[5:, 0, 1, 1] = 3
    app[5:, 0] = RED
    codes = window_colours(app, occ, 10, 2, 4, [0], [(BLUE, RED)])
    last = np.arange(len(codes)) + 1  # last context frame of each window
    assert codes[:, 0].tolist() == [1 if t + 4 >= 5 else -1 for t in last]


def test_a_colour_stage_round_trips_and_drives_the_renderer(tmp_path, one_torch_thread):
    torch.manual_seed(1)
    stage = LayoutModel(STAGE).eval()
    save_layout(stage, tmp_path)
    again = load_layout(tmp_path)
    assert again.cfg == STAGE and json.loads((tmp_path / "layout.json").read_text())["palettes"] == [[list(RED), list(BLUE)]]
    model = DiffusionWorldModel(renderer(APP), action_names=NAMES, device="cpu", layout=again)
    ctx = frames(3, 4).numpy()
    acts = [["accelerate", "brake", "cruise", "wait", "creep"]] * 3
    one = model.imagine_batch(ctx, acts, seed=4)
    assert one.shape == (3, 5, 16, 16, 3) and np.array_equal(one, model.imagine_batch(ctx, acts, seed=4))
    # given layouts with colours are drawn as given; without colours, the colours are unknown
    occ = np.zeros((3, 5, 2, 4, 4), bool)
    occ[:, :, 0, 1, 1] = True
    red = with_colours(APP, torch.from_numpy(occ), torch.tensor([[RED, BLUE]] * 3, dtype=torch.uint8)[:, None]
                       .expand(3, 5, 2, 3)).numpy()
    blue = red.copy()
    blue[:, :, 2:5, 1, 1] = np.asarray(BLUE, np.uint8)
    drawn_red = model.imagine_batch(ctx, acts, seed=4, layouts=red)
    assert not np.array_equal(drawn_red, model.imagine_batch(ctx, acts, seed=4, layouts=blue))
    assert not np.array_equal(drawn_red, model.imagine_batch(ctx, acts, seed=4, layouts=occ))
    for bad in (red[:, :, :4], red[:2], red[:, :3], red.astype(np.int64)):
        with pytest.raises(ValueError, match="layouts"):
            model.imagine_batch(ctx, acts, seed=4, layouts=bad)
    # a colour left in the cells of a fact that was emptied is not read
    emptied = red.copy()
    emptied[:, :, 0] = 0
    cleared = emptied.copy()
    cleared[:, :, 2:5] = 0
    assert np.array_equal(model.imagine_batch(ctx, acts, seed=4, layouts=emptied),
                          model.imagine_batch(ctx, acts, seed=4, layouts=cleared))


# ------------------------------------------------------------------------------------------- env and data
@pytest.fixture
def recording(crosswalk16_recording: Path) -> Path:
    return crosswalk16_recording



def test_the_env_reports_each_facts_colour_where_it_shows():
    from genex.envs.driving.env import fact_colours

    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2, :2] = True
    frame = np.zeros((4, 4, 3), np.uint8)
    frame[:2, :2] = (200, 10, 0)
    frame[0, 0] = (100, 10, 0)
    assert fact_colours(masks, frame).tolist() == [[175, 10, 1], [0, 0, 0]]  # shows: >= 1 per channel

    import gymnasium as gym

    import genex.envs  # noqa: F401

    env = gym.make(ENV, width=32, height=32, occupancy_cell=8)
    _, info = env.reset(seed=0)
    app, occ = info["appearance"], info["occupancy"]
    assert app.shape == (len(env.unwrapped.facts), 3) and app.dtype == np.uint8
    shows = occ.reshape(len(occ), -1).sum(1) > 0
    assert np.array_equal(app.max(1) > 0, shows) and shows.any()
    env.close()


def test_recordings_keep_colours_and_a_colour_model_reads_them(recording, tmp_path):
    from genex.recording import iter_episodes
    from genex.world_model.data import WindowDataset, layout_of, load_recordings

    ep = next(iter(iter_episodes(recording)))
    assert ep.appearance is not None and ep.appearance.shape == (len(ep.frames), 5, 3)
    cfg = WorldModelConfig(height=16, width=16, context=2, patch=1, channels=(16, 32), cond_dim=32, text_buckets=64,
                           text_length=8, layout_channels=5, layout_encoder=8, appearance_facts=(3,))
    lay = layout_of(cfg, ep, recording)
    assert lay.shape == (len(ep.frames), 5 + 3, 2, 2) and lay.dtype == np.uint8
    bus = (ep.occupancy[:, 3] > 0) & (ep.appearance[:, 3].max(-1) > 0)[:, None, None]
    assert bus.any() and np.array_equal(lay[:, 5:].max(1) > 0, bus)  # the bus's colour where it shows
    data = WindowDataset(load_recordings([recording], cfg), cfg.context, layout=True)
    assert data.get(np.array([0, 1])).layout.shape == (2, 8, 2, 2)
    ep.appearance = None
    with pytest.raises(ValueError, match="no colours"):
        layout_of(cfg, ep, recording)


@pytest.mark.slow
def test_train_layout_with_colour_facts_from_the_cli(recording, tmp_path, one_torch_thread, capsys):
    from genex.cli import main

    out = tmp_path / "stage"
    assert main(["train-layout", "--data", str(recording), "--out", str(out), "--steps", "3", "--horizon", "2",
                 "--context", "2", "--colour-facts", "bus,pedestrian", "--palette", "3", "--quiet"]) == 0
    cfg = load_layout(out).cfg
    assert cfg.colour_facts == (3, 0) and len(cfg.palettes) == 2 and all(len(p) == 3 for p in cfg.palettes)
    with pytest.raises(SystemExit, match="not among"):
        main(["train-layout", "--data", str(recording), "--out", str(out), "--steps", "1", "--colour-facts", "zebra"])
