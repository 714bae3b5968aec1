"""``DiffusionWorldModel``: the trained denoiser rolled out autoregressively.

Each imagined step samples the next frame from the last ``K`` frames and the
action (a few Euler/Heun steps), then slides the window. ``S`` samples run as
one batch.

Driving model v2 (issue 28): a renderer with ``layout_channels > 0`` draws each
frame around a layout (where each kind of road user shows) that a stochastic
layout stage (:class:`~genex.world_model.layout.LayoutModel`) samples first, so
that "a pedestrian steps out" is a discrete choice made at its rate instead of
a faint average in the pixels. Every ``horizon`` steps the stage lays out the
next ``horizon`` frames from the last frames (real, then imagined) and the
next actions; its draws come from the same generator as the pixel noise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Sequence, overload

import numpy as np
import torch

from genex.devices import select_device
from genex.errors import CheckpointMismatchError

from .actions import action_dim, encode_actions
from .config import SAMPLING_ONLY, SamplerConfig, WorldModelConfig
from .denoiser import Denoiser, to_uint8
from .network import with_colours
from .protocol import check_context
from .sampler import sample_next_frame, sampler_of

if TYPE_CHECKING:
    from .layout import LayoutModel

__all__ = ["DiffusionWorldModel", "select_device"]  # select_device: re-exported from genex.devices

#: one :meth:`DiffusionWorldModel.imagine_calls` call: ``(contexts, actions, seed)``, as for ``imagine_batch``
_Call = tuple[np.ndarray, Sequence[Sequence[Any]] | np.ndarray, int | None]


class DiffusionWorldModel:
    """Action-conditioned next-frame diffusion model implementing the ``WorldModel`` protocol.

    Args:
        denoiser: the trained :class:`Denoiser` (EMA weights for inference).
        action_names: the env's ``action_names`` so integer actions map onto the
            model's name vocabulary (driving); ignored for GUI models.
        info: checkpoint metadata (training command, data, ...), for reference.
        sampler: how frames are sampled (:class:`SamplerConfig`); default: the one the denoiser was loaded with
            (the checkpoint's), else the defaults.
        layout: the layout stage that a renderer with ``layout_channels > 0`` needs to imagine (the checkpoint
            loader sets it from the same folder); see :attr:`layout`.
    """

    context_is_state = True

    def __init__(self, denoiser: Denoiser, action_names: Sequence[str] | None = None,
                 info: dict[str, Any] | None = None, device: str | torch.device = "auto",
                 sampler: SamplerConfig | None = None, layout: "LayoutModel | None" = None) -> None:
        self.device = select_device(device) if isinstance(device, str) else device
        self.denoiser = denoiser.to(self.device).eval()
        self.model_cfg: WorldModelConfig = denoiser.cfg
        self.sampler = sampler_of(denoiser) if sampler is None else sampler
        self.action_names = tuple(action_names) if action_names is not None else None
        self.info = dict(info or {})
        self.layout = layout

    @property
    def layout(self) -> "LayoutModel | None":
        """The stochastic layout stage (None for a renderer without ``layout_channels``); assign one to replace it.

        It runs on the CPU whatever :attr:`device` is: it is small, and its draws come from the per-call CPU
        generators that the pixel noise comes from, so a seed fixes both."""
        return self._layout

    @layout.setter
    def layout(self, layout: "LayoutModel | None") -> None:
        cfg = self.model_cfg
        if layout is not None:
            lc = layout.cfg
            if not cfg.layout_channels:
                raise ValueError("this renderer is not conditioned on a layout (layout_channels=0): it takes no "
                                 "layout stage")
            if len(lc.facts) != cfg.layout_channels or tuple(lc.image_size) != (cfg.height, cfg.width):
                raise CheckpointMismatchError(
                    f"the layout stage lays out {len(lc.facts)} facts {list(lc.facts)} of {lc.image_size[0]}x"
                    f"{lc.image_size[1]} frames; the renderer is conditioned on {cfg.layout_channels} facts of "
                    f"{cfg.height}x{cfg.width} frames")
            layout = layout.cpu().eval()
        self._layout = layout

    @property
    def sampler(self) -> SamplerConfig:
        """How this model samples frames (:class:`SamplerConfig`); assign another to change it."""
        return self._sampler

    @sampler.setter
    def sampler(self, sampler: SamplerConfig) -> None:
        if not isinstance(sampler, SamplerConfig):
            raise TypeError(f"sampler must be a SamplerConfig, got {type(sampler).__name__}")
        self._sampler = sampler.check_model(self.model_cfg)
        # so that sample_next_frame(model.denoiser, ...) without a sampler samples as this model does
        self.denoiser.sampler = self._sampler

    @property
    def cfg(self) -> WorldModelConfig:
        """The model config (network and training fields; how it samples is :attr:`sampler`)."""
        return self.model_cfg

    def set_sampling(self, **overrides: Any) -> "DiffusionWorldModel":
        """Replace fields of :attr:`sampler` (``steps``, ``sigma_min``, ``snap``, ...; see
        :data:`~genex.world_model.config.SAMPLING_ONLY`) in place, for evaluations and sweeps; the weights do not
        depend on them. Other fields raise ``ValueError``. Returns self."""
        bad = sorted(set(overrides) - set(SAMPLING_ONLY))
        if bad:
            raise ValueError(f"{bad} are not sampling-only fields {SAMPLING_ONLY}: they would not match the weights")
        if overrides:
            self.sampler = self.sampler.replace(**overrides)
        return self

    # --------------------------------------------------------------- env binding
    def bind(self, env: Any) -> "DiffusionWorldModel":
        """Check this model fits ``env`` (frame size, actions; a layout stage: its facts) and adopt its
        ``action_names``; returns self."""
        from .config import check_env_compatible

        check_env_compatible(self.model_cfg, env, source=self.info.get("path", "this model"))
        from genex.envs.foreign import declared

        names = declared(env, "action_names", None)
        if self.model_cfg.action_family == "discrete" and names is not None:
            self.action_names = tuple(names)
        facts = declared(env, "facts", None)
        if self.layout is not None and facts is not None and tuple(facts) != self.layout.cfg.facts:
            raise CheckpointMismatchError(f"{self.info.get('path', 'this model')}'s layout stage lays out the facts "
                                          f"{list(self.layout.cfg.facts)}; the env has {list(facts)}")
        return self

    # --------------------------------------------------------------- protocol
    def _encode(self, actions: Sequence[Sequence[Any]] | np.ndarray) -> torch.Tensor:
        if isinstance(actions, np.ndarray) and actions.dtype == np.float32 and actions.ndim == 3 \
                and actions.shape[-1] == action_dim(self.model_cfg):
            enc = actions  # already encoded float32[B, T, A]
        else:
            seqs = [encode_actions(list(a), self.model_cfg, self.action_names) for a in actions]
            lengths = {len(s) for s in seqs}
            if len(lengths) != 1:
                raise ValueError(f"all action sequences must have the same length, got lengths {sorted(lengths)}")
            enc = np.stack(seqs)
        return torch.from_numpy(enc).to(self.device)

    def _prepare_context(self, contexts: np.ndarray, k: int | None = None, device: Any = None) -> torch.Tensor:
        """``uint8[B,k,H,W,3]`` on ``device``: the last ``k`` frames (default: the model's ``K``, on its device), the
        first one repeated in front where there are fewer."""
        cfg = self.model_cfg
        if contexts.shape[2:4] != (cfg.height, cfg.width):
            raise ValueError(f"context frames are {contexts.shape[2]}x{contexts.shape[3]}, this model imagines "
                             f"{cfg.height}x{cfg.width} frames")
        want, have = cfg.context if k is None else k, contexts.shape[1]
        if have >= want:
            contexts = contexts[:, have - want:]
        else:
            pad = np.repeat(contexts[:, :1], want - have, axis=1)
            contexts = np.concatenate([pad, contexts], axis=1)
        return torch.from_numpy(np.ascontiguousarray(contexts)).to(self.device if device is None else device)

    def _layout_inputs(self, contexts: np.ndarray) -> torch.Tensor | None:
        """The layout stage's context (``uint8[B,K_layout,H,W,3]`` on the CPU), or None for a model without one;
        raises for a layout renderer that has no stage."""
        if not self.model_cfg.layout_channels:
            return None
        if self.layout is None:
            raise ValueError(f"this renderer draws a sampled layout (layout_channels={self.model_cfg.layout_channels})"
                             " but has no layout stage: train one with `genex train-layout` into its checkpoint "
                             "folder, or set model.layout")
        return self._prepare_context(contexts, self.layout.cfg.context, "cpu")

    def _layout_actions(self, acts: torch.Tensor) -> torch.Tensor:
        """``int64[B, T]``: the layout stage's action indices of encoded actions ``float[B, T, A]`` (their names
        looked up in the stage's ``action_names``, else the env's)."""
        assert self.layout is not None
        names = self.layout.cfg.action_names or self.action_names
        if not names:
            raise ValueError("the layout stage has no action names and this model none from its env: bind the model "
                             "to its env (model.bind(env)) so actions map onto the layout stage's")
        vocab = self.model_cfg.action_vocab
        table = torch.tensor([names.index(v) if v in names else -1 for v in vocab], dtype=torch.int64)
        idx = table[acts[..., 0].long().cpu()]
        if (idx < 0).any():
            missing = sorted({vocab[i] for i in acts[..., 0].long().cpu()[idx < 0].tolist()})
            raise ValueError(f"actions {missing} are not among the layout stage's actions {list(names)}")
        return idx

    @overload
    def imagine_batch(self, contexts: np.ndarray, actions: Sequence[Sequence[Any]] | np.ndarray,
                      seed: int | None = ..., return_layouts: Literal[False] = ..., *,
                      layouts: np.ndarray | None = ...) -> np.ndarray: ...

    @overload
    def imagine_batch(self, contexts: np.ndarray, actions: Sequence[Sequence[Any]] | np.ndarray,
                      seed: int | None, return_layouts: Literal[True], *,
                      layouts: np.ndarray | None = ...) -> tuple[np.ndarray, np.ndarray]: ...

    @overload
    def imagine_batch(self, contexts: np.ndarray, actions: Sequence[Sequence[Any]] | np.ndarray, *,
                      return_layouts: Literal[True], layouts: np.ndarray | None = ...
                      ) -> tuple[np.ndarray, np.ndarray]: ...

    @torch.no_grad()
    def imagine_batch(self, contexts: np.ndarray, actions: Sequence[Sequence[Any]] | np.ndarray,
                      seed: int | None = None, return_layouts: bool = False, *,
                      layouts: np.ndarray | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """``uint8[B,K,H,W,3]`` contexts and ``B`` action sequences of length ``T`` -> ``uint8[B,T,H,W,3]``.

        ``return_layouts`` (layout renderers only): also return the layouts the frames were drawn around,
        ``bool[B,T,F,gh,gw]`` (layout ``t`` is frame ``t``'s; without the colours a stage with ``colour_facts``
        sampled), so experiments can measure what was sampled; given layouts come back as given.

        ``layouts`` (layout renderers only): draw these layouts (``bool[B,T,F,gh,gw]``, e.g. the recorded
        occupancy of the real future; for a renderer told colours also ``uint8[B,T,layout_maps,gh,gw]`` with
        them, :func:`~genex.world_model.data.layout_of`) instead of sampling them; the layout stage is then not
        used (nor needed).
        Frames drawn around a recorded layout carry that recording's labels: the data that teaches a policy
        to read what the renderer draws (:func:`~genex.world_model.imagined_recording.imagine_recording`)."""
        contexts = check_context(contexts, batched=True)
        acts = self._encode(actions)
        b = contexts.shape[0]
        if acts.shape[0] != b:
            raise ValueError(f"got {b} contexts but {acts.shape[0]} action sequences")
        self._check_return_layouts(return_layouts)
        given = self._given_layouts(layouts, b, acts.shape[1])
        gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        window = self._prepare_context(contexts)  # uint8[B,K,H,W,3]
        history = self._layout_inputs(contexts) if given is None else None
        frames, lay = self._roll(window, acts, lambda: None, gen, history, [(b, gen)], given=given)
        return (frames, lay) if return_layouts else frames

    def _given_layouts(self, layouts: np.ndarray | None, b: int, t: int) -> torch.Tensor | None:
        """``layouts`` as ``bool[B,T,F,gh,gw]`` on the CPU after checking it fits this model and the call."""
        if layouts is None:
            return None
        if not self.model_cfg.layout_channels:
            raise ValueError("layouts: this model draws no layouts (layout_channels=0)")
        cfg = self.model_cfg
        arr = np.asarray(layouts)
        coloured = bool(cfg.appearance_facts) and arr.ndim == 5 and arr.shape[2] == cfg.layout_maps
        colours = (f" (or uint8[{b}, {t}, {cfg.layout_maps}, gh, gw] with the colours of the facts "
                   f"{list(cfg.appearance_facts)}: network.with_colours)") if cfg.appearance_facts else ""
        if arr.ndim != 5 or tuple(arr.shape[:3]) != (b, t, cfg.layout_maps if coloured else cfg.layout_channels):
            raise ValueError(f"layouts must be bool[{b}, {t}, {cfg.layout_channels}, gh, gw]{colours} (one layout per "
                             f"imagined frame), got {list(arr.shape)}")
        if coloured:
            if arr.dtype != np.uint8:
                raise ValueError(f"layouts with colour channels must be uint8 (colours 1..255, 0: unknown){colours}, "
                                 f"got {arr.dtype}")
            return torch.from_numpy(np.array(arr))  # a copy: the returned layouts are not the caller's
        return torch.from_numpy(np.array(arr, dtype=bool))

    def _check_return_layouts(self, return_layouts: bool) -> None:
        if return_layouts and not self.model_cfg.layout_channels:
            raise ValueError("return_layouts: this model draws no layouts (layout_channels=0)")

    def _roll(self, window: torch.Tensor, acts: torch.Tensor, noise: Any, generator: torch.Generator | None = None,
              history: torch.Tensor | None = None, groups: Sequence[tuple[int, torch.Generator | None]] = (),
              given: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """The autoregressive rollout: ``window`` uint8[B,K,H,W,3], ``acts`` float[B,T,A]; ``noise()`` gives each
        step's unit starting noise (None: drawn from ``generator`` by :func:`sample_next_frame`). Returns the frames
        ``uint8[B,T,H,W,3]`` and, for a layout renderer, the layouts ``bool[B,T,F,gh,gw]`` (else None).

        A layout renderer also takes ``history``, the layout stage's context (uint8[B,K_layout,H,W,3], CPU), and
        ``groups``: ``(rows, generator)`` per call, in row order; every ``horizon`` steps each call's rows get one
        layout sequence each, sampled from that call's generator before that step's pixel noise. ``given``
        (``bool[B,T,F,gh,gw]``, or ``uint8[B,T,layout_maps,gh,gw]`` with colours) replaces the sampled layouts
        (then no ``history`` is needed). A renderer told colours (``appearance_facts``) draws a sampled layout
        with its colours unknown (0), as it was trained to in ``appearance_dropout`` of its windows."""
        b, cfg = window.shape[0], self.model_cfg
        ctx = self.denoiser.stack_context(window)  # float[B,3K,H,W]
        stage = self.layout if history is not None else None
        lay_acts = self._layout_actions(acts) if stage is not None else torch.zeros(0)
        out, layouts = [], []
        chunk, colours = torch.zeros(0), None
        for t in range(acts.shape[1]):
            layout = None
            if given is not None:
                layout = given[:, t].to(self.device)
            elif stage is not None and history is not None:
                if t % stage.cfg.horizon == 0:  # lay out the next horizon frames
                    chunk, colours = _sample_layouts(stage, history, lay_acts[:, t:], groups)
                layouts.append(chunk[:, t % stage.cfg.horizon])
                layout = layouts[-1].to(self.device)
            if layout is not None:  # a renderer told colours: the stage's, or 0 ("unknown") where it has none
                layout = with_colours(cfg, layout, None if colours is None else colours.to(self.device))
            x = sample_next_frame(self.denoiser, ctx, acts[:, t], self.sampler, generator=generator, noise=noise(),
                                  layout=layout)
            frame = to_uint8(x)
            out.append(frame.cpu())
            x_q = frame.movedim(-1, -3).float().div(127.5).sub(1.0)  # feed back the quantised frame
            ctx = torch.cat([ctx[:, 3:], x_q], dim=1)
            if history is not None:  # the layout stage's context slides over the imagined frames too
                history = torch.cat([history[:, 1:], out[-1][:, None]], dim=1)
        lay = None
        if given is not None:
            lay = given.numpy()
        elif stage is not None:
            lay = torch.stack(layouts, dim=1).numpy() if layouts else \
                np.zeros((b, 0, cfg.layout_channels, *stage.cfg.grid), bool)
        if not out:
            return np.zeros((b, 0, cfg.height, cfg.width, 3), np.uint8), lay
        return torch.stack(out, dim=1).numpy(), lay

    @overload
    def imagine_calls(self, calls: Sequence[_Call], return_layouts: Literal[False] = ...) -> list[np.ndarray]: ...

    @overload
    def imagine_calls(self, calls: Sequence[_Call], return_layouts: Literal[True]
                      ) -> list[tuple[np.ndarray, np.ndarray]]: ...

    @torch.no_grad()
    def imagine_calls(self, calls: Sequence[_Call], return_layouts: bool = False
                      ) -> list[np.ndarray] | list[tuple[np.ndarray, np.ndarray]]:
        """Several :meth:`imagine_batch` calls ``(contexts, actions, seed)`` run as one batch; returns each call's
        frames (with ``return_layouts``: each call's ``(frames, layouts)``). Every call draws its noise (and a
        layout renderer's layouts, first) from its own generator (``seed``), in the order and the shapes it
        would alone, so its result equals ``imagine_batch(*call)`` up to the float arithmetic of a larger batch
        (the rows of a batched convolution may be summed in another order): what one call imagines does not
        depend on the calls it is batched with. The calls must imagine the same number of steps ``T``; their
        contexts may hold different numbers of frames (each is cut or padded to the model's context)."""
        if not calls:
            return []
        self._check_return_layouts(return_layouts)
        windows, encoded, gens, sizes, histories = [], [], [], [], []
        for contexts, actions, seed in calls:
            contexts = check_context(contexts, batched=True)
            acts = self._encode(actions)
            if acts.shape[0] != contexts.shape[0]:
                raise ValueError(f"got {contexts.shape[0]} contexts but {acts.shape[0]} action sequences")
            windows.append(self._prepare_context(contexts))
            histories.append(self._layout_inputs(contexts))
            encoded.append(acts)
            gens.append(torch.Generator().manual_seed(int(seed)) if seed is not None else None)
            sizes.append(contexts.shape[0])
        steps = {a.shape[1] for a in encoded}
        if len(steps) != 1:
            raise ValueError(f"imagine_calls needs calls of one length T, got lengths {sorted(steps)}")
        cfg = self.model_cfg

        def noise() -> torch.Tensor:  # each call's rows from its own generator, as sample_next_frame draws them
            return torch.cat([torch.randn((n, 3, cfg.height, cfg.width), generator=g, device="cpu")
                              for n, g in zip(sizes, gens)])

        history = torch.cat([h for h in histories if h is not None]) if cfg.layout_channels else None
        frames, layouts = self._roll(torch.cat(windows), torch.cat(encoded), noise, history=history,
                                     groups=list(zip(sizes, gens)))
        bounds = np.cumsum([0] + sizes)
        parts = [slice(bounds[i], bounds[i + 1]) for i in range(len(calls))]
        if return_layouts:
            assert layouts is not None
            return [(frames[p], layouts[p]) for p in parts]
        return [frames[p] for p in parts]

    def imagine(self, context_frames: np.ndarray, actions: Sequence[Any], num_samples: int = 1,
                seed: int | None = None) -> np.ndarray:
        """``uint8[K,H,W,3]`` context, ``T`` actions -> ``uint8[S,T,H,W,3]`` (see :mod:`.protocol`)."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        ctx = check_context(context_frames)
        contexts = np.repeat(ctx[None], num_samples, axis=0)
        return self.imagine_batch(contexts, [list(actions)] * num_samples, seed=seed)


def _sample_layouts(stage: "LayoutModel", history: torch.Tensor, actions: torch.Tensor,
                    groups: Sequence[tuple[int, torch.Generator | None]]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(bool[B, horizon, F, gh, gw], uint8[B, F, 3] or None)``: one layout sequence per row from ``history``
    (``uint8[B, K, H, W, 3]``) and the row's next actions (``int64[B, >= 1]``; cut, or padded with the last, to
    ``horizon``), with each fact's sampled colour for a stage with ``colour_facts`` (else None). Each group of
    rows (a call: ``(rows, generator)``, in row order) is sampled from its own generator, as it would be alone."""
    h = stage.cfg.horizon
    a = actions[:, :h]
    a = torch.cat([a, a[:, -1:].expand(-1, h - a.shape[1])], 1)  # past the end: the last action
    parts, colours, r0 = [], [], 0
    for n, g in groups:
        lay, col = stage.sample(history[r0:r0 + n], a[r0:r0 + n], 1, generator=g, return_colours=True)
        parts.append(lay[0])
        colours.append(col[0])
        r0 += n
    return torch.cat(parts), (torch.cat(colours) if stage.cfg.colour_facts else None)
