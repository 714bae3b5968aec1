"""Recording: documented schema, atomic writes, resume, and clear errors on mismatched folders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genex.recording import (
    ManifestMismatchError,
    episode_path,
    iter_episodes,
    load_episode,
    read_manifest,
    record_episodes,
)

ENV = "genex/OccludedCrosswalk-v0"


def test_record_schema(tmp_path):
    manifest = record_episodes(ENV, tmp_path, 3, driver="mixed", seed=10, env_kwargs={"width": 32, "height": 32},
                               progress=False)
    assert read_manifest(tmp_path).identity() == manifest.identity()
    eps = list(iter_episodes(tmp_path))
    assert len(eps) == 3
    for i, ep in enumerate(eps):
        T = len(ep)
        assert ep.frames.shape == (T + 1, 32, 32, 3) and ep.frames.dtype == np.uint8
        assert ep.discrete_actions.shape == (T,)
        assert ep.rewards.dtype == np.float32 and ep.rewards.shape == (T,)
        assert ep.visible.shape == (T + 1, len(manifest.facts))
        assert ep.terminated[-1] or ep.truncated[-1]
        assert not ep.terminated[:-1].any()
        assert ep.meta["seed"] == 10 + i and ep.meta["length"] == T
        assert "pedestrian_crossing" in ep.meta["hidden"]
        assert ep.meta["answers"]["pedestrian_crossing"] in (0, 1)
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert data["format"] == "genex-episodes" and data["version"] == 1


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    record_episodes(ENV, full, 3, driver="random", seed=0, progress=False)
    record_episodes(ENV, part, 3, driver="random", seed=0, progress=False)
    # simulate an interruption: episode 1 was in progress (only a partial temp file on disk)
    episode_path(part, 1).unlink()
    episode_path(part, 1).with_name("episode_000001.npz.tmp").write_bytes(b"partial")
    assert len(list(iter_episodes(part))) == 2
    record_episodes(ENV, part, 3, driver="random", seed=0, progress=False)
    for i in range(3):
        a, b = load_episode(episode_path(full, i)), load_episode(episode_path(part, i))
        np.testing.assert_array_equal(a.frames, b.frames)
        assert a.actions == b.actions


def test_mismatched_folder_is_an_error(tmp_path):
    record_episodes(ENV, tmp_path, 1, driver="random", seed=0, progress=False)
    with pytest.raises(ManifestMismatchError, match="another --out"):
        record_episodes(ENV, tmp_path, 1, driver="expert", seed=0, progress=False)
    with pytest.raises(ManifestMismatchError):
        record_episodes("genex/StoppedLeadCar-v0", tmp_path, 1, driver="random", seed=0, progress=False)


def test_recording_without_labels_is_refused(tmp_path):
    with pytest.raises(ValueError, match="visibility"):
        record_episodes(ENV, tmp_path, 1, env_kwargs={"visibility_labels": False}, progress=False)


def test_not_a_recording(tmp_path):
    with pytest.raises(FileNotFoundError, match="recording folder"):
        read_manifest(tmp_path)
    with pytest.raises(ValueError, match="episodes"):
        record_episodes(ENV, tmp_path, -1, progress=False)


def test_record_gui_app_with_dict_actions(tmp_path):
    manifest = record_episodes("genex/SettingsTabs-v0", tmp_path, 2, driver="expert", seed=0, progress=False)
    eps = list(iter_episodes(tmp_path))
    assert all(ep.meta["success"] for ep in eps)
    ep = eps[0]
    assert isinstance(ep.actions[0], dict) and "type" in ep.actions[0]
    with pytest.raises(TypeError):
        ep.discrete_actions
    assert len(ep.visible_names) == len(ep.frames)
    assert any(name.startswith("label:") for name in ep.visible_names[0])
    assert ep.visible.shape == (len(ep.frames), len(manifest.facts))
    # each action's target label is recorded (public: the accessibility text) and rides on the click on load
    assert len(ep.action_labels) == len(ep.actions)
    clicks = [a for a in ep.actions if a["type"] == 0]
    assert clicks and all(a["label"] == lab for a, lab in zip(ep.actions, ep.action_labels) if "label" in a)
    assert ep.actions[-1]["label"] == ep.meta["instruction"].removeprefix("Turn on ")  # the expert clicks the target


def test_a_label_count_that_does_not_match_the_actions_is_an_error(tmp_path):
    record_episodes("genex/SettingsTabs-v0", tmp_path, 1, driver="random", seed=0, progress=False)
    path = next((tmp_path / "episodes").glob("*.npz"))
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["action_labels_json"] = np.array(json.dumps(json.loads(str(arrays["action_labels_json"]))[:-1]))
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="action labels for"):
        list(iter_episodes(tmp_path))


def test_driving_recordings_have_no_action_labels(tmp_path):
    record_episodes("genex/OccludedCrosswalk-v0", tmp_path, 1, driver="random", seed=0, progress=False)
    ep = next(iter(iter_episodes(tmp_path)))
    assert ep.action_labels == [] and all(isinstance(a, int) for a in ep.actions)
