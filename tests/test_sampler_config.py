"""The sampler config lives apart from the model config (as diffusers keeps a scheduler apart from its model):
old checkpoints still load, new ones round-trip, sampling overrides touch only the sampler, and the shipped
checkpoints imagine and digest exactly as before the split."""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from genex.errors import CorruptCheckpointError  # noqa: E402
from genex.compare.store import sampling_config_digest  # noqa: E402
from genex.world_model.checkpoint import load_denoiser, load_world_model, save_world_model  # noqa: E402
from genex.world_model.config import (  # noqa: E402
    PRESETS,
    SAMPLING_ONLY,
    SamplerConfig,
    WorldModelConfig,
    configs_from_dict,
    preset,
)
from genex.world_model.denoiser import Denoiser  # noqa: E402
from genex.world_model.model import DiffusionWorldModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "world_model"

#: ``sampling_config_digest`` of the shipped checkpoints, computed before the split by the old
#: ``_model_config_digest`` (SHA-256 of their ``"model"`` section): runs recorded with them must still resume
DIGESTS_BEFORE = {
    "driving": "8287ce433c209198c98701950b4ba386078e970a160e3110e96d167393c1b311",
    "gui": "34abb34e083f563a5c0931e21a5e2c7ef0bb1b9d75ab51a3ab4559a2292e4b26",
}
#: ``imagine`` on the shipped driving checkpoint (see ``_reference_context``), measured before the split: the mean
#: pixel value of each of the two imagined frames, with the checkpoint's own sampler and with ``steps=3, snap=0,
#: min_changed_pixels=0``. Means, not hashes: torch's thread count (and the CPU) moves a few pixels by a level
#: (121.370 vs 121.371 with 1 or 2 threads), while the two samplers differ by ~12 levels a pixel.
IMAGINED_BEFORE = (121.779, 121.370)
IMAGINED_BEFORE_OVERRIDDEN = (120.258, 119.619)

SAMPLER_FIELDS = {"steps", "sampler", "sigma_min", "sigma_max", "rho", "snap", "min_changed_pixels", "keep_layout",
                  "layout_snap"}


def _reference_context() -> np.ndarray:
    rng = np.random.default_rng(0)
    ctx = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    ctx[:, 20:40, 20:40] = 50
    return ctx


def _tiny(sampler: SamplerConfig | None = None) -> DiffusionWorldModel:
    torch.manual_seed(0)
    cfg, _ = preset("tiny")
    return DiffusionWorldModel(Denoiser(cfg), action_names=("accelerate", "cruise", "brake", "creep", "wait"),
                               device="cpu", sampler=sampler)


def test_the_split_puts_each_field_in_one_home():
    assert set(SAMPLING_ONLY) == SAMPLER_FIELDS == {f.name for f in fields(SamplerConfig)}
    assert not SAMPLER_FIELDS & {f.name for f in fields(WorldModelConfig)}
    with pytest.raises(TypeError):
        WorldModelConfig(steps=2)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="sampler settings"):
        WorldModelConfig.from_dict({**WorldModelConfig().to_dict(), "snap": 8.0})
    for bad, match in (({"sampler": "ddim"}, "euler"), ({"steps": 0}, "steps"), ({"sigma_min": 0.0}, "sigma_min"),
                       ({"sigma_min": 3.0, "sigma_max": 2.0}, "sigma_max"), ({"rho": 0.0}, "rho"),
                       ({"snap": -1.0}, "snap"), ({"min_changed_pixels": 2.5, "snap": 1.0}, "min_changed_pixels"),
                       ({"min_changed_pixels": 30}, "snap > 0")):
        with pytest.raises(ValueError, match=match):
            SamplerConfig(**bad)
    with pytest.raises(ValueError, match="unknown sampler config keys"):
        SamplerConfig.from_dict({"steps": 2, "channels": [8]})


def test_presets_give_both_configs_and_route_sampling_overrides_to_the_sampler():
    for name, p in PRESETS.items():
        assert isinstance(p.model, WorldModelConfig) and isinstance(p.sampler, SamplerConfig), name
        model, train = preset(name)  # still unpacks as (model, train)
        assert (model, train, preset(name).sampler) == (p.model, p.train, p.sampler)
    small = preset("small")
    assert small.sampler == SamplerConfig(steps=2, sigma_max=80.0, snap=32.0, min_changed_pixels=30)
    over = preset("small", steps=5, snap=0.0, min_changed_pixels=0, max_steps=7, channels=(32, 64, 128))
    assert over.sampler == small.sampler.replace(steps=5, snap=0.0, min_changed_pixels=0)
    assert over.model == small.model.replace(channels=(32, 64, 128)) and over.train.max_steps == 7
    assert preset("small", steps=5).model == small.model  # a sampling override leaves the model alone
    with pytest.raises(ValueError, match="unknown config field"):
        preset("small", stepz=5)
    with pytest.raises(ValueError, match="residual"):  # the snap acts on a residual model's change only
        preset("small", residual=False)


