"""The ``tiny`` backend: :class:`TinyPolicy`, the tiny VLM behind the :class:`Policy` protocol.

Efficiency (each switchable, so ``bench/policy_speed.py`` can measure it):

* prefix cache (``prefix_cache=True``): each prompt (instruction + question)
  is encoded once into per-layer keys/values and reused across frames and
  steps (an LRU of ``max_cached_prompts`` prompts);
* batched vision (``batch_frames=True``): all frames of one decision go through
  the vision encoder in one batch (``False``: one by one);
* history as visual tokens: real frames are kept as their encoded (reduced)
  visual tokens (plus, for glimpse models, their glimpse screen features),
  keyed by content, for the last ``history_size`` real frames;
  a frame seen again (the planner re-sends the current real frame at every
  imagined branch) is not re-encoded, and ``answer(..., use_history=True)``
  also answers about the remembered frames without any raw frame being kept.
* several calls at once (:meth:`TinyPolicy.answer_many`): the frames of many calls (e.g. the planners of
  many episodes, ``genex compare --executor batched``) in one vision batch and one fusion batch.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from genex.policy.checkpoint import encode_texts, load_tiny_vlm
from genex.policy.data import format_prompt, resize_frames
from genex.policy.model import REDUCER_MODES, PromptCache, TinyVLM
from genex.policy.protocol import (PolicyResponse, TaggedImage, UnknownAnswerError, aggregate,
                                   validate_images, validate_questions)
from genex.policy.tokenizer import WordTokenizer

__all__ = ["TinyPolicy"]

log = logging.getLogger(__name__)


class TinyPolicy:
    """Answers questions about frames with a :class:`TinyVLM`.

    Args:
        model, tokenizer: from :func:`genex.policy.checkpoint.load_tiny_vlm` (or use :meth:`from_checkpoint`).
        reducer, k: visual token reduction (``none`` / ``cls`` / ``packer``); default: the checkpoint's.
        resize: resize frames of another size to the model's ``image_size`` (else a clear error).
    """

    name = "tiny"

    def __init__(self, model: TinyVLM, tokenizer: WordTokenizer, *, reducer: str | None = None,
                 k: int | None = None, prefix_cache: bool = True, batch_frames: bool = True,
                 history_size: int = 16, resize: bool = False, max_cached_prompts: int = 512) -> None:
        if tokenizer.fingerprint != model.config.tokenizer_fingerprint:
            from genex.policy.tokenizer import TokenizerMismatchError

            raise TokenizerMismatchError(
                f"the model was trained with tokenizer {model.config.tokenizer_fingerprint}, not "
                f"{tokenizer.fingerprint}; load both from the same checkpoint")
        reducer = model.config.reducer if reducer is None else reducer
        if reducer not in REDUCER_MODES:
            raise ValueError(f"reducer must be one of {REDUCER_MODES}, got {reducer!r}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.reducer = reducer
        self.k = model.config.reducer_k if k is None else int(k)
        self.prefix_cache = prefix_cache
        self.batch_frames = batch_frames
        self.history_size = history_size
        self.resize = resize
        self.max_cached_prompts = max_cached_prompts
        self._prompts: OrderedDict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = OrderedDict()
        # content hash -> (step, visual tokens, glimpse screen features or None)
        self._history: OrderedDict[bytes, tuple[int, torch.Tensor, torch.Tensor | None]] = OrderedDict()
        self.stats = {"prompt_hits": 0, "prompt_misses": 0, "frames_encoded": 0, "history_hits": 0}

    @classmethod
    def from_checkpoint(cls, path: str | Path, tokenizer: WordTokenizer | None = None, **kwargs: Any) -> "TinyPolicy":
        model, tok, _ = load_tiny_vlm(path, tokenizer=tokenizer)
        return cls(model, tok, **kwargs)

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    def reset(self) -> None:
        """Forget the visual history (call at the start of an episode); the prompt cache stays."""
        self._history.clear()

    # -- pieces -----------------------------------------------------------------------------------
    def _check_options(self, questions: Sequence[Any]) -> None:
        for q in questions:
            for a in q.answers:
                unknown = self.tokenizer.unknown_words(a)
                if unknown or not self.tokenizer.encode(a):
                    raise UnknownAnswerError(
                        f"answer option {a!r} of question {q.id!r} has words this tiny VLM's tokenizer does not "
                        f"know ({unknown or 'empty'}); use options it was trained on (e.g. 'yes'/'no') or another "
                        "backend")

    def _frames(self, images: Sequence[TaggedImage]) -> np.ndarray:
        size = self.image_size
        arrays = [im.image for im in images]
        if self.resize:
            return np.stack([resize_frames(a[None], size)[0] for a in arrays])
        return np.stack(arrays)

    def _encode_frames(self, images: Sequence[TaggedImage]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Visual tokens ``float[N, V, D]`` and glimpse screen features ``float[N, C, S/2, S/2]`` (None when the
        model has no glimpses); real frames come from / go to the history when known."""
        frames = self._frames(images)
        keys = [hashlib.blake2b(f.tobytes(), digest_size=16).digest() if not im.imagined else None
                for f, im in zip(frames, images)]
        visual: list[torch.Tensor | None] = [None] * len(images)
        screens: list[torch.Tensor | None] = [None] * len(images)
        todo = []
        for i, key in enumerate(keys):
            if key is not None and key in self._history:
                _, visual[i], screens[i] = self._history[key]
                self._history.move_to_end(key)
                self.stats["history_hits"] += 1
            else:
                todo.append(i)
        if todo:
            batch = torch.from_numpy(np.ascontiguousarray(frames[todo]))
            chunks = [batch] if self.batch_frames else [batch[j: j + 1] for j in range(len(batch))]
            enc = torch.cat([self.model.encode_images(c, self.reducer, self.k) for c in chunks])
            scr = ([self.model.encode_screens(c) for c in chunks] if self.model.glimpse is not None else None)
            scr_all = torch.cat(scr) if scr else None  # type: ignore[arg-type]
            self.stats["frames_encoded"] += len(todo)
            for j, i in enumerate(todo):
                visual[i], screens[i] = enc[j], (None if scr_all is None else scr_all[j])
                if keys[i] is not None and self.history_size > 0:
                    self._history[keys[i]] = (images[i].step, visual[i], screens[i])
                    while len(self._history) > self.history_size:
                        self._history.popitem(last=False)
        stacked = torch.stack(visual)  # type: ignore[arg-type]
        return stacked, (None if self.model.glimpse is None else torch.stack(screens))  # type: ignore[arg-type]

    def _encode_prompts(self, prompts: list[str]) -> PromptCache:
        """Prompt caches for ``prompts`` (reused from the LRU when ``prefix_cache``), padded to one length."""
        per: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        misses = [p for p in dict.fromkeys(prompts) if not (self.prefix_cache and p in self._prompts)]
        if misses:
            ids = encode_texts(self.tokenizer, misses, self.model.config.max_prompt_len)
            enc = self.model.encode_prompts(ids)
            for i, p in enumerate(misses):
                n = int(enc.mask[i].sum())
                per[p] = ([k[i: i + 1, :, :n] for k in enc.keys], [v[i: i + 1, :, :n] for v in enc.values])
                if self.prefix_cache:
                    self._prompts[p] = per[p]
                    while len(self._prompts) > self.max_cached_prompts:
                        self._prompts.popitem(last=False)
        self.stats["prompt_misses"] += len(misses)
        for p in dict.fromkeys(prompts):
            if p not in per:
                per[p] = self._prompts[p]
                self._prompts.move_to_end(p)
                self.stats["prompt_hits"] += 1
        width = max(per[p][0][0].shape[2] for p in prompts)
        keys, values = [], []
        mask = torch.zeros(len(prompts), width, dtype=torch.bool)
        for i, p in enumerate(prompts):
            mask[i, : per[p][0][0].shape[2]] = True
        for layer in range(len(self.model.blocks)):
            ks, vs = [], []
            for p in prompts:
                k, v = per[p][0][layer], per[p][1][layer]
                pad = width - k.shape[2]
                if pad:
                    k = torch.nn.functional.pad(k, (0, 0, 0, pad))
                    v = torch.nn.functional.pad(v, (0, 0, 0, pad))
                ks.append(k)
                vs.append(v)
            keys.append(torch.cat(ks))
            values.append(torch.cat(vs))
        return PromptCache(keys, values, mask)

    # -- the protocol -------------------------------------------------------------------------------
    @torch.no_grad()
    def answer(self, images: Sequence[TaggedImage], prompt: str, questions: Sequence[Any],
               actions: Sequence[str] = (), use_history: bool = False) -> PolicyResponse:
        """See :class:`genex.policy.protocol.Policy`. ``use_history`` adds one row per remembered real frame
        not in ``images`` (after the given images; their ``imagined`` flag is False)."""
        validate_images(images, None if self.resize else (self.image_size, self.image_size))
        validate_questions(questions)
        self._check_options(questions)
        t0 = time.perf_counter()
        visual, screens = self._encode_frames(images)
        imagined = np.array([im.imagined for im in images], dtype=bool)
        if use_history:
            current = {hashlib.blake2b(f.tobytes(), digest_size=16).digest() for f in self._frames(images)}
            extra = [entry for key, entry in self._history.items() if key not in current]
            if extra:
                visual = torch.cat([visual, torch.stack([e[1] for e in extra])])
                if screens is not None:
                    screens = torch.cat([screens, torch.stack([e[2] for e in extra])])
                imagined = np.concatenate([imagined, np.zeros(len(extra), bool)])
        t1 = time.perf_counter()
        n, nq = len(visual), len(questions)
        texts = [format_prompt(prompt, q.text) for q in questions]
        prompts = self._encode_prompts(texts)
        q_index = torch.arange(nq).repeat(n)  # pair m = (image m // nq, question m % nq)
        frame_index = torch.arange(n).repeat_interleave(nq)
        glimpses = self.model.glimpse_tokens(screens, frame_index, [texts[j] for j in q_index.tolist()])
        readout = self.model.fuse(visual, prompts.select(q_index), frame_index, glimpses)
        per_image: dict[str, np.ndarray] = {}
        readout = readout.view(n, nq, -1)
        for j, q in enumerate(questions):
            opts = encode_texts(self.tokenizer, list(q.answers), self.model.config.max_option_len, keep="start")
            emb = self.model.embed_options(opts)  # [A, D]
            logits = self.model.score(readout[:, j], emb[None].expand(n, -1, -1))
            per_image[q.id] = torch.softmax(logits, -1).double().numpy()
        t2 = time.perf_counter()
        probs = {qid: aggregate(p, imagined) for qid, p in per_image.items()}
        trace = {"backend": "tiny", "reducer": self.reducer, "k": self.k, "images": len(images),
                 "history_rows": int(n - len(images)), "encode_s": round(t1 - t0, 5), "fuse_s": round(t2 - t1, 5),
                 **{k: v for k, v in self.stats.items()}}
        return PolicyResponse(probs=probs, per_image=per_image, imagined=imagined, trace=trace)

    @torch.no_grad()
    def answer_many(self, requests: Sequence[tuple[Sequence[TaggedImage], str, Sequence[Any]]]
                    ) -> list[PolicyResponse]:
        """Several :meth:`answer` calls ``(images, prompt, questions)`` as one batch: every frame through the vision
        encoder at once, every (image, question) pair through the fusion at once. Each response equals that
        call's own ``answer(images, prompt, questions)`` up to the float arithmetic of a larger batch (one
        request alone: exactly). The calls may have different prompts and questions."""
        if not requests:
            return []
        for images, _, questions in requests:
            validate_images(images, None if self.resize else (self.image_size, self.image_size))
            validate_questions(questions)
            self._check_options(questions)
        t0 = time.perf_counter()
        visual, screens = self._encode_frames([im for images, _, _ in requests for im in images])
        t1 = time.perf_counter()
        texts = [[format_prompt(prompt, q.text) for q in questions] for _, prompt, questions in requests]
        unique = list(dict.fromkeys(t for ts in texts for t in ts))
        where = {t: i for i, t in enumerate(unique)}
        prompts = self._encode_prompts(unique)
        q_index, frame_index, offset = [], [], 0
        for (images, _, _), ts in zip(requests, texts):  # pair m of a call = (image m // nq, question m % nq)
            for i in range(len(images)):
                q_index += [where[t] for t in ts]
                frame_index += [offset + i] * len(ts)
            offset += len(images)
        q_idx, f_idx = torch.tensor(q_index, dtype=torch.long), torch.tensor(frame_index, dtype=torch.long)
        glimpses = self.model.glimpse_tokens(screens, f_idx, [unique[j] for j in q_index])
        readout = self.model.fuse(visual, prompts.select(q_idx), f_idx, glimpses)
        options: dict[tuple[str, ...], torch.Tensor] = {}
        out, start = [], 0
        for images, _, questions in requests:
            n, nq = len(images), len(questions)
            rows = readout[start:start + n * nq].view(n, nq, -1)
            start += n * nq
            per_image: dict[str, np.ndarray] = {}
            for j, q in enumerate(questions):
                answers = tuple(q.answers)
                if answers not in options:
                    opts = encode_texts(self.tokenizer, list(answers), self.model.config.max_option_len, keep="start")
                    options[answers] = self.model.embed_options(opts)  # [A, D]
                logits = self.model.score(rows[:, j], options[answers][None].expand(n, -1, -1))
                per_image[q.id] = torch.softmax(logits, -1).double().numpy()
            imagined = np.array([im.imagined for im in images], dtype=bool)
            probs = {qid: aggregate(p, imagined) for qid, p in per_image.items()}
            trace = {"backend": "tiny", "reducer": self.reducer, "k": self.k, "images": n, "history_rows": 0,
                     "batched_calls": len(requests), "encode_s": round(t1 - t0, 5),
                     "fuse_s": round(time.perf_counter() - t1, 5), **{k: v for k, v in self.stats.items()}}
            out.append(PolicyResponse(probs=probs, per_image=per_image, imagined=imagined, trace=trace))
        return out
