"""`genex imagine-recording`: a recording whose frames the world model imagined, labels kept only where it drew
the real screen; and the episode writer it relies on."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from genex.recording import (ManifestMismatchError, iter_episodes, load_episode, read_manifest,  # noqa: E402
                             record_episodes, save_episode)
from genex.world_model import Denoiser, DiffusionWorldModel, preset  # noqa: E402
from genex.evaluation.metrics import psnr  # noqa: E402
from genex.world_model.imagined_recording import imagine_recording  # noqa: E402
from genex.world_model.synthetic import SYNTHETIC_ACTIONS, write_synthetic_recording  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic_recording(tmp_path_factory.mktemp("im") / "rec", episodes=3, steps=10, size=16, seed=0)


def tiny_model() -> DiffusionWorldModel:
    torch.manual_seed(0)
    cfg, _ = preset("tiny")
    return DiffusionWorldModel(Denoiser(cfg), action_names=SYNTHETIC_ACTIONS, device="cpu")


def test_gui_episode_survives_a_save_and_load(tmp_path):
    """save_episode is load_episode's inverse, click labels included (they are stored apart from the actions)."""
    record_episodes("genex/SettingsTabs-v0", tmp_path / "rec", 1, driver="mixed", seed=0, progress=False)
    ep = next(iter_episodes(tmp_path / "rec"))
    assert any(isinstance(a, dict) and "label" in a for a in ep.actions)  # merged in on load
    save_episode(tmp_path / "copy.npz", ep)
    again = load_episode(tmp_path / "copy.npz")
    np.testing.assert_array_equal(again.frames, ep.frames)
    np.testing.assert_array_equal(again.visible, ep.visible)
    assert again.actions == ep.actions and again.action_labels == ep.action_labels
    assert again.visible_names == ep.visible_names and again.meta == ep.meta
    with np.load(tmp_path / "copy.npz") as z:
        assert all("label" not in a for a in json.loads(str(z["actions_json"])) if isinstance(a, dict))


def test_frames_are_imagined_one_step_ahead_only_where_close_to_the_real_one(synthetic, tmp_path):
    model = tiny_model()
    # the threshold in the middle of the per-step PSNRs, so some frames are replaced and some are not
    probe = imagine_recording(model, synthetic, tmp_path / "all", min_psnr=0.0, progress=False)
    imagined = list(iter_episodes(tmp_path / "all"))
    real = list(iter_episodes(synthetic))
    scores = np.concatenate([psnr(i.frames[1:], r.frames[1:]) for i, r in zip(imagined, real)])
    assert probe["imagined"] == probe["frames"] == 30 and probe["kept_real"] == 0
    for i, r in zip(imagined, real):
        np.testing.assert_array_equal(i.frames[0], r.frames[0])  # the first frame is always real
        assert i.meta["imagined"] == [False] + [True] * len(r)
        assert i.actions == r.actions and np.array_equal(i.rewards, r.rewards) and i.meta["seed"] == r.meta["seed"]
    # frame t+1 is the model's one-step imagination from the real frames up to t (not from imagined ones)
    ep, t = real[1], 6
    ctx = ep.frames[max(0, t - model.cfg.context + 1):t + 1]
    assert not np.array_equal(imagined[1].frames[t + 1], ep.frames[t + 1])
    assert psnr(imagined[1].frames[t + 1], model.imagine(ctx, [ep.actions[t]], seed=0)[0, 0]) > 20

    threshold = float(np.median(scores))
    counts = imagine_recording(model, synthetic, tmp_path / "mid", min_psnr=threshold, progress=False)
    assert counts["imagined"] == int((scores >= threshold).sum()) and 0 < counts["kept_real"] < 30
    for i, r, m in zip(imagined, real, iter_episodes(tmp_path / "mid")):
        use = np.array(m.meta["imagined"])
        np.testing.assert_array_equal(m.frames[use], i.frames[use])  # same seeds: the same imagination
        np.testing.assert_array_equal(m.frames[~use], r.frames[~use])
    # only steps that change enough are imagined at all
    from genex.world_model.data import changed_fraction
    change = np.concatenate([changed_fraction(r.frames[:-1], r.frames[1:]) for r in real])
    cut = float(np.median(change[change > 0]))
    moved = imagine_recording(model, synthetic, tmp_path / "moving", min_psnr=0.0, min_changed=cut, progress=False)
    assert moved["unchanged"] == int((change < cut).sum()) > 0 and moved["imagined"] == int((change >= cut).sum())
    moving = np.concatenate([m.meta["imagined"][1:] for m in iter_episodes(tmp_path / "moving")])
    np.testing.assert_array_equal(moving, change >= cut)
    notes = read_manifest(tmp_path / "mid").notes["imagined"]
    assert notes["min_psnr"] == threshold and notes["source"] == str(synthetic)
    assert notes["counts_last_run"]["kept_real"] == counts["kept_real"]


