"""Load test of `genex serve-policy` from the official `openai` SDK, plus one of each malformed request.

Starts the real command (`python -m genex.cli serve-policy`, a separate process, so its memory is its own) on
the shipped tiny checkpoint; N client threads, each with its own `openai.OpenAI`, send chat requests for T
seconds: one 64x64 frame (a new random frame each time, so the frame history never short-cuts the encoder)
and the driving fact questions, as `genex.policy.prompting.build_json_prompt` writes them. Every reply is
parsed with `parse_json_answer` and must give a probability row that sums to 1 for every question, with no
parse notes; anything else counts as an error. Prints requests, requests/s, p50/p99 latency, errors, the
server's RSS at start / middle / end and the latency of GET /health meanwhile (the event loop must stay
responsive while inference runs in the threadpool), then the status code of each malformed request. Exit status 1 when
there was an error or a malformed request got an unexpected status.

    python bench/policy_server_load.py [--clients 8] [--seconds 60] [--checkpoint checkpoints/policy/tiny-driving]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np
import openai

from genex.policy.openai_api import encode_image_data_url
from genex.policy.prompting import build_json_prompt, parse_json_answer
from genex.policy.protocol import PolicyQuestion, TaggedImage

ROOT = Path(__file__).resolve().parents[1]
INSTRUCTION = "Drive past the crosswalk ahead safely and without wasting time."
QUESTIONS = [PolicyQuestion(f, t, ("yes", "no")) for f, t in (
    ("pedestrian", "Is a pedestrian visible?"), ("ball", "Is a ball visible?"), ("truck", "Is a truck visible?"),
    ("bus", "Is a bus visible?"), ("oncoming_car", "Is an oncoming car visible?"))]


def rss_bytes(pid: int) -> int:
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss
    except ImportError:  # /proc fallback (Linux)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(checkpoint: str, port: int, log_path: Path, read_timeout: float = 10.0) -> subprocess.Popen:
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "genex.cli", "serve-policy", "--checkpoint", checkpoint,
                             "--port", str(port), "--read-timeout", str(read_timeout)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not answer /health within 60 s")


def request_content(frame: np.ndarray) -> list[dict[str, Any]]:
    ims = [TaggedImage(frame)]
    return [{"type": "text", "text": build_json_prompt(INSTRUCTION, QUESTIONS, ims)},
            {"type": "image_url", "image_url": {"url": encode_image_data_url(frame)}}]


def check_reply(text: str) -> str | None:
    """None when the reply is a full, valid answer; else what is wrong."""
    per_image, _, _, notes = parse_json_answer(text, QUESTIONS, 1)
    if notes:
        return "; ".join(notes)
    for q in QUESTIONS:
        row = per_image[q.id][0]
        if not (np.all(row >= 0) and abs(row.sum() - 1) < 1e-4):
            return f"{q.id}: {row}"
    return None


def load(base_url: str, clients: int, seconds: float, pid: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    rss = {"start": rss_bytes(pid)}

    def client(i: int) -> None:
        sdk = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=60)
        rng = np.random.default_rng(i)
        while time.monotonic() < stop:
            content = request_content(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
            t0 = time.perf_counter()
            try:
                reply = sdk.chat.completions.create(model="genex-tiny", messages=[{"role": "user",
                                                                                   "content": content}])
                problem = check_reply(reply.choices[0].message.content or "")
            except openai.OpenAIError as e:
                problem = f"{type(e).__name__}: {e}"
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                if problem:
                    errors.append(problem)

    def middle() -> None:
        time.sleep(seconds / 2)
        rss["middle"] = rss_bytes(pid)

    health: list[float] = []

    def ping() -> None:  # the event loop must stay responsive while inference runs in the threadpool
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                http.get(base_url.rsplit("/v1", 1)[0] + "/health").raise_for_status()
                health.append(time.perf_counter() - t0)
                time.sleep(0.25)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    threads += [threading.Thread(target=middle), threading.Thread(target=ping)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    rss["end"] = rss_bytes(pid)
    lat = np.array(latencies) * 1000
    return {"requests": len(latencies), "wall": wall, "rps": len(latencies) / wall,
            "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)), "errors": errors, "rss": rss,
            "health_p50": float(np.percentile(health, 50)) * 1000, "health_max": max(health) * 1000}


def raw(port: int, data: bytes, timeout: float = 30) -> tuple[int, float]:
    """Status code of the answer to raw bytes (0: the connection closed without one), and the seconds it took."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while b"\r\n" not in out and (chunk := s.recv(4096)):
                out += chunk
        except ConnectionResetError:
            pass
    parts = out.split(b" ", 2)
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), time.monotonic() - t0


