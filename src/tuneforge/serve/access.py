"""Who can reach a served model: the interface it binds, its port, and the key or login it asks for.

`serve` and `app` check all of it before loading any model, so a refused start costs nothing:
a host beyond this machine needs a key (serve) or a login (app), and a port another program holds is named.
Secrets come from a flag, a file or an environment variable; the flag shows in `ps`, the others do not.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from pathlib import Path

from tuneforge.errors import TuneforgeError

API_KEY_ENV = "TUNEFORGE_API_KEY"
APP_AUTH_ENV = "TUNEFORGE_APP_AUTH"


def is_local(host: str) -> bool:
    """Whether only this machine can connect: localhost or a loopback address (127.0.0.0/8, ::1)."""
    bare = host.strip("[]")
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:  # a host name: it may well be reachable from elsewhere
        return False


def reach(host: str) -> str:
    """Says who can connect, for the line a command prints when it starts."""
    return "this machine only" if is_local(host) else "other machines can connect"


def read_secret_file(path: Path, option: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise TuneforgeError(f"{option} {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TuneforgeError(f"{option} {path}: cannot read it ({exc})") from None
    if not text:
        raise TuneforgeError(f"{option} {path} is empty; write the secret in it")
    return text


def read_api_key(flag: str | None, file: Path | None) -> str | None:
    """The key from --api-key, else --api-key-file, else $TUNEFORGE_API_KEY; None when there is none."""
    if flag is not None and file is not None:
        raise TuneforgeError("give --api-key or --api-key-file, not both")
    if file is not None:
        return read_secret_file(file, "--api-key-file")
    if flag is not None and not flag.strip():
        raise TuneforgeError(f"--api-key is empty; give a key, or set ${API_KEY_ENV}")
    return flag or os.environ.get(API_KEY_ENV) or None


def login(text: str, where: str) -> tuple[str, str]:
    user, colon, password = text.strip().partition(":")
    if not colon or not user or not password:
        raise TuneforgeError(f"{where} must be USER:PASSWORD (both non-empty, a colon between)")
    return user, password


def read_app_logins(flag: str | None, file: Path | None) -> list[tuple[str, str]]:
    """The logins from --auth, else --auth-file (one USER:PASSWORD a line), else $TUNEFORGE_APP_AUTH."""
    if flag is not None and file is not None:
        raise TuneforgeError("give --auth or --auth-file, not both")
    if file is not None:
        lines = read_secret_file(file, "--auth-file").splitlines()
        return [
            login(line, f"--auth-file {file}, line {n}") for n, line in enumerate(lines, 1) if line.strip()
        ]
    if flag is not None:
        return [login(flag, "--auth")]
    from_env = os.environ.get(APP_AUTH_ENV)
    return [login(from_env, f"${APP_AUTH_ENV}")] if from_env else []


def check_exposure(host: str, protected: bool, how: str) -> None:
    """Refuse to answer beyond this machine without a key or login: anyone on the network could use it."""
    if not is_local(host) and not protected:
        raise TuneforgeError(
            f"--host {host} lets other machines connect, and nothing asks them for a secret; {how}, "
            "or bind 127.0.0.1"
        )


def check_port(host: str, port: int) -> None:
    """Bind the port as the server will, and let go: a port another program listens on is named now,
    before any model loads, rather than as a server library's error afterwards."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn chooses
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # uvicorn sets it too: a port that a stopped server left in TIME_WAIT is free to reuse.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except socket.gaierror:
            raise TuneforgeError(f"--host {host} is not a known address or host name") from None
        except OSError as exc:
            raise TuneforgeError(port_problem(host, port, exc.errno)) from None


def port_problem(host: str, port: int, code: int | None) -> str:
    if code == errno.EADDRINUSE:
        return (
            f"port {port} is already in use on {host} (another server?); stop it or pick another with --port"
        )
    if code == errno.EACCES:
        return f"port {port} needs administrator rights (ports under 1024 do); pick another with --port"
    if code == errno.EADDRNOTAVAIL:
        return (
            f"--host {host} is not an address of this machine; use 127.0.0.1, or 0.0.0.0 for every interface"
        )
    return f"cannot listen on {host}:{port} ({os.strerror(code) if code else 'unknown error'}); try another --port"
