"""The stochastic layout stage: *where* road users will show, sampled as an explicit choice (issue 28).

A video diffusion model whose sampler returns the posterior mean averages a rare, small road user away (the
shipped driving model draws a pedestrian who really steps out in 12% of samples where 46% is right;
docs/world_model.md). This stage makes that choice explicit, as GAIA-1 and DriveDreamer do with tokens and
layouts: from the ``K`` context frames and the next ``horizon`` actions it predicts the *visible layout* of
the next steps, each fact's occupancy of a coarse grid (``info["occupancy"]`` of the driving envs, >= 1
pixel per cell), as a distribution one samples from. A renderer conditioned on the sampled layout draws the
pixels (the next step of the issue).

The distribution is, per fact, a mixture of ``M`` futures: a learned prior ``pi_f(m | context, actions)`` over
components and, per component and step, a *presence* Bernoulli ``q_m`` (does the fact show at all) and, given
presence, independent Bernoulli cells ``p_m(cell)`` (where). Each fact has its own mixture: with one shared
across facts, the prior collapsed onto the component that fitted the always-visible parked car first, and the
pedestrian's steps were left independent (the toy test's 30% event came out at 50%). Presence is modelled on its own because "shows
somewhere" from independent cells alone is ``1 - prod(1 - p_cell)``: many small cell probabilities add up to a
road user in every future (a first fit without it put P(pedestrian within 8 steps) at 0.39 against a true
0.15). The likelihood of an observed future is exact (``logsumexp_m``), so training is plain gradient descent on
it; a sample first draws a component (a coherent future: "a pedestrian steps out here" or "nobody does"), then
presence, then the cells of what is present. With ``persistent`` (the default of ``genex train-layout``),
presence is a two-state chain per component: the probability that a fact shows at a step depends on whether it
showed the step before (appear / stay), since a road user in view stays in view; independent steps kept a
visible pedestrian through 8 steps in 0.56 of samples against a true 0.81. ``S``
samples are ``S`` layouts, and their spread is the stage's uncertainty: :meth:`LayoutModel.prob_visible_within`
is its calibrated probability that a fact shows within ``h`` steps (the reliability diagram and ECE of the
issue's must-show are measured on it).

Targets come from perception of the future frames (occupancy maps of recorded observable frames), never from
``info["hidden"]``: what the protocol (DESIGN.md) allows a world model to learn from.

Shapes: context frames ``uint8[B, K, H, W, 3]``; actions ``int64[B, horizon]`` (discrete driving actions);
layouts ``bool[B, horizon, F, gh, gw]``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from genex.errors import CheckpointMismatchError, CorruptCheckpointError

__all__ = ["LayoutConfig", "LayoutModel", "layout_windows", "context_layouts", "fit_layout", "fit_palette",
           "colour_shown", "window_colours", "save_layout", "load_layout", "LAYOUT_WEIGHTS", "LAYOUT_CONFIG"]

LAYOUT_WEIGHTS = "layout.safetensors"
LAYOUT_CONFIG = "layout.json"


@dataclass(frozen=True)
class LayoutConfig:
    """What the stage predicts and from what (all must match the data and the env it is used with)."""

    facts: tuple[str, ...]  # occupancy channels, in the recordings' fact order
    n_actions: int  # discrete actions of the env
    grid: tuple[int, int] = (8, 8)  # (rows, cols) of the occupancy maps
    context: int = 4  # real frames it sees
    horizon: int = 8  # future steps it lays out
    components: int = 8  # M: mixture components (distinct futures it can sample)
    channels: int = 32
    image_size: tuple[int, int] = (64, 64)  # (H, W) of the frames
    # the names of actions 0 .. n_actions - 1 (the recordings' action_names), so that a world model that takes
    # action names maps them onto this stage's indices; () where unknown (the env's action_names are used then)
    action_names: tuple[str, ...] = ()
    # presence as a two-state chain per component (P(shows | it showed the step before) and P(shows | it did not))
    # instead of independent steps: a road user in view stays in view, and independent steps, ~0.95 each, keep
    # a visible pedestrian through 8 steps in 0.95^8 = 0.66 of samples (the first stage: 0.56 against a true 0.81)
    persistent: bool = False
    # weight of an auxiliary perception loss: the context encoder also predicts the occupancy of the last context
    # frame (what is in view now). Without it, the stage learnt the marginal rates (ECE 0.015) but not to see a
    # pedestrian already in view: it drew one within 8 steps in 0.52 of such windows against a true 0.81.
    # 0 (the default) has no such head
    seen_weight: float = 0.0
    # the facts (indices into ``facts``) whose colour the stage also samples, and per such fact a palette of
    # ``uint8`` RGB colours (the same number each; :func:`fit_palette`): per mixture component a categorical over
    # the palette, so a sampled pedestrian is drawn in one shirt colour, not the mean of all of them. A renderer
    # told colours (``WorldModelConfig.appearance_facts``) then draws that one (docs/world_model.md, "Appearance")
    colour_facts: tuple[int, ...] = ()
    palettes: tuple[tuple[tuple[int, int, int], ...], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "facts", tuple(self.facts))
        object.__setattr__(self, "action_names", tuple(self.action_names))
        object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))
        object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        if any(isinstance(f, bool) or int(f) != f for f in self.colour_facts):
            raise ValueError(f"colour_facts must be fact indices, got {list(self.colour_facts)}")
        object.__setattr__(self, "colour_facts", tuple(int(f) for f in self.colour_facts))
        object.__setattr__(self, "palettes", tuple(tuple(tuple(int(c) for c in rgb) for rgb in pal)
                                                   for pal in self.palettes))
        if len(self.palettes) != len(self.colour_facts) or len(set(self.colour_facts)) != len(self.colour_facts) \
                or any(not 0 <= f < len(self.facts) for f in self.colour_facts):
            raise ValueError(f"colour_facts must be distinct indices into the {len(self.facts)} facts, one palette "
                             f"each; got colour_facts {list(self.colour_facts)} and {len(self.palettes)} palettes")
        sizes = {len(p) for p in self.palettes}
        if len(sizes) > 1 or 0 in sizes or any(len(rgb) != 3 or not all(1 <= c <= 255 for c in rgb)
                                               for p in self.palettes for rgb in p):
            raise ValueError("every palette must hold the same number (>= 1) of RGB colours with channels in 1..255")
        if not self.facts:
            raise ValueError("a layout stage needs at least one fact")
        if not isinstance(self.persistent, bool):
            raise ValueError(f"persistent must be True or False, got {self.persistent!r}")
        if not self.seen_weight >= 0:
            raise ValueError(f"seen_weight must be >= 0, got {self.seen_weight}")
        for name in ("n_actions", "context", "horizon", "components", "channels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.action_names and len(self.action_names) != self.n_actions:
            raise ValueError(f"{len(self.action_names)} action_names for n_actions={self.n_actions}")
        (h, w), (gh, gw) = self.image_size, self.grid
        if gh < 1 or gw < 1 or h % gh or w % gw:
            raise ValueError(f"grid {self.grid} must divide the frame size {self.image_size}")

    def to_dict(self) -> dict[str, Any]:
        d = {**asdict(self), "facts": list(self.facts), "grid": list(self.grid),
             "image_size": list(self.image_size), "action_names": list(self.action_names)}
        d["colour_facts"] = list(self.colour_facts)
        d["palettes"] = [[list(rgb) for rgb in p] for p in self.palettes]
        for k in ("persistent", "seen_weight", "colour_facts", "palettes"):  # absent means off: stages saved before them load, and an older
            if not d[k]:  # genex reads a stage saved now without them
                del d[k]
        return d


class LayoutModel(nn.Module):
    """The mixture-of-layouts predictor (module docstring). Small: a strided conv encoder of the stacked
    context frames down to the grid, the actions as extra channels, and one head per mixture component."""

    def __init__(self, cfg: LayoutConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, (h, w), (gh, gw) = cfg.channels, cfg.image_size, cfg.grid
        stride_total = h // gh
        if w // gw != stride_total or stride_total & (stride_total - 1):
            raise ValueError(f"the frame-to-grid ratio must be one power of two on both axes, got {h // gh} "
                             f"and {w // gw} (frames {cfg.image_size}, grid {cfg.grid})")
        layers: list[nn.Module] = [nn.Conv2d(3 * cfg.context, c, 3, padding=1), nn.SiLU()]
        s = 1
        while s < stride_total:
            layers += [nn.Conv2d(c, c, 4, stride=2, padding=1), nn.SiLU()]
            s *= 2
        self.encoder = nn.Sequential(*layers)
        a_in = cfg.horizon * cfg.n_actions
        self.mix = nn.Sequential(nn.Conv2d(c + a_in, c, 3, padding=1), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1),
                                 nn.SiLU())
        self.cells = nn.Conv2d(c, cfg.components * cfg.horizon * len(cfg.facts), 1)
        per_step = 2 if cfg.persistent else 1  # (appear, stay) logits, or one presence logit
        self.presence = nn.Linear(c, cfg.components * cfg.horizon * len(cfg.facts) * per_step)
        self.prior = nn.Linear(c, len(cfg.facts) * cfg.components)
        if cfg.seen_weight:
            self.seen = nn.Conv2d(c, len(cfg.facts), 1)  # the last context frame's occupancy, from the encoding
        if cfg.colour_facts:  # per colour fact and component: logits over its palette
            self.colour = nn.Linear(c, len(cfg.colour_facts) * cfg.components * self.palette_size)

    @property
    def palette_size(self) -> int:
        return len(self.cfg.palettes[0]) if self.cfg.palettes else 0

    def _colour_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """``float[B, Fc, M, P]``: the colour logits of each colour fact, per component."""
        cfg = self.cfg
        return self.colour(pooled).reshape(len(pooled), len(cfg.colour_facts), cfg.components, self.palette_size)

    def forward(self, frames: torch.Tensor, actions: torch.Tensor, *, with_seen: bool = False,
                with_colour: bool = False) -> tuple[torch.Tensor, ...]:
        """``frames: uint8/float[B, K, H, W, 3]``, ``actions: int64[B, horizon]`` -> ``log_pi: [B, F, M]``, presence
        logits ``[B, M, horizon, F]`` (``persistent``: ``[B, M, horizon, F, 2]``, the logits of showing at a step
        when it did not / did show at the step before; step 0 uses the first) and cell logits given presence
        ``[B, M, horizon, F, gh, gw]``; ``with_seen`` (a stage with ``seen_weight``) adds the logits of the last
        context frame's occupancy ``[B, F, gh, gw]``; ``with_colour`` (a stage with ``colour_facts``) then adds the
        colour logits ``[B, Fc, M, P]``."""
        cfg = self.cfg
        b = frames.shape[0]
        x = frames.float() / 127.5 - 1.0 if frames.dtype == torch.uint8 else frames.float()
        x = x.permute(0, 1, 4, 2, 3).reshape(b, 3 * cfg.context, *cfg.image_size)
        z = self.encoder(x)
        seen = self.seen(z) if with_seen else None
        onehot = F.one_hot(actions.long(), cfg.n_actions).float().reshape(b, -1, 1, 1)
        z = self.mix(torch.cat([z, onehot.expand(-1, -1, *z.shape[-2:])], 1))
        logits = self.cells(z).reshape(b, cfg.components, cfg.horizon, len(cfg.facts), *cfg.grid)
        pooled = z.mean((-2, -1))
        presence = self.presence(pooled).reshape(b, cfg.components, cfg.horizon, len(cfg.facts),
                                                 *((2,) if cfg.persistent else ()))
        log_pi = F.log_softmax(self.prior(pooled).reshape(b, len(cfg.facts), cfg.components), -1)
        out: tuple[torch.Tensor, ...] = (log_pi, presence, logits)
        if with_seen:
            out += (seen,)
        if with_colour:
            out += (self._colour_logits(pooled),)
        return out

    def log_likelihood(self, frames: torch.Tensor, actions: torch.Tensor, layouts: torch.Tensor,
                       uniform_prior: bool = False, colours: torch.Tensor | None = None) -> torch.Tensor:
        """``float[B]``: exact ``log p(layout | context, actions)`` of observed ``bool[B, horizon, F, gh, gw]``.

        ``uniform_prior``: weigh the components equally (a warm-up: while the prior learns too, the component that
        fits first takes every window and the others never specialise). ``colours`` (a stage with
        ``colour_facts``): ``int64[B, Fc]``, each colour fact's palette index in the window (:func:`window_colours`;
        -1 where it does not show), whose log-probability joins its component's where the fact shows in
        ``layouts``; None sums the colour out (the likelihood of the layout alone)."""
        colour = bool(self.cfg.colour_facts) and colours is not None
        out = self(frames, actions, with_colour=colour)
        return self._log_likelihood(out[:3], layouts, uniform_prior, out[3] if colour else None, colours)

    def _need_colours(self, colours: torch.Tensor | None) -> bool:
        if self.cfg.colour_facts and colours is None:
            raise ValueError("this stage samples colours (colour_facts): pass each window's colour indices as "
                             "colours (window_colours)")
        return bool(self.cfg.colour_facts)

    def training_loss(self, frames: torch.Tensor, actions: torch.Tensor, layouts: torch.Tensor,
                      seen: torch.Tensor | None = None, uniform_prior: bool = False,
                      colours: torch.Tensor | None = None) -> torch.Tensor:
        """The mean negative log-likelihood per window, plus (``seen_weight > 0``) ``seen_weight`` times the binary
        cross-entropy of the last context frame's occupancy ``seen: bool[B, F, gh, gw]`` (summed over cells)."""
        colour = self._need_colours(colours)
        if not self.cfg.seen_weight:
            return -self.log_likelihood(frames, actions, layouts, uniform_prior, colours).mean()
        if seen is None:
            raise ValueError("this stage learns to see what is in view (seen_weight > 0): pass the last context "
                             "frame's occupancy as seen")
        out = self(frames, actions, with_seen=True, with_colour=colour)
        perception = F.binary_cross_entropy_with_logits(out[3], seen.float(), reduction="none").flatten(1).sum(1)
        nll = -self._log_likelihood(out[:3], layouts, uniform_prior, out[4] if colour else None, colours)
        return (nll + self.cfg.seen_weight * perception).mean()

    def _log_likelihood(self, outputs: tuple[torch.Tensor, ...], layouts: torch.Tensor, uniform_prior: bool,
                        colour_logits: torch.Tensor | None = None,
                        colours: torch.Tensor | None = None) -> torch.Tensor:
        log_pi, presence, logits = outputs[:3]
        if uniform_prior:
            log_pi = torch.full_like(log_pi, -float(np.log(log_pi.shape[-1])))
        y = layouts.float().unsqueeze(1).expand_as(logits)
        shown = y.flatten(-2).amax(-1)  # [B, M, horizon, F]: the fact shows at that step
        cells = -F.binary_cross_entropy_with_logits(logits, y, reduction="none").flatten(-2).sum(-1)
        if self.cfg.persistent:  # each step's logit given whether the fact showed the step before
            before = torch.cat([torch.zeros_like(shown[:, :, :1]), shown[:, :, :-1]], 2)
            presence = torch.where(before > 0, presence[..., 1], presence[..., 0])
        # present: log q + the cells' likelihood; absent: log(1 - q) (its cells are all empty by definition)
        per_step = torch.where(shown > 0, F.logsigmoid(presence) + cells, F.logsigmoid(-presence))
        per_component = per_step.sum(2).transpose(1, 2)  # [B, F, M]
        if colour_logits is not None and colours is not None:  # the colour, where the fact shows in the window
            log_p = F.log_softmax(colour_logits, -1)  # [B, Fc, M, P]
            facts = torch.tensor(self.cfg.colour_facts, device=log_p.device)
            # only where the fact shows in the layout: a colour is a property of a road user in view
            known = (colours >= 0) & layouts[:, :, facts].flatten(3).any(-1).any(1)  # [B, Fc]
            code = colours.long().clamp(min=0)[:, :, None, None].expand(-1, -1, log_p.shape[2], 1)
            term = torch.where(known[:, :, None], log_p.gather(-1, code)[..., 0], 0.0)  # [B, Fc, M]
            per_component = per_component.index_add(1, facts, term)
        return torch.logsumexp(log_pi + per_component, -1).sum(-1)

    @torch.no_grad()
    def sample(self, frames: torch.Tensor, actions: torch.Tensor, n: int,
               generator: torch.Generator | None = None, *, return_colours: bool = False
               ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``bool[n, B, horizon, F, gh, gw]``: ``n`` layouts per window (a component, then its cells).

        ``return_colours``: also each fact's colour in each sample, ``uint8[n, B, F, 3]`` (a colour fact's palette
        entry, drawn from its component after the cells, so the layouts are those drawn without colours; 0 for
        the other facts, the absent ones, and for every fact of a stage without ``colour_facts``)."""
        out = self(frames, actions, with_colour=bool(self.cfg.colour_facts))
        log_pi, presence, logits = out[:3]
        b, nf, m = log_pi.shape
        comp = torch.multinomial(log_pi.exp().reshape(b * nf, m), n, replacement=True, generator=generator)
        comp = comp.reshape(b, nf, n).transpose(1, 2)  # [B, n, F]: each fact's future
        rows, facts = torch.arange(b)[:, None, None], torch.arange(nf)[None, None, :]
        chosen = presence.transpose(2, 3)[rows, comp, facts].transpose(2, 3)  # [B, n, horizon, F(, 2)]
        p = torch.sigmoid(logits).permute(0, 1, 3, 2, 4, 5)[rows, comp, facts].transpose(2, 3)  # [B, n, horizon, F, ..]
        u = torch.rand(chosen.shape[:4], generator=generator)
        if self.cfg.persistent:  # step by step: stay or appear, given the step before
            steps, shown = [], torch.zeros_like(u[:, :, 0], dtype=torch.bool)
            for t in range(u.shape[2]):
                shown = u[:, :, t] < torch.sigmoid(torch.where(shown, chosen[:, :, t, :, 1], chosen[:, :, t, :, 0]))
                steps.append(shown)
            present = torch.stack(steps, 2)
        else:
            present = u < torch.sigmoid(chosen)
        cells = torch.rand(p.shape, generator=generator) < p
        # a present fact shows in at least one cell: where no cell was drawn, its likeliest one
        empty = ~cells.flatten(-2).any(-1)
        top = F.one_hot(p.flatten(-2).argmax(-1), p.shape[-2] * p.shape[-1]).bool().reshape(p.shape)
        cells = torch.where(empty[..., None, None], top, cells) & present[..., None, None]
        if not return_colours:
            return cells.transpose(0, 1)
        colours = torch.zeros(b, n, nf, 3, dtype=torch.uint8, device=cells.device)
        if self.cfg.colour_facts:
            probs = F.softmax(out[3], -1)  # [B, Fc, M, P]
            for j, f in enumerate(self.cfg.colour_facts):
                p_code = probs[torch.arange(b)[:, None], j, comp[:, :, f]]  # [B, n, P]
                code = torch.multinomial(p_code.reshape(b * n, -1), 1, generator=generator).reshape(b, n)
                palette = torch.tensor(self.cfg.palettes[j], dtype=torch.uint8, device=code.device)
                colours[:, :, f] = palette[code] * present[:, :, :, f].any(2, keepdim=True).to(torch.uint8)
        return cells.transpose(0, 1), colours.transpose(0, 1)

    @torch.no_grad()
    def prob_visible_within(self, frames: torch.Tensor, actions: torch.Tensor, fact: str, within: int) -> torch.Tensor:
        """``float[B]``: P(``fact`` occupies some cell in one of the next ``within`` steps), exact under the mixture."""
        f = self.cfg.facts.index(fact)
        if not 1 <= within <= self.cfg.horizon:
            raise ValueError(f"within must be in [1, {self.cfg.horizon}], got {within}")
        log_pi, presence, _ = self(frames, actions)
        if self.cfg.persistent:  # absent so far: every step is an "appear" step
            presence = presence[..., 0]
        # log P(the fact is absent at every step up to `within`) per component
        log_none = F.logsigmoid(-presence[:, :, :within, f]).sum(-1)  # [B, M]
        return 1.0 - torch.logsumexp(log_pi[:, f] + log_none, -1).exp()


def _last_context_frames(n_actions: int, context: int, horizon: int) -> np.ndarray:
    """``int[N]``: the last context frame of each full window of an episode with ``n_actions`` actions."""
    return np.arange(max(n_actions - horizon - context + 2, 0)) + context - 1


def layout_windows(occupancy: np.ndarray, frames: np.ndarray, actions: np.ndarray, context: int,
                   horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every full window of one episode: context frames ``uint8[N, K, H, W, 3]``, the actions after them
    ``int64[N, horizon]`` and the layouts they lead to ``bool[N, horizon, F, gh, gw]`` (a cell is occupied when
    it holds >= 1 pixel of the fact). ``occupancy: [T+1, F, gh, gw]`` and ``frames: [T+1, ...]`` align, ``actions:
    [T]`` (action ``t`` leads from frame ``t`` to ``t + 1``)."""
    last = _last_context_frames(len(actions), context, horizon)
    if not len(last):
        empty = np.zeros((0,), np.int64)
        return (np.zeros((0, context, *frames.shape[1:]), np.uint8), empty.reshape(0, horizon),
                np.zeros((0, horizon, *occupancy.shape[1:]), bool))
    starts = last - (context - 1)
    ctx = np.stack([frames[s:s + context] for s in starts])
    act = np.stack([actions[t:t + horizon] for t in last]).astype(np.int64)
    lay = np.stack([occupancy[t + 1:t + 1 + horizon] > 0 for t in last])
    return ctx, act, lay


