"""Pixel-phrase glimpses: the tiny VLM reads by rendering the words it looks for and matching them.

Why: at 128x128 a GUI word is ~8 pixels high. A ViT that gets the word only as
a token id must learn to *read* glyphs from 8x8 patches, and with the data and
minutes we have it memorises which labels go with which screen instead
(held-out text questions 0.74, ``docs/policy.md``). Pixel-based language models
(PIXEL, Rust et al. 2023; CLIPPO, Tschannen et al. 2023) render text as images
and let a vision encoder handle both sides. We do the same for the few
phrases a prompt is about: each phrase is rendered with Pillow's built-in font,
both the rendering and the screen go through one small shared conv encoder,
and a normalised cross-correlation of the two feature maps (a Siamese matcher,
translation-equivariant, so it finds a word wherever it is) gives, per
(frame, phrase), a *glimpse token*: how well and where the phrase matches,
what the screen looks like there, and what the rest of that row shows (a
switch or a checkbox next to a label). The readout attends to these tokens
beside the visual tokens.

Caveat, stated plainly: the renderer's font is Pillow's built-in font, which is
also the font of genex's mock GUIs, so on our screens a rendered phrase and the
on-screen text are nearly the same pixels. Screens in other fonts need the
learned encoder to generalise across fonts, which we have not measured.

Phrases (:func:`query_phrases`): quoted phrases of the question, then the
*salient* words of the question and the instruction (capitalised words that do
not start a sentence, and words with digits or symbols: names, files, prices,
phone numbers), in order, at most ``max_phrases``. Models with ``glimpse_labels``
read a multi-word label that ends the instruction as one phrase: "Turn on Auto
brightness" looks for "Auto brightness", not for "Auto", which also matches
"Autoplay", "Auto login" and "Auto update" (that misreading sent planners to the
wrong settings tab until the step limit).

Shapes: screen features ``float[F, C, S/2, S/2]``; glimpse tokens
``float[M, G, D]`` with a mask ``bool[M, G]`` (``G = max_phrases``).
"""

from __future__ import annotations

import functools
import math
import re
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["query_phrases", "render_phrase", "GlimpseMatcher"]

_QUOTED = re.compile(r"(?<!\w)'(.+?)'(?!\w)")  # 'Don't save' stays one phrase
_WORD = re.compile(r"\S+")
_SENTENCE_END = (".", "?", "!", ":")
_STRIP = ",.?!:;\"()'"
ROLES = ("quoted", "question", "instruction")
_MARGIN = 2  # background pixels kept around a rendered phrase (each side)
_BORDER = 4  # extra background rendered beyond the margin and cropped off after encoding (even)


def _salient(text: str, labels: bool = False) -> list[str]:
    """Capitalised words not at a sentence start, and words with a digit or a symbol (trailing punctuation off).

    With ``labels``, a capitalised word followed by at most ``MAX_LABEL_TAIL`` lowercase words that close the
    sentence is one phrase: the multi-word label an instruction ends with ("Turn on Auto brightness").
    """
    out: list[str] = []
    start = True
    words = _WORD.findall(text)
    i = 0
    while i < len(words):
        w = words[i]
        core = w.strip(_STRIP)
        if core and (any(c.isdigit() for c in core) or any(not c.isalnum() for c in core)
                     or (core[0].isupper() and not start)):
            tail = _label_tail(words, i) if labels and core[0].isupper() and core.isalpha() else []
            out.append(" ".join([core, *tail]))
            i += len(tail)
            w = words[i]
        start = w.endswith(_SENTENCE_END)
        i += 1
    return out


MAX_LABEL_TAIL = 2  # "Do not disturb"; longer runs are more likely prose than a label


