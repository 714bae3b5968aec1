"""``genex serve-policy``: the tiny policy behind an OpenAI-compatible chat-completions API (FastAPI + uvicorn).

Endpoints:

* ``POST /v1/chat/completions``: a user message whose text is
  :func:`~genex.policy.prompting.build_json_prompt`'s prompt and whose ``image_url``
  parts are base64 data URLs; the reply's message content is the JSON answer the
  prompt asks for. A plain question instead of that prompt ("Is a pedestrian
  visible?", with the task's instruction as a system message, as in training)
  is answered only when it is one this checkpoint was trained on (a
  visibility-fact question whose every word its tokenizer knows; listed by
  ``GET /v1/models``), else refused with a 400 that says how to ask;
* ``GET /v1/models`` (and ``/v1/models/{id}``), ``GET /health``.

Every error has OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``,
so the official ``openai`` SDK raises its usual exceptions: 404 for an unknown
model or route, 400 naming the field (``param``, e.g. ``messages[0].content[1]``)
for a malformed request or prompt, 401 for a missing or wrong key (when
``api_key_env`` is set), 408 when the body stops arriving for ``read_timeout``
seconds (a Content-Length larger than the body never hangs a worker), 413 for a
body over ``max_body_bytes`` (from Content-Length, before reading, and while
reading) or an image over ``max_image_pixels``.

Inference is CPU-bound torch: it runs in the threadpool, one request at a time
(the model keeps caches), so the event loop keeps accepting and rejecting
requests while it works.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import io
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Awaitable, Callable, Literal, MutableMapping

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from genex.policy.data import FACT_QUESTIONS, YES_NO, resize_frames, state_question, text_question
from genex.policy.prompting import PromptFormatError, parse_prompt
from genex.policy.protocol import PolicyInputError, PolicyQuestion, TaggedImage

if TYPE_CHECKING:
    import uvicorn

    from genex.policy.tiny import TinyPolicy
    from genex.policy.tokenizer import WordTokenizer

__all__ = ["create_app", "make_server", "serve", "PolicyServer", "ServeStartupError", "known_questions",
           "DEFAULT_MAX_BODY_BYTES", "DEFAULT_READ_TIMEOUT", "DEFAULT_MAX_IMAGE_PIXELS", "DEFAULT_MAX_IMAGES"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024  # a few dozen 64x64..512x512 PNG frames; OpenAI's image inputs are ~20 MB
DEFAULT_READ_TIMEOUT = 10.0  # seconds to wait for the next piece of a request body
DEFAULT_MAX_IMAGE_PIXELS = 2048 * 2048  # the model sees 64x64 or 128x128; bigger frames only cost memory
DEFAULT_MAX_IMAGES = 64

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ServeStartupError(RuntimeError):
    """The server cannot start (bad checkpoint, port taken, bad limits); its message is one line."""


class APIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# -- the request, as pydantic models (unknown fields are ignored, as OpenAI-compatible servers do) -----------------


def _url_object(value: Any) -> Any:
    """``"image_url": "data:..."`` (a shorthand some clients send) -> ``{"url": "data:..."}``."""
    return {"url": value} if isinstance(value, str) else value


def _parts(value: Any) -> Any:
    """``"content": "text"`` -> one text part, so a message's content has a single type (clean error paths)."""
    return [{"type": "text", "text": value}] if isinstance(value, str) else value


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ImageURL(_Lenient):
    url: str
    detail: str | None = None


class ContentPart(_Lenient):
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: Annotated[ImageURL | None, BeforeValidator(_url_object)] = None

    @model_validator(mode="after")
    def _has_its_field(self) -> "ContentPart":
        if self.type == "text" and self.text is None:
            raise ValueError("a 'text' part needs a 'text' string")
        if self.type == "image_url" and self.image_url is None:
            raise ValueError("an 'image_url' part needs \"image_url\": {\"url\": \"data:image/png;base64,...\"}")
        return self


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Annotated[list[ContentPart] | None, BeforeValidator(_parts)] = None


class ChatCompletionRequest(_Lenient):
    """What the endpoint reads; sampling options are type-checked and ignored (the answer is deterministic)."""

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    n: int | None = None
    stream: bool | None = None