def context_layouts(occupancy: np.ndarray, context: int, horizon: int) -> np.ndarray:
    """``bool[N, F, gh, gw]``: the occupancy of the last context frame of each window of :func:`layout_windows`
    (same order), what is in view when the stage predicts; a stage with ``seen_weight`` learns to see it."""
    return occupancy[_last_context_frames(len(occupancy) - 1, context, horizon)] > 0


def fit_palette(colours: np.ndarray, size: int, seed: int = 0, iterations: int = 30) -> np.ndarray:
    """``uint8[size, 3]``: a palette of ``size`` colours for observed colours ``uint8[N, 3]`` (k-means, k-means++
    start; deterministic given ``seed``). Fewer distinct colours than ``size`` repeat the last ones."""
    x = np.asarray(colours, np.float64).reshape(-1, 3)
    if not len(x):
        raise ValueError("no observed colours to fit a palette on (the fact never shows in the recordings?)")
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, size):  # k-means++: far from the centres so far
        d = np.min(((x[:, None] - np.asarray(centres)[None]) ** 2).sum(-1), 1)
        centres.append(x[rng.choice(len(x), p=d / d.sum())] if d.sum() > 0 else centres[-1])
    c = np.asarray(centres)
    for _ in range(iterations):
        label = ((x[:, None] - c[None]) ** 2).sum(-1).argmin(1)
        c = np.stack([x[label == k].mean(0) if (label == k).any() else c[k] for k in range(size)])
    return np.clip(np.rint(c), 1, 255).astype(np.uint8)


