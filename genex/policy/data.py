"""Perception questions from recorded episodes: the tiny VLM's training and evaluation data.

Visibility labels (default, ``labels="visible"``): for each frame, questions
whose answers are *in that frame*:

* ``fact``: "Is a pedestrian visible?" for each fact of ``manifest.facts``;
* ``text``: "Is the text 'VPN' on screen?" for GUI ``label:<text>`` facts, with
  as many negatives (labels seen elsewhere in the episode or the recording);
* ``state``: "Is 'Wi-Fi' switched on?" for GUI ``on:<text>`` facts.

Hidden-state labels (``labels="hidden"``, the amortized reference only): the
env's declared questions with the episode's true answer, asked of every frame.

Examples are plain records; ``genex.policy.train.make_batch`` turns frames +
examples into the tensors of :meth:`TinyVLM.forward`. This module never imports
``genex.envs``.

Two ways to read a recording, the same questions either way:

* :func:`load_examples` -> :class:`FrameSet`: every kept frame in memory. Ceiling
  per process: ``frames x S*S*3`` bytes (12 KiB a frame at 64 px: 1.2 GB for
  100k frames) + ~200 bytes a question + one episode at recorded size while it
  is read. (It used to hold a whole folder at recorded size, then copy the
  resized frames once more: ``folder at full size + 2 x all frames``.)
* :func:`index_examples` -> :class:`FrameIndex` (questions and where each frame
  lives, from the label arrays alone) + :class:`EpisodeCache` (whole episodes
  read on demand, least recently used dropped): ``genex train-policy --stream``.
  Ceiling per reader: ~200 bytes a question + ``capacity x longest episode x
  S*S*3`` bytes + one episode at recorded size; independent of the number of
  frames. Measured on 12 SettingsTabs episodes (128 px recorded, 64 px kept):
  peak 15.2 MB before, 6.0 MB now, 0.6 MB for the index alone.
"""

from __future__ import annotations

import bisect
import json
import logging
import random
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from genex.recording import _UNREADABLE, _unreadable, episode_paths, read_manifest

__all__ = ["Example", "FrameSet", "FrameIndex", "EpisodeRef", "EpisodeCache", "fact_question", "text_question",
           "state_question", "format_prompt", "load_examples", "index_examples", "resize_frames", "subsample",
           "YES_NO"]

log = logging.getLogger(__name__)

YES_NO = ("yes", "no")

#: Question text for each visibility fact (a fact not listed gets "Is <fact> visible?").
FACT_QUESTIONS: dict[str, str] = {
    "pedestrian": "Is a pedestrian visible?",
    "ball": "Is a ball visible?",
    "truck": "Is a truck visible?",
    "bus": "Is a bus visible?",
    "oncoming_car": "Is an oncoming car visible?",
    "oncoming_vehicle": "Is an oncoming vehicle visible?",
    "lead_car": "Is the lead car visible?",
    "emergency_vehicle": "Is an emergency vehicle visible?",
    "parked_car": "Is a parked car visible?",
    "brake_lights": "Are the brake lights of the car ahead on?",
    "hazard_lights": "Are the hazard lights of the car ahead flashing?",
    "target": "Is the item named in the instruction visible?",
    "target_on": "Is the setting named in the instruction switched on?",
    "target_selected": "Is the file named in the instruction selected?",
    "name_field": "Is the Name field visible?",
    "phone_field": "Is the Phone field visible?",
    "name_correct": "Does the Name field show the new name?",
    "phone_correct": "Does the Phone field show the new phone number?",
    "error_dialog": "Is an error dialog visible?",
    "destination": "Is the destination city from the instruction visible?",
    "details": "Are trip details visible?",
    "affordable_details": "Are the details of a trip within budget visible?",
    "expensive_details": "Are the details of a trip over budget visible?",
    "confirm_dialog": "Is a confirm dialog visible?",
    "confirm_target": "Does the confirm dialog name the file from the instruction?",
}