def test_old_layout_config_loads_into_model_and_sampler_with_the_same_values():
    for family in ("driving", "gui"):
        meta = json.loads((SHIPPED / family / "config.json").read_text())
        assert "sampler" not in meta  # the shipped files keep the old layout (their digests are recorded in runs)
        old = meta["model"]
        model, sampler = configs_from_dict(old)
        for key, value in old.items():
            got = getattr(sampler if key in SAMPLING_ONLY else model, key)
            assert (list(got) if isinstance(got, tuple) else got) == value, (family, key)
        # fields the old file does not name take the defaults the old WorldModelConfig had
        for key in SAMPLER_FIELDS - set(old):
            assert getattr(sampler, key) == getattr(SamplerConfig(), key)
        denoiser, loaded = load_denoiser(SHIPPED / family)  # the weights' SHA-256 still checks
        assert denoiser.cfg == model and denoiser.sampler == sampler
    wm = load_world_model(SHIPPED / "driving", device="cpu")
    assert wm.sampler == SamplerConfig(steps=2, sigma_max=80.0, snap=32.0, min_changed_pixels=30)
    assert wm.model_cfg == wm.cfg == preset("small").model  # the shipped driving model is the `small` preset
    assert not hasattr(wm.cfg, "steps")  # the model's config holds no sampling field: they are wm.sampler's


def test_new_layout_round_trips_and_old_layout_of_the_same_model_loads_the_same(tmp_path):
    sampler = SamplerConfig(steps=2, sampler="heun", sigma_max=40.0, rho=5.0, snap=16.0, min_changed_pixels=3)
    wm = _tiny(sampler)
    path = save_world_model(wm.denoiser, tmp_path / "new", sampler=wm.sampler)
    meta = json.loads((path / "config.json").read_text())
    assert meta["sampler"] == sampler.to_dict()
    assert not SAMPLER_FIELDS & set(meta["model"])
    back = load_world_model(path, device="cpu")
    assert back.model_cfg == wm.model_cfg and back.sampler == sampler
    # saving a loaded denoiser keeps its sampler; an explicit one replaces it
    again = save_world_model(back.denoiser, tmp_path / "again")
    assert load_world_model(again, device="cpu").sampler == sampler
    other = save_world_model(back.denoiser, tmp_path / "other", sampler=SamplerConfig())
    assert load_world_model(other, device="cpu").sampler == SamplerConfig()
    ctx = np.full((2, 16, 16, 3), 90, np.uint8)
    np.testing.assert_array_equal(back.imagine(ctx, ["wait", "brake"], 2, seed=1),
                                  wm.imagine(ctx, ["wait", "brake"], 2, seed=1))
    # the same checkpoint in the old layout: sampling fields inside "model", no "sampler" section
    old = tmp_path / "old"
    shutil.copytree(path, old)
    old_meta = {k: v for k, v in meta.items() if k != "sampler"}
    old_meta["model"] = {**meta["model"], **meta["sampler"]}
    (old / "config.json").write_text(json.dumps(old_meta))
    legacy = load_world_model(old, device="cpu")
    assert legacy.model_cfg == back.model_cfg and legacy.sampler == sampler
    # ... and one setting in both sections is refused, not guessed
    (old / "config.json").write_text(json.dumps({**old_meta, "sampler": {"steps": 4}}))
    with pytest.raises(CorruptCheckpointError, match="both"):
        load_world_model(old, device="cpu")


