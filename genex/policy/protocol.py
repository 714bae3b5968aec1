"""The ``Policy`` protocol: tagged images + a prompt + questions (+ actions) in, answer probabilities out.

Every backend (``tiny``, ``hf``, ``openai``) implements :class:`Policy`::

    response = policy.answer(images, prompt, questions, actions=())

* ``images``: :class:`TaggedImage` s, each an ``uint8[H, W, 3]`` frame tagged
  ``imagined`` (from a world model) or real, with its ``step`` and, for
  imagined frames, which ``sample`` of the world model it comes from;
* ``prompt``: the task instruction (the part that repeats every step);
* ``questions``: objects with ``id``, ``text`` and ``answers`` (e.g.
  ``genex.envs.Question`` or :class:`PolicyQuestion`);
* ``actions``: optional action names the policy may pick from.

:class:`PolicyResponse` gives, per question, ``per_image`` probabilities
(``float[N, n_answers]``, row ``i`` for ``images[i]``), and ``probs``: the mean
over the real images (over all images when none is real). ``action`` (an index
into ``actions``) and ``rationale`` are optional; ``trace`` records what the
backend did (timings, cache hits, parse fallbacks) for the decision trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

__all__ = [
    "TaggedImage",
    "PolicyQuestion",
    "PolicyResponse",
    "Policy",
    "PolicyInputError",
    "UnknownAnswerError",
    "validate_images",
    "validate_questions",
    "aggregate",
]


class PolicyInputError(ValueError):
    """Images, questions or options a policy cannot take (wrong dtype, shape, empty, ...)."""


class UnknownAnswerError(PolicyInputError):
    """Answer options a backend cannot represent (e.g. words the tiny VLM's tokenizer never saw)."""


@dataclass(frozen=True)
class TaggedImage:
    """One frame: ``image`` uint8[H, W, 3]; ``imagined`` frames come from a world model (``sample`` of S)."""

    image: np.ndarray
    step: int = 0
    imagined: bool = False
    sample: int = 0

    @property
    def tag(self) -> str:
        return f"{'imagined' if self.imagined else 'real'} step {self.step}" + (
            f" sample {self.sample}" if self.imagined else "")


@dataclass(frozen=True)
class PolicyQuestion:
    id: str
    text: str
    answers: tuple[str, ...]


@dataclass
class PolicyResponse:
    probs: dict[str, np.ndarray]
    per_image: dict[str, np.ndarray]
    imagined: np.ndarray  # bool[N], aligned with per_image rows
    action: int | None = None
    rationale: str | None = None
    trace: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Policy(Protocol):
    name: str

    def answer(self, images: Sequence[TaggedImage], prompt: str, questions: Sequence[Any],
               actions: Sequence[str] = ()) -> PolicyResponse: ...


def validate_images(images: Sequence[TaggedImage], size: tuple[int, int] | None = None) -> None:
    """Raise :class:`PolicyInputError` unless every image is a ``uint8[H, W, 3]`` array (of ``size`` if given)."""
    if len(images) == 0:
        raise PolicyInputError("no images given: pass at least one TaggedImage")
    for i, im in enumerate(images):
        if not isinstance(im, TaggedImage):
            raise PolicyInputError(f"images[{i}] is a {type(im).__name__}, expected TaggedImage(image, step, imagined)")
        a = im.image
        if not isinstance(a, np.ndarray):
            raise PolicyInputError(f"images[{i}] ({im.tag}) is a {type(a).__name__}, expected a numpy array")
        if a.dtype != np.uint8:
            raise PolicyInputError(f"images[{i}] ({im.tag}) has dtype {a.dtype}, expected uint8 in [0, 255]; "
                                   "convert with (x * 255).clip(0, 255).astype(np.uint8) if it is float in [0, 1]")
        if a.ndim != 3 or a.shape[2] != 3:
            raise PolicyInputError(f"images[{i}] ({im.tag}) has shape {a.shape}, expected [H, W, 3] RGB")
        if size is not None and a.shape[:2] != tuple(size):
            raise PolicyInputError(f"images[{i}] ({im.tag}) is {a.shape[0]}x{a.shape[1]}, this policy takes "
                                   f"{size[0]}x{size[1]}; resize it, or build the policy with resize=True")


def validate_questions(questions: Sequence[Any]) -> None:
    if len(questions) == 0:
        raise PolicyInputError("no questions given")
    seen = set()
    for q in questions:
        for attr in ("id", "text", "answers"):
            if not hasattr(q, attr):
                raise PolicyInputError(f"question {q!r} has no {attr!r}; use PolicyQuestion(id, text, answers)")
        if q.id in seen:
            raise PolicyInputError(f"duplicate question id {q.id!r}")
        seen.add(q.id)
        answers = tuple(q.answers)
        if len(answers) < 2 or len(set(answers)) != len(answers) or not all(isinstance(a, str) and a.strip()
                                                                          for a in answers):
            raise PolicyInputError(f"question {q.id!r} needs >= 2 distinct non-empty answer options, got {answers}")


def aggregate(per_image: np.ndarray, imagined: np.ndarray) -> np.ndarray:
    """Mean over real rows (over all rows when none is real): ``float[N, A] -> float[A]``."""
    rows = per_image[~imagined] if (~imagined).any() else per_image
    p = rows.mean(0)
    return p / p.sum()