# -- validation errors -> OpenAI's shape, with the field path as `param` ----------------------------------------------


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    return {dict: "an object", list: "a list", bool: "a boolean", int: "a number", float: "a number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _field_path(loc: tuple[Any, ...]) -> str | None:
    """``("body", "messages", 0, "content", 1)`` -> ``"messages[0].content[1]"``."""
    out = ""
    for x in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{x}]" if isinstance(x, int) else (f".{x}" if out else str(x))
    return out or None


def _validation_error(errors: list[dict[str, Any]]) -> APIError:
    e = errors[0]
    loc, kind = tuple(e.get("loc", ())), e.get("type", "")
    if kind == "json_invalid":
        detail = (e.get("ctx") or {}).get("error", "")
        return APIError(400, f"the request body is not valid JSON: {detail} at character {loc[-1]}",
                        code="invalid_json")
    param = _field_path(loc)
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        what = f"expected an object, got {_kind(e.get('input'))}"
        if param is None and isinstance(e.get("input"), (bytes, str)):
            what += "; send a JSON object with Content-Type: application/json"
    elif kind == "missing":
        what = "is required" if param else "the request body is empty; send a JSON object"
    elif kind == "list_type" and param and param.endswith(".content"):
        what = f"expected a string or a list of content parts, got {_kind(e.get('input'))}"
    elif kind == "too_short":
        what = f"expected at least {(e.get('ctx') or {}).get('min_length', 1)} item(s), got none"
    elif kind == "value_error":
        what = str((e.get("ctx") or {}).get("error", e.get("msg", "")))
    else:
        what = f"{e.get('msg', 'invalid value')} (got {_kind(e.get('input'))})"
    more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" if len(errors) > 1 else ""
    code = "missing_required_parameter" if kind == "missing" else (
        "invalid_type" if kind.endswith("_type") else "invalid_value")
    return APIError(400, (f"{param}: {what}" if param else what) + more, param=param, code=code)


# -- plain-chat questions this checkpoint knows ------------------------------------------------------------------------

_TEXT_Q = re.compile(r"^is the text '(.+)' on screen\s*\??$", re.IGNORECASE)
_STATE_Q = re.compile(r"^is '(.+)' switched on\s*\??$", re.IGNORECASE)


def known_questions(tokenizer: "WordTokenizer") -> dict[str, str]:
    """``{fact id: question}`` for the visibility-fact questions whose every word the checkpoint's tokenizer knows.

    The tokenizer is built from the training prompts, so a question made only of known words is one the model
    was trained to answer (an unknown word would reach the model as ``<unk>``).
    """
    return {fact: text for fact, text in FACT_QUESTIONS.items() if not tokenizer.unknown_words(text)}


def _words(tokenizer: "WordTokenizer", text: str) -> list[str]:
    words = tokenizer.split(text)
    while words and words[-1] in ("?", "."):
        words.pop()
    return words


def _match_question(tokenizer: "WordTokenizer", known: dict[str, str], text: str) -> PolicyQuestion | None:
    """The known question ``text`` asks (case, spacing and the final "?" do not matter), or None."""
    asked = _words(tokenizer, text)
    if not asked:
        return None
    for fact, question in known.items():
        if _words(tokenizer, question) == asked:
            return PolicyQuestion(fact, question, YES_NO)
    for pattern, template, qid in ((_TEXT_Q, text_question, "text"), (_STATE_Q, state_question, "state")):
        m = pattern.match(text.strip())
        if m and not tokenizer.unknown_words(template(m.group(1))):  # the template's words too: GUI-trained only
            return PolicyQuestion(qid, template(m.group(1)), YES_NO)
    return None


# -- images -------------------------------------------------------------------------------------------------------------