def colour_shown(appearance: np.ndarray, occupancy: np.ndarray, fact: int) -> np.ndarray:
    """``bool[T+1]``: the frames where ``fact`` shows (some occupied cell) and has a recorded colour
    (``appearance: uint8[T+1, F, 3]``, ``occupancy: [T+1, F, gh, gw]``): where its colour can be read."""
    return (occupancy[:, fact].reshape(len(occupancy), -1) > 0).any(1) & (appearance[:, fact] > 0).any(1)


def window_colours(appearance: np.ndarray, occupancy: np.ndarray, n_actions: int, context: int, horizon: int,
                   colour_facts: Sequence[int], palettes: Sequence[Sequence[Sequence[int]]]) -> np.ndarray:
    """``int64[N, Fc]``: per window of :func:`layout_windows` (same order) and colour fact, the palette index
    nearest to its colour (``appearance: uint8[T+1, F, 3]``, ``info["appearance"]``) at the first of the window's
    ``horizon`` steps where it shows; -1 where it does not show."""
    last = _last_context_frames(n_actions, context, horizon)
    out = np.full((len(last), len(colour_facts)), -1, np.int64)
    for j, (f, pal) in enumerate(zip(colour_facts, palettes)):
        p = np.asarray(pal, np.float64)
        shown = colour_shown(appearance, occupancy, f)
        code = ((appearance[:, f, None].astype(np.float64) - p[None]) ** 2).sum(-1).argmin(1)  # [T+1]
        for i, t in enumerate(last):
            steps = np.flatnonzero(shown[t + 1:t + 1 + horizon])
            if len(steps):
                out[i, j] = code[t + 1 + steps[0]]
    return out


