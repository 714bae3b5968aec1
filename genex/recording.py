"""Recording exploration episodes to disk, and reading them back.

On-disk format (``format = "genex-episodes"``, ``version = 1``)::

    OUT/
      manifest.json              what was recorded and how (see RecordingManifest)
      episodes/
        episode_000000.npz       one file per episode, written atomically
        episode_000001.npz
        ...

Each ``episode_XXXXXX.npz`` holds, for an episode of ``T`` steps:

==================  ======================  ============================================
key                 dtype / shape           meaning
==================  ======================  ============================================
``frames``          ``uint8[T+1, H, W, 3]``  observation images, reset frame first
``actions``         ``int64[T]``             discrete actions (``Discrete`` spaces only)
``actions_json``    ``str`` (0-d)            JSON list of actions (any action space)
``rewards``         ``float32[T]``
``terminated``      ``bool[T]``
``truncated``       ``bool[T]``
``visible``         ``bool[T+1, F]``         visibility labels, facts in ``manifest.facts`` order
``action_labels_json`` ``str`` (0-d)        GUI only: JSON list (per action) of the label of the widget
                                             the action clicks on the screen it was taken on ("" if none),
                                             from the env's public ``describe_action``; merged into the
                                             click actions as ``"label"`` on load (the env ignores it)
``visible_json``    ``str`` (0-d)            JSON list (per frame) of the names of *all* visible
                                             facts, including per-episode ones (GUI ``label:...``)
``occupancy``       ``uint8[T+1, F, h, w]``  driving only: each fact's pixels per cell of each frame
                                             (``info["occupancy"]``: what a detector sees where; the
                                             layout targets of a world model)
``appearance``      ``uint8[T+1, F, 3]``     driving only: each fact's mean colour in each frame, 0
                                             where it shows none (``info["appearance"]``)
``meta_json``       ``str`` (0-d)            JSON: seed, driver, instruction, hidden, answers,
                                             success, irreversible errors, length
==================  ======================  ============================================

``visible``, ``occupancy``, ``appearance`` and ``frames`` align: row ``i`` labels frame ``i``. Hidden state
is stored for evaluation only; world models train on frames + actions.

Robustness: each episode is written to a temporary file then renamed, so an
interrupted recording loses at most the episode in progress; re-running the
same command skips the episodes already on disk (resume). A manifest that does
not match the command (another env, driver, seed or env options) is an error,
never a silent mix.

Verification: ``manifest.checksums`` maps each finished episode file's name to
``{"sha256": ..., "bytes": ...}``, added after the file is on disk (the manifest
is rewritten at most every few seconds and when recording stops). On resume each
finished episode is checked against its entry; one without an entry (a recording
made before checksums existed, or an entry lost to a hard kill) is checked by
reading every array. Damaged or missing episodes are re-recorded with their own
seed, one warning line each. A file that cannot be read raises
:class:`RecordingError` naming it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shlex
import struct
import time
import tokenize
import zipfile
import zlib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from .io import atomic_write_bytes, sha256_file

__all__ = [
    "FORMAT",
    "VERSION",
    "Episode",
    "RecordingManifest",
    "ManifestMismatchError",
    "RecordingError",
    "EpisodeRecorder",
    "record_episodes",
    "load_episode",
    "save_episode",
    "iter_episodes",
    "episode_paths",
    "read_manifest",
    "verify_episode",
]

log = logging.getLogger(__name__)

FORMAT = "genex-episodes"
VERSION = 1


class ManifestMismatchError(ValueError):
    """The output folder holds a recording made with other settings."""


class RecordingError(ValueError):
    """An episode file that cannot be read (truncated, corrupted, missing arrays); the message names the file."""


# What reading a damaged .npz raises: zip structure, deflate stream, .npy header parsing, missing members, I/O.
_UNREADABLE = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError, NotImplementedError,
               SyntaxError, tokenize.TokenError, struct.error)

# The manifest (with its checksums) is rewritten at most this often while recording, and when recording stops.
_MANIFEST_EVERY_S = 2.0


@dataclass
class RecordingManifest:
    """What a recording folder holds; ``manifest.json`` is this as JSON."""

    env_id: str
    env_kwargs: dict[str, Any]
    driver: str
    base_seed: int
    facts: list[str]
    action_names: list[str]
    questions: list[dict[str, Any]]
    image_shape: list[int]
    format: str = FORMAT
    version: int = VERSION
    genex_version: str = ""
    notes: dict[str, Any] = field(default_factory=dict)
    # finished episode file name -> {"sha256": hex, "bytes": size}; absent in recordings made before checksums
    checksums: dict[str, dict[str, Any]] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """The fields that must match for a resume."""
        return {"env_id": self.env_id, "env_kwargs": self.env_kwargs, "driver": self.driver,
                "base_seed": self.base_seed, "format": self.format, "version": self.version}


@dataclass
class Episode:
    """One recorded episode; arrays as documented in the module docstring."""

    frames: np.ndarray
    actions: list[Any]
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    visible: np.ndarray
    meta: dict[str, Any]
    visible_names: list[list[str]] = field(default_factory=list)
    action_labels: list[str] = field(default_factory=list)  # GUI: per action, "" if none; empty if not recorded
    occupancy: np.ndarray | None = None  # uint8/uint16[T+1, F, gh, gw] where the env gives info["occupancy"]
    appearance: np.ndarray | None = None  # uint8[T+1, F, 3] where the env gives info["appearance"]

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def discrete_actions(self) -> np.ndarray:
        """``int64[T]``; raises if the actions are not plain integers."""
        if not all(isinstance(a, int) for a in self.actions):
            raise TypeError("this episode's actions are not discrete; use .actions")
        return np.asarray(self.actions, dtype=np.int64)


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def episode_path(out: Path, index: int) -> Path:
    return out / "episodes" / f"episode_{index:06d}.npz"


def episode_paths(out: str | Path) -> list[Path]:
    """The finished episode files of recording folder ``out``, in index order (partial ``.tmp`` files are not
    episodes)."""
    return sorted((Path(out) / "episodes").glob("episode_*.npz"))


def read_manifest(out: str | Path) -> RecordingManifest:
    path = Path(out) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {out} a genex recording folder?")
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} manifest (format={data.get('format')!r})")
    if data.get("version") != VERSION:
        raise ValueError(f"{path} has format version {data.get('version')}, this genex reads version {VERSION}")
    known = {f.name for f in fields(RecordingManifest)}
    return RecordingManifest(**{k: v for k, v in data.items() if k in known})


def _rerecord_hint(path: Path) -> str:
    """The command that re-records a damaged episode of the recording folder holding ``path``."""
    out = path.parent.parent
    try:
        m = read_manifest(out)
    except (OSError, ValueError, TypeError):
        return "re-record it with `genex record ... --out <its recording folder>`"
    if "imagined" in m.notes:
        return f"delete it and re-run `genex imagine-recording ... --out {shlex.quote(str(out))}` (it fills in " \
               "missing episodes)"
    n = max([_index(p) for p in episode_paths(out)] + [_index(path)]) + 1  # at least as many as were recorded
    cmd = (f"genex record --env {m.env_id} --episodes {n} --out {shlex.quote(str(out))} --driver {m.driver} "
           f"--seed {m.base_seed}")
    if m.env_kwargs:
        cmd += f" --env-kwargs {shlex.quote(json.dumps(m.env_kwargs))}"
    return f"re-record it with `{cmd}`"


def _index(path: Path) -> int:
    tail = path.stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def _unreadable(path: Path, e: BaseException) -> RecordingError:
    return RecordingError(f"{path}: unreadable episode file ({type(e).__name__}: {e}); {_rerecord_hint(path)} "
                          "(resume re-records damaged episodes)")


class EpisodeRecorder:
    """Accumulates one episode in memory; ``save`` writes it atomically."""

    def __init__(self, facts: list[str], seed: int, driver: str) -> None:
        self.facts = facts
        self.frames: list[np.ndarray] = []
        self.actions: list[Any] = []
        self.action_labels: list[str] = []
        self.rewards: list[float] = []
        self.terminated: list[bool] = []
        self.truncated: list[bool] = []
        self.visible: list[list[bool]] = []
        self.visible_names: list[list[str]] = []
        self.occupancy: list[np.ndarray] = []
        self.appearance: list[np.ndarray] = []
        self.meta: dict[str, Any] = {"seed": seed, "driver": driver}

    def _labels(self, info: Mapping[str, Any]) -> None:
        visible = info.get("visible", {})
        self.visible.append([bool(visible.get(f, False)) for f in self.facts])
        self.visible_names.append(sorted(k for k, v in visible.items() if v))
        if "occupancy" in info:
            self.occupancy.append(np.asarray(info["occupancy"]))
        if "appearance" in info:
            self.appearance.append(np.asarray(info["appearance"], np.uint8))

    def start(self, obs: Mapping[str, Any], info: Mapping[str, Any]) -> None:
        self.frames.append(np.asarray(obs["image"], dtype=np.uint8))
        self._labels(info)
        self.meta.update(instruction=str(obs.get("text", "")), hidden=_jsonable(info.get("hidden", {})),
                         answers=_jsonable(info.get("answers", {})))

    def add(self, action: Any, obs: Mapping[str, Any], reward: float, terminated: bool, truncated: bool,
            info: Mapping[str, Any], label: str | None = None) -> None:
        """``label``: the action's description on the screen it was taken on (GUI ``describe_action``)."""
        self.actions.append(_jsonable(action))
        if label is not None:
            self.action_labels.append(str(label))
        self.frames.append(np.asarray(obs["image"], dtype=np.uint8))
        self.rewards.append(float(reward))
        self.terminated.append(bool(terminated))
        self.truncated.append(bool(truncated))
        self._labels(info)
        self.meta.update(
            success=bool(info.get("success", False)),
            irreversible_errors=int(info.get("irreversible_errors", info.get("collisions", 0))),
        )

    def save(self, path: Path) -> dict[str, Any]:
        """Write the episode; returns its checksum entry (see :func:`save_episode`)."""
        self.meta["length"] = len(self.rewards)
        return save_episode(path, Episode(
            frames=np.stack(self.frames), actions=self.actions, rewards=np.asarray(self.rewards, np.float32),
            terminated=np.asarray(self.terminated, bool), truncated=np.asarray(self.truncated, bool),
            visible=np.asarray(self.visible, bool).reshape(len(self.frames), len(self.facts)), meta=self.meta,
            visible_names=self.visible_names, action_labels=self.action_labels,
            occupancy=np.stack(self.occupancy) if len(self.occupancy) == len(self.frames) else None,
            appearance=np.stack(self.appearance) if len(self.appearance) == len(self.frames) else None))


