"""Bad inputs for the table in test_bad_inputs.py: serving (issue 21). Same shape as bad_input_cases.CASES:
name -> (builder(World) -> CLI arguments, texts the message must hold)."""

from __future__ import annotations

import socket

from bad_input_cases import World


class TakenPort:
    """A port another program listens on, until the test's teardown; World.processes items are ended with
    kill() and wait(), so this socket answers to both."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]

    def kill(self) -> None:
        self.socket.close()

    def wait(self) -> None:
        pass


def taken_port(w: World) -> str:
    taken = TakenPort()
    w.processes.append(taken)
    return str(taken.port)


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


CASES: dict = {
    "app on the network without a login": (
        lambda w: ["app", str(w.finished), "--host", "0.0.0.0", "--port", free_port()],
        ["--host 0.0.0.0", "TUNEFORGE_APP_AUTH", "--auth-file", "127.0.0.1"],
    ),
    "serve on the network without a key": (
        lambda w: ["serve", str(w.finished), "--host", "0.0.0.0", "--port", free_port()],
        ["--host 0.0.0.0", "TUNEFORGE_API_KEY", "--api-key-file", "127.0.0.1"],
    ),
    "app on a port in use": (
        lambda w: ["app", str(w.finished), "--port", taken_port(w)],
        ["is already in use", "--port"],
    ),
    "serve on a port in use": (
        lambda w: ["serve", str(w.finished), "--port", taken_port(w)],
        ["is already in use", "--port"],
    ),
    "app --auth without a colon": (
        lambda w: ["app", str(w.finished), "--auth", "admin"],
        ["--auth must be USER:PASSWORD"],
    ),
    "app --auth-file with a bad line": (
        lambda w: ["app", str(w.finished), "--auth-file", str(w.file("logins", "ann:pw1\n\nbob\n"))],
        ["--auth-file", "line 3", "USER:PASSWORD"],
    ),
    "serve --api-key-file missing": (
        lambda w: ["serve", str(w.finished), "--api-key-file", str(w.tmp / "no-key")],
        ["--api-key-file", "no-key", "not found"],
    ),
    "serve --api-key-file empty": (
        lambda w: ["serve", str(w.finished), "--api-key-file", str(w.file("key", "\n"))],
        ["--api-key-file", "is empty"],
    ),
}