def fact_question(fact: str) -> str:
    """The question for a visibility fact; GUI ``label:<text>`` facts are asked as text questions."""
    if fact.startswith("label:"):
        return text_question(fact[len("label:"):])
    return FACT_QUESTIONS.get(fact, f"Is {fact.replace('_', ' ')} visible?")


def text_question(text: str) -> str:
    return f"Is the text '{text}' on screen?"


def state_question(text: str) -> str:
    return f"Is '{text}' switched on?"


def format_prompt(instruction: str, question: str) -> str:
    """The prompt the tiny VLM reads: the instruction (the cached prefix), a separator, the question."""
    return f"{instruction} <sep> {question}"


@dataclass(frozen=True)
class Example:
    """One question about one frame: ``frame`` indexes :attr:`FrameSet.frames`."""

    frame: int
    prompt: str
    options: tuple[str, ...]
    target: int
    kind: str  # fact / text / state / hidden
    env_id: str


@dataclass
class FrameSet:
    frames: np.ndarray  # uint8[N, S, S, 3]
    examples: list[Example]


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """``uint8[N, H, W, 3]`` -> ``uint8[N, size, size, 3]`` (area/bilinear via PIL; no-op if already sized)."""
    if frames.shape[1:3] == (size, size):
        return frames
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR)) for f in frames])


def perturb_digit(text: str, rng: random.Random) -> str:
    """``text`` with one of its digits replaced by another ("Price: $175" -> "Price: $135")."""
    where = [i for i, ch in enumerate(text) if ch.isdigit()]
    if not where:
        raise ValueError(f"{text!r} has no digit to perturb")
    i = rng.choice(where)
    digit = rng.choice([d for d in "0123456789" if d != text[i]])
    return text[:i] + digit + text[i + 1:]


def _visible_examples(env_id: str, facts: Sequence[str], visible: np.ndarray, names: list[list[str]],
                      instruction: str, offset: int, rng: random.Random, global_labels: list[str],
                      max_text: int, numeric_negatives: int = 0) -> list[Example]:
    out: list[Example] = []
    episode_labels = sorted({n[6:] for fr in names for n in fr if n.startswith("label:")})
    has_states = any(n.startswith("on:") for fr in names for n in fr)
    for t in range(len(visible)):
        frame = offset + t
        for j, fact in enumerate(facts):
            out.append(Example(frame, format_prompt(instruction, fact_question(fact)), YES_NO,
                               0 if visible[t, j] else 1, "fact", env_id))
        if not names:
            continue
        shown = {n[6:] for n in names[t] if n.startswith("label:")}
        on = {n[3:] for n in names[t] if n.startswith("on:")}
        if not shown:
            continue
        pos = rng.sample(sorted(shown), min(max_text, len(shown)))
        pool = [x for x in episode_labels if x not in shown]
        others = [x for x in global_labels if x not in shown]
        neg = rng.sample(pool, min(len(pos), len(pool)))
        rest = [x for x in others if x not in neg]
        neg += rng.sample(rest, min(len(pos) - len(neg), len(rest)))
        for x in pos:
            out.append(Example(frame, format_prompt(instruction, text_question(x)), YES_NO, 0, "text", env_id))
        for x in neg:
            out.append(Example(frame, format_prompt(instruction, text_question(x)), YES_NO, 1, "text", env_id))
        numeric = sorted(x for x in shown if any(ch.isdigit() for ch in x))
        for x in rng.sample(numeric, min(numeric_negatives, len(numeric))) if numeric_negatives else ():
            # the label as shown, and the same label with one digit changed: reading numbers, not glyph shapes
            if x not in pos:
                out.append(Example(frame, format_prompt(instruction, text_question(x)), YES_NO, 0, "text", env_id))
            near = perturb_digit(x, rng)
            if near not in shown:
                out.append(Example(frame, format_prompt(instruction, text_question(near)), YES_NO, 1, "text",
                                   env_id))
        if has_states:
            asked = sorted(on) + rng.sample(sorted(shown - on), min(max(len(on), 1), len(shown - on)))
            for x in asked:
                out.append(Example(frame, format_prompt(instruction, state_question(x)), YES_NO,
                                   0 if x in on else 1, "state", env_id))
    return out


