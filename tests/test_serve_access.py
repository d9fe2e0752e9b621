"""Safe serving without starting a server: the routes through FastAPI's TestClient (no input is a 500, the
docs need the key), and what `serve` and `app` check before any model loads (key, login, share link, port).
"""

from __future__ import annotations

import base64
import json
import socket
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from test_serve import KEY, free_port
from typer.testing import CliRunner

from tuneforge.cli import app as cli
from tuneforge.serve.routes import build_app
from tuneforge.serve.server import open_engine

HEADERS = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
HI = [{"role": "user", "content": "hi"}]


def chat_body(**fields) -> bytes:
    return json.dumps({"model": "alpha", "messages": HI, **fields}).encode()


@pytest.fixture(scope="module")
def engine(two_runs):
    engine = open_engine(two_runs, ["serve.max_new_tokens=8"])
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def api(engine) -> TestClient:
    return TestClient(build_app(engine, KEY), raise_server_exceptions=False)


BAD_BODIES = {
    "invalid JSON": ("/v1/chat/completions", b'{"model": "alpha",'),
    "not UTF-8": ("/v1/chat/completions", chat_body().replace(b'"hi"', b'"caf\xe9"')),
    "a JSON list": ("/v1/chat/completions", b"[]"),
    "JSON null": ("/v1/chat/completions", b"null"),
    "nested 100000 deep": ("/v1/chat/completions", b"[" * 100_000 + b"]" * 100_000),
    "model a number": ("/v1/chat/completions", chat_body(model=3)),
    "messages an object": ("/v1/chat/completions", chat_body(messages={"role": "user"})),
    "content null": ("/v1/chat/completions", chat_body(messages=[{"role": "user", "content": None}])),
    "negative n": ("/v1/chat/completions", chat_body(n=-1)),
    "max_tokens 10**40": ("/v1/chat/completions", chat_body(max_tokens=10**40)),
    "max_tokens 2.5": ("/v1/chat/completions", chat_body(max_tokens=2.5)),
    "a 5000-digit number": ("/v1/chat/completions", chat_body()[:-1] + b', "seed": ' + b"9" * 5000 + b"}"),
    "seed 10**40": ("/v1/chat/completions", chat_body(seed=10**40)),
    "temperature NaN": ("/v1/chat/completions", chat_body()[:-1] + b', "temperature": NaN}'),
    "temperature 1e400": ("/v1/chat/completions", chat_body()[:-1] + b', "temperature": 1e400}'),
    "stop a number": ("/v1/chat/completions", chat_body(stop=3)),
    "prompt token ids": ("/v1/completions", json.dumps({"model": "alpha", "prompt": [1, 2, 3]}).encode()),
    "prompt an empty list": ("/v1/completions", json.dumps({"model": "alpha", "prompt": []}).encode()),
    "an image content part": (
        "/v1/chat/completions",
        chat_body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
    ),
}


@pytest.mark.parametrize("name", BAD_BODIES)
def test_bad_bodies_are_400_in_openai_shape(api, name):
    path, body = BAD_BODIES[name]
    reply = api.post(path, content=body, headers=HEADERS)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"], error
    assert "[" not in (error["param"] or ""), "a pydantic union tag is not a field name"
    if name == "invalid JSON":
        assert error["message"].startswith("the body is not valid JSON"), error


def test_the_docs_need_the_key_when_the_api_does(api, engine):
    for path in ("/openapi.json", "/docs", "/redoc"):
        refused = api.get(path)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
        assert refused.headers["www-authenticate"].startswith("Basic"), "a browser asks for the key"
        assert api.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert api.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    browser = base64.b64encode(f"anyone:{KEY}".encode()).decode()
    assert api.get("/docs", headers={"Authorization": f"Basic {browser}"}).status_code == 200
    assert api.get("/docs", headers={"Authorization": "Basic !!"}).status_code == 401
    schema = api.get("/openapi.json", headers=HEADERS).json()
    names = schema["components"]["schemas"]["ChatCompletionRequest"]["properties"]["model"]["enum"]
    assert names == list(engine.served)
    assert not any(path in schema["paths"] for path in ("/docs", "/redoc", "/openapi.json"))
    keyless = TestClient(build_app(engine, None))
    assert keyless.get("/docs").status_code == keyless.get("/openapi.json").status_code == 200


def no_model(*args, **kwargs):
    raise AssertionError("a model was loaded before the checks")