def test_sampling_overrides_change_the_sampler_not_the_model():
    from genex.world_model.cli import add_sampling_arguments, sampler_from_args

    wm = _tiny()
    model_before = wm.model_cfg
    wm.set_sampling(steps=4, snap=8.0)
    assert wm.sampler == SamplerConfig(steps=4, snap=8.0)
    assert wm.model_cfg is model_before and wm.denoiser.cfg is model_before
    assert wm.denoiser.sampler == wm.sampler  # sample_next_frame(wm.denoiser, ...) samples as wm does
    with pytest.raises(ValueError, match="sampling-only"):
        wm.set_sampling(context=3)
    with pytest.raises(TypeError):
        wm.sampler = {"steps": 2}  # type: ignore[assignment]
    # the eval-world-model flags build a SamplerConfig from the checkpoint's
    ap = argparse.ArgumentParser()
    add_sampling_arguments(ap, ("steps", "snap", "min_changed_pixels"))
    base = preset("small").sampler
    assert sampler_from_args(ap.parse_args([]), base) == base
    assert sampler_from_args(ap.parse_args(["--steps", "0"]), base) == base  # 0: the checkpoint's
    assert sampler_from_args(ap.parse_args(["--steps", "4", "--min-changed-pixels", "10"]), base) == base.replace(
        steps=4, min_changed_pixels=10)
    # --snap 0 turns the gate off too (it counts pixels left after the snap), unless the gate is given
    assert sampler_from_args(ap.parse_args(["--snap", "0"]), base) == base.replace(snap=0.0, min_changed_pixels=0)
    with pytest.raises(ValueError, match="snap > 0"):
        sampler_from_args(ap.parse_args(["--snap", "0", "--min-changed-pixels", "5"]), base)


def test_shipped_driving_checkpoint_imagines_as_before_the_split():
    wm = load_world_model(SHIPPED / "driving", device="cpu")
    ctx = _reference_context()
    own = wm.imagine(ctx, ["accelerate", "brake"], num_samples=1, seed=0)
    assert own.shape == (1, 2, 64, 64, 3)
    np.testing.assert_allclose(own.astype(np.float64).mean(axis=(0, 2, 3, 4)), IMAGINED_BEFORE, atol=0.02)
    wm.set_sampling(snap=0.0, min_changed_pixels=0, steps=3)
    other = wm.imagine(ctx, ["accelerate", "brake"], num_samples=1, seed=0)
    np.testing.assert_allclose(other.astype(np.float64).mean(axis=(0, 2, 3, 4)), IMAGINED_BEFORE_OVERRIDDEN, atol=0.02)
    assert np.abs(own.astype(np.float64) - other).mean() > 5  # the tolerance is far below what a sampler changes


def test_sampling_digest_of_the_shipped_checkpoints_is_unchanged_and_sees_the_sampler(tmp_path):
    for family, digest in DIGESTS_BEFORE.items():
        assert sampling_config_digest(SHIPPED / family) == digest
    # the same settings in the new layout digest the same: the digest is of the settings, not the file layout
    meta = json.loads((SHIPPED / "driving" / "config.json").read_text())
    model, sampler = configs_from_dict(meta["model"])
    full_old = {**meta["model"], **{k: v for k, v in model.to_dict().items() if k not in meta["model"]}}
    old_folder, new_folder, changed = tmp_path / "old", tmp_path / "new", tmp_path / "changed"
    for folder, m, s in ((old_folder, full_old, None), (new_folder, model.to_dict(), sampler.to_dict()),
                         (changed, model.to_dict(), sampler.replace(steps=3).to_dict())):
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({**meta, "model": m, **({"sampler": s} if s else {})}))
    assert sampling_config_digest(new_folder) == sampling_config_digest(old_folder)
    assert sampling_config_digest(changed) != sampling_config_digest(new_folder)  # a sampler change is noticed
    assert sampling_config_digest(tmp_path / "missing") is None


def test_training_exports_the_given_sampler_and_resumes_a_run_saved_before_the_split(tmp_path):
    """A trained checkpoint samples as its preset says (not with the defaults), and a half-finished run whose
    run.json still holds the sampling fields in "model" resumes."""
    from genex.world_model.synthetic import write_synthetic_recording
    from genex.world_model.train import train_world_model

    data = write_synthetic_recording(tmp_path / "rec", episodes=3, steps=12, size=16, seed=0)
    model_cfg, train_cfg = preset("tiny", max_steps=4, checkpoint_every=2, eval_every=100)
    sampler = SamplerConfig(steps=5, sigma_max=4.0)
    out = tmp_path / "run"
    train_world_model([data], out, model_cfg, train_cfg, sampler=sampler, device="cpu", progress=False, stop_after=2)
    run = json.loads((out / "run.json").read_text())
    assert run["sampler"] == sampler.to_dict()
    # the layout before the split: sampling fields inside "model", no "sampler" section
    run["model"].update(run.pop("sampler"))
    (out / "run.json").write_text(json.dumps(run))
    train_world_model([data], out, model_cfg, train_cfg, sampler=sampler, resume=True, device="cpu", progress=False)
    saved = json.loads((out / "model" / "config.json").read_text())
    assert saved["sampler"]["steps"] == 5 and saved["sampler"]["sigma_max"] == 4.0
    assert load_world_model(out / "model", device="cpu").sampler == sampler
