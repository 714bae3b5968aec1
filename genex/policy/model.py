"""The tiny VLM: a ViT-style patch encoder, a visual token reducer, and a fusion transformer.

Shapes (``B`` frames, ``N = (image_size / patch_size) ** 2`` patches, ``D = dim``)::

    images  uint8[B, H, W, 3]  --VisionEncoder-->   float[B, 1 + N, D]   (CLS first)
            --TokenReducer(mode, k)-->              float[B, V, D]       V = 1 + N (none) or 1 + k
    prompt  int64[Q, P]        --encode_prompt-->   PromptCache (per-layer keys/values of the prompt)
    (visual tokens of pair i, prompt cache of pair i) --fuse--> float[M, D] (a readout token)
    readout . embed(answer option text)  -->  logits float[M, A]

The fusion transformer runs over ``[prompt tokens, visual tokens, readout]`` with
a prefix mask: prompt tokens attend only to the prompt, so their per-layer keys
and values do not depend on the image and are computed once per prompt
(:class:`PromptCache`) and reused across frames and steps.

Two architecture switches (``TinyVLMConfig``; the defaults are the first
shipped checkpoints' architecture, so those load unchanged):

* ``stem``: ``patch`` embeds each ``patch_size`` patch with one linear map (plain
  ViT); ``conv`` uses a stack of 3x3 stride-2 convolutions down to the same
  grid ("early convolutions help transformers see better", Xiao et al. 2021).
  The GUI questions ask to *read* 5-pixel-high words, which a single linear map
  of an 8x8 patch learns slowly.
* ``fusion``: ``full`` runs the fusion transformer over every visual token of
  every (frame, question) pair, so visual tokens are re-encoded for each
  question; ``readout`` updates only the readout token, which attends to the
  cached prompt keys/values and to per-layer keys/values of the visual tokens
  computed *once per frame* (a Q-Former-style readout). Per question the cost
  drops from ``O(layers * (P + V)^2)`` to ``O(layers * (P + V))``, which on a CPU
  turns training from fusion-bound (256 questions x 258 tokens per step) into
  vision-bound, so the same minutes buy many more steps.

A third, ``glimpse`` (channels, 0 = off; readout fusion only): pixel-phrase glimpses
(:mod:`genex.policy.glimpse`). The phrases a prompt is about are rendered and matched on the screen by
normalised cross-correlation of shared conv features; each (frame, phrase) pair becomes one glimpse
token ``float[M, G, D]`` that the readout attends to beside the visual tokens. The GUI model reads text
this way instead of from 8x8 patches (held-out GUI accuracy 0.80 without, see ``docs/policy.md``).

Reducer modes: ``none`` keeps every token; ``cls`` keeps CLS plus the ``k``
patch tokens most similar (cosine) to CLS, in raster order; ``packer`` keeps CLS
plus ``k`` tokens made by ``k`` learned queries cross-attending to the patches
(the first ``k`` of ``packer_queries`` queries, so one model serves every k).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genex.policy.glimpse import GlimpseMatcher, query_phrases

__all__ = ["TinyVLMConfig", "TinyVLM", "PromptCache", "REDUCER_MODES", "STEMS", "FUSIONS"]

REDUCER_MODES = ("none", "cls", "packer")
STEMS = ("patch", "conv")
FUSIONS = ("full", "readout")


@dataclass
class TinyVLMConfig:
    """Architecture of :class:`TinyVLM`; saved as ``config.json`` next to the weights."""

    image_size: int = 64
    patch_size: int = 8
    dim: int = 96
    heads: int = 4
    vision_layers: int = 3
    fusion_layers: int = 2
    mlp_ratio: int = 2
    vocab_size: int = 64
    max_prompt_len: int = 48
    max_option_len: int = 8
    packer_queries: int = 16
    reducer: str = "none"
    reducer_k: int = 16
    tokenizer_fingerprint: str = ""
    stem: str = "patch"
    fusion: str = "full"
    glimpse: int = 0
    glimpse_phrases: int = 8
    glimpse_labels: bool = False  # a multi-word label ending the instruction is one phrase (genex.policy.glimpse)

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not a multiple of heads {self.heads}")
        if self.reducer not in REDUCER_MODES:
            raise ValueError(f"reducer must be one of {REDUCER_MODES}, got {self.reducer!r}")
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {self.stem!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.glimpse and self.fusion != "readout":
            raise ValueError("pixel-phrase glimpses (glimpse > 0) need fusion='readout'")
        if self.glimpse_labels and not self.glimpse:
            raise ValueError("glimpse_labels changes which phrases the glimpses look for: it needs glimpse > 0")
        if self.glimpse < 0 or self.glimpse_phrases < 1:
            raise ValueError(f"glimpse channels must be >= 0 and glimpse_phrases >= 1, got {self.glimpse}, "
                             f"{self.glimpse_phrases}")
        if self.stem == "conv" and (self.patch_size & (self.patch_size - 1) or self.patch_size < 2):
            raise ValueError(f"the conv stem halves the frame per layer: patch_size must be a power of 2 >= 2, "
                             f"got {self.patch_size}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TinyVLMConfig":
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TinyVLM config keys {sorted(unknown)}: checkpoint from a newer genex?")
        return cls(**data)


def conv_stem(dim: int, patch_size: int) -> nn.Sequential:
    """3x3 stride-2 convolutions (channels doubling up to ``dim``) down by ``patch_size``, then a 1x1 to ``dim``."""
    n = int(math.log2(patch_size))
    widths = [max(dim >> (n - 1 - i), 16) for i in range(n)]
    layers: list[nn.Module] = []
    c = 3
    for w in widths:
        layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.GroupNorm(1, w), nn.GELU()]
        c = w
    layers.append(nn.Conv2d(c, dim, 1))
    return nn.Sequential(*layers)


class VisionEncoder(nn.Module):
    def __init__(self, cfg: TinyVLMConfig) -> None:
        super().__init__()
        self.patch = (nn.Conv2d(3, cfg.dim, cfg.patch_size, stride=cfg.patch_size) if cfg.stem == "patch"
                      else conv_stem(cfg.dim, cfg.patch_size))
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos = nn.Parameter(torch.randn(1, 1 + cfg.num_patches, cfg.dim) * 0.02)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, cfg.dim * cfg.mlp_ratio, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.vision_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``uint8[B, H, W, 3]`` (already at ``image_size``) -> ``float[B, 1 + N, D]``."""
        x = images.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1) + self.pos
        return self.norm(self.blocks(x))


