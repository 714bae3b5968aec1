"""Perception questions from recorded episodes: the tiny VLM's training and evaluation data.

Visibility labels (default, ``labels="visible"``): for each frame, questions
whose answers are *in that frame*:

* ``fact``: "Is a pedestrian visible?" for each fact of ``manifest.facts``;
* ``text``: "Is the text 'VPN' on screen?" for GUI ``label:<text>`` facts, with
  as many negatives (labels seen elsewhere in the episode or the recording);
* ``state``: "Is 'Wi-Fi' switched on?" for GUI ``on:<text>`` facts.

Hidden-state labels (``labels="hidden"``, the amortized reference only): the
env's declared questions with the episode's true answer, asked of every frame.

Examples are plain records; :func:`collate` turns frames + examples into the
tensors of :meth:`TinyVLM.forward`. This module never imports ``genex.envs``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from genex.recording import iter_episodes, read_manifest

__all__ = ["Example", "FrameSet", "fact_question", "text_question", "state_question", "format_prompt",
           "load_examples", "resize_frames", "subsample", "YES_NO"]

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


def load_examples(folders: Sequence[str | Path], image_size: int, *, labels: str = "visible",
                  frame_stride: int = 1, max_episodes: int | None = None, max_text: int = 3,
                  seed: int = 0, numeric_negatives: int = 0) -> FrameSet:
    """Frames (resized to ``image_size``) and questions from recording folders.

    ``frame_stride`` keeps every n-th frame; a folder written by ``genex imagine-recording`` contributes only
    its imagined frames (the others repeat its source recording); ``max_text`` caps positive text
    questions per frame (as many negatives are drawn). ``numeric_negatives``: per frame, up to that many labels
    with digits on screen are asked as shown (yes) and with one digit changed (no), so that a reader learns
    "Price: $175" from "Price: $135" (TicketShop compares a read price with the budget). Deterministic in
    ``seed``.
    """
    if labels not in ("visible", "hidden"):
        raise ValueError(f"labels must be 'visible' or 'hidden', got {labels!r}")
    rng = random.Random(seed)
    frames: list[np.ndarray] = []
    examples: list[Example] = []
    offset = 0
    for folder in folders:
        manifest = read_manifest(folder)
        episodes = list(iter_episodes(folder))[:max_episodes]
        global_labels = sorted({n[6:] for ep in episodes for fr in ep.visible_names for n in fr
                                if n.startswith("label:")})
        imagined_copy = "imagined" in manifest.notes  # written by `genex imagine-recording`
        for ep in episodes:
            keep = np.arange(0, len(ep.frames), frame_stride)
            if imagined_copy:  # its real frames repeat the source recording's: take the imagined ones only
                keep = np.flatnonzero(np.asarray(ep.meta.get("imagined", []), bool))
                if not len(keep):
                    continue
            f = resize_frames(ep.frames[keep], image_size)
            names = [ep.visible_names[i] for i in keep] if ep.visible_names else []
            instruction = str(ep.meta.get("instruction", ""))
            if labels == "visible":
                examples += _visible_examples(manifest.env_id, manifest.facts, ep.visible[keep], names,
                                              instruction, offset, rng, global_labels, max_text, numeric_negatives)
            else:
                answers = ep.meta.get("answers", {})
                for q in manifest.questions:
                    if q["id"] not in answers:
                        continue
                    for t in range(len(keep)):
                        examples.append(Example(offset + t, format_prompt(instruction, q["text"]),
                                                tuple(q["answers"]), int(answers[q["id"]]), "hidden",
                                                manifest.env_id))
            frames.append(f)
            offset += len(f)
        log.info("%s: %d episodes, %d frames so far, %d examples", folder, len(episodes), offset, len(examples))
    if not frames:
        raise ValueError(f"no episodes found in {list(folders)}")
    if not examples:
        raise ValueError(f"no {labels} questions in {list(folders)}: the recordings carry no "
                         + ("visibility labels" if labels == "visible" else "declared questions with answers"))
    return FrameSet(np.concatenate(frames), examples)


def subsample(data: FrameSet, max_frames: int | None, kinds: set[str] | None = None) -> FrameSet:
    """At most ``max_frames`` frames, evenly spaced over the whole set (every env and episode), with their
    questions (only ``kinds`` if given); frames are renumbered."""
    candidates = sorted({e.frame for e in data.examples if kinds is None or e.kind in kinds})
    if max_frames is not None and len(candidates) > max_frames:
        candidates = [candidates[int(i * len(candidates) / max_frames)] for i in range(max_frames)]
    where = {f: i for i, f in enumerate(candidates)}
    examples = [Example(where[e.frame], e.prompt, e.options, e.target, e.kind, e.env_id) for e in data.examples
                if e.frame in where and (kinds is None or e.kind in kinds)]
    return FrameSet(data.frames[candidates], examples)