def _decode_image(url: str, param: str, max_pixels: int, size: int | None) -> np.ndarray:
    """A base64 data URL -> ``uint8[H, W, 3]`` (resized to ``size`` when given), checking the pixel count from the
    header before decoding, so a small file that inflates to a huge image is refused without the memory cost."""
    from PIL import Image

    if not url.startswith("data:image/") or ";base64," not in url:
        raise APIError(400, f"{param}: only base64 data URLs (data:image/png;base64,...) are supported; this "
                       f"server fetches nothing (got {url[:40]!r})", param=param, code="invalid_image_url")
    try:
        raw = base64.b64decode(url.split(";base64,", 1)[1], validate=True)
    except (binascii.Error, ValueError) as e:
        raise APIError(400, f"{param}: the data URL is not valid base64: {e}", param=param,
                       code="invalid_image") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(raw))
            w, h = im.size
            if w * h > max_pixels:
                raise APIError(413, f"{param}: the image is {w}x{h} ({w * h / 1e6:.1f} megapixels); this server "
                               f"takes at most {max_pixels / 1e6:.1f} megapixels per image (the model sees "
                               f"{size or '?'}x{size or '?'}: downscale it)", param=param, code="image_too_large")
            array = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except APIError:
        raise
    except Image.DecompressionBombError as e:
        raise APIError(413, f"{param}: {e}", param=param, code="image_too_large") from None
    except Exception as e:  # PIL raises many types for a broken file
        raise APIError(400, f"{param}: the data URL does not decode to an image: {e}", param=param,
                       code="invalid_image") from None
    return array if size is None else resize_frames(array[None], size)[0]


# -- the ASGI guard: auth, body size and read timeout, before FastAPI reads anything -----------------------------------


async def _send_error(send: Send, error: APIError, close: bool = False) -> None:
    data = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if close:  # the rest of the request (if any) will not be read: the connection cannot be reused
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


#: a refused body up to this size is read and dropped before the 413, so the client sees the reply (BodyGuard._drain)
DRAIN_LIMIT_BYTES = 64 * 2 ** 20


