"""Bad requests get OpenAI-style JSON errors with a 4xx status, and the server keeps serving after each."""

from __future__ import annotations

import json
import threading

import httpx2 as httpx  # the HTTP client the openai package is built on
import pytest

KEY = {"Authorization": "Bearer test-key"}
CHAT = {"model": "lm", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def http(server) -> httpx.Client:
    """One client for the module (a client per request would build an SSL context each time: slow)."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def post(http: httpx.Client, path: str, body, headers=None) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return http.post(path, content=content,
                     headers={"Content-Type": "application/json", **(KEY if headers is None else headers)})


CASES = {
    "invalid JSON": ("/v1/chat/completions", b'{"model": "lm", "messages": [', 400, None, "invalid_json"),
    "not an object": ("/v1/completions", [1, 2], 400, None, None),
    "unknown model": ("/v1/chat/completions", {**CHAT, "model": "gpt-9"}, 404, "model", "model_not_found"),
    "wrong type": ("/v1/completions", {"model": "lm", "prompt": "a", "max_tokens": "ten"}, 400, "max_tokens",
                   "invalid_type"),
    "missing field": ("/v1/completions", {"model": "lm"}, 400, "prompt", "missing_required_parameter"),
    "max_tokens over the context": ("/v1/chat/completions", {**CHAT, "max_tokens": 1000}, 400, "max_tokens",
                                    "context_length_exceeded"),
    "empty message list": ("/v1/chat/completions", {**CHAT, "messages": []}, 400, "messages", None),
    "unknown role": ("/v1/chat/completions", {**CHAT, "messages": [{"role": "robot", "content": "x"}]}, 400,
                     "messages", None),
    "prompt longer than the context": ("/v1/completions", {"model": "lm", "prompt": "the cat " * 40}, 400,
                                       "prompt", "context_length_exceeded"),
    "temperature out of range": ("/v1/completions", {"model": "lm", "prompt": "a", "temperature": 3}, 400,
                                 "temperature", "invalid_type"),
    "model that cannot embed": ("/v1/embeddings", {"model": "lm", "input": "a"}, 400, "model", "unsupported_model"),
    "text without a mask": ("/zoo/fill-mask", {"model": "bert", "text": "no mask"}, 400, "text", None),
    "n_best over beam": ("/zoo/translate", {"model": "mt", "text": "a", "beam_size": 2, "n_best": 3}, 400, "n_best",
                         None),
    "oversized body": ("/v1/completions", {"model": "lm", "prompt": "a" * 30_000}, 413, None, "body_too_large"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_request_gets_an_openai_error_and_the_server_keeps_serving(http, case):
    path, body, status, param, code = CASES[case]
    response = post(http, path, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"] and "\n" not in error["message"]
    assert error["param"] == param and (code is None or error["code"] == code)
    ok = post(http, "/v1/completions", {"model": "lm", "prompt": "a", "max_tokens": 2, "temperature": 0})
    assert ok.status_code == 200 and ok.json()["choices"][0]["finish_reason"] in ("stop", "length")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "test-key"}])
def test_missing_or_wrong_api_key_is_401(http, headers):
    response = post(http, "/v1/completions", {"model": "lm", "prompt": "a"}, headers=headers)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert http.get("/v1/models", headers=headers).status_code == 401
    assert http.get("/").status_code == 200  # the page itself is public: it asks for the key


@pytest.mark.parametrize("path", ["/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py",
                                  "/static/%2e%2e/%2e%2e/models/decoder_only.py", "/static//etc/passwd",
                                  "/static/nothing.js"])
def test_files_outside_the_page_folder_are_404(server, http, path):
    response = http.send(httpx.Request("GET", server.url + path))  # sent as written, not normalised
    assert response.status_code == 404 and "error" in response.json()
    assert http.get("/static/app.js").status_code == 200


def test_full_queue_is_429_and_serving_resumes(server, http):
    engine = server.app.state.engines["lm"]
    gate = threading.Event()
    blocked = engine.call(gate.wait)  # the engine's thread waits: every further job queues
    while engine.waiting:
        threading.Event().wait(0.002)
    fillers = []
    while engine.waiting < engine.max_queue:
        fillers.append(engine.call(lambda: None))
    try:
        response = post(http, "/v1/completions", {"model": "lm", "prompt": "a", "max_tokens": 2})
        assert response.status_code == 429 and response.json()["error"]["code"] == "queue_full"
    finally:
        gate.set()
    blocked.result(10), [f.result(10) for f in fillers]
    assert post(http, "/v1/completions", {"model": "lm", "prompt": "a", "max_tokens": 2}).status_code == 200


def test_a_client_that_disconnects_mid_stream_frees_its_row(server, http, monkeypatch):
    engine = server.app.state.engines["lm"]
    made, generate = [], engine.generate
    monkeypatch.setattr(engine, "generate", lambda *a, **k: made.append(generate(*a, **k)) or made[-1])
    body = {"model": "lm", "prompt": "the", "max_tokens": 120, "temperature": 0, "stream": True}
    gate = threading.Event()
    with http.stream("POST", "/v1/completions", json=body, headers=KEY) as response:
        assert next(response.iter_lines()).startswith("data: ")
        held = engine.call(gate.wait)  # no step until the client has gone: the answer cannot finish first
    gate.set()
    held.result(10)
    for _ in range(3000):  # the server sees the disconnect at its next write; the row leaves at the next step
        if not engine.running:
            break
        threading.Event().wait(0.002)
    assert engine.running == 0 and made[0].cancelled and len(made[0].generated) < 120


def test_a_client_that_leaves_before_its_answer_frees_its_place(server, monkeypatch):
    import socket

    engine = server.app.state.engines["lm"]
    made, generate = [], engine.generate
    monkeypatch.setattr(engine, "generate", lambda *a, **k: made.append(generate(*a, **k)) or made[-1])
    gate = threading.Event()
    held = engine.call(gate.wait)  # the request will wait in the queue
    body = json.dumps({"model": "lm", "prompt": "the", "max_tokens": 100}).encode()
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-key\r\n"
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        for _ in range(10000):
            if made:
                break
            threading.Event().wait(0.002)
    for _ in range(10000):  # gone: the server notices while waiting, and the queued request is cancelled
        if made[0].cancelled:
            break
        threading.Event().wait(0.002)
    gate.set()
    held.result(10)
    for _ in range(10000):  # skipped when the engine next takes its jobs
        if not engine.waiting:
            break
        threading.Event().wait(0.002)
    assert made[0].cancelled and made[0].generated == [] and engine.waiting == 0 and engine.running == 0
