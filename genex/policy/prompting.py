"""The JSON-answer prompt shared by the ``hf`` and ``openai`` backends and ``genex serve-policy``.

The prompt asks for one JSON object::

    {"images": [{"<question id>": {"<option>": <probability>, ...}, ...}, ...],   # one entry per image
     "action": "<one of the action names, or null>",
     "rationale": "<one short sentence>"}

and carries the questions as a ``Questions (JSON):`` line so that a server can
read them back (:func:`parse_prompt`). :func:`parse_json_answer` never raises
on model output: anything malformed becomes uniform probabilities (or a
best-effort reading) with a note in ``notes``, which backends put in the trace.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

import numpy as np

from genex.policy.protocol import TaggedImage

__all__ = ["build_json_prompt", "parse_prompt", "PromptFormatError", "parse_json_answer", "extract_json_object"]

_QUESTIONS = "Questions (JSON): "
_ACTIONS = "Actions (JSON): "
_IMAGES = "Images (JSON): "
_INSTRUCTION = "Instruction: "


def build_json_prompt(instruction: str, questions: Sequence[Any], images: Sequence[TaggedImage],
                      actions: Sequence[str] = ()) -> str:
    qs = [{"id": q.id, "text": q.text, "answers": list(q.answers)} for q in questions]
    tags = [{"index": i, "step": im.step, "imagined": im.imagined, "sample": im.sample}
            for i, im in enumerate(images)]
    example = {"images": [{q.id: {a: round(1 / len(q.answers), 2) for a in q.answers} for q in questions}],
               "action": actions[0] if actions else None, "rationale": "..."}
    lines = [
        "You see camera frames or app screenshots; some are real, some are imagined by a world model.",
        f"{_INSTRUCTION}{instruction}",
        f"{_IMAGES}{json.dumps(tags)}",
        f"{_QUESTIONS}{json.dumps(qs)}",
    ]
    if actions:
        lines.append(f"{_ACTIONS}{json.dumps(list(actions))}")
    lines += [
        "For every image, in order, give a probability for each answer option of each question, "
        "judging only from what that image shows." + (" Then pick one action." if actions else ""),
        "Reply with one JSON object and nothing else, like: " + json.dumps(example),
    ]
    return "\n".join(lines)


class PromptFormatError(ValueError):
    """A prompt whose ``... (JSON):`` lines are not what :func:`build_json_prompt` writes; says which item is wrong."""


def _json_line(label: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise PromptFormatError(f"the '{label.strip()}' line is not valid JSON: {e.msg} at character {e.pos}") from e


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _check_questions(questions: Any) -> list[dict[str, Any]]:
    where = f"the '{_QUESTIONS.strip()}' line"
    if not isinstance(questions, list) or not questions:
        raise PromptFormatError(f"{where} must be a non-empty JSON list of questions like "
                                '{"id": "q1", "text": "Is a pedestrian visible?", "answers": ["yes", "no"]}, got '
                                + (_kind(questions) if questions != [] else "an empty list"))
    seen: set[str] = set()
    for i, q in enumerate(questions):
        if not isinstance(q, dict):
            raise PromptFormatError(f"{where}: questions[{i}] is {_kind(q)}, expected an object with "
                                    "'id', 'text' and 'answers'")
        for key, ok, expected in (("id", lambda v: isinstance(v, str) and v.strip(), "a non-empty string"),
                                  ("text", lambda v: isinstance(v, str), "a string"),
                                  ("answers", lambda v: isinstance(v, list), "a list of strings")):
            if key not in q:
                raise PromptFormatError(f"{where}: questions[{i}] has no {key!r} (expected {expected})")
            if not ok(q[key]):
                raise PromptFormatError(f"{where}: questions[{i}].{key} is {_kind(q[key])}, expected {expected}")
        answers = q["answers"]
        if len(answers) < 2 or not all(isinstance(a, str) and a.strip() for a in answers) \
                or len(set(answers)) != len(answers):
            raise PromptFormatError(f"{where}: questions[{i}].answers must be >= 2 distinct non-empty strings, "
                                    f"got {answers!r}")
        if q["id"] in seen:
            raise PromptFormatError(f"{where}: questions[{i}].id {q['id']!r} is used twice")
        seen.add(q["id"])
    return questions


def _check_tags(tags: Any) -> list[dict[str, Any]]:
    where = f"the '{_IMAGES.strip()}' line"
    if not isinstance(tags, list):
        raise PromptFormatError(f"{where} must be a JSON list, got {_kind(tags)}")
    for i, t in enumerate(tags):
        if not isinstance(t, dict):
            raise PromptFormatError(f"{where}: images[{i}] is {_kind(t)}, expected an object like "
                                    '{"index": 0, "step": 0, "imagined": false, "sample": 0}')
        for key, typ in (("index", int), ("step", int), ("sample", int), ("imagined", bool)):
            value = t.get(key)
            if value is not None and (not isinstance(value, typ) or (typ is int and isinstance(value, bool))):
                raise PromptFormatError(f"{where}: images[{i}].{key} is {_kind(value)}, expected "
                                        + ("a boolean" if typ is bool else "an integer"))
    return tags


def parse_prompt(text: str) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Read back ``(instruction, questions, image tags, actions)`` from :func:`build_json_prompt`'s text.

    Raises :class:`PromptFormatError` (a ValueError) naming the line and item that is wrong, so that a server
    can answer a malformed prompt with a 400 that says what to fix.
    """
    instruction, questions, tags, actions = "", None, [], []
    for line in text.splitlines():
        if line.startswith(_INSTRUCTION):
            instruction = line[len(_INSTRUCTION):]
        elif line.startswith(_QUESTIONS):
            questions = _check_questions(_json_line(_QUESTIONS, line[len(_QUESTIONS):]))
        elif line.startswith(_IMAGES):
            tags = _check_tags(_json_line(_IMAGES, line[len(_IMAGES):]))
        elif line.startswith(_ACTIONS):
            actions = _json_line(_ACTIONS, line[len(_ACTIONS):])
            if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
                raise PromptFormatError(f"the '{_ACTIONS.strip()}' line must be a JSON list of strings")
    if questions is None:
        raise PromptFormatError(f"the prompt has no '{_QUESTIONS.strip()}' line; build it with build_json_prompt")
    return instruction, questions, tags, actions


