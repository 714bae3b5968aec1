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
``meta_json``       ``str`` (0-d)            JSON: seed, driver, instruction, hidden, answers,
                                             success, irreversible errors, length
==================  ======================  ============================================

``visible`` and ``frames`` align: row ``i`` labels frame ``i``. Hidden state
is stored for evaluation only; world models train on frames + actions.

Robustness: each episode is written to a temporary file then renamed, so an
interrupted recording loses at most the episode in progress; re-running the
same command skips the episodes already on disk (resume). A manifest that does
not match the command (another env, driver, seed or env options) is an error,
never a silent mix.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from .io import atomic_write_bytes

__all__ = [
    "FORMAT",
    "VERSION",
    "Episode",
    "RecordingManifest",
    "ManifestMismatchError",
    "EpisodeRecorder",
    "record_episodes",
    "load_episode",
    "save_episode",
    "iter_episodes",
    "episode_paths",
    "read_manifest",
]

log = logging.getLogger(__name__)

FORMAT = "genex-episodes"
VERSION = 1


class ManifestMismatchError(ValueError):
    """The output folder holds a recording made with other settings."""


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
    return RecordingManifest(**data)


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
        self.meta: dict[str, Any] = {"seed": seed, "driver": driver}

    def _labels(self, info: Mapping[str, Any]) -> None:
        visible = info.get("visible", {})
        self.visible.append([bool(visible.get(f, False)) for f in self.facts])
        self.visible_names.append(sorted(k for k, v in visible.items() if v))

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

    def save(self, path: Path) -> None:
        self.meta["length"] = len(self.rewards)
        save_episode(path, Episode(
            frames=np.stack(self.frames), actions=self.actions, rewards=np.asarray(self.rewards, np.float32),
            terminated=np.asarray(self.terminated, bool), truncated=np.asarray(self.truncated, bool),
            visible=np.asarray(self.visible, bool).reshape(len(self.frames), len(self.facts)), meta=self.meta,
            visible_names=self.visible_names, action_labels=self.action_labels))


def save_episode(path: Path, episode: Episode) -> None:
    """Write one ``episode_XXXXXX.npz`` atomically (the inverse of :func:`load_episode`).

    ``action_labels`` are stored apart from the actions, as recorded, so a click's ``"label"`` merged in by
    :func:`load_episode` is taken out again.
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
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_episode(path: str | Path) -> Episode:
    """Read one ``episode_XXXXXX.npz``."""
    with np.load(path, allow_pickle=False) as z:
        actions = json.loads(str(z["actions_json"]))
        labels: list[str] = []
        if "action_labels_json" in z:  # GUI clicks carry the label of their target (see the table above)
            labels = json.loads(str(z["action_labels_json"]))
            if len(labels) != len(actions):
                raise ValueError(f"{path}: {len(labels)} action labels for {len(actions)} actions (a damaged file)")
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
        )


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
        if manifest_path.exists():
            old = read_manifest(out)
            if old.identity() != manifest.identity():
                raise ManifestMismatchError(
                    f"{out} already holds a recording with {old.identity()}, not {manifest.identity()}; "
                    "use another --out folder"
                )
        else:
            (out / "episodes").mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(manifest_path, json.dumps(asdict(manifest), indent=2).encode())
        (out / "episodes").mkdir(parents=True, exist_ok=True)
        todo = [i for i in range(episodes) if not episode_path(out, i).exists()]
        if len(todo) < episodes:
            log.info("resuming: %d of %d episodes already recorded in %s", episodes - len(todo), episodes, out)
        _, probe = env.reset(seed=int(seed))
        if manifest.facts and not probe.get("visible"):
            raise ValueError(
                f"{env_id} made with {env_kwargs} gives no visibility labels (info['visible'] is empty); "
                "recordings must carry them: drop visibility_labels=False"
            )
        drv = make(env_id, driver)
        describe = getattr(base, "describe_action", None)  # GUI: what each click targets, for world models
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
            rec.save(episode_path(out, i))
        return manifest
    finally:
        env.close()