def test_rerun_resumes_and_other_settings_are_refused(synthetic, tmp_path):
    model = tiny_model()
    out = tmp_path / "out"
    imagine_recording(model, synthetic, out, min_psnr=10.0, max_episodes=2, progress=False)
    before = (out / "episodes" / "episode_000000.npz").read_bytes()
    counts = imagine_recording(model, synthetic, out, min_psnr=10.0, progress=False)
    assert counts["skipped_existing"] == 2 and counts["episodes"] == 1
    assert (out / "episodes" / "episode_000000.npz").read_bytes() == before
    with pytest.raises(ManifestMismatchError, match="min_psnr"):
        imagine_recording(model, synthetic, out, min_psnr=30.0, progress=False)
    with pytest.raises(ValueError, match="must differ"):
        imagine_recording(model, synthetic, synthetic, progress=False)
    with pytest.raises(ValueError, match="min_changed is a share"):
        imagine_recording(model, synthetic, tmp_path / "bad", min_changed=2.0, progress=False)
    with pytest.raises(ValueError, match="min_psnr must be >= 0"):
        imagine_recording(model, synthetic, tmp_path / "bad", min_psnr=-1.0, progress=False)
    assert not (tmp_path / "bad").exists()


def test_cli_refuses_a_world_model_of_another_frame_size(synthetic, tmp_path):
    from genex.cli import main
    from genex.world_model import save_world_model

    cfg, _ = preset("tiny")
    torch.manual_seed(0)
    save_world_model(Denoiser(cfg.replace(height=32, width=32)), tmp_path / "wm32")
    with pytest.raises(SystemExit, match="16x16 frames; the world model imagines 32x32"):
        main(["imagine-recording", "--world-model", str(tmp_path / "wm32"), "--data", str(synthetic),
              "--out", str(tmp_path / "out"), "--quiet", "--device", "cpu"])


def test_policy_data_takes_only_the_imagined_frames_of_an_imagined_copy(synthetic, tmp_path):
    """The real frames of an imagined copy repeat its source; training on both folders must not count them twice."""
    from genex.policy.data import load_examples
    from genex.world_model.data import changed_fraction

    record_episodes("genex/MailCompose-v0", tmp_path / "rec", 3, driver="mixed", seed=0, progress=False)
    torch.manual_seed(0)
    model = DiffusionWorldModel(Denoiser(preset("gui-small")[0].replace(channels=(8, 16, 16))), device="cpu")
    counts = imagine_recording(model, tmp_path / "rec", tmp_path / "im", min_psnr=0.0, min_changed=0.01,
                               progress=False)
    real = load_examples([tmp_path / "rec"], 32)
    imagined = load_examples([tmp_path / "im"], 32)
    assert 0 < counts["imagined"] == len(imagined.frames) < len(real.frames)
    changed = sum(int((changed_fraction(e.frames[:-1], e.frames[1:]) >= 0.01).sum())
                  for e in iter_episodes(tmp_path / "rec"))
    assert counts["imagined"] == changed


def test_unroll_resumes_only_with_the_same_unroll(synthetic, tmp_path):
    """A folder imagined N steps ahead is never continued with another N (nor one step ahead with N > 1)."""
    model = tiny_model()
    out = tmp_path / "u2"
    imagine_recording(model, synthetic, out, min_psnr=0.0, unroll=2, max_episodes=1, progress=False)
    with pytest.raises(ManifestMismatchError, match="unroll"):
        imagine_recording(model, synthetic, out, min_psnr=0.0, progress=False)  # the default, unroll 1
    assert imagine_recording(model, synthetic, out, min_psnr=0.0, unroll=2, progress=False)["skipped_existing"] == 1
    one = tmp_path / "u1"
    imagine_recording(model, synthetic, one, min_psnr=0.0, max_episodes=1, progress=False)
    with pytest.raises(ManifestMismatchError, match="unroll"):
        imagine_recording(model, synthetic, one, min_psnr=0.0, unroll=3, progress=False)
    # two steps ahead is not one step ahead: the second frame of an episode differs
    a, b = next(iter(iter_episodes(out))), next(iter(iter_episodes(one)))
    # frame 1 can only be imagined one step ahead (same seed and noise; batches of other sizes may round apart)
    assert np.abs(a.frames[1].astype(int) - b.frames[1].astype(int)).max() <= 1
    assert not np.array_equal(a.frames[2:], b.frames[2:])