def _label_tail(words: list[str], i: int) -> list[str]:
    """The lowercase words after ``words[i]`` up to the end of its sentence, if there are 1-``MAX_LABEL_TAIL``."""
    tail: list[str] = []
    for w in words[i + 1:]:
        core = w.strip(_STRIP)
        if not (core.isalpha() and core.islower()) or len(tail) == MAX_LABEL_TAIL:
            return []
        tail.append(core)
        if w.endswith(_SENTENCE_END):
            break
    return tail


def query_phrases(prompt: str, max_phrases: int = 8, labels: bool = False) -> list[tuple[str, int]]:
    """``(phrase, role index)`` pairs a prompt (``instruction <sep> question``) is about; see the module doc.

    ``labels``: read a multi-word label that ends the instruction as one phrase (:func:`_salient`).
    """
    instruction, _, question = prompt.rpartition("<sep>")
    found: list[tuple[str, int]] = []
    seen: set[str] = set()
    quoted = _QUOTED.findall(question)
    rest = _QUOTED.sub(" ", question)
    for role, phrases in enumerate((quoted, _salient(rest), _salient(instruction, labels))):
        for p in phrases:
            if p not in seen:
                seen.add(p)
                found.append((p, role))
    return found[:max_phrases]


@functools.lru_cache(maxsize=4096)
def render_phrase(text: str, font_size: int, max_width: int) -> np.ndarray:
    """Coverage mask ``float32[line height, w]`` in [0, 1] of ``text`` (anti-aliased, at most ``max_width``)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=font_size)
    width = min(max_width, max(1, int(math.ceil(font.getlength(text))) + 1))
    ascent, descent = font.getmetrics()  # 8 + 2 at 8 px: the GUI toolkit's line height
    image = Image.new("L", (width, ascent + descent), 0)
    draw = ImageDraw.Draw(image)
    draw.fontmode = "L"
    draw.text((0, 0), text, font=font, fill=255)
    mask = np.asarray(image, dtype=np.float32) / 255.0
    mask.setflags(write=False)
    return mask


def _ink(gray: torch.Tensor) -> torch.Tensor:
    """``float[B, 1, H, W]`` grey levels -> local contrast and its magnitude ``[B, 2, H, W]`` (polarity-free)."""
    local = gray - F.avg_pool2d(gray, 3, stride=1, padding=1, count_include_pad=False)
    return torch.cat([local, local.abs()], dim=1)


class _BlurDown(nn.Module):
    """Fixed binomial (1 2 1)^2 blur, then keep every second pixel: ``[B, C, H, W] -> [B, C, ceil(H/2), ceil(W/2)]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (k[:, None] * k[None] / 16).expand(channels, 1, 3, 3).clone(),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 1, 1), mode="replicate")
        return F.conv2d(x, self.kernel, stride=2, groups=x.shape[1])


