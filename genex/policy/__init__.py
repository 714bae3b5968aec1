"""VLM policies: answer questions about real and imagined frames.

One protocol (:class:`Policy`), three backends:

* ``tiny`` (default): :class:`TinyPolicy`, a small VLM trained here on visibility labels;
* ``hf``: :class:`HFPolicy`, any local transformers image-text-to-text checkpoint (extra ``genex[hf]``);
* ``openai``: :class:`OpenAIPolicy`, any OpenAI-compatible chat-completions endpoint with image inputs.

:func:`make_policy` builds one by name. This package never imports ``genex.envs``.
"""

from __future__ import annotations

from typing import Any

from genex.policy.checkpoint import CheckpointError, load_tiny_vlm, save_tiny_vlm
from genex.policy.model import REDUCER_MODES, TinyVLM, TinyVLMConfig
from genex.policy.protocol import (Policy, PolicyInputError, PolicyQuestion, PolicyResponse, TaggedImage,
                                   UnknownAnswerError)
from genex.policy.tiny import TinyPolicy
from genex.policy.tokenizer import TokenizerMismatchError, WordTokenizer

__all__ = [
    "Policy", "PolicyQuestion", "PolicyResponse", "TaggedImage", "PolicyInputError", "UnknownAnswerError",
    "TinyPolicy", "TinyVLM", "TinyVLMConfig", "REDUCER_MODES", "WordTokenizer", "TokenizerMismatchError",
    "CheckpointError", "load_tiny_vlm", "save_tiny_vlm", "make_policy", "HFPolicy", "OpenAIPolicy",
    "PolicyServerError",
]


def __getattr__(name: str) -> Any:
    # Lazy: the hf backend imports transformers, the openai backend only the stdlib.
    if name == "HFPolicy":
        from genex.policy.hf import HFPolicy

        return HFPolicy
    if name in ("OpenAIPolicy", "PolicyServerError"):
        from genex.policy import openai_api

        return getattr(openai_api, name)
    raise AttributeError(f"module 'genex.policy' has no attribute {name!r}")


def make_policy(backend: str = "tiny", **kwargs: Any) -> Policy:
    """Build a policy by backend name: ``tiny`` (``checkpoint=...``), ``hf`` (``model_path=...``) or
    ``openai`` (``base_url=..., model=..., api_key_env=...``)."""
    if backend == "tiny":
        checkpoint = kwargs.pop("checkpoint", None)
        if checkpoint is None:
            raise ValueError("the tiny backend needs checkpoint=PATH (e.g. checkpoints/policy/tiny-driving)")
        return TinyPolicy.from_checkpoint(checkpoint, **kwargs)
    if backend == "hf":
        from genex.policy.hf import HFPolicy

        return HFPolicy(**kwargs)
    if backend == "openai":
        from genex.policy.openai_api import OpenAIPolicy

        return OpenAIPolicy(**kwargs)
    raise ValueError(f"unknown policy backend {backend!r}; choose tiny, hf or openai")
