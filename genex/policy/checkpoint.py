"""Tiny VLM checkpoints: a folder with ``model.safetensors``, ``config.json`` and ``tokenizer.json``.

``config.json`` holds the architecture (:class:`TinyVLMConfig`), the tokenizer
fingerprint, what labels it was trained on, the command and data that made it,
and its evaluation metrics. Loading checks the weights, the config and the
tokenizer against each other and fails with a message that says what to do.
Writes are atomic (temporary folder, then rename).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from genex.errors import CheckpointError, CheckpointMismatchError, CorruptCheckpointError
from genex.io import replace_folder
from genex.policy.model import TinyVLM, TinyVLMConfig
from genex.policy.tokenizer import TokenizerMismatchError, WordTokenizer

__all__ = ["CheckpointError", "save_tiny_vlm", "load_tiny_vlm", "CHECKPOINT_FORMAT", "encode_texts"]

CHECKPOINT_FORMAT = "genex-tiny-vlm"
CHECKPOINT_VERSION = 1


def encode_texts(tokenizer: WordTokenizer, texts: list[str], max_len: int, *, keep: str = "end") -> torch.Tensor:
    """Texts -> ``int64[len(texts), P]`` ids, 0-padded; longer texts keep their ``end`` (or ``start``)."""
    rows = []
    for t in texts:
        ids = tokenizer.encode(t)
        if len(ids) > max_len:
            ids = ids[-max_len:] if keep == "end" else ids[:max_len]
        rows.append(ids or [tokenizer.pad_id])
    width = max(len(r) for r in rows)
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def save_tiny_vlm(path: str | Path, model: TinyVLM, tokenizer: WordTokenizer, **meta: Any) -> Path:
    """Write ``model`` + ``tokenizer`` + ``meta`` (command, data, metrics, ...) to folder ``path``, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    if model.config.tokenizer_fingerprint != tokenizer.fingerprint:
        raise CheckpointError("model.config.tokenizer_fingerprint does not match the tokenizer being saved")
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": CHECKPOINT_FORMAT})
    config = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "model": model.config.to_dict(), **meta}
    (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
    tokenizer.save(tmp / "tokenizer.json")
    replace_folder(tmp, path)
    return path


def load_tiny_vlm(path: str | Path, tokenizer: WordTokenizer | None = None,
                  map_location: str = "cpu") -> tuple[TinyVLM, WordTokenizer, dict[str, Any]]:
    """Load a checkpoint folder; returns ``(model in eval mode, tokenizer, config.json as a dict)``.

    Passing ``tokenizer`` checks that the checkpoint was trained with it
    (:class:`TokenizerMismatchError` otherwise).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a tiny-VLM checkpoint folder (expected model.safetensors, "
                              "config.json, tokenizer.json); train one with `genex train-policy`")
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        if not (path / name).exists():
            raise CorruptCheckpointError(f"{path / name} is missing: the checkpoint is incomplete")
    try:
        meta = json.loads((path / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise CorruptCheckpointError(f"{path / 'config.json'} is not valid JSON: {e}") from e
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(f"{path} holds a {meta.get('format')!r} checkpoint, not {CHECKPOINT_FORMAT!r}")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointMismatchError(f"{path} has checkpoint version {meta.get('version')}, this genex reads "
                              f"{CHECKPOINT_VERSION}")
    try:
        cfg = TinyVLMConfig.from_dict(meta["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptCheckpointError(f"{path / 'config.json'} has an invalid model config: {e}") from e
    try:
        saved_tok = WordTokenizer.load(path / "tokenizer.json")
    except (ValueError, KeyError) as e:
        raise CorruptCheckpointError(f"{path / 'tokenizer.json'} is invalid: {e}") from e
    if saved_tok.fingerprint != cfg.tokenizer_fingerprint or len(saved_tok) != cfg.vocab_size:
        raise TokenizerMismatchError(
            f"{path}: tokenizer.json (fingerprint {saved_tok.fingerprint}, {len(saved_tok)} words) is not the "
            f"tokenizer the weights were trained with (fingerprint {cfg.tokenizer_fingerprint}, "
            f"{cfg.vocab_size} words); use the tokenizer.json that came with the weights")
    if tokenizer is not None and tokenizer.fingerprint != saved_tok.fingerprint:
        raise TokenizerMismatchError(
            f"{path} was trained with tokenizer {saved_tok.fingerprint}, not the given {tokenizer.fingerprint}; "
            "load the checkpoint without a tokenizer to use its own, or retrain with yours")
    try:
        state = load_file(str(path / "model.safetensors"), device=map_location)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CorruptCheckpointError(f"{path / 'model.safetensors'} is corrupt or unreadable: {e}") from e
    model = TinyVLM(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match config.json's architecture: {e}") from e
    model.eval()
    return model, saved_tok, meta