@contextmanager
def socket_listening():
    """A port another program listens on."""
    with socket.create_server(("127.0.0.1", 0)) as held:
        yield held.getsockname()[1]


def test_serve_reads_the_key_from_the_environment_or_a_file(monkeypatch, tmp_path):
    keys = []
    monkeypatch.setattr(
        "tuneforge.serve.server.open_engine", lambda *a, **k: SimpleNamespace(served={"m": 0})
    )
    monkeypatch.setattr("tuneforge.serve.server.run_server", lambda engine, host, port, key: keys.append(key))
    monkeypatch.setenv("TUNEFORGE_API_KEY", "from-env")
    args = ["serve", str(tmp_path), "--host", "0.0.0.0", "--port", free_port()]
    assert CliRunner().invoke(cli, args).exit_code == 0
    (tmp_path / "key").write_text("from-file\n")
    assert CliRunner().invoke(cli, [*args, "--api-key-file", str(tmp_path / "key")]).exit_code == 0
    assert keys == ["from-env", "from-file"]
    monkeypatch.delenv("TUNEFORGE_API_KEY")
    monkeypatch.setattr("tuneforge.serve.server.open_engine", no_model)
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2 and "TUNEFORGE_API_KEY" in refused.output, refused.output
    with socket_listening() as port:
        busy = CliRunner().invoke(cli, ["serve", str(tmp_path), "--port", str(port)])
    assert busy.exit_code == 2 and f"port {port} is already in use" in busy.output, busy.output


class Launched:
    """Stands in for the Gradio app: records what launch() was given, or fails as Gradio would."""

    def __init__(self, error: OSError | None = None) -> None:
        self.error, self.calls = error, []

    def launch(self, **settings) -> None:
        self.calls.append(settings)
        if self.error:
            raise self.error


def test_app_asks_for_a_login_never_shares_and_names_a_taken_port(monkeypatch, tmp_path):
    gradio_app = Launched()
    monkeypatch.setattr(
        "tuneforge.serve.webapp.open_engine", lambda *a, **k: SimpleNamespace(served={"m": 0})
    )
    monkeypatch.setattr("tuneforge.serve.webapp.build_app", lambda engine: gradio_app)
    monkeypatch.setenv("GRADIO_SHARE", "True")  # Gradio would open a public link if share were left unset
    monkeypatch.setenv("TUNEFORGE_APP_AUTH", "ann:s3cret:too")
    args = ["app", str(tmp_path), "--host", "0.0.0.0", "--port", free_port()]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    (tmp_path / "logins").write_text("ann:one\nbob:two\n")
    assert CliRunner().invoke(cli, [*args, "--auth-file", str(tmp_path / "logins")]).exit_code == 0
    first, second = gradio_app.calls
    assert first["share"] is False and first["server_name"] == "0.0.0.0"
    assert first["auth"] == [("ann", "s3cret:too")] and second["auth"] == [("ann", "one"), ("bob", "two")]

    monkeypatch.setattr(
        "tuneforge.serve.webapp.build_app", lambda engine: Launched(OSError("Cannot find empty port"))
    )
    taken = CliRunner().invoke(cli, args)
    assert taken.exit_code == 2 and f"port {args[-1]} is already in use" in taken.output, taken.output

    monkeypatch.delenv("TUNEFORGE_APP_AUTH")
    monkeypatch.setattr("tuneforge.serve.webapp.open_engine", no_model)
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2 and "TUNEFORGE_APP_AUTH" in refused.output, refused.output
    with socket_listening() as port:
        busy = CliRunner().invoke(cli, ["app", str(tmp_path), "--port", str(port)])
    assert busy.exit_code == 2 and f"port {port} is already in use" in busy.output, busy.output


def test_text_content_parts_are_the_prompt_training_joins(api):
    """OpenAI clients may send content as parts: joined as the data stage joins them for training."""
    parts = [{"type": "text", "text": "count the lines"}, {"type": "text", "text": "in notes.txt"}]
    answers = [
        api.post(
            "/v1/chat/completions",
            content=chat_body(messages=[{"role": "user", "content": c}], temperature=0),
            headers=HEADERS,
        )
        for c in (parts, "count the lines\nin notes.txt")
    ]
    assert [a.status_code for a in answers] == [200, 200], answers[0].text
    texts = [a.json()["choices"][0]["message"]["content"] for a in answers]
    prompt_tokens = [a.json()["usage"]["prompt_tokens"] for a in answers]
    assert texts[0] == texts[1] and prompt_tokens[0] == prompt_tokens[1], (texts, prompt_tokens)