class GlimpseMatcher(nn.Module):
    """Shared conv encoder for screens and rendered phrases, normalised correlation, glimpse tokens."""

    def __init__(self, dim: int, channels: int, image_size: int, max_phrases: int = 8) -> None:
        super().__init__()
        c = channels
        # blur before subsampling (anti-aliased downsampling, Zhang 2019): screen text sits at any pixel, a
        # template at one phase; without the blur a word one pixel off its template's phase scores like a
        # different word
        self.encoder = nn.Sequential(
            nn.Conv2d(2, c, 3, padding=1), nn.GELU(),
            nn.Conv2d(c, c, 3, padding=1), nn.GELU(),
            _BlurDown(c),
            nn.Conv2d(c, c, 3, padding=1))
        self.font_size = max(4, round(8 * image_size / 128))  # the GUI font's 8 px on a 128 px screen
        self.image_size = image_size
        self.max_phrases = max_phrases
        self.log_temp = nn.Parameter(torch.tensor(math.log(50.0)))  # sharp: one match among ~4k positions
        self.to_token = nn.Sequential(nn.Linear(2 * c + 5, dim), nn.GELU(), nn.Linear(dim, dim))
        self.slot = nn.Embedding(len(ROLES) * max_phrases, dim)

    # -- features -------------------------------------------------------------------------------------
    def encode_screens(self, images: torch.Tensor) -> torch.Tensor:
        """``uint8[F, S, S, 3]`` -> ``float[F, C, S/2, S/2]``."""
        gray = images.float().mean(-1, keepdim=True).permute(0, 3, 1, 2).div(127.5).sub(1.0)
        return self.encoder(_ink(gray))

    def _encode_phrases(self, phrases: Sequence[str]) -> tuple[list[torch.Tensor], list[int]]:
        """Phrase templates ``float[C, h, w]`` (zero-mean, unit norm per template) and their widths."""
        masks = [render_phrase(p, self.font_size, self.image_size) for p in phrases]
        pad = _MARGIN + 2 * _BORDER  # rendered with a wide margin, then cropped to _MARGIN px around the text:
        width = max(m.shape[1] for m in masks) + 2 * pad  # the crop has no zero-padding artefacts at its edges
        height = masks[0].shape[0] + 2 * pad
        canvas = np.ones((len(masks), 1, height, width), np.float32)  # dark text on a light background
        for i, m in enumerate(masks):
            canvas[i, 0, pad: pad + m.shape[0], pad: pad + m.shape[1]] -= 2.0 * m
        canvas = torch.from_numpy(canvas).to(device=self.log_temp.device, dtype=self.log_temp.dtype)
        feats = self.encoder(_ink(canvas))  # [T, C, h, w]
        b = _BORDER  # 2 * _BORDER full-resolution pixels
        out, widths = [], []
        for i, m in enumerate(masks):
            w = (m.shape[1] + 2 * _MARGIN + 1) // 2
            t = feats[i, :, b: b + (masks[0].shape[0] + 2 * _MARGIN + 1) // 2, b: b + w]
            t = t - t.mean(dim=(1, 2), keepdim=True)
            out.append(t / t.flatten().norm().clamp(min=1e-6))
            widths.append(w)
        return out, widths

    # -- tokens -------------------------------------------------------------------------------------
    def tokens(self, screens: torch.Tensor, frame_index: torch.Tensor,
               phrases: Sequence[Sequence[tuple[str, int]]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Glimpse tokens ``float[M, G, D]`` and mask ``bool[M, G]`` for pairs (``frame_index[m]``, ``phrases[m]``)."""
        m_count, g = len(phrases), self.max_phrases
        dim = self.slot.embedding_dim
        tokens = screens.new_zeros(m_count, g, dim)
        mask = torch.zeros(m_count, g, dtype=torch.bool, device=screens.device)
        pairs: dict[tuple[int, str], int] = {}
        where: list[tuple[int, int, int, int]] = []  # (m, slot, pair, role-slot id)
        if len(phrases) != len(frame_index):
            raise ValueError(f"{len(phrases)} phrase lists for {len(frame_index)} (frame, question) pairs")
        for m, (f, ps) in enumerate(zip(frame_index.tolist(), phrases)):
            for j, (p, role) in enumerate(ps[:g]):
                key = (f, p)
                if key not in pairs:
                    pairs[key] = len(pairs)
                where.append((m, j, pairs[key], role * g + j))
        if not pairs:
            return tokens, mask
        keys = list(pairs)
        uniq = sorted({p for _, p in keys})
        templates, widths = self._encode_phrases(uniq)
        t_of = {p: i for i, p in enumerate(uniq)}
        feats = self._pair_features(screens, keys, templates, widths, t_of)  # [P, 2C + 5]
        pair_tok = self.to_token(feats)
        ms, js, ps_, slots = (torch.tensor(x, device=screens.device) for x in zip(*where))
        tokens = tokens.index_put((ms, js), pair_tok[ps_] + self.slot(slots))
        mask[ms, js] = True
        return tokens, mask

    def _pair_features(self, screens: torch.Tensor, keys: list[tuple[int, str]], templates: list[torch.Tensor],
                       widths: list[int], t_of: dict[str, int]) -> torch.Tensor:
        """Per (frame, phrase) pair: ``[peak, soft peak, y, x, width, features at the match (C), its row (C)]``.

        The correlation is computed in the Fourier domain (one FFT per frame and per phrase, a product per
        pair): on a CPU, a grouped convolution with hundreds of word-sized kernels is ~10x slower, mostly
        in its backward pass.
        """
        # the score is invariant to a per-frame, per-channel shift of the features (the templates are zero-mean),
        # and centring first keeps the float32 window variances below from cancelling on flat screen regions
        centred = screens - screens.mean(dim=(2, 3), keepdim=True)
        _, c, h, w = screens.shape
        th = templates[0].shape[1]
        wmax = max(widths)
        size = (h + th, w + wmax)
        frames = torch.tensor([f for f, _ in keys], device=screens.device)
        phrase = torch.tensor([t_of[p] for _, p in keys], device=screens.device)
        spec_s = torch.fft.rfft2(centred, s=size)  # [F, C, H2, W2/2+1]
        bank = torch.stack([F.pad(t, (0, wmax - t.shape[2])) for t in templates])  # [T, C, th, wmax]
        spec_t = torch.fft.rfft2(bank, s=size).conj()
        corr = torch.fft.irfft2((spec_s[frames] * spec_t[phrase]).sum(1), s=size)[:, :h, :w]  # [P, h, w]
        # per-channel sum and sum of squares of each template-sized window (top-left at y, x), from integral
        # images, so the score is a true normalised cross-correlation: 1 where the screen shows the template
        stats = torch.cat([centred, centred.pow(2)], dim=1)  # [F, 2C, h, w]
        integral = F.pad(F.pad(stats, (0, wmax, 0, th)).cumsum(2).cumsum(3), (1, 0, 1, 0))
        rows = integral[:, :, th: th + h] - integral[:, :, :h]  # per frame: [F, 2C, h, w+wmax+1]
        width = torch.tensor([widths[t_of[p]] for _, p in keys], device=screens.device)
        dev = screens.device  # index per pair straight into the per-frame sums: only [P, 2C, h, w] is built
        right = rows[frames[:, None, None, None], torch.arange(2 * c, device=dev)[None, :, None, None],
                     torch.arange(h, device=dev)[None, None, :, None],
                     torch.arange(w, device=dev)[None, None, None, :] + width[:, None, None, None]]
        window = right - rows[..., :w][frames]  # [P, 2C, h, w]
        n = (width * th).float()[:, None, None]
        var = (window[:, c:] - window[:, :c].pow(2) / n[:, None]).sum(1)  # [P, h, w]
        score = corr / var.clamp(min=1e-6).sqrt()  # in [-1, 1]
        temp = self.log_temp.exp()
        flat = score.flatten(1)
        attn = torch.softmax(flat * temp, dim=1).view(-1, h, w)
        peak = flat.amax(1)
        soft = torch.logsumexp(flat * temp, 1) / temp - math.log(h * w) / temp
        py, px = attn.sum(2), attn.sum(1)  # [P, h], [P, w]
        ys = torch.linspace(0, 1, h, device=screens.device)
        xs = torch.linspace(0, 1, w, device=screens.device)
        # read at the matched window's top-left corner (2 px above and left of the first glyph) and along that
        # feature row: the receptive field (~6 px) reaches the glyphs and a switch or checkbox on the line, but
        # only its upper part; centring these reads on the window is a possible improvement (needs retraining)
        at = torch.einsum("phw,pchw->pc", attn, screens[frames])  # what the screen shows at the match
        row = torch.einsum("ph,pch->pc", py, screens.amax(dim=3)[frames])  # what that row shows anywhere
        return torch.cat([peak[:, None], soft[:, None], (py * ys).sum(1, keepdim=True),
                          (px * xs).sum(1, keepdim=True), width[:, None].float() / w, at, row], dim=1)