def extract_json_object(text: str) -> Any:
    """The first JSON object in ``text`` (code fences and chatter around it are ignored); raises ValueError."""
    text = re.sub(r"```(?:json)?", "", text)
    start = text.find("{")
    while start != -1:
        depth, in_str, esc = 0, False, False
        for i in range(start, len(text)):
            c = text[i]
            if in_str:
                esc = (c == "\\") and not esc
                if c == '"' and not esc:
                    in_str = False
                continue
            if c == '"':
                in_str = True
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    try:
                        return json.loads(text[start: i + 1])
                    except json.JSONDecodeError:
                        break
        start = text.find("{", start + 1)
    raise ValueError("no JSON object found")


def _read_probs(value: Any, answers: Sequence[str]) -> tuple[np.ndarray | None, str | None]:
    n = len(answers)
    lower = [a.lower() for a in answers]
    if isinstance(value, str):
        if value.strip().lower() in lower:
            p = np.zeros(n)
            p[lower.index(value.strip().lower())] = 1.0
            return p, None
        return None, f"answer {value!r} is not one of {list(answers)}"
    if isinstance(value, dict):
        p = np.zeros(n)
        unknown = []
        for k, v in value.items():
            if str(k).strip().lower() not in lower:
                unknown.append(k)
                continue
            try:
                x = float(v)
            except (TypeError, ValueError):
                return None, f"probability {v!r} for {k!r} is not a number"
            if not np.isfinite(x) or x < 0:
                return None, f"probability {v!r} for {k!r} is not a finite non-negative number"
            p[lower.index(str(k).strip().lower())] = x
        if p.sum() <= 0:
            return None, f"no probability for any of {list(answers)} (got keys {list(value)})"
        note = f"ignored unknown options {unknown}" if unknown else None
        return p / p.sum(), note
    if isinstance(value, list) and len(value) == n:
        try:
            p = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            return None, f"list {value!r} is not numbers"
        if np.all(np.isfinite(p)) and np.all(p >= 0) and p.sum() > 0:
            return p / p.sum(), None
    return None, f"cannot read answer {value!r}"


def parse_json_answer(text: str, questions: Sequence[Any], n_images: int, actions: Sequence[str] = ()
                      ) -> tuple[dict[str, np.ndarray], int | None, str | None, list[str]]:
    """Model output -> ``(per_image {qid: float[n_images, A]}, action index, rationale, notes)``; never raises."""
    notes: list[str] = []
    per_image = {q.id: np.full((n_images, len(q.answers)), 1 / len(q.answers)) for q in questions}
    try:
        obj = extract_json_object(text)
    except ValueError:
        notes.append(f"fallback: output is not JSON, answers set to uniform (output started {text[:80]!r})")
        return per_image, None, None, notes
    if not isinstance(obj, dict):
        notes.append("fallback: JSON is not an object, answers set to uniform")
        return per_image, None, None, notes
    rows = obj.get("images")
    if not isinstance(rows, list):
        joint = obj.get("answers", obj)
        if isinstance(joint, dict) and any(q.id in joint for q in questions):
            rows = [joint] * n_images
            notes.append("no per-image answers: the joint answer was used for every image")
        else:
            rows = []
            notes.append("fallback: no 'images' list, answers set to uniform")
    if rows and len(rows) != n_images:
        notes.append(f"{len(rows)} image entries for {n_images} images; missing ones are uniform")
    for i, row in enumerate(rows[:n_images]):
        if not isinstance(row, dict):
            notes.append(f"image {i}: entry is not an object, uniform")
            continue
        for q in questions:
            if q.id not in row:
                notes.append(f"image {i}: no answer for {q.id!r}, uniform")
                continue
            p, note = _read_probs(row[q.id], q.answers)
            if note:
                notes.append(f"image {i}, {q.id!r}: {note}" + ("" if p is not None else ", uniform"))
            if p is not None:
                per_image[q.id][i] = p
    action = None
    raw = obj.get("action")
    if raw is not None and actions:
        names = [a.lower() for a in actions]
        if isinstance(raw, str) and raw.strip().lower() in names:
            action = names.index(raw.strip().lower())
        elif isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < len(actions):
            action = raw
        else:
            notes.append(f"action {raw!r} is not one of {list(actions)}; no action")
    rationale = obj.get("rationale")
    return per_image, action, str(rationale) if rationale is not None else None, notes