class TokenReducer(nn.Module):
    """Visual token reduction: ``none`` / ``cls`` (CLS-similarity top-k) / ``packer`` (k learned queries)."""

    def __init__(self, cfg: TinyVLMConfig) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(1, cfg.packer_queries, cfg.dim) * 0.02)
        self.attn = nn.MultiheadAttention(cfg.dim, cfg.heads, batch_first=True)
        self.norm_q = nn.LayerNorm(cfg.dim)
        self.mlp = nn.Sequential(nn.LayerNorm(cfg.dim), nn.Linear(cfg.dim, cfg.dim * cfg.mlp_ratio), nn.GELU(),
                                 nn.Linear(cfg.dim * cfg.mlp_ratio, cfg.dim))
        self.max_k = cfg.packer_queries

    def forward(self, tokens: torch.Tensor, mode: str = "none", k: int = 16, keep_cls: bool = True) -> torch.Tensor:
        """Reduce ``float[B, 1 + N, D]``; ``keep_cls=False`` drops CLS from the result (an ablation)."""
        out = self._reduce(tokens, mode, k)
        return out if keep_cls else out[:, 1:]

    def _reduce(self, tokens: torch.Tensor, mode: str, k: int) -> torch.Tensor:
        cls, patches = tokens[:, :1], tokens[:, 1:]
        if mode == "none" or (mode == "cls" and k >= patches.shape[1]):
            return tokens
        if k < 1:
            raise ValueError(f"reducer k must be >= 1, got {k}")
        if mode == "cls":
            sim = F.cosine_similarity(patches, cls, dim=-1)  # [B, N]
            idx = sim.topk(k, dim=1).indices.sort(dim=1).values
            kept = patches.gather(1, idx[..., None].expand(-1, -1, patches.shape[-1]))
            return torch.cat([cls, kept], dim=1)
        if mode == "packer":
            if k > self.max_k:
                raise ValueError(f"the packer was built with {self.max_k} queries, cannot pack to k={k}")
            q = self.norm_q(self.queries[:, :k].expand(len(tokens), -1, -1))
            packed, _ = self.attn(q, patches, patches, need_weights=False)
            packed = packed + self.mlp(packed)
            return torch.cat([cls, packed], dim=1)
        raise ValueError(f"unknown reducer mode {mode!r}; choose one of {REDUCER_MODES}")