class BodyGuard:
    """Pure ASGI middleware: checks the key, then reads the whole body under a size limit and an idle timeout.

    Why not leave it to FastAPI: ``await request.body()`` reads without limit or timeout, so a lying
    Content-Length would hold a connection and a huge body would be buffered whole. A body over the limit
    declared in Content-Length is refused before reading it.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, max_body_bytes: int,
                 read_timeout: float, api_key_env: str | None) -> None:
        self.app, self.max_body_bytes, self.read_timeout, self.api_key_env = app, max_body_bytes, read_timeout, \
            api_key_env

    def _authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        key = os.environ.get(self.api_key_env or "", "")
        given = next((v for k, v in headers if k == b"authorization"), b"")
        return bool(key) and hmac.compare_digest(given, f"Bearer {key}".encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", [])
        if self.api_key_env and scope["path"].startswith("/v1") and not self._authorized(headers):
            await _send_error(send, APIError(401, "missing or wrong API key: send Authorization: Bearer <key>",
                                             code="invalid_api_key"), close=True)
            return
        lengths = [v for k, v in headers if k == b"content-length"]
        if lengths:
            text = lengths[0].decode("latin-1").strip()
            if len(lengths) > 1 or not text.isascii() or not text.isdigit():
                await _send_error(send, APIError(400, f"invalid Content-Length header {text!r}: expected one "
                                                 "non-negative integer", code="invalid_content_length"), True)
                return
            if int(text) > self.max_body_bytes:
                await self._drain(receive, int(text))
                await _send_error(send, self._too_large(f"Content-Length is {int(text)} bytes"), True)
                return
        body = bytearray()
        more = True
        while more:
            try:
                message = await asyncio.wait_for(receive(), self.read_timeout)
            except asyncio.TimeoutError:
                await _send_error(send, APIError(
                    408, f"the request body stopped arriving ({len(body)} bytes read, no more for "
                    f"{self.read_timeout:g} s): is Content-Length larger than the body?", code="request_timeout"),
                    close=True)
                return
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                if message.get("more_body", False):
                    await self._drain(receive, DRAIN_LIMIT_BYTES)
                await _send_error(send, self._too_large(f"the body is over {len(body)} bytes"), close=True)
                return
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # disconnect detection still works

        await self.app(scope, replay, send)

    async def _drain(self, receive: Receive, declared: int) -> None:
        """Read and drop a refused body (up to :data:`DRAIN_LIMIT_BYTES`, each chunk within the read timeout).

        Why: a client that writes its whole body before reading the reply (the ``openai`` SDK, httpx) sees a
        connection reset, not the 413, when the server closes while it is still writing. Bodies beyond the cap
        are not read: their senders get the reset rather than tying up the server."""
        if declared > DRAIN_LIMIT_BYTES:
            return
        read = 0
        while read <= DRAIN_LIMIT_BYTES:
            try:
                message = await asyncio.wait_for(receive(), self.read_timeout)
            except asyncio.TimeoutError:
                return
            if message["type"] != "http.request":
                return
            read += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    def _too_large(self, what: str) -> APIError:
        return APIError(413, f"{what}; this server accepts at most {self.max_body_bytes} bytes "
                        f"({self.max_body_bytes / 2 ** 20:.3g} MiB, --max-body-mb): send fewer or smaller frames",
                        code="request_too_large")


# -- the app ------------------------------------------------------------------------------------------------------------

_HOW_TO_ASK = ("build the text part with genex.policy.prompting.build_json_prompt(instruction, questions, images): "
               "it carries a line 'Questions (JSON): [{\"id\": \"q1\", \"text\": \"...\", \"answers\": [\"yes\", "
               "\"no\"]}]' (and 'Instruction: ...', 'Images (JSON): [...]' lines), and attach one image_url part "
               "per frame")


def create_app(policy: "TinyPolicy", *, model_name: str = "genex-tiny", api_key_env: str | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, read_timeout: float = DEFAULT_READ_TIMEOUT,
               max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, max_images: int = DEFAULT_MAX_IMAGES) -> FastAPI:
    """The FastAPI app serving ``policy`` as ``model_name`` (state lives in the app, none in the module).

    ``api_key_env``: the environment variable whose value clients must send as ``Authorization: Bearer``
    (read at each request, never logged). Frames are resized to the model's size when ``policy.resize``.
    """
    if max_body_bytes <= 0 or read_timeout <= 0 or max_image_pixels <= 0 or max_images <= 0:
        raise ValueError("max_body_bytes, read_timeout, max_image_pixels and max_images must be positive")
    app = FastAPI(title="genex policy", docs_url=None, redoc_url=None, openapi_url=None)
    lock = threading.Lock()  # the policy's caches are not thread-safe, and torch is already using the cores
    tokenizer = policy.tokenizer
    known = known_questions(tokenizer)
    created = int(time.time())
    size = policy.image_size if getattr(policy, "resize", False) else None
    model_card = {"id": model_name, "object": "model", "created": created, "owned_by": "genex",
                  "genex": {"image_size": policy.image_size, "known_questions": list(known.values())}}

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = _validation_error(list(exc.errors()))
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = (f"no route {request.method} {request.url.path}; this server has POST /v1/chat/completions, "
                       "GET /v1/models and GET /health")
        else:
            message = f"{request.method} {request.url.path}: {exc.detail}"
        err = APIError(exc.status_code, message, code="not_found" if exc.status_code == 404 else None)
        return JSONResponse(err.body(), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:  # logged by uvicorn; never kills the server
        err = APIError(500, f"internal error ({type(exc).__name__}); see the server log", type="server_error")
        return JSONResponse(err.body(), status_code=500)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_name}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card]}

    @app.get("/v1/models/{model_id:path}")
    def model(model_id: str) -> dict[str, Any]:
        if model_id != model_name:
            raise _unknown_model(model_id, model_name)
        return model_card

    @app.post("/v1/chat/completions")
    def chat_completions(body: ChatCompletionRequest) -> dict[str, Any]:
        # a sync endpoint: FastAPI runs it in the threadpool, so decoding and inference never block the loop
        if body.model != model_name:
            raise _unknown_model(body.model, model_name)
        if body.stream:
            raise APIError(400, "stream: streaming is not supported; send stream=false", param="stream",
                           code="unsupported_value")
        if body.n not in (None, 1):
            raise APIError(400, f"n: this server returns one choice, got n={body.n}", param="n",
                           code="unsupported_value")
        texts, instruction_texts, urls = [], [], []
        for i, m in enumerate(body.messages):
            for j, part in enumerate(m.content or []):
                if part.type == "text" and m.role == "user":
                    texts.append(part.text or "")
                elif part.type == "text" and m.role in ("system", "developer"):
                    instruction_texts.append(part.text or "")
                elif part.type == "image_url" and m.role == "user" and part.image_url is not None:
                    urls.append((part.image_url.url, f"messages[{i}].content[{j}].image_url.url"))
        if not urls:
            raise APIError(400, "messages: no image_url parts in the user messages; attach each frame as "
                           "{\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,...\"}}",
                           param="messages", code="missing_image")
        if len(urls) > max_images:
            raise APIError(413, f"messages: {len(urls)} images; this server takes at most {max_images} per request",
                           param="messages", code="too_many_images")
        text = "\n".join(texts)
        if any(line.startswith(("Questions (JSON):", "Images (JSON):", "Instruction:", "Actions (JSON):"))
               for line in text.splitlines()):
            try:
                instruction, raw_questions, tags, _ = parse_prompt(text)
            except PromptFormatError as e:
                raise APIError(400, f"messages: {e}", param="messages", code="invalid_prompt") from None
            questions = [PolicyQuestion(q["id"], q["text"], tuple(q["answers"])) for q in raw_questions]
            plain = None
        else:
            plain = _match_question(tokenizer, known, text)
            if plain is None:
                examples = "; e.g. " + ", ".join(repr(q) for q in list(known.values())[:3]) if known else ""
                raise APIError(400, f"messages: {text[:80]!r} is not a genex policy prompt: {_HOW_TO_ASK}. "
                               "A plain question (with the task's instruction as a system message) is answered "
                               "only when it is one this checkpoint was trained on (GET /v1/models lists them"
                               f"{examples})", param="messages", code="unsupported_prompt")
            instruction, questions, tags = " ".join(t.strip() for t in instruction_texts).strip(), [plain], []
            if not instruction:  # trained on "instruction <sep> question": without it, answers are worse than
                # always saying "no" on crosswalk frames (0.86 vs 0.95 accuracy with it)
                raise APIError(400, f"messages: {plain.text!r} is a question this checkpoint knows, but it was "
                               "trained with the task's instruction before every question: send the instruction "
                               "as a system message, e.g. {\"role\": \"system\", \"content\": \"Drive past the "
                               "crosswalk ahead safely and without wasting time.\"}", param="messages",
                               code="missing_instruction")
        if tags and len(tags) != len(urls):
            raise APIError(400, f"messages: the 'Images (JSON):' line tags {len(tags)} images but the message has "
                           f"{len(urls)} image_url parts", param="messages", code="invalid_prompt")
        images = []
        for k, (url, param) in enumerate(urls):
            tag = tags[k] if tags else {}
            images.append(TaggedImage(_decode_image(url, param, max_image_pixels, size),
                                      step=int(tag.get("step") or 0), imagined=bool(tag.get("imagined", False)),
                                      sample=int(tag.get("sample") or 0)))
        with lock:
            try:
                r = policy.answer(images, instruction, questions)
            except PolicyInputError as e:
                raise APIError(400, f"messages: {e}", param="messages", code="invalid_prompt") from None
        rows = [{q.id: {a: round(float(p), 6) for a, p in zip(q.answers, r.per_image[q.id][i])} for q in questions}
                for i in range(len(images))]
        if plain is None:
            content = {"images": rows, "action": None, "rationale": None}
        else:
            probs = {a: round(float(p), 6) for a, p in zip(plain.answers, r.probs[plain.id])}
            content = {"question": plain.text, "answer": max(probs, key=probs.__getitem__), "probabilities": probs,
                       "images": rows}
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                "model": model_name, "system_fingerprint": None,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": json.dumps(content)},
                             "finish_reason": "stop", "logprobs": None}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}

    app.add_middleware(BodyGuard, max_body_bytes=max_body_bytes, read_timeout=read_timeout, api_key_env=api_key_env)
    return app


def _unknown_model(asked: str, served: str) -> APIError:
    return APIError(404, f"The model {asked!r} does not exist; this server serves {served!r}", param="model",
                    code="model_not_found")


# -- running it ---------------------------------------------------------------------------------------------------------


class PolicyServer:
    """uvicorn on a socket bound at construction (so ``port=0`` gives the real port at once).

    Use :meth:`start` / :meth:`stop` (or ``with``) for a background thread, or :meth:`serve_forever` to block;
    ``shutdown`` and ``server_close`` keep the ``http.server`` names the previous server had.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, *, access_log: bool = False,
                 log_config: dict[str, Any] | None = None, log_level: str = "warning") -> None:
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind((host, port))
            self.socket.listen(128)
        except OSError:
            self.socket.close()
            raise
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        config = uvicorn.Config(app, log_config=log_config, log_level=log_level, access_log=access_log,
                                lifespan="off", timeout_graceful_shutdown=5)
        self._server: uvicorn.Server = uvicorn.Server(config)
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = self.server_address[0]
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.server_address[1]}/v1"

    def serve_forever(self) -> None:
        """Block until :meth:`shutdown` (or Ctrl-C, in the main thread)."""
        self._done.clear()
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self._done.set()

    def start(self, timeout: float = 10.0) -> "PolicyServer":
        """Serve in a daemon thread; returns once the server accepts requests."""
        self._thread = threading.Thread(target=self.serve_forever, name="genex-policy-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._done.is_set() or time.monotonic() > deadline:
                raise RuntimeError("the policy server did not start")
            time.sleep(0.01)
        return self

    def shutdown(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None or self._server.started:
            self._done.wait(timeout)

    def server_close(self) -> None:
        self.socket.close()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> "PolicyServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_server(policy: "TinyPolicy", host: str = "127.0.0.1", port: int = 0, model_name: str = "genex-tiny",
                api_key_env: str | None = None, **limits: Any) -> PolicyServer:
    """A server (not started: call ``start()`` or ``serve_forever()``); ``port=0`` picks a free port.
    ``limits``: ``max_body_bytes``, ``read_timeout``, ``max_image_pixels``, ``max_images`` (see :func:`create_app`)."""
    return PolicyServer(create_app(policy, model_name=model_name, api_key_env=api_key_env, **limits), host, port)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 400 else text[:400] + " ..."


def serve(checkpoint: str | Path, host: str = "127.0.0.1", port: int = 8765, model_name: str = "genex-tiny",
          api_key_env: str | None = None, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
          read_timeout: float = DEFAULT_READ_TIMEOUT, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
          access_log: bool = True) -> None:
    """Serve a tiny checkpoint until interrupted (frames of any size are resized to the model's).

    Raises :class:`ServeStartupError` (a one-line message) when the checkpoint cannot be loaded or the port
    cannot be bound, before anything is served.
    """
    import torch
    from uvicorn.config import LOGGING_CONFIG

    from genex.policy.tiny import TinyPolicy

    torch.set_num_threads(1)  # one request at a time; more threads only contend on a tiny model
    try:
        policy = TinyPolicy.from_checkpoint(checkpoint, resize=True)
    except (ValueError, OSError, RuntimeError, KeyError) as e:  # CheckpointError, TokenizerMismatchError, torch
        raise ServeStartupError(f"cannot load the checkpoint {checkpoint}: {_one_line(e)}") from None
    if api_key_env and not os.environ.get(api_key_env):
        raise ServeStartupError(f"--api-key-env {api_key_env}: that environment variable is not set (every "
                                "request would be refused)")
    try:
        app = create_app(policy, model_name=model_name, api_key_env=api_key_env, max_body_bytes=max_body_bytes,
                         read_timeout=read_timeout, max_image_pixels=max_image_pixels)
    except ValueError as e:
        raise ServeStartupError(_one_line(e)) from None
    try:
        server = PolicyServer(app, host, port, access_log=access_log, log_config=LOGGING_CONFIG, log_level="info")
    except OSError as e:
        raise ServeStartupError(f"cannot listen on {host}:{port}: {_one_line(e)}") from None
    print(f"genex serve-policy: {server.url}  model={model_name}  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown: not an error here
        pass
    finally:
        server.server_close()
