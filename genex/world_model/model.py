"""``DiffusionWorldModel``: the trained denoiser rolled out autoregressively.

Each imagined step samples the next frame from the last ``K`` frames and the
action (a few Euler/Heun steps), then slides the window. ``S`` samples run as
one batch.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from genex.devices import select_device

from .actions import action_dim, encode_actions
from .config import SAMPLING_ONLY, SamplerConfig, WorldModelConfig
from .denoiser import Denoiser, to_uint8
from .protocol import check_context
from .sampler import sample_next_frame, sampler_of

__all__ = ["DiffusionWorldModel", "select_device"]  # select_device: re-exported from genex.devices


class DiffusionWorldModel:
    """Action-conditioned next-frame diffusion model implementing the ``WorldModel`` protocol.

    Args:
        denoiser: the trained :class:`Denoiser` (EMA weights for inference).
        action_names: the env's ``action_names`` so integer actions map onto the
            model's name vocabulary (driving); ignored for GUI models.
        info: checkpoint metadata (training command, data, ...), for reference.
        sampler: how frames are sampled (:class:`SamplerConfig`); default: the one the denoiser was loaded with
            (the checkpoint's), else the defaults.
    """

    context_is_state = True

    def __init__(self, denoiser: Denoiser, action_names: Sequence[str] | None = None,
                 info: dict[str, Any] | None = None, device: str | torch.device = "auto",
                 sampler: SamplerConfig | None = None) -> None:
        self.device = select_device(device) if isinstance(device, str) else device
        self.denoiser = denoiser.to(self.device).eval()
        self.model_cfg: WorldModelConfig = denoiser.cfg
        self.sampler = sampler_of(denoiser) if sampler is None else sampler
        self.action_names = tuple(action_names) if action_names is not None else None
        self.info = dict(info or {})

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
        """Check this model fits ``env`` (frame size, actions) and adopt its ``action_names``; returns self."""
        from .config import check_env_compatible

        check_env_compatible(self.model_cfg, env, source=self.info.get("path", "this model"))
        from genex.envs.foreign import declared

        names = declared(env, "action_names", None)
        if self.model_cfg.action_family == "discrete" and names is not None:
            self.action_names = tuple(names)
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

    def _prepare_context(self, contexts: np.ndarray) -> torch.Tensor:
        cfg = self.model_cfg
        if contexts.shape[2:4] != (cfg.height, cfg.width):
            raise ValueError(f"context frames are {contexts.shape[2]}x{contexts.shape[3]}, this model imagines "
                             f"{cfg.height}x{cfg.width} frames")
        k = contexts.shape[1]
        if k >= cfg.context:
            contexts = contexts[:, k - cfg.context:]
        else:
            pad = np.repeat(contexts[:, :1], cfg.context - k, axis=1)
            contexts = np.concatenate([pad, contexts], axis=1)
        return torch.from_numpy(np.ascontiguousarray(contexts)).to(self.device)

    @torch.no_grad()
    def imagine_batch(self, contexts: np.ndarray, actions: Sequence[Sequence[Any]] | np.ndarray,
                      seed: int | None = None) -> np.ndarray:
        """``uint8[B,K,H,W,3]`` contexts and ``B`` action sequences of length ``T`` -> ``uint8[B,T,H,W,3]``."""
        contexts = check_context(contexts, batched=True)
        acts = self._encode(actions)
        b = contexts.shape[0]
        if acts.shape[0] != b:
            raise ValueError(f"got {b} contexts but {acts.shape[0]} action sequences")
        gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        window = self._prepare_context(contexts)  # uint8[B,K,H,W,3]
        return self._roll(window, acts, lambda: None, gen)

    def _roll(self, window: torch.Tensor, acts: torch.Tensor, noise: Any,
              generator: torch.Generator | None = None) -> np.ndarray:
        """The autoregressive rollout: ``window`` uint8[B,K,H,W,3], ``acts`` float[B,T,A]; ``noise()`` gives each
        step's unit starting noise (None: drawn from ``generator`` by :func:`sample_next_frame`)."""
        b = window.shape[0]
        ctx = self.denoiser.stack_context(window)  # float[B,3K,H,W]
        out = []
        for t in range(acts.shape[1]):
            x = sample_next_frame(self.denoiser, ctx, acts[:, t], self.sampler, generator=generator, noise=noise())
            frame = to_uint8(x)
            out.append(frame.cpu())
            x_q = frame.movedim(-1, -3).float().div(127.5).sub(1.0)  # feed back the quantised frame
            ctx = torch.cat([ctx[:, 3:], x_q], dim=1)
        if not out:
            return np.zeros((b, 0, self.model_cfg.height, self.model_cfg.width, 3), np.uint8)
        return torch.stack(out, dim=1).numpy()

    @torch.no_grad()
    def imagine_calls(self, calls: Sequence[tuple[np.ndarray, Sequence[Sequence[Any]] | np.ndarray, int | None]]
                      ) -> list[np.ndarray]:
        """Several :meth:`imagine_batch` calls ``(contexts, actions, seed)`` run as one batch; returns each call's
        frames. Every call draws its noise from its own generator (``seed``), in the order and the shapes it
        would alone, so its result equals ``imagine_batch(*call)`` up to the float arithmetic of a larger batch
        (the rows of a batched convolution may be summed in another order): what one call imagines does not
        depend on the calls it is batched with. The calls must imagine the same number of steps ``T``; their
        contexts may hold different numbers of frames (each is cut or padded to the model's context)."""
        if not calls:
            return []
        windows, encoded, gens, sizes = [], [], [], []
        for contexts, actions, seed in calls:
            contexts = check_context(contexts, batched=True)
            acts = self._encode(actions)
            if acts.shape[0] != contexts.shape[0]:
                raise ValueError(f"got {contexts.shape[0]} contexts but {acts.shape[0]} action sequences")
            windows.append(self._prepare_context(contexts))
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

        frames = self._roll(torch.cat(windows), torch.cat(encoded), noise)
        bounds = np.cumsum([0] + sizes)
        return [frames[bounds[i]:bounds[i + 1]] for i in range(len(calls))]

    def imagine(self, context_frames: np.ndarray, actions: Sequence[Any], num_samples: int = 1,
                seed: int | None = None) -> np.ndarray:
        """``uint8[K,H,W,3]`` context, ``T`` actions -> ``uint8[S,T,H,W,3]`` (see :mod:`.protocol`)."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        ctx = check_context(context_frames)
        contexts = np.repeat(ctx[None], num_samples, axis=0)
        return self.imagine_batch(contexts, [list(actions)] * num_samples, seed=seed)
