"""``genex serve-policy``: the tiny policy behind an OpenAI-compatible chat-completions API (stdlib only).

Endpoints: ``POST /v1/chat/completions`` (a user message whose text is
:func:`~genex.policy.prompting.build_json_prompt`'s prompt and whose
``image_url`` parts are base64 data URLs), ``GET /v1/models``, ``GET /health``.
The reply's message content is the JSON answer the prompt asks for. Set
``api_key_env`` to require ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from genex.policy.openai_api import decode_image_data_url
from genex.policy.prompting import parse_prompt
from genex.policy.protocol import PolicyInputError, PolicyQuestion, TaggedImage
from genex.policy.tiny import TinyPolicy

__all__ = ["make_server", "serve"]

log = logging.getLogger(__name__)


class _BadRequest(ValueError):
    pass


def _handle_chat(policy: TinyPolicy, lock: threading.Lock, body: dict[str, Any], model_name: str) -> dict:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("'messages' must be a non-empty list")
    texts, urls = [], []
    for m in messages:
        if m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for part in content:
                if part.get("type") == "text":
                    texts.append(part.get("text", ""))
                elif part.get("type") == "image_url":
                    url = part.get("image_url")
                    urls.append(url.get("url") if isinstance(url, dict) else url)
    if not urls:
        raise _BadRequest("no image_url parts in the user message")
    try:
        instruction, questions, tags, actions = parse_prompt("\n".join(texts))
        qs = [PolicyQuestion(q["id"], q["text"], tuple(q["answers"])) for q in questions]
        arrays = [decode_image_data_url(u) for u in urls]
    except (ValueError, KeyError, TypeError) as e:
        raise _BadRequest(str(e)) from e
    images = []
    for i, a in enumerate(arrays):
        tag = tags[i] if i < len(tags) and isinstance(tags[i], dict) else {}
        images.append(TaggedImage(a, step=int(tag.get("step", 0)), imagined=bool(tag.get("imagined", False)),
                                  sample=int(tag.get("sample", 0))))
    with lock:
        try:
            r = policy.answer(images, instruction, qs)
        except PolicyInputError as e:
            raise _BadRequest(str(e)) from e
    rows = [{q.id: {a: round(float(p), 6) for a, p in zip(q.answers, r.per_image[q.id][i])} for q in qs}
            for i in range(len(images))]
    content = json.dumps({"images": rows, "action": None, "rationale": None})
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}


def make_server(policy: TinyPolicy, host: str = "127.0.0.1", port: int = 0, model_name: str = "genex-tiny",
                api_key_env: str | None = None) -> ThreadingHTTPServer:
    """A server (not started: call ``serve_forever``, e.g. in a thread); ``port=0`` picks a free port."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        server_version = "genex-policy/1"

        def log_message(self, fmt: str, *args: Any) -> None:  # route to logging, never print
            log.info("%s " + fmt, self.address_string(), *args)

        def _send(self, code: int, obj: dict) -> None:
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, code: int, message: str, kind: str = "invalid_request_error") -> None:
            self._send(code, {"error": {"message": message, "type": kind}})

        def _authorized(self) -> bool:
            if not api_key_env:
                return True
            key = os.environ.get(api_key_env, "")
            if key and self.headers.get("Authorization", "") == f"Bearer {key}":
                return True
            self._error(401, "missing or wrong API key", "authentication_error")
            return False

        def do_GET(self) -> None:  # noqa: N802
            if self.path.rstrip("/") in ("/health", ""):
                self._send(200, {"status": "ok"})
            elif self.path.rstrip("/") == "/v1/models":
                if self._authorized():
                    self._send(200, {"object": "list", "data": [{"id": model_name, "object": "model",
                                                                 "owned_by": "genex"}]})
            else:
                self._error(404, f"no route {self.path}")

        def do_POST(self) -> None:  # noqa: N802
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._error(404, f"no route {self.path}; use /v1/chat/completions")
                return
            if not self._authorized():
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length).decode())
                if not isinstance(body, dict):
                    raise _BadRequest("the body must be a JSON object")
                self._send(200, _handle_chat(policy, lock, body, model_name))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                self._error(400, f"the body is not JSON: {e}")
            except _BadRequest as e:
                self._error(400, str(e))
            except Exception as e:  # pragma: no cover - reported, never kills the server
                log.exception("policy server error")
                self._error(500, f"{type(e).__name__}: {e}", "server_error")

    return ThreadingHTTPServer((host, port), Handler)


def serve(checkpoint: str | Path, host: str = "127.0.0.1", port: int = 8765, model_name: str = "genex-tiny",
          api_key_env: str | None = None) -> None:
    """Serve a tiny checkpoint until interrupted (frames of any size are resized to the model's)."""
    import torch

    torch.set_num_threads(1)
    policy = TinyPolicy.from_checkpoint(checkpoint, resize=True)
    server = make_server(policy, host, port, model_name, api_key_env)
    log.warning("serving %s as %r on http://%s:%d/v1 (Ctrl-C to stop)", checkpoint, model_name, host,
                server.server_address[1])
    print(f"genex serve-policy: http://{host}:{server.server_address[1]}/v1  model={model_name}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
