"""The ``openai`` backend: any OpenAI-compatible chat-completions endpoint with image inputs.

Works with vLLM, Ollama, hosted APIs and ``genex serve-policy``. The API key is
read from an environment variable (``api_key_env``) at request time; it is
never logged, stored in the trace, or shown in errors. Requests have a timeout
and bounded retries with exponential backoff on connection errors, timeouts,
429 and 5xx; other HTTP errors fail at once with the server's message.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Sequence

import numpy as np

from genex.policy.prompting import build_json_prompt, parse_json_answer
from genex.policy.protocol import PolicyResponse, TaggedImage, aggregate, validate_images, validate_questions

__all__ = ["OpenAIPolicy", "PolicyServerError", "encode_image_data_url", "decode_image_data_url"]

log = logging.getLogger(__name__)


class PolicyServerError(RuntimeError):
    """The chat endpoint could not be reached or refused the request."""


def encode_image_data_url(image: np.ndarray) -> str:
    """``uint8[H, W, 3]`` -> ``data:image/png;base64,...``."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def decode_image_data_url(url: str) -> np.ndarray:
    """``data:image/...;base64,...`` -> ``uint8[H, W, 3]``; raises ValueError on anything else."""
    from PIL import Image

    if not url.startswith("data:image/") or ";base64," not in url:
        raise ValueError("only base64 data URLs (data:image/png;base64,...) are supported")
    try:
        raw = base64.b64decode(url.split(";base64,", 1)[1], validate=True)
        return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), dtype=np.uint8)
    except Exception as e:  # PIL raises many types
        raise ValueError(f"image data URL does not decode to an image: {e}") from e


class OpenAIPolicy:
    """A :class:`~genex.policy.protocol.Policy` over an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        base_url: e.g. ``http://127.0.0.1:8765/v1`` (``/chat/completions`` is appended).
        model: the model name the server expects.
        api_key_env: name of the environment variable holding the key; unset -> no auth header
            (unless ``require_api_key``).
        timeout: seconds per request; max_retries: extra attempts after the first; backoff: first wait (s),
            doubled each retry up to ``max_backoff``.
    """

    name = "openai"

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 require_api_key: bool = False, timeout: float = 30.0, max_retries: int = 3,
                 backoff: float = 0.5, max_backoff: float = 8.0, temperature: float = 0.0,
                 max_tokens: int = 1024) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if max_retries < 0 or timeout <= 0 or backoff < 0:
            raise ValueError("need timeout > 0, max_retries >= 0, backoff >= 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.require_api_key = require_api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.temperature = temperature
        self.max_tokens = max_tokens

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIPolicy(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        elif self.require_api_key:
            raise PolicyServerError(f"no API key: set the environment variable {self.api_key_env}")
        return headers

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.base_url + path
        data = json.dumps(body).encode()
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))
            request = urllib.request.Request(url, data=data, headers=self._headers(), method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                    return json.loads(resp.read().decode())
            except urllib.error.HTTPError as e:
                detail = e.read().decode(errors="replace")[:500]
                if e.code == 429 or e.code >= 500:
                    last = f"HTTP {e.code}: {detail}"
                    log.warning("%s: %s (attempt %d/%d)", url, last, attempt + 1, self.max_retries + 1)
                    continue
                hint = " (check the API key variable %s)" % self.api_key_env if e.code in (401, 403) else ""
                raise PolicyServerError(f"{url} refused the request: HTTP {e.code}: {detail}{hint}") from None
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as e:
                reason = getattr(e, "reason", e)
                last = f"{type(e).__name__}: {reason}"
                log.warning("%s: %s (attempt %d/%d)", url, last, attempt + 1, self.max_retries + 1)
            except json.JSONDecodeError as e:
                raise PolicyServerError(f"{url} answered with something that is not JSON: {e}") from None
        raise PolicyServerError(f"could not reach {url} after {self.max_retries + 1} attempts ({last}); "
                                "is the server running (e.g. `genex serve-policy --checkpoint ...`) and the "
                                "base URL right?")

    def answer(self, images: Sequence[TaggedImage], prompt: str, questions: Sequence[Any],
               actions: Sequence[str] = ()) -> PolicyResponse:
        validate_images(images)
        validate_questions(questions)
        content: list[dict[str, Any]] = [{"type": "text", "text": build_json_prompt(prompt, questions, images,
                                                                                  actions)}]
        for im in images:
            content.append({"type": "image_url", "image_url": {"url": encode_image_data_url(im.image)}})
        body = {"model": self.model, "messages": [{"role": "user", "content": content}],
                "temperature": self.temperature, "max_tokens": self.max_tokens}
        t0 = time.perf_counter()
        reply = self._post("/chat/completions", body)
        try:
            text = reply["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            text = ""
        if isinstance(text, list):  # some servers return content parts
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        per_image, action, rationale, notes = parse_json_answer(text, questions, len(images), actions)
        if not text:
            notes.insert(0, "fallback: the reply had no message content")
        imagined = np.array([im.imagined for im in images], dtype=bool)
        probs = {qid: aggregate(p, imagined) for qid, p in per_image.items()}
        trace = {"backend": "openai", "model": self.model, "base_url": self.base_url,
                 "latency_s": round(time.perf_counter() - t0, 4), "parse_notes": notes, "raw": text[:2000]}
        return PolicyResponse(probs, per_image, imagined, action=action, rationale=rationale, trace=trace)