def save_episode(path: Path, episode: Episode) -> dict[str, Any]:
    """Write one ``episode_XXXXXX.npz`` atomically (the inverse of :func:`load_episode`).

    ``action_labels`` are stored apart from the actions, as recorded, so a click's ``"label"`` merged in by
    :func:`load_episode` is taken out again. Returns the file's manifest entry, ``{"sha256": hex, "bytes": size}``
    (of the bytes written).
    """
    ep = episode
    actions = [{k: v for k, v in a.items() if k != "label"} if isinstance(a, dict) and ep.action_labels else a
               for a in ep.actions]
    arrays: dict[str, Any] = {
        "frames": np.asarray(ep.frames, np.uint8),
        "actions_json": np.array(json.dumps(_jsonable(actions))),
        "rewards": np.asarray(ep.rewards, np.float32),
        "terminated": np.asarray(ep.terminated, bool),
        "truncated": np.asarray(ep.truncated, bool),
        "visible": np.asarray(ep.visible, bool),
        "visible_json": np.array(json.dumps(ep.visible_names)),
        "meta_json": np.array(json.dumps(_jsonable(ep.meta))),
    }
    if ep.action_labels:
        if len(ep.action_labels) != len(ep.actions):
            raise ValueError("give a label with every action of an episode, or with none")
        arrays["action_labels_json"] = np.array(json.dumps(list(ep.action_labels)))
    if all(isinstance(a, int) for a in actions):
        arrays["actions"] = np.asarray(actions, np.int64)
    if ep.occupancy is not None:
        arrays["occupancy"] = np.asarray(ep.occupancy)
    if ep.appearance is not None:
        arrays["appearance"] = np.asarray(ep.appearance, np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def load_episode(path: str | Path) -> Episode:
    """Read one ``episode_XXXXXX.npz`` (every array in it, so a damaged one fails here, not later).

    Raises :class:`RecordingError`, naming the file, when it cannot be read.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            arrays = {k: z[k] for k in z.files}
        return _episode_from_arrays(arrays)
    except _UNREADABLE as e:
        raise _unreadable(path, e) from e


def _episode_from_arrays(z: Mapping[str, np.ndarray]) -> Episode:
    actions = json.loads(str(z["actions_json"]))
    labels: list[str] = []
    if "action_labels_json" in z:  # GUI clicks carry the label of their target (see the table above)
        labels = json.loads(str(z["action_labels_json"]))
        if len(labels) != len(actions):
            raise ValueError(f"{len(labels)} action labels for {len(actions)} actions (a damaged file)")
        actions = [{**a, "label": lab} if isinstance(a, dict) and lab else a for a, lab in zip(actions, labels)]
    return Episode(
        frames=z["frames"],
        actions=actions,
        rewards=z["rewards"],
        terminated=z["terminated"],
        truncated=z["truncated"],
        visible=z["visible"],
        meta=json.loads(str(z["meta_json"])),
        visible_names=json.loads(str(z["visible_json"])) if "visible_json" in z else [],
        action_labels=labels,
        occupancy=z["occupancy"] if "occupancy" in z else None,
        appearance=z["appearance"] if "appearance" in z else None,
    )


def verify_episode(path: str | Path, entry: Mapping[str, Any] | None = None) -> tuple[str | None, dict[str, Any]]:
    """Check one finished episode file: ``(problem, entry)``; ``problem`` is ``None`` when the file is sound.

    With a manifest ``entry`` (``{"sha256", "bytes"}``) the size and SHA-256 of the file must match it; without
    one (recordings made before checksums existed) the file must load, every array read. ``entry`` comes back
    as found on disk (``{}`` when the file is missing).
    """
    path = Path(path)
    if not path.exists():
        return "missing", {}
    size = path.stat().st_size
    if entry:
        expected = entry.get("bytes", size)
        if size != expected:
            return (f"truncated: {size} of {expected} bytes" if size < expected
                    else f"{size} bytes, the manifest says {expected}"), {}
        digest = sha256_file(path)
        if digest != entry.get("sha256"):
            return "damaged: its SHA-256 differs from the manifest's", {}
        return None, {"sha256": digest, "bytes": size}
    try:
        load_episode(path)
    except RecordingError as e:
        cause = e.__cause__
        return f"unreadable ({type(cause).__name__}: {cause})" if cause else "unreadable", {}
    return None, {"sha256": sha256_file(path), "bytes": size}


def iter_episodes(out: str | Path) -> Iterator[Episode]:
    """Episodes of a recording folder in index order (partial ``.tmp`` files are ignored)."""
    read_manifest(out)
    for path in episode_paths(out):
        yield load_episode(path)


def record_episodes(
    env_id: str,
    out: str | Path,
    episodes: int,
    *,
    driver: str = "random",
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    make_driver: Callable[[str, str], Any] | None = None,
    progress: bool = True,
) -> RecordingManifest:
    """Record ``episodes`` episodes of ``driver`` in ``env_id`` to ``out`` (resumable).

    Episode ``i`` uses ``reset(seed=seed + i)`` and the driver seeded with the
    same number, so a recording is reproducible and a resumed recording equals
    an uninterrupted one.
    """
    import gymnasium as gym
    from tqdm.auto import tqdm

    from genex import __version__
    from genex.envs import make_driver as default_make_driver

    if episodes < 0:
        raise ValueError(f"episodes must be >= 0, got {episodes}")
    env_kwargs = dict(env_kwargs or {})
    make = make_driver or default_make_driver
    out = Path(out)
    env = gym.make(env_id, **env_kwargs)
    try:
        base = env.unwrapped
        manifest = RecordingManifest(
            env_id=env_id, env_kwargs=_jsonable(env_kwargs), driver=driver, base_seed=int(seed),
            facts=list(base.facts), action_names=list(base.action_names),
            questions=[{"id": q.id, "text": q.text, "answers": list(q.answers)} for q in base.questions],
            image_shape=list(env.observation_space["image"].shape), genex_version=__version__,
        )
        manifest_path = out / "manifest.json"

        def write_manifest() -> None:
            nonlocal manifest
            manifest = replace(manifest, checksums=dict(sorted(checksums.items())))
            atomic_write_bytes(manifest_path, json.dumps(asdict(manifest), indent=2).encode())

        checksums: dict[str, dict[str, Any]] = {}
        if manifest_path.exists():
            old = read_manifest(out)
            if old.identity() != manifest.identity():
                raise ManifestMismatchError(
                    f"{out} already holds a recording with {old.identity()}, not {manifest.identity()}; "
                    "use another --out folder"
                )
            if "imagined" in old.notes:  # its frames are a world model's, not this env's: re-recording would mix
                raise ManifestMismatchError(f"{out} holds an imagined copy (genex imagine-recording); "
                                            "use another --out folder")
            manifest, checksums = old, dict(old.checksums)  # keep what the folder says (version, notes)
        else:
            (out / "episodes").mkdir(parents=True, exist_ok=True)
            write_manifest()
        (out / "episodes").mkdir(parents=True, exist_ok=True)
        # verify the finished episodes (checksum, or a full read where the manifest has none); re-record the rest
        finished = [i for i in range(episodes)
                    if episode_path(out, i).exists() or episode_path(out, i).name in checksums]
        sound, changed, problems = set(), False, []
        for i in tqdm(finished, desc=f"verify {out.name}", disable=not progress or not finished, unit="ep",
                      leave=False):
            path = episode_path(out, i)
            entry = checksums.pop(path.name, None)
            problem, found = verify_episode(path, entry)
            if problem is None:
                checksums[path.name] = found
                sound.add(i)
            else:
                problems.append((path, problem, int(seed) + i))
            changed |= checksums.get(path.name) != entry
        for path, problem, ep_seed in problems:  # after the bar, one line per file
            log.warning("%s: %s; re-recording it (seed %d)", path, problem, ep_seed)
        todo = [i for i in range(episodes) if i not in sound]
        if changed:
            write_manifest()
        if len(todo) < episodes:
            log.info("resuming: %d of %d episodes already recorded (verified) in %s", episodes - len(todo), episodes,
                     out)
        _, probe = env.reset(seed=int(seed))
        if manifest.facts and not probe.get("visible"):
            raise ValueError(
                f"{env_id} made with {env_kwargs} gives no visibility labels (info['visible'] is empty); "
                "recordings must carry them: drop visibility_labels=False"
            )
        drv = make(env_id, driver)
        describe = getattr(base, "describe_action", None)  # GUI: what each click targets, for world models
        unsaved, last_write = 0, time.monotonic()
        try:
            for i in tqdm(todo, desc=f"record {env_id}", disable=not progress, unit="ep"):
                ep_seed = int(seed) + i
                obs, info = env.reset(seed=ep_seed)
                drv.reset(env, seed=ep_seed)
                rec = EpisodeRecorder(manifest.facts, ep_seed, driver)
                rec.start(obs, info)
                while True:
                    action = drv.act(obs, info)
                    label = describe(action) if describe is not None else None
                    obs, reward, terminated, truncated, info = env.step(action)
                    rec.add(action, obs, reward, terminated, truncated, info, label=label)
                    if terminated or truncated:
                        break
                path = episode_path(out, i)
                checksums[path.name] = rec.save(path)  # the file first, then its entry
                unsaved += 1
                if time.monotonic() - last_write >= _MANIFEST_EVERY_S:
                    write_manifest()
                    unsaved, last_write = 0, time.monotonic()
        finally:  # the entries of the episodes on disk, also when interrupted
            if unsaved:
                write_manifest()
        return manifest
    finally:
        env.close()
