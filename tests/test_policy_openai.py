"""The openai backend against a real local server (``genex serve-policy``'s), plus prompt/answer parsing."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from genex.policy import OpenAIPolicy, PolicyInputError, PolicyServerError, TinyPolicy, save_tiny_vlm
from genex.policy.prompting import build_json_prompt, extract_json_object, parse_json_answer, parse_prompt
from genex.policy.server import make_server
from test_policy import QUESTIONS, images, tiny_model

torch.set_num_threads(1)


@pytest.fixture()
def served():
    """The FastAPI app under a real uvicorn, in a thread, on a free port."""
    model, tok = tiny_model()
    policy = TinyPolicy(model, tok, resize=True)
    with make_server(policy, port=0) as server:
        yield policy, server.url


def test_openai_backend_matches_tiny_policy_through_real_server(served):
    policy, url = served
    client = OpenAIPolicy(url, "genex-tiny", timeout=10, max_retries=0)
    ims = images(2) + images(2, seed=3, imagined=True)
    remote = client.answer(ims, "Drive safely", QUESTIONS, actions=("go", "stop"))
    local = TinyPolicy(policy.model, policy.tokenizer).answer(ims, "Drive safely", QUESTIONS)
    for q in QUESTIONS:
        np.testing.assert_allclose(remote.per_image[q.id], local.per_image[q.id], atol=1e-5)
        np.testing.assert_allclose(remote.probs[q.id], local.probs[q.id], atol=1e-5)
    assert remote.imagined.tolist() == [False, False, True, True]
    assert remote.trace["parse_notes"] == [] and remote.trace["backend"] == "openai"


def test_server_rejects_bad_requests_with_clear_errors(served):
    _, url = served
    client = OpenAIPolicy(url, "genex-tiny", max_retries=0)
    with pytest.raises(PolicyServerError, match="HTTP 400.*Questions"):
        client._post("/chat/completions", {"model": "genex-tiny", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "hello"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]})
    with pytest.raises(PolicyServerError, match="HTTP 400.*image_url"):
        client._post("/chat/completions", {"model": "genex-tiny", "messages": [{"role": "user", "content": "hi"}]})
    with pytest.raises(PolicyServerError, match="HTTP 400.*model"):  # OpenAI requires the model too
        client._post("/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
    with pytest.raises(PolicyServerError, match="HTTP 404.*genex-tiny"):
        OpenAIPolicy(url, "gpt-4o", max_retries=0).answer(images(1), "x", QUESTIONS)


def test_client_validates_input_before_sending():
    client = OpenAIPolicy("http://127.0.0.1:9", "m", max_retries=0)
    with pytest.raises(PolicyInputError, match="uint8"):
        client.answer([images(1)[0].__class__(np.zeros((8, 8, 3), np.float32))], "x", QUESTIONS)
    with pytest.raises(ValueError, match="http"):
        OpenAIPolicy("localhost:8000", "m")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_a_clear_error_after_bounded_retries():
    client = OpenAIPolicy(f"http://127.0.0.1:{_free_port()}/v1", "m", max_retries=2, backoff=0.01, timeout=2)
    t0 = time.time()
    with pytest.raises(PolicyServerError, match="after 3 attempts.*server running"):
        client.answer(images(1), "x", QUESTIONS)
    assert time.time() - t0 < 5


def test_timeout_then_error():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections, never answers
    try:
        client = OpenAIPolicy(f"http://127.0.0.1:{listener.getsockname()[1]}/v1", "m", timeout=0.2,
                              max_retries=1, backoff=0.01)
        with pytest.raises(PolicyServerError, match="after 2 attempts"):
            client.answer(images(1), "x", QUESTIONS)
    finally:
        listener.close()


class _Scripted(BaseHTTPRequestHandler):
    """Answers with the next (status, content) of ``replies``; records the Authorization headers."""

    replies: list = []
    seen_auth: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen_auth.append(self.headers.get("Authorization"))
        code, content = type(self).replies.pop(0)
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]} if code == 200
                          else {"error": {"message": content}}).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def scripted():
    _Scripted.replies, _Scripted.seen_auth = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_retries_5xx_then_succeeds_and_key_never_logged(scripted, monkeypatch, caplog):
    monkeypatch.setenv("GENEX_TEST_KEY", "sk-secret-123")
    good = json.dumps({"images": [{"red": {"yes": 0.8, "no": 0.2}, "blue": "no"}], "action": "stop",
                       "rationale": "red is there"})
    _Scripted.replies = [(503, "busy"), (500, "oops"), (200, good)]
    client = OpenAIPolicy(scripted, "m", api_key_env="GENEX_TEST_KEY", max_retries=3, backoff=0.01)
    with caplog.at_level(logging.DEBUG):
        r = client.answer(images(1), "x", QUESTIONS, actions=("go", "stop"))
    np.testing.assert_allclose(r.probs["red"], [0.8, 0.2])
    np.testing.assert_allclose(r.probs["blue"], [0.0, 1.0])
    assert r.action == 1 and r.rationale == "red is there"
    assert _Scripted.seen_auth == ["Bearer sk-secret-123"] * 3
    assert "sk-secret-123" not in caplog.text + repr(client) + json.dumps(r.trace)


def test_client_errors_are_not_retried_and_401_names_the_variable(scripted, monkeypatch):
    monkeypatch.setenv("GENEX_TEST_KEY", "sk-secret-123")
    _Scripted.replies = [(401, "bad key"), (200, "{}")]
    client = OpenAIPolicy(scripted, "m", api_key_env="GENEX_TEST_KEY", max_retries=3, backoff=0.01)
    with pytest.raises(PolicyServerError, match="HTTP 401.*GENEX_TEST_KEY") as err:
        client.answer(images(1), "x", QUESTIONS)
    assert "sk-secret-123" not in str(err.value)
    assert len(_Scripted.seen_auth) == 1
    monkeypatch.delenv("GENEX_TEST_KEY")
    with pytest.raises(PolicyServerError, match="set the environment variable GENEX_TEST_KEY"):
        OpenAIPolicy(scripted, "m", api_key_env="GENEX_TEST_KEY", require_api_key=True).answer(
            images(1), "x", QUESTIONS)


def test_malformed_model_output_falls_back_in_the_trace(scripted):
    _Scripted.replies = [(200, "Sure! I think there is a red square."), (200, "")]
    client = OpenAIPolicy(scripted, "m", max_retries=0)
    r = client.answer(images(2), "x", QUESTIONS)
    np.testing.assert_allclose(r.per_image["red"], 0.5)
    assert any("fallback" in n for n in r.trace["parse_notes"])
    r = client.answer(images(1), "x", QUESTIONS)
    assert r.trace["parse_notes"][0].startswith("fallback")


def test_parse_json_answer_is_robust():
    qs = QUESTIONS
    per, action, rationale, notes = parse_json_answer(
        'text before ```json\n{"images": [{"red": {"YES": 3, "no": 1, "maybe": 5}, "blue": [0.1, 0.9]},'
        ' {"red": "purple"}], "action": 7}\n``` after', qs, 3, actions=("go",))
    np.testing.assert_allclose(per["red"][0], [0.75, 0.25])
    np.testing.assert_allclose(per["blue"][0], [0.1, 0.9])
    np.testing.assert_allclose(per["red"][1], [0.5, 0.5])  # unknown option -> uniform
    np.testing.assert_allclose(per["red"][2], [0.5, 0.5])  # missing image
    assert action is None and rationale is None
    text = " | ".join(notes)
    assert "maybe" in text and "purple" in text and "2 image entries for 3" in text and "action 7" in text
    per, _, _, notes = parse_json_answer('{"red": {"yes": -1}}', qs, 1)
    np.testing.assert_allclose(per["red"][0], [0.5, 0.5])
    per, _, _, notes = parse_json_answer('{"answers": {"red": "yes"}}', qs, 2)
    np.testing.assert_allclose(per["red"], [[1, 0], [1, 0]])
    assert "joint answer" in notes[0]
    for junk in ["", "[1, 2]", "{not json", '{"images": 5}', "null"]:
        per, _, _, notes = parse_json_answer(junk, qs, 1)
        assert notes and per["red"].shape == (1, 2)
    assert extract_json_object('noise {"a": "}{"} tail') == {"a": "}{"}


def test_prompt_roundtrip():
    ims = images(1) + images(1, imagined=True)
    text = build_json_prompt("Turn on VPN", QUESTIONS, ims, actions=("open tab 1",))
    instruction, qs, tags, actions = parse_prompt(text)
    assert instruction == "Turn on VPN" and [q["id"] for q in qs] == ["red", "blue"]
    assert tags[1]["imagined"] is True and actions == ["open tab 1"]
    with pytest.raises(ValueError, match="Questions"):
        parse_prompt("no questions here")


def test_serve_policy_command(tmp_path):
    """`genex serve-policy` as a real process, queried by the openai backend."""
    model, tok = tiny_model()
    save_tiny_vlm(tmp_path / "ckpt", model, tok)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "genex.cli", "serve-policy", "--checkpoint",
                             str(tmp_path / "ckpt"), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        # startup: retries wait up to ~20 s for the process to listen
        client = OpenAIPolicy(f"http://127.0.0.1:{port}/v1", "genex-tiny", max_retries=12, backoff=0.1,
                              max_backoff=2.0, timeout=10)
        r = client.answer(images(1, size=32), "Drive safely", QUESTIONS)  # the server resizes
        assert r.per_image["red"].shape == (1, 2) and not r.trace["parse_notes"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