def head(length: str) -> bytes:
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def png_url(width: int, height: int, noise: bool = False) -> str:
    from PIL import Image

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (height, width, 3), dtype=np.uint8) if noise else np.zeros((height, width, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def malformed(base_url: str, port: int) -> list[tuple[str, int, int, str]]:
    """``(case, expected status, got status, detail)`` for one of each malformed request."""
    frame = {"type": "image_url", "image_url": {"url": png_url(64, 64, noise=True)}}
    good = request_content(np.zeros((64, 64, 3), np.uint8))
    bad_questions = [{"type": "text", "text": f"Instruction: {INSTRUCTION}\nQuestions (JSON): "
                                              '[{"id": "pedestrian", "answers": ["yes", "no"]}]'}, frame]
    http = httpx.Client(base_url=base_url, timeout=60)

    def post(body: Any) -> Callable[[], tuple[int, str]]:
        def send() -> tuple[int, str]:
            r = http.post("/chat/completions", json=body)
            return r.status_code, r.json()["error"]["message"][:70] if r.status_code >= 400 else "ok"
        return send

    def on_wire(data: bytes) -> Callable[[], tuple[int, str]]:
        def send() -> tuple[int, str]:
            code, seconds = raw(port, data)
            return code, f"answered after {seconds:.1f} s"
        return send

    def body_of(messages: Any, model: str = "genex-tiny") -> dict:
        return {"model": model, "messages": messages}

    user = [{"role": "user", "content": good}]
    cases: list[tuple[str, int, Callable[[], tuple[int, str]]]] = [
        ("valid request (control)", 200, post(body_of(user))),
        ("wrong model", 404, post(body_of(user, model="gpt-4o"))),
        ('messages: ["hello"]', 400, post(body_of(["hello"]))),
        ("non-object content part", 400, post(body_of([{"role": "user", "content": ["hello", frame]}]))),
        ("malformed Questions line", 400, post(body_of([{"role": "user", "content": bad_questions}]))),
        ("plain question, no instruction", 400, post(body_of([{"role": "user", "content": [
            {"type": "text", "text": "Is a pedestrian visible?"}, frame]}]))),
        ("plain question + system instruction", 200, post(body_of([{"role": "system", "content": INSTRUCTION}, {
            "role": "user", "content": [{"type": "text", "text": "Is a pedestrian visible?"}, frame]}]))),
        ("3000x3000 image (small PNG)", 413, post(body_of([{"role": "user", "content": [
            good[0], {"type": "image_url", "image_url": {"url": png_url(3000, 3000)}}]}]))),
        ("27 MB image", 413, post(body_of([{"role": "user", "content": [
            good[0], {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 27_000_000}}]}]))),
        ("Content-Length: abc", 400, on_wire(head("abc") + b"{}")),
        ("Content-Length: -5", 400, on_wire(head("-5") + b"{}")),
        ("Content-Length > body (lying)", 408, on_wire(head("1000") + b'{"model": "genex-tiny"')),
        ("body longer than Content-Length", 400, on_wire(head("2") + b"{}" + b"x" * 5000 + b"\r\n\r\n")),
        ("unknown route", 404, lambda: (http.get("/nope").status_code, "")),
    ]
    out = []
    for name, expected, send in cases:
        try:
            code, detail = send()
        except (httpx.HTTPError, OSError) as e:
            code, detail = 0, f"{type(e).__name__}: {e}"
        out.append((name, expected, code, detail))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "policy" / "tiny-driving"))
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--read-timeout", type=float, default=10.0, help="the server's --read-timeout (the 408 case waits it)")
    args = p.parse_args(argv)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(args.checkpoint, port, Path(tmp) / "server.log", args.read_timeout)
        try:
            r = load(base_url, args.clients, args.seconds, proc.pid)
            cases = malformed(base_url, port)
            rss_after_malformed = rss_bytes(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    mib = {k: v / 2 ** 20 for k, v in r["rss"].items()}
    print(f"genex serve-policy on {Path(args.checkpoint).name}: {args.clients} openai-SDK clients for "
          f"{args.seconds:g} s, one 64x64 frame + {len(QUESTIONS)} questions per request ({os.cpu_count()} CPUs)\n")
    print("| requests | requests/s | p50 latency | p99 latency | errors | server RSS start / middle / end |")
    print("|---|---|---|---|---|---|")
    print(f"| {r['requests']} | {r['rps']:.1f} | {r['p50']:.1f} ms | {r['p99']:.1f} ms | {len(r['errors'])} | "
          f"{mib['start']:.0f} / {mib['middle']:.0f} / {mib['end']:.0f} MiB |")
    print(f"\nGET /health during the load (every 0.25 s): p50 {r['health_p50']:.1f} ms, max {r['health_max']:.1f} ms")
    for e in r["errors"][:5]:
        print(f"  error: {e[:200]}")
    print("\n| malformed request | expected | got | detail |\n|---|---|---|---|")
    for name, expected, code, detail in cases:
        print(f"| {name} | {expected} | {code}{'' if code == expected else ' (!)'} | {detail} |")
    print(f"\nserver RSS after the malformed requests: {rss_after_malformed / 2 ** 20:.0f} MiB")
    ok = not r["errors"] and all(code == expected for _, expected, code, _ in cases)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
