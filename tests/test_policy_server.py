"""`genex serve-policy` on FastAPI + uvicorn: every malformed request gets a 4xx in OpenAI's error shape that
names what is wrong; the official `openai` SDK gets answers; nothing hangs; concurrent requests stay correct."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import torch
from fastapi.testclient import TestClient

from genex.policy import TinyPolicy
from genex.policy.openai_api import encode_image_data_url
from genex.policy.prompting import PromptFormatError, build_json_prompt, parse_prompt
from genex.policy.server import create_app, make_server
from test_policy import QUESTIONS, frames, images, tiny_model

torch.set_num_threads(1)

DRIVING = Path(__file__).resolve().parents[1] / "checkpoints" / "policy" / "tiny-driving"
MODEL = "genex-tiny"


@pytest.fixture(scope="module")
def policy() -> TinyPolicy:
    model, tok = tiny_model()
    return TinyPolicy(model, tok, resize=True)


@pytest.fixture(scope="module")
def client(policy) -> TestClient:
    return TestClient(create_app(policy, max_body_bytes=200_000, max_image_pixels=64 * 64))


@pytest.fixture(scope="module")
def server(policy):
    """A real uvicorn in a thread: what raw sockets, timeouts and the openai SDK need."""
    with make_server(policy, max_body_bytes=200_000, read_timeout=1.0) as srv:
        yield srv


def _parts(ims, prompt: str | None = None) -> list[dict]:
    text = build_json_prompt("Drive safely", QUESTIONS, ims) if prompt is None else prompt
    return [{"type": "text", "text": text}] + [
        {"type": "image_url", "image_url": {"url": encode_image_data_url(im.image)}} for im in ims]


def _body(content, model: str = MODEL) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}]}


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    return err


def test_valid_request_matches_the_local_policy(client, policy):
    ims = images(2) + images(1, seed=5, imagined=True)
    r = client.post("/v1/chat/completions", json={**_body(_parts(ims)), "temperature": 0, "max_tokens": 50})
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["object"] == "chat.completion" and reply["model"] == MODEL
    answer = json.loads(reply["choices"][0]["message"]["content"])
    local = TinyPolicy(policy.model, policy.tokenizer).answer(ims, "Drive safely", QUESTIONS)
    for q in QUESTIONS:
        got = np.array([[row[q.id][a] for a in q.answers] for row in answer["images"]])
        np.testing.assert_allclose(got, local.per_image[q.id], atol=1e-5)


_IMG = encode_image_data_url(frames(1)[0])


def _prompt_with(line: str) -> list[dict]:
    return [{"type": "text", "text": f"Instruction: Drive safely\n{line}"},
            {"type": "image_url", "image_url": {"url": _IMG}}]


@pytest.mark.parametrize("body, status, param, words", [
    (_body("x", model="gpt-4o"), 404, "model", ["gpt-4o", "genex-tiny"]),
    ({"messages": [{"role": "user", "content": "x"}]}, 400, "model", ["required"]),
    ({"model": MODEL, "messages": ["hello"]}, 400, "messages[0]", ["expected an object"]),
    ({"model": MODEL, "messages": []}, 400, "messages", ["at least 1"]),
    ({"model": MODEL, "messages": "hi"}, 400, "messages", ["list"]),
    (_body(["hello", {"type": "image_url", "image_url": {"url": _IMG}}]), 400, "messages[0].content[0]",
     ["expected an object"]),
    (_body([{"type": "image_url"}]), 400, "messages[0].content[0]", ["image_url"]),
    (_body([{"type": "image_url", "image_url": {"link": _IMG}}]), 400, "messages[0].content[0].image_url.url",
     ["required"]),
    (_body([{"type": "audio", "audio": "x"}]), 400, "messages[0].content[0].type", ["'text' or 'image_url'"]),
    (_body(5), 400, "messages[0].content", ["string or a list"]),
    ({"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role", ["'user'"]),
    ({**_body("x"), "temperature": "hot"}, 400, "temperature", ["number"]),
    ({**_body("x"), "stream": True}, 400, "stream", ["streaming"]),
    (_body("Drive safely"), 400, "messages", ["image_url"]),
    (_body([{"type": "text", "text": "hello"}, {"type": "image_url", "image_url": {"url": _IMG}}]), 400,
     "messages", ["Questions (JSON)", "build_json_prompt"]),
    (_body(_prompt_with('Questions (JSON): ["a"]')), 400, "messages", ["questions[0] is a string"]),
    (_body(_prompt_with('Questions (JSON): [{"id": "a", "answers": ["yes", "no"]}]')), 400, "messages",
     ["questions[0] has no 'text'"]),
    (_body(_prompt_with('Questions (JSON): {"id": "a"}')), 400, "messages", ["must be a non-empty JSON list"]),
    (_body(_prompt_with('Questions (JSON): [{"id": "a", "text": "t", "answers": ["yes"]}]')), 400, "messages",
     ["questions[0].answers"]),
    (_body(_prompt_with("Questions (JSON): [{'id': 1}]")), 400, "messages", ["not valid JSON"]),
    (_body(_prompt_with('Images (JSON): [{"step": "two"}]\nQuestions (JSON): '
                        '[{"id": "a", "text": "t", "answers": ["yes", "no"]}]')), 400, "messages",
     ["images[0].step"]),
    (_body(_prompt_with('Questions (JSON): [{"id": "a", "text": "t", "answers": ["sure", "never"]}]')), 400,
     "messages", ["does not know"]),
    (_body([{"type": "text", "text": "Questions (JSON): []"}, {"type": "image_url", "image_url": "http://x/a.png"}]),
     400, "messages", ["non-empty"]),
    (_body(_prompt_with('Questions (JSON): [{"id": "a", "text": "t", "answers": ["yes", "no"]}]')[:1]
           + [{"type": "image_url", "image_url": "http://x/a.png"}]), 400, "messages[0].content[1].image_url.url",
     ["base64 data URLs"]),
    (_body(_prompt_with('Questions (JSON): [{"id": "a", "text": "t", "answers": ["yes", "no"]}]')[:1]
           + [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]), 400,
     "messages[0].content[1].image_url.url", ["does not decode"]),
])
def test_malformed_requests_get_a_4xx_naming_the_field(client, body, status, param, words):
    err = _error(client.post("/v1/chat/completions", json=body), status)
    assert err["param"] == param and err["type"] == "invalid_request_error"
    for w in words:
        assert w in err["message"], err["message"]


def test_bodies_that_are_not_a_json_object(client):
    url = "/v1/chat/completions"
    assert _error(client.post(url, content=b"{bad", headers={"content-type": "application/json"}), 400)[
        "code"] == "invalid_json"
    assert "empty" in _error(client.post(url, content=b"", headers={"content-type": "application/json"}),
                             400)["message"]
    assert "expected an object, got a list" in _error(client.post(url, json=[1]), 400)["message"]
    assert "Content-Type: application/json" in _error(client.post(url, content=b'{"model": "x"}'), 400)["message"]


@pytest.mark.parametrize("length", ["abc", "-5", "1e3", ""])
def test_invalid_content_length_is_400(client, length):
    r = client.post("/v1/chat/completions", content=b"{}",
                    headers={"content-type": "application/json", "content-length": length})
    assert "Content-Length" in _error(r, 400)["message"]


def test_body_and_image_limits_are_413(client):
    big = _body("x" * 300_000)
    err = _error(client.post("/v1/chat/completions", json=big), 413)
    assert err["code"] == "request_too_large" and "--max-body-mb" in err["message"]
    ims = images(1, size=80)  # 6400 pixels > the client fixture's 64*64
    err = _error(client.post("/v1/chat/completions", json=_body(_parts(ims))), 413)
    assert err["param"] == "messages[0].content[1].image_url.url" and "80x80" in err["message"]


def test_routes_models_and_health(client):
    err = _error(client.get("/v1/nope"), 404)
    assert "POST /v1/chat/completions" in err["message"]
    _error(client.post("/v1/completions", json={}), 404)
    _error(client.get("/v1/chat/completions"), 405)
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == [MODEL]
    assert {"id", "object", "created", "owned_by"} <= set(models["data"][0]) and models["data"][0]["object"] == "model"
    assert client.get(f"/v1/models/{MODEL}").json()["id"] == MODEL
    assert _error(client.get("/v1/models/gpt-4o"), 404)["code"] == "model_not_found"
    assert client.get("/health").json()["status"] == "ok"


def test_bearer_auth(policy, monkeypatch):
    monkeypatch.setenv("GENEX_TEST_SERVER_KEY", "sk-test-42")
    c = TestClient(create_app(policy, api_key_env="GENEX_TEST_SERVER_KEY"))
    body = _body(_parts(images(1)))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sk-test-42"}):
        err = _error(c.post("/v1/chat/completions", json=body, headers=headers), 401)
        assert err["code"] == "invalid_api_key" and "sk-test-42" not in err["message"]
    _error(c.get("/v1/models"), 401)
    assert c.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer sk-test-42"}).status_code == 200
    assert c.get("/health").status_code == 200  # liveness needs no key
    monkeypatch.delenv("GENEX_TEST_SERVER_KEY")  # unset variable: nobody gets in
    _error(c.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer "}), 401)


# -- against a real uvicorn -----------------------------------------------------------------------------------------


def _raw(server, data: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send ``data`` on a fresh connection; everything the server answers until it closes, and how long it took."""
    t0 = time.monotonic()
    with socket.create_connection(server.server_address, timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out, time.monotonic() - t0


def _head(length: str) -> bytes:
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def test_lying_content_length_is_408_within_the_read_timeout(server):
    out, seconds = _raw(server, _head("100") + b'{"model"')  # 8 bytes of 100, then silence
    assert out.startswith(b"HTTP/1.1 408") and b"request_timeout" in out
    assert 0.9 < seconds < 4  # the fixture's read_timeout is 1 s; the connection is closed after
    out, seconds = _raw(server, _head("2") + b"{}trailing bytes that are no request\r\n\r\n")  # longer than claimed
    assert out.startswith(b"HTTP/1.1 400") and seconds < 4


def test_invalid_content_length_and_oversized_bodies_on_the_wire(server):
    for length in ("abc", "-5"):  # uvicorn's HTTP parser refuses these before the app sees them
        out, seconds = _raw(server, _head(length) + b"{}")
        assert out.startswith(b"HTTP/1.1 400") and seconds < 4
    out, _ = _raw(server, _head("999999999") + b"{}")  # refused from the header, before reading
    assert out.startswith(b"HTTP/1.1 413") and b"request_too_large" in out

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(30):
            yield b"x" * 10_000

    r = httpx.post(server.url + "/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    assert _error(r, 413)["code"] == "request_too_large"


def test_openai_sdk_answers_and_errors(server):
    sdk = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=20)
    ims = images(2, seed=1)
    reply = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": _parts(ims)}],
                                        temperature=0)
    answer = json.loads(reply.choices[0].message.content)
    assert len(answer["images"]) == 2
    for row in answer["images"]:
        for q in QUESTIONS:
            assert set(row[q.id]) == set(q.answers) and sum(row[q.id].values()) == pytest.approx(1, abs=1e-5)
    assert [m.id for m in sdk.models.list().data] == [MODEL]
    with pytest.raises(openai.NotFoundError, match="genex-tiny"):
        sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": _parts(ims)}])
    with pytest.raises(openai.BadRequestError, match=r"messages\[0\]"):
        sdk.chat.completions.create(model=MODEL, messages=["hello"])  # type: ignore[list-item]
    with pytest.raises(openai.APIStatusError) as too_big:
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x" * 300_000}])
    assert too_big.value.status_code == 413