def fit_layout(model: LayoutModel, frames: np.ndarray, actions: np.ndarray, layouts: np.ndarray, *, steps: int,
               batch_size: int = 64, lr: float = 1e-2, seed: int = 0, warmup: float = 0.3,
               on_step: Callable[[int, float], None] | None = None, seen: np.ndarray | None = None,
               colours: np.ndarray | None = None) -> list[float]:
    """Fit on in-memory windows (small data: tests, probes, ``genex train-layout``); returns the loss per step
    (nats per window).

    The first ``warmup`` share of the steps weighs the components equally (``uniform_prior``) so that they
    specialise before the prior learns which to pick. Deterministic given ``seed``. ``on_step(step, loss)`` is
    called after each step (1-based; a progress bar).
    """
    if len(frames) == 0:
        raise ValueError("no windows to fit on (episodes shorter than context + horizon?)")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    # linear decay to 0: a mixture's components trade places under a constant step size late in a fit
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 - i / steps)
    if model.cfg.seen_weight and (seen is None or len(seen) != len(frames)):
        raise ValueError("this stage learns to see what is in view (seen_weight > 0): pass seen, the last context "
                         "frame's occupancy of every window (context_layouts)")
    if colours is not None:
        colours = np.asarray(colours, np.int64)
    if model.cfg.colour_facts and (colours is None or colours.shape != (len(frames), len(model.cfg.colour_facts))):
        raise ValueError("this stage samples colours (colour_facts): pass colours, each window's palette index of "
                         "every colour fact (window_colours)")
    f, a, y = torch.from_numpy(frames), torch.from_numpy(actions), torch.from_numpy(layouts)
    v = torch.from_numpy(seen) if model.cfg.seen_weight else None
    c = torch.from_numpy(np.asarray(colours, np.int64)) if model.cfg.colour_facts else None
    losses = []
    model.train()
    for step in range(steps):
        idx = torch.from_numpy(rng.integers(0, len(f), size=min(batch_size, len(f))))
        loss = model.training_loss(f[idx], a[idx], y[idx], None if v is None else v[idx],
                                   uniform_prior=step < warmup * steps, colours=None if c is None else c[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step + 1, losses[-1])
    model.eval()
    return losses


def save_layout(model: LayoutModel, folder: str | Path) -> None:
    """Write ``layout.safetensors`` and ``layout.json`` into a (world-model) checkpoint folder."""
    from safetensors.torch import save_file

    from genex.io import atomic_write_bytes

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (LAYOUT_WEIGHTS + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(folder / LAYOUT_WEIGHTS)
    atomic_write_bytes(folder / LAYOUT_CONFIG, json.dumps(model.cfg.to_dict(), indent=2).encode())


def load_layout(folder: str | Path, *, facts: Sequence[str] | None = None, n_actions: int | None = None,
                grid: Sequence[int] | None = None) -> LayoutModel:
    """Load the layout stage of a checkpoint folder; checks it against what the caller's env gives.

    Raises :class:`~genex.errors.CorruptCheckpointError` when its files are missing or unreadable and
    :class:`~genex.errors.CheckpointMismatchError` when it was made for other facts, actions or grid.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path, weights = folder / LAYOUT_CONFIG, folder / LAYOUT_WEIGHTS
    missing = [p.name for p in (cfg_path, weights) if not p.is_file()]
    if missing:
        raise CorruptCheckpointError(f"{folder} has no layout stage ({', '.join(missing)} missing); train one "
                                     "or use a checkpoint that has it")
    try:
        cfg = LayoutConfig(**json.loads(cfg_path.read_text()))
    except (ValueError, TypeError) as e:
        raise CorruptCheckpointError(f"{cfg_path} is not a layout config: {e}") from e
    wanted = {"facts": tuple(facts) if facts is not None else None, "n_actions": n_actions,
              "grid": tuple(grid) if grid is not None else None}
    for name, want in wanted.items():
        if want is not None and getattr(cfg, name) != want:
            raise CheckpointMismatchError(f"the layout stage in {folder} was made for {name} {getattr(cfg, name)}, "
                                          f"this env has {want}")
    model = LayoutModel(cfg)
    try:
        state = load_file(str(weights))
        model.load_state_dict(state)
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CorruptCheckpointError(f"{weights} cannot be loaded into a layout stage of {cfg_path}: {e}") from e
    model.eval()
    return model
