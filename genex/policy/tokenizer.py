"""A word-level tokenizer for genex prompts, built from the training prompts and saved with the model.

Text is split into lower-cased words, single digits and single punctuation
marks (``"letter_23.txt"`` -> ``letter _ 2 3 . txt``), so unseen file names and
numbers still map to known pieces. Unknown words map to ``<unk>``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterable

from genex.errors import CheckpointMismatchError

__all__ = ["WordTokenizer", "TokenizerMismatchError"]

_SPLIT = re.compile(r"[a-z]+|\d|[^\sa-z\d]")
SPECIALS = ("<pad>", "<unk>", "<sep>")


class TokenizerMismatchError(CheckpointMismatchError):
    """A checkpoint was saved with another tokenizer than the one given."""


class WordTokenizer:
    """Maps text to ``int64`` ids; ``<pad>`` is id 0, ``<unk>`` id 1, ``<sep>`` id 2."""

    pad_id = 0
    unk_id = 1
    sep_id = 2

    def __init__(self, vocab: list[str]) -> None:
        if tuple(vocab[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"vocab must start with {SPECIALS}, got {vocab[:3]}")
        if len(set(vocab)) != len(vocab):
            raise ValueError("vocab has duplicate entries")
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}

    @staticmethod
    def split(text: str) -> list[str]:
        return _SPLIT.findall(text.lower())

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> "WordTokenizer":
        counts = Counter(w for t in texts for w in cls.split(t))
        words = sorted(w for w, c in counts.items() if c >= min_count)
        return cls(list(SPECIALS) + words)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(w, self.unk_id) for w in self.split(text)]

    def unknown_words(self, text: str) -> list[str]:
        return [w for w in self.split(text) if w not in self.index]

    @property
    def fingerprint(self) -> str:
        """A short hash of the vocabulary: checkpoints record it and loading checks it."""
        return hashlib.sha256("\n".join(self.vocab).encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps({"type": "genex-word-tokenizer", "version": 1, "vocab": self.vocab,
                           "fingerprint": self.fingerprint})

    @classmethod
    def from_json(cls, text: str) -> "WordTokenizer":
        data = json.loads(text)
        if data.get("type") != "genex-word-tokenizer":
            raise ValueError(f"not a genex tokenizer file (type={data.get('type')!r})")
        tok = cls(data["vocab"])
        if data.get("fingerprint") not in (None, tok.fingerprint):
            raise ValueError("tokenizer file is corrupt: its fingerprint does not match its vocabulary")
        return tok

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "WordTokenizer":
        return cls.from_json(Path(path).read_text())