def test_eight_concurrent_requests_are_all_right(server, policy):
    sdk = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=30)
    batches = [images(1 + i % 3, seed=10 + i) for i in range(8)]
    expected = [TinyPolicy(policy.model, policy.tokenizer).answer(ims, "Drive safely", QUESTIONS) for ims in batches]

    def ask(ims):
        reply = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": _parts(ims)}])
        return json.loads(reply.choices[0].message.content)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, batches))
    for answer, local in zip(answers, expected):
        for q in QUESTIONS:
            got = np.array([[row[q.id][a] for a in q.answers] for row in answer["images"]])
            np.testing.assert_allclose(got, local.per_image[q.id], atol=1e-5)


# -- plain chat questions ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def driving() -> TestClient:
    return TestClient(create_app(TinyPolicy.from_checkpoint(DRIVING, resize=True)))


def test_plain_question_the_checkpoint_knows_is_answered(driving):
    frame = encode_image_data_url(frames(1, size=64)[0])
    messages = [{"role": "system", "content": "Drive past the crosswalk ahead safely and without wasting time."},
                {"role": "user", "content": [{"type": "text", "text": "is a pedestrian visible"},
                                             {"type": "image_url", "image_url": {"url": frame}}]}]
    r = driving.post("/v1/chat/completions", json={"model": MODEL, "messages": messages})
    assert r.status_code == 200, r.text
    answer = json.loads(r.json()["choices"][0]["message"]["content"])
    assert answer["question"] == "Is a pedestrian visible?" and answer["answer"] in ("yes", "no")
    assert sum(answer["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert "Is a pedestrian visible?" in driving.get("/v1/models").json()["data"][0]["genex"]["known_questions"]


def test_plain_questions_are_refused_with_how_to_ask(driving, client):
    frame = {"type": "image_url", "image_url": {"url": encode_image_data_url(frames(1, size=64)[0])}}
    err = _error(driving.post("/v1/chat/completions", json=_body([
        {"type": "text", "text": "Is a pedestrian visible?"}, frame])), 400)
    assert err["code"] == "missing_instruction" and "system message" in err["message"]
    err = _error(driving.post("/v1/chat/completions", json=_body([
        {"type": "text", "text": "What colour is the sky?"}, frame])), 400)
    assert err["code"] == "unsupported_prompt" and "build_json_prompt" in err["message"]
    assert "Is a pedestrian visible?" in err["message"]  # an example of what it knows
    # the test model's tokenizer never saw "pedestrian": not a question it knows
    err = _error(client.post("/v1/chat/completions", json={"model": MODEL, "messages": [
        {"role": "system", "content": "Drive safely"},
        {"role": "user", "content": [{"type": "text", "text": "Is a pedestrian visible?"}, frame]}]}), 400)
    assert err["code"] == "unsupported_prompt"


# -- the prompt parser and the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("line, words", [
    ('Questions (JSON): [{"id": "a", "text": "t"}]', "questions[0] has no 'answers'"),
    ('Questions (JSON): [{"id": 3, "text": "t", "answers": ["y", "n"]}]', "questions[0].id is a number"),
    ('Questions (JSON): [{"id": "a", "text": "t", "answers": "yes/no"}]', "questions[0].answers is a string"),
    ('Questions (JSON): [{"id": "a", "text": "t", "answers": ["y", "n"]}, {"id": "a", "text": "u", '
     '"answers": ["y", "n"]}]', "questions[1].id 'a' is used twice"),
    ("Questions (JSON): [{'id': 'a'}]", "not valid JSON"),
    ('Questions (JSON): []', "non-empty"),
    ('Actions (JSON): "go"\nQuestions (JSON): [{"id": "a", "text": "t", "answers": ["y", "n"]}]', "Actions"),
])
def test_parse_prompt_names_what_is_wrong(line, words):
    with pytest.raises(PromptFormatError) as err:
        parse_prompt(line)
    assert words in str(err.value) and isinstance(err.value, ValueError)


def test_cli_bad_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    from genex.cli import main

    (tmp_path / "ckpt").mkdir()
    for ckpt in (tmp_path / "missing", tmp_path / "ckpt"):
        assert main(["serve-policy", "--checkpoint", str(ckpt), "--port", "0"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("genex serve-policy: cannot load the checkpoint")
    assert main(["serve-policy", "--checkpoint", str(DRIVING), "--max-body-mb", "0"]) == 2
    assert "--max-body-mb" in capsys.readouterr().err


def test_cli_without_fastapi_says_what_to_install(monkeypatch, capsys):
    import sys

    from genex.cli import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn -> ImportError
    assert main(["serve-policy", "--checkpoint", "x"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'genex[serve]'" in err and err.count("\n") == 1



@pytest.mark.slow
def test_load_bench_smoke():
    """bench/policy_server_load.py (a README command), tiny: 2 clients for 2 s; every request and 4xx as expected."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "bench" / "policy_server_load.py"), "--clients", "2", "--seconds",
                        "2", "--read-timeout", "1"], capture_output=True, text=True, timeout=240, cwd=root)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "| 408 | 408 |" in r.stdout and "(!)" not in r.stdout
