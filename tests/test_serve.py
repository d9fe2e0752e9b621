"""The OpenAI-compatible server as a user meets it: the real `tuneforge serve` process on a free 127.0.0.1
port, two adapters on one base plus the base, talked to with the official `openai` client."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tuneforge.infer.decoding import Decoding
from tuneforge.infer.generate import generate
from tuneforge.infer.load import load_run
from tuneforge_dev.live_server import wait_until_up

KEY = "test-key-0123456789"
PROMPTS = ["list the files in /srv/data", "count the lines in notes.txt", "delete old.log"]
NEW_TOKENS = 12


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(two_runs, tmp_path_factory):
    port = free_port()
    command = [sys.executable, "-m", "tuneforge.cli", "serve", *map(str, two_runs), "--port", str(port)]
    command += [
        "--api-key",
        KEY,
        "--set",
        "serve.max_prompt_chars=2000",
        "--set",
        f"serve.max_new_tokens={64}",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/health", process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)


def ask(client, model: str, prompt: str, **options) -> str:
    options = {"temperature": 0, "max_tokens": NEW_TOKENS, **options}
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], **options
    )
    return answer.choices[0].message.content


def test_models_are_the_two_adapters_and_their_base(client, tiny_models):
    names = {m.id for m in client.models.list().data}
    assert names == {"alpha", "beta", tiny_models("llama").name}


def test_greedy_answers_match_generate_for_two_adapters_and_the_base(client, two_runs, tiny_models):
    alpha, beta = two_runs
    expected = {}
    for model, run, base_only in (
        ("alpha", alpha, False),
        ("beta", beta, False),
        (tiny_models("llama").name, alpha, True),
    ):
        loaded = load_run(run, base_only=base_only)
        rows = [
            [
                *(
                    [{"role": "system", "content": loaded.config.data.system_prompt}]
                    if loaded.config.data.system_prompt
                    else []
                ),
                {"role": "user", "content": p},
            ]
            for p in PROMPTS
        ]
        expected[model] = generate(loaded, rows, Decoding(max_new_tokens=NEW_TOKENS), batch_size=1)
    served = {model: [ask(client, model, p) for p in PROMPTS] for model in expected}
    assert served == expected
    assert len({tuple(answers) for answers in served.values()}) == 3, served


def test_stream_and_whole_answers_are_the_same_text(client):
    for prompt in PROMPTS:
        whole = ask(client, "alpha", prompt)
        stream = client.chat.completions.create(
            model="alpha",
            messages=[{"role": "user", "content": prompt}],
            temperature=0,
            max_tokens=NEW_TOKENS,
            stream=True,
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == whole
        completion = client.completions.create(
            model="beta", prompt=prompt, temperature=0, max_tokens=NEW_TOKENS
        )
        streamed = client.completions.create(
            model="beta", prompt=prompt, temperature=0, max_tokens=NEW_TOKENS, stream=True
        )
        assert "".join(c.choices[0].text for c in streamed) == completion.choices[0].text


def test_concurrent_requests_are_batched_and_answer_as_one_at_a_time(client):
    alone = {(m, p): ask(client, m, p) for m in ("alpha", "beta") for p in PROMPTS}
    with ThreadPoolExecutor(12) as pool:
        together = dict(zip(alone, pool.map(lambda key: ask(client, *key), list(alone))))
    assert together == alone


def test_usage_stop_and_seed(client, two_runs, tiny_models):
    answer = client.chat.completions.create(
        model="alpha",
        messages=[{"role": "user", "content": PROMPTS[0]}],
        temperature=0,
        max_tokens=NEW_TOKENS,
    )
    loaded = load_run(two_runs[0])
    prompt_ids = loaded.encoder.prompt_ids([{"role": "user", "content": PROMPTS[0]}])
    assert answer.usage.prompt_tokens == len(prompt_ids)
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    # The random base rambles: long answers to cut, and samples that depend on the seed.
    base = tiny_models("llama").name
    whole = client.chat.completions.create(
        model=base, messages=[{"role": "user", "content": PROMPTS[0]}], temperature=0, max_tokens=NEW_TOKENS
    )
    text = whole.choices[0].message.content
    assert len(text) > 6 and whole.choices[0].finish_reason == "length"
    stop = text[3:5]
    cut = client.chat.completions.create(
        model=base,
        messages=[{"role": "user", "content": PROMPTS[0]}],
        temperature=0,
        stop=[stop],
        max_tokens=NEW_TOKENS,
    )
    assert cut.choices[0].message.content == text[: text.index(stop)].rstrip()
    assert cut.choices[0].finish_reason == "stop"

    def sample(seed: int) -> str:
        options = {"temperature": 1.0, "seed": seed, "max_tokens": NEW_TOKENS}
        return ask(client, base, "delete x", **options)

    assert sample(7) == sample(7) != sample(8)


def test_errors_have_openai_shape_and_status(client, server):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server + "/v1", api_key="wrong", max_retries=0).models.list()
    assert httpx.get(server + "/v1/models").status_code == 401
    with pytest.raises(openai.NotFoundError) as unknown:
        ask(client, "gamma", "hi")
    assert unknown.value.body["code"] == "model_not_found"
    headers = {"Authorization": f"Bearer {KEY}"}
    for body in (
        {"model": "alpha"},
        {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
        {"model": "alpha", "messages": [], "surprise": 1},
    ):
        reply = httpx.post(server + "/v1/chat/completions", json=body, headers=headers)
        assert reply.status_code == 400, reply.text
        assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
    bad_json = httpx.post(
        server + "/v1/chat/completions",
        content=b"{not json",
        headers={**headers, "content-type": "application/json"},
    )
    assert bad_json.status_code == 400 and "error" in bad_json.json()
    # JSON may escape a lone surrogate, which no tokenizer encodes: a 400 in the OpenAI shape, not a 500
    surrogate = json.dumps({"model": "alpha", "messages": [{"role": "user", "content": "a\ud800b"}]})
    reply = httpx.post(
        server + "/v1/chat/completions",
        content=surrogate.encode(),
        headers={**headers, "content-type": "application/json"},
    )
    assert reply.status_code == 400 and "surrogate" in reply.json()["error"]["message"], reply.text
    with pytest.raises(openai.BadRequestError) as too_long:
        ask(client, "alpha", "x" * 3000)
    assert too_long.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        ask(client, "alpha", "hi", max_tokens=10_000)
    # Still healthy and still answering.
    assert httpx.get(server + "/health").json()["status"] == "ok"
    assert ask(client, "alpha", PROMPTS[0]) == ask(client, "alpha", PROMPTS[0])


@pytest.mark.skipif(
    shutil.which("schemathesis") is None and not (Path(sys.executable).parent / "schemathesis").exists(),
    reason="schemathesis not installed",
)
def test_schemathesis_finds_no_server_error(server, tmp_path):
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        server + "/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "15",
        "-H",
        f"Authorization: Bearer {KEY}",
        "--request-timeout",
        "60",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=tmp_path
    )  # its cache stays out of the repo
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert httpx.get(server + "/health").status_code == 200


def test_terminal_chat_two_turns_reset_and_exit(two_runs):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "tuneforge.cli", "chat", str(two_runs[0])],
        encoding="utf-8",
        timeout=120,
        env={**os.environ, "COLUMNS": "200", "TERM": "dumb"},
    )
    child.expect("you> ")
    for prompt in PROMPTS[:2]:
        child.sendline(prompt)
        child.expect("model> ")
        child.expect("you> ")
        assert child.before.strip(), "an empty answer"
    child.sendline("/reset")
    child.expect("conversation cleared")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_serve_rejects_what_it_cannot_serve(tmp_path, two_runs):
    from typer.testing import CliRunner

    from tuneforge.cli import app

    result = CliRunner().invoke(app, ["serve", str(tmp_path), "--port", str(free_port())])
    assert result.exit_code == 2 and "neither a tuneforge run nor an hf export" in result.output
    result = CliRunner().invoke(app, ["serve", str(two_runs[0]), "--set", "serve.max_batch_size=0"])
    assert result.exit_code == 2 and "max_batch_size" in result.output