def _read_members(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Only the named arrays of one episode file (an ``.npz`` reads its members one by one, so labels cost
    nothing next to the frames); a damaged file raises :class:`RecordingError` naming it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            return {k: z[k] for k in keys if k in z.files or k != "visible_json"}  # visible_json: newer recordings
    except _UNREADABLE as e:
        raise _unreadable(path, e) from e


def _episode_labels(path: Path) -> tuple[np.ndarray, list[list[str]], dict]:
    """``(visible, visible names per frame, meta)`` of one episode file, without its frames."""
    z = _read_members(path, ("visible", "visible_json", "meta_json"))
    try:
        names = json.loads(str(z["visible_json"])) if "visible_json" in z else []
        return z["visible"], names, json.loads(str(z["meta_json"]))
    except ValueError as e:
        raise _unreadable(path, e) from e


def _episode_frames(path: str | Path, keep: np.ndarray, image_size: int) -> np.ndarray:
    """The ``keep`` frames of one episode file, resized to ``image_size``."""
    return resize_frames(_read_members(Path(path), ("frames",))["frames"][keep], image_size)


@dataclass(frozen=True, eq=False)
class EpisodeRef:
    """Where the frames of one episode come from: frames ``keep`` of file ``path`` are frames
    ``offset .. offset + len(keep) - 1`` of a :class:`FrameIndex`."""

    path: str
    keep: np.ndarray
    offset: int


@dataclass
class FrameIndex:
    """A :class:`FrameSet` without its pixels: every question, and where each frame lives on disk.

    :func:`index_examples` builds it from the labels alone (the frames of an episode file are never read), so it
    costs about 200 bytes per question; :meth:`load` reads every frame (what :func:`load_examples` returns),
    :meth:`frames_of` only those asked for, and :class:`EpisodeCache` serves frames episode by episode.
    """

    episodes: list[EpisodeRef]
    examples: list[Example]
    image_size: int
    _offsets: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._offsets = [e.offset for e in self.episodes]

    @property
    def n_frames(self) -> int:
        return self.episodes[-1].offset + len(self.episodes[-1].keep) if self.episodes else 0

    def episode_of(self, frame: int) -> int:
        """The position in :attr:`episodes` of the episode holding ``frame``."""
        return bisect.bisect_right(self._offsets, frame) - 1

    def load(self) -> FrameSet:
        """Every frame in memory: ``uint8[n_frames, S, S, 3]`` filled episode by episode (the peak is that array
        plus one episode at its recorded size)."""
        size = self.image_size
        frames = np.empty((self.n_frames, size, size, 3), np.uint8)
        for ep in self.episodes:
            frames[ep.offset: ep.offset + len(ep.keep)] = _episode_frames(ep.path, ep.keep, size)
        return FrameSet(frames, self.examples)

    def frames_of(self, frame_ids: Sequence[int]) -> np.ndarray:
        """``uint8[len(frame_ids), S, S, 3]``: the frames asked for, each episode file read once."""
        size = self.image_size
        out = np.empty((len(frame_ids), size, size, 3), np.uint8)
        by_episode: dict[int, list[int]] = {}
        for i, f in enumerate(frame_ids):
            by_episode.setdefault(self.episode_of(f), []).append(i)
        for e, rows in by_episode.items():
            ep = self.episodes[e]
            local = [frame_ids[i] - ep.offset for i in rows]
            out[rows] = _episode_frames(ep.path, ep.keep[local], size)
        return out

    def subsample(self, max_frames: int | None, kinds: set[str] | None = None) -> FrameSet:
        """:func:`subsample` of :meth:`load`, reading only the frames it keeps."""
        candidates = _spread(self.examples, max_frames, kinds)
        return _renumbered(self.frames_of(candidates), self.examples, candidates, kinds)


class EpisodeCache:
    """Frames of a :class:`FrameIndex` on demand: ``cache[frame_ids]`` -> ``uint8[len, S, S, 3]``.

    A frame's whole episode is read and resized (an ``.npz`` member is compressed: one frame costs as much as
    its episode), then kept in a least-recently-used cache of ``capacity`` episodes. Memory: ``capacity`` x the
    longest episode's kept frames x ``S*S*3`` bytes, plus one episode at its recorded size while it is read.
    ``loads`` counts the episode files read.
    """

    def __init__(self, index: FrameIndex, capacity: int = 8) -> None:
        if capacity < 1:
            raise ValueError(f"the episode cache needs room for at least 1 episode, got {capacity}")
        self.index = index
        self.capacity = capacity
        self._episodes: OrderedDict[int, np.ndarray] = OrderedDict()
        self.loads = 0

    def episode(self, e: int) -> np.ndarray:
        """The resized kept frames of episode ``e`` of the index."""
        if e in self._episodes:
            self._episodes.move_to_end(e)
            return self._episodes[e]
        ep = self.index.episodes[e]
        frames = _episode_frames(ep.path, ep.keep, self.index.image_size)
        self.loads += 1
        self._episodes[e] = frames
        while len(self._episodes) > self.capacity:
            self._episodes.popitem(last=False)
        return frames

    def __getitem__(self, frame_ids: Sequence[int]) -> np.ndarray:
        size = self.index.image_size
        out = np.empty((len(frame_ids), size, size, 3), np.uint8)
        for i, f in enumerate(frame_ids):
            e = self.index.episode_of(f)
            out[i] = self.episode(e)[f - self.index.episodes[e].offset]
        return out


def index_examples(folders: Sequence[str | Path], image_size: int, *, labels: str = "visible",
                   frame_stride: int = 1, max_episodes: int | None = None, max_text: int = 3,
                   seed: int = 0, numeric_negatives: int = 0) -> FrameIndex:
    """The questions of :func:`load_examples` (the same ones, in the same order, numbered the same) and where
    each frame lives, from the labels of the episode files only (two cheap passes over a folder: its text
    labels, then the questions); no frame is read. Arguments as :func:`load_examples`."""
    if labels not in ("visible", "hidden"):
        raise ValueError(f"labels must be 'visible' or 'hidden', got {labels!r}")
    rng = random.Random(seed)
    refs: list[EpisodeRef] = []
    examples: list[Example] = []
    offset = 0
    for folder in folders:
        manifest = read_manifest(folder)
        paths = episode_paths(folder)[:max_episodes]
        global_labels: set[str] = set()
        if labels == "visible":  # text negatives come from the whole folder: a first pass over its labels
            for path in paths:
                _, names, _ = _episode_labels(path)
                global_labels |= {n[6:] for fr in names for n in fr if n.startswith("label:")}
        imagined_copy = "imagined" in manifest.notes  # written by `genex imagine-recording`
        for path in paths:
            visible, all_names, meta = _episode_labels(path)
            keep = np.arange(0, len(visible), frame_stride)
            if imagined_copy:  # its real frames repeat the source recording's: take the imagined ones only
                keep = np.flatnonzero(np.asarray(meta.get("imagined", []), bool))
                if not len(keep):
                    continue
            names = [all_names[i] for i in keep] if all_names else []
            instruction = str(meta.get("instruction", ""))
            if labels == "visible":
                examples += _visible_examples(manifest.env_id, manifest.facts, visible[keep], names, instruction,
                                              offset, rng, sorted(global_labels), max_text, numeric_negatives)
            else:
                answers = meta.get("answers", {})
                for q in manifest.questions:
                    if q["id"] not in answers:
                        continue
                    for t in range(len(keep)):
                        examples.append(Example(offset + t, format_prompt(instruction, q["text"]),
                                                tuple(q["answers"]), int(answers[q["id"]]), "hidden",
                                                manifest.env_id))
            refs.append(EpisodeRef(str(path), keep, offset))
            offset += len(keep)
        log.info("%s: %d episodes, %d frames so far, %d examples", folder, len(paths), offset, len(examples))
    if not refs:
        raise ValueError(f"no episodes found in {list(folders)}")
    if not examples:
        raise ValueError(f"no {labels} questions in {list(folders)}: the recordings carry no "
                         + ("visibility labels" if labels == "visible" else "declared questions with answers"))
    return FrameIndex(refs, examples, image_size)


def load_examples(folders: Sequence[str | Path], image_size: int, *, labels: str = "visible",
                  frame_stride: int = 1, max_episodes: int | None = None, max_text: int = 3,
                  seed: int = 0, numeric_negatives: int = 0) -> FrameSet:
    """Frames (resized to ``image_size``) and questions from recording folders, all in memory.

    ``frame_stride`` keeps every n-th frame; a folder written by ``genex imagine-recording`` contributes only
    its imagined frames (the others repeat its source recording); ``max_text`` caps positive text
    questions per frame (as many negatives are drawn). ``numeric_negatives``: per frame, up to that many labels
    with digits on screen are asked as shown (yes) and with one digit changed (no), so that a reader learns
    "Price: $175" from "Price: $135" (TicketShop compares a read price with the budget). Deterministic in
    ``seed``.

    Memory ceiling (per process): every kept frame at ``image_size`` (``frames x S*S*3`` bytes: 12 KiB a frame
    at 64 px, 1.2 GB for 100k frames) + ~200 bytes per question + one episode at its recorded size while it is
    read (frames go episode by episode into one preallocated array). Before, this loader held every episode of
    a folder at its recorded size at once, then copied the resized frames again to concatenate them: about
    ``one folder at full size + 2 x all frames at image_size``. For data that does not fit, stream it:
    :func:`index_examples` + :class:`EpisodeCache` (``genex train-policy --stream``) hold the questions and a
    few resized episodes per reader, never the frames of the whole set.
    """
    return index_examples(folders, image_size, labels=labels, frame_stride=frame_stride,
                          max_episodes=max_episodes, max_text=max_text, seed=seed,
                          numeric_negatives=numeric_negatives).load()


def _spread(examples: Sequence[Example], max_frames: int | None, kinds: set[str] | None) -> list[int]:
    """The frames :func:`subsample` keeps: at most ``max_frames``, evenly spaced over those with questions."""
    candidates = sorted({e.frame for e in examples if kinds is None or e.kind in kinds})
    if max_frames is not None and len(candidates) > max_frames:
        candidates = [candidates[int(i * len(candidates) / max_frames)] for i in range(max_frames)]
    return candidates


def _renumbered(frames: np.ndarray, examples: Sequence[Example], candidates: list[int],
                kinds: set[str] | None) -> FrameSet:
    where = {f: i for i, f in enumerate(candidates)}
    kept = [Example(where[e.frame], e.prompt, e.options, e.target, e.kind, e.env_id) for e in examples
            if e.frame in where and (kinds is None or e.kind in kinds)]
    return FrameSet(frames, kept)


def subsample(data: FrameSet, max_frames: int | None, kinds: set[str] | None = None) -> FrameSet:
    """At most ``max_frames`` frames, evenly spaced over the whole set (every env and episode), with their
    questions (only ``kinds`` if given); frames are renumbered."""
    candidates = _spread(data.examples, max_frames, kinds)
    return _renumbered(data.frames[candidates], data.examples, candidates, kinds)