@dataclass
class PromptCache:
    """Per-layer keys/values of a batch of prompts: ``keys[l]: float[Q, heads, P, D/heads]``."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor  # bool[Q, P], True for real tokens
    extras: dict[str, Any] = field(default_factory=dict)

    def select(self, index: torch.Tensor) -> "PromptCache":
        return PromptCache([k[index] for k in self.keys], [v[index] for v in self.values], self.mask[index])


class FusionBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return q, k, v

    def _finish(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        b, h, n, dh = out.shape
        x = x + self.proj(out.transpose(1, 2).reshape(b, n, h * dh))
        return x + self.mlp(self.norm2(x))

    def prompt_forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = self._qkv(x)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        return self._finish(x, out), k, v

    def visual_kv(self, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys/values ``float[F, heads, V, D/heads]`` of fixed visual tokens (``readout`` fusion)."""
        _, k, v = self._qkv(visual)
        return k, v

    def readout_forward(self, r: torch.Tensor, pk: torch.Tensor, pv: torch.Tensor, pmask: torch.Tensor,
                        vk: torch.Tensor, vv: torch.Tensor,
                        glimpse: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Readout tokens ``float[M, R, D]`` attend to [prompt, visual (per pair), glimpses, themselves];
        visual and glimpse tokens stay fixed (``glimpse``: keys, values ``[M, heads, G, D/heads]``, mask ``[M, G]``)."""
        q, k, v = self._qkv(r)
        parts_k, parts_v = [pk, vk], [pv, vv]
        parts_m = [pmask, pmask.new_ones(len(pmask), vk.shape[2])]
        if glimpse is not None:
            parts_k.append(glimpse[0])
            parts_v.append(glimpse[1])
            parts_m.append(glimpse[2])
        keys, values = torch.cat(parts_k + [k], dim=2), torch.cat(parts_v + [v], dim=2)
        mask = torch.cat(parts_m + [pmask.new_ones(len(pmask), r.shape[1])], dim=1)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask[:, None, None, :])
        return self._finish(r, out)

    def visual_forward(self, y: torch.Tensor, pk: torch.Tensor, pv: torch.Tensor, pmask: torch.Tensor) -> torch.Tensor:
        q, k, v = self._qkv(y)
        keys, values = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
        mask = torch.cat([pmask, pmask.new_ones(len(pmask), y.shape[1])], dim=1)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask[:, None, None, :])
        return self._finish(y, out)


class TinyVLM(nn.Module):
    """Answers multiple-choice questions about single frames; see the module docstring."""

    def __init__(self, cfg: TinyVLMConfig) -> None:
        super().__init__()
        self.config = cfg
        self.vision = VisionEncoder(cfg)
        self.reducer = TokenReducer(cfg)
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.dim, padding_idx=0)
        self.prompt_pos = nn.Parameter(torch.randn(1, cfg.max_prompt_len, cfg.dim) * 0.02)
        self.visual_type = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.readout = nn.Parameter(torch.randn(1, 1, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(FusionBlock(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.fusion_layers))
        self.out_norm = nn.LayerNorm(cfg.dim)
        self.out_proj = nn.Linear(cfg.dim, cfg.dim)
        self.option_proj = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, cfg.dim))
        self.glimpse = (GlimpseMatcher(cfg.dim, cfg.glimpse, cfg.image_size, cfg.glimpse_phrases)
                        if cfg.glimpse else None)

    # -- stages -------------------------------------------------------------------------------
    def encode_images(self, images: torch.Tensor, mode: str | None = None, k: int | None = None,
                      keep_cls: bool = True) -> torch.Tensor:
        """``uint8[B, S, S, 3]`` -> reduced visual tokens ``float[B, V, D]`` (one batch)."""
        mode = self.config.reducer if mode is None else mode
        k = self.config.reducer_k if k is None else k
        return self.reducer(self.vision(images), mode, k, keep_cls) + self.visual_type

    def encode_prompts(self, prompt_ids: torch.Tensor) -> PromptCache:
        """``int64[Q, P]`` (0-padded) -> the prompts' per-layer keys/values."""
        if prompt_ids.shape[1] > self.config.max_prompt_len:
            raise ValueError(f"prompt of {prompt_ids.shape[1]} tokens > max_prompt_len {self.config.max_prompt_len}")
        mask = prompt_ids != 0
        mask[:, 0] = True  # an empty prompt still has one (pad) key to attend to
        x = self.tok_emb(prompt_ids) + self.prompt_pos[:, : prompt_ids.shape[1]]
        keys, values = [], []
        for block in self.blocks:
            x, k, v = block.prompt_forward(x, mask)
            keys.append(k)
            values.append(v)
        return PromptCache(keys, values, mask)

    def encode_screens(self, images: torch.Tensor) -> torch.Tensor | None:
        """``uint8[F, S, S, 3]`` -> the glimpse matcher's screen features ``float[F, C, S/2, S/2]`` (None without)."""
        return self.glimpse.encode_screens(images) if self.glimpse is not None else None

    def glimpse_tokens(self, screens: torch.Tensor | None, frame_index: torch.Tensor,
                       prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Glimpse tokens ``float[M, G, D]`` and mask ``bool[M, G]`` for pair m = (frame_index[m], prompts[m])."""
        if self.glimpse is None or screens is None:
            return None
        phrases = [query_phrases(p, self.config.glimpse_phrases, self.config.glimpse_labels) for p in prompts]
        return self.glimpse.tokens(screens, frame_index, phrases)

    def fuse(self, visual: torch.Tensor, prompts: PromptCache, frame_index: torch.Tensor | None = None,
             glimpses: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Visual tokens + the matching prompts (``M`` of them) -> readout ``float[M, D]``.

        ``visual`` is ``float[M, V, D]`` (one row per pair), or ``float[F, V, D]`` with ``frame_index int64[M]``
        saying which frame each pair asks about (the ``readout`` fusion then projects each frame once).
        ``glimpses``: per-pair glimpse tokens and mask from :meth:`glimpse_tokens` (readout fusion only).
        """
        if self.glimpse is not None and glimpses is None:
            raise ValueError("this model reads pixel-phrase glimpses: pass glimpses=model.glimpse_tokens(...) "
                             "(answering without them silently loses its reading)")
        if self.config.fusion == "readout":
            r = self.readout.expand(len(prompts.mask), -1, -1)
            for block, k, v in zip(self.blocks, prompts.keys, prompts.values):
                vk, vv = block.visual_kv(visual)
                if frame_index is not None:
                    vk, vv = vk[frame_index], vv[frame_index]
                g = None
                if glimpses is not None:
                    gk, gv = block.visual_kv(glimpses[0])
                    g = (gk, gv, glimpses[1])
                r = block.readout_forward(r, k, v, prompts.mask, vk, vv, g)
            return self.out_proj(self.out_norm(r[:, -1]))
        if glimpses is not None:
            raise ValueError("glimpse tokens need fusion='readout'")
        if frame_index is not None:
            visual = visual[frame_index]
        y = torch.cat([visual, self.readout.expand(len(visual), -1, -1)], dim=1)
        for block, k, v in zip(self.blocks, prompts.keys, prompts.values):
            y = block.visual_forward(y, k, v, prompts.mask)
        return self.out_proj(self.out_norm(y[:, -1]))

    def embed_options(self, option_ids: torch.Tensor) -> torch.Tensor:
        """``int64[..., L]`` (0-padded) -> ``float[..., D]``: mean token embedding, projected."""
        mask = (option_ids != 0).float()[..., None]
        mean = (self.tok_emb(option_ids) * mask).sum(-2) / mask.sum(-2).clamp(min=1.0)
        return self.option_proj(mean)

    def score(self, readout: torch.Tensor, options: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``readout float[M, D]``, ``options float[M, A, D]`` -> logits ``float[M, A]`` (invalid -> -inf)."""
        logits = torch.einsum("md,mad->ma", readout, options) / math.sqrt(readout.shape[-1])
        if valid is not None:
            logits = logits.masked_fill(~valid, float("-inf"))
        return logits

    # -- training contract ------------------------------------------------------------------
    def batch_logits(self, batch: dict[str, Any], mode: str = "none", k: int = 16,
                     keep_cls: bool = True) -> torch.Tensor:
        """Every stage on one batch (see :meth:`forward`) -> logits ``float[M, A]`` over each pair's options."""
        visual = self.encode_images(batch["images"], mode, k, keep_cls)
        prompts = self.encode_prompts(batch["prompt"])
        texts = batch["texts"] if self.glimpse is not None else ()  # a glimpse model needs the prompt strings
        glimpses = self.glimpse_tokens(self.encode_screens(batch["images"]), batch["frame"], texts)
        readout = self.fuse(visual, prompts, batch["frame"], glimpses)
        return self.score(readout, self.embed_options(batch["options"]), batch["valid"])

    def forward(self, batch: dict[str, Any], mode: str = "none", k: int = 16) -> tuple[torch.Tensor, dict]:
        """``batch``: images uint8[F,S,S,3], frame int64[M], prompt int64[M,P], options int64[M,A,L],
        valid bool[M,A], target int64[M], texts (the M prompt strings; glimpses read them).
        Returns ``(loss, logs)``."""
        logits = self.batch_logits(batch, mode, k)
        loss = F.cross_entropy(logits, batch["target"])
        acc = (logits.argmax(-1) == batch["target"]).float().mean()
        return loss, {"loss": float(loss.detach()), "acc": float(acc)}
