"""Recording: documented schema, atomic writes, resume, and clear errors on mismatched folders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genex.io import sha256_file
from genex.recording import (
    ManifestMismatchError,
    RecordingError,
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


# ---- resume verification: damaged finished episodes are found, named and re-recorded -------------------------

SMALL = {"width": 32, "height": 32}


def _record_small(out, n, **kw):
    return record_episodes(ENV, out, n, driver="random", seed=3, env_kwargs=SMALL, progress=False, **kw)


def _same_episode(a, b):
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.visible, b.visible)
    assert a.actions == b.actions and a.meta == b.meta


def _flip_middle_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_manifest_stores_a_checksum_per_episode(tmp_path):
    _record_small(tmp_path, 2)
    manifest = read_manifest(tmp_path)
    assert sorted(manifest.checksums) == ["episode_000000.npz", "episode_000001.npz"]
    for i in range(2):
        path = episode_path(tmp_path, i)
        assert manifest.checksums[path.name] == {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def test_truncated_episode_is_re_recorded_on_resume(tmp_path, caplog, capsys):
    from genex.cli import main

    args = ["record", "--env", ENV, "--episodes", "3", "--out", str(tmp_path), "--quiet", "--driver", "random",
            "--seed", "3", "--env-kwargs", json.dumps(SMALL)]
    assert main(args) == 0
    clean = [load_episode(episode_path(tmp_path, i)) for i in range(3)]
    damaged = episode_path(tmp_path, 1)
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    untouched = episode_path(tmp_path, 0).stat().st_mtime_ns
    capsys.readouterr()
    with caplog.at_level("WARNING", logger="genex.recording"):
        assert main(args) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(damaged) in warnings[0] and "truncated" in warnings[0]
    assert "3 episodes" in capsys.readouterr().out
    for i in range(3):
        _same_episode(load_episode(episode_path(tmp_path, i)), clean[i])
    assert episode_path(tmp_path, 0).stat().st_mtime_ns == untouched  # sound episodes are not rewritten
    entry = read_manifest(tmp_path).checksums[damaged.name]
    assert entry == {"sha256": sha256_file(damaged), "bytes": damaged.stat().st_size}


def test_a_flipped_byte_is_caught_by_the_checksum(tmp_path, caplog):
    _record_small(tmp_path, 2)
    clean = load_episode(episode_path(tmp_path, 0))
    path = episode_path(tmp_path, 0)
    size = path.stat().st_size
    _flip_middle_byte(path)
    assert path.stat().st_size == size
    with caplog.at_level("WARNING", logger="genex.recording"):
        _record_small(tmp_path, 2)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(path) in warnings[0] and "SHA-256" in warnings[0]
    _same_episode(load_episode(path), clean)
    assert read_manifest(tmp_path).checksums[path.name]["sha256"] == sha256_file(path)


def test_missing_finished_episode_is_named_and_re_recorded(tmp_path, caplog):
    _record_small(tmp_path, 2)
    episode_path(tmp_path, 1).unlink()
    with caplog.at_level("WARNING", logger="genex.recording"):
        _record_small(tmp_path, 2)
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"{episode_path(tmp_path, 1)}: missing; re-recording it (seed 4)"]
    assert len(list(iter_episodes(tmp_path))) == 2


def test_recording_without_checksums_resumes_by_reading_every_episode(tmp_path, caplog):
    """A manifest written before checksums existed: episodes are verified by a full read, then checksummed."""
    _record_small(tmp_path, 3)
    clean = [load_episode(episode_path(tmp_path, i)) for i in range(3)]
    data = json.loads((tmp_path / "manifest.json").read_text())
    del data["checksums"]
    (tmp_path / "manifest.json").write_text(json.dumps(data, indent=2))
    assert read_manifest(tmp_path).checksums == {}
    _flip_middle_byte(episode_path(tmp_path, 0))  # same size: found by the zip's CRC on the full read
    truncated = episode_path(tmp_path, 2)
    truncated.write_bytes(truncated.read_bytes()[:100])
    with caplog.at_level("WARNING", logger="genex.recording"):
        _record_small(tmp_path, 3)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2
    assert str(episode_path(tmp_path, 0)) in warnings[0] and str(truncated) in warnings[1]
    assert all("unreadable" in w for w in warnings)
    for i in range(3):
        _same_episode(load_episode(episode_path(tmp_path, i)), clean[i])
    checksums = read_manifest(tmp_path).checksums
    assert {name: e["sha256"] for name, e in checksums.items()} == {
        episode_path(tmp_path, i).name: sha256_file(episode_path(tmp_path, i)) for i in range(3)}


def test_manifest_with_unknown_fields_still_reads(tmp_path):
    _record_small(tmp_path, 1)
    data = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**data, "added_later": 1}))
    assert read_manifest(tmp_path).env_id == ENV


def test_loading_a_truncated_episode_names_the_file(tmp_path):
    _record_small(tmp_path, 2)
    path = episode_path(tmp_path, 1)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(RecordingError, match="unreadable episode file") as err:
        load_episode(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: unreadable episode file (BadZipFile")
    assert f"genex record --env {ENV} --episodes 2" in msg and "resume re-records damaged episodes" in msg
    assert isinstance(err.value, ValueError)
    with pytest.raises(RecordingError, match="episode_000001.npz"):
        list(iter_episodes(tmp_path))


def test_loading_a_corrupted_or_incomplete_episode_names_the_file(tmp_path):
    _record_small(tmp_path, 2)
    flipped = episode_path(tmp_path, 0)
    _flip_middle_byte(flipped)
    with pytest.raises(RecordingError, match="episode_000000.npz: unreadable episode file"):
        load_episode(flipped)
    incomplete = episode_path(tmp_path, 1)  # a readable archive without its frames
    with np.load(incomplete) as z:
        arrays = {k: z[k] for k in z.files if k != "frames"}
    np.savez(incomplete, **arrays)
    with pytest.raises(RecordingError, match=r"episode_000001.npz: unreadable episode file \(KeyError"):
        load_episode(incomplete)


def test_interrupted_recording_keeps_the_entries_of_finished_episodes(tmp_path):
    from genex.envs import make_driver

    def interrupting(env_id, driver):
        drv = make_driver(env_id, driver)
        reset = drv.reset

        def reset_or_stop(env, seed=None):
            if seed == 3 + 2:
                raise KeyboardInterrupt
            return reset(env, seed=seed)

        drv.reset = reset_or_stop
        return drv

    with pytest.raises(KeyboardInterrupt):
        _record_small(tmp_path, 3, make_driver=interrupting)
    assert sorted(read_manifest(tmp_path).checksums) == ["episode_000000.npz", "episode_000001.npz"]
    _record_small(tmp_path, 3)
    assert len(read_manifest(tmp_path).checksums) == 3 and len(list(iter_episodes(tmp_path))) == 3


def test_an_imagined_copy_is_not_recorded_into(tmp_path):
    _record_small(tmp_path, 1)
    data = json.loads((tmp_path / "manifest.json").read_text())
    data["notes"] = {"imagined": {"source": "x"}}
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestMismatchError, match="imagined"):
        _record_small(tmp_path, 1)
