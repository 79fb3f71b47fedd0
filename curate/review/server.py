"""A local Label Studio server in its own virtual environment.

Label Studio (the Django application) cannot share our environment: it pins openai < 2,
pyarrow < 25 and Django 5.2. So it lives in `.ls-venv` (created on first use with uv, or
with venv + pip where uv is missing) and runs as a separate process, bound to 127.0.0.1,
with SQLite under a data folder. Credentials come from environment variables and are
applied on the first boot of a fresh data folder (Label Studio ignores them later).

    python -m curate.review.server start [--port 8080] [--data-dir DIR]
    python -m curate.review.server status
    python -m curate.review.server stop
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from assay.errors import AssayError

LABEL_STUDIO_VERSION = "1.23.2"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VENV = REPO_ROOT / ".ls-venv"
DEFAULT_DATA_DIR = REPO_ROOT / "runs" / "label-studio"
DEFAULT_PORT = 8080
STATE_FILE = "assay-server.json"
CREDENTIALS_FILE = "assay-credentials.json"
_MARKER = ".assay-installed"
# Variables Label Studio reads under bare names: never let ours leak into the server.
_LEAKY_VARS = ("PORT", "USERNAME", "PASSWORD", "USER_TOKEN", "HOST")


class ServerError(AssayError, RuntimeError):
    """The server could not be installed, started or reached; the message says what to do."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    token: str


@dataclass(frozen=True)
class ServerHandle:
    url: str
    port: int
    pid: int
    data_dir: str
    log_path: str
    username: str
    token: str


# --------------------------------------------------------------------------- environment


def label_studio_executable(venv: Path = DEFAULT_VENV) -> Path:
    return venv / "bin" / "label-studio"


def ensure_venv(venv: Path = DEFAULT_VENV, version: str = LABEL_STUDIO_VERSION, *, quiet: bool = False) -> Path:
    """Create `venv` with label-studio==version unless it is already there; return the executable.

    A marker written after a successful install makes a half-finished install (killed
    midway) start over instead of being trusted. A file lock keeps two processes (test
    workers, a Makefile and a test) from installing at once.
    """
    venv = Path(venv)
    marker = venv / _MARKER
    executable = label_studio_executable(venv)
    if marker.exists() and marker.read_text().strip() == version and executable.exists():
        return executable
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / f".{venv.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text().strip() == version and executable.exists():
            return executable
        if venv.exists():
            shutil.rmtree(venv)
        _install(venv, version, quiet=quiet)
        if not executable.exists():
            raise ServerError(f"installed label-studio=={version} into {venv} but {executable} is missing")
        marker.write_text(version)
    return executable


def _install(venv: Path, version: str, *, quiet: bool) -> None:
    requirement = f"label-studio=={version}"
    uv = shutil.which("uv")
    output = subprocess.DEVNULL if quiet else None
    if uv:
        commands = [
            [uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
            [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), requirement],
        ]
    else:
        commands = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", requirement],
        ]
    for command in commands:
        result = subprocess.run(command, stdout=output, stderr=subprocess.PIPE, text=True, check=False)
        if result.returncode != 0:
            raise ServerError(
                f"installing Label Studio failed: `{' '.join(command)}` exited {result.returncode}:\n"
                + result.stderr[-2000:]
            )


def credentials(data_dir: Path) -> Credentials:
    """From LABEL_STUDIO_USERNAME/PASSWORD/USER_TOKEN; missing ones are generated once and kept
    (mode 0600) in the data folder, since Label Studio only applies them on first boot."""
    saved_path = Path(data_dir) / CREDENTIALS_FILE
    saved: dict[str, str] = json.loads(saved_path.read_text()) if saved_path.exists() else {}
    values = {
        "username": os.environ.get("LABEL_STUDIO_USERNAME") or saved.get("username") or "reviewer@assay.local",
        "password": os.environ.get("LABEL_STUDIO_PASSWORD") or saved.get("password") or secrets.token_urlsafe(16),
        "token": os.environ.get("LABEL_STUDIO_USER_TOKEN") or saved.get("token") or secrets.token_hex(20),
    }
    if not 6 <= len(values["token"]) <= 40:
        raise ServerError("LABEL_STUDIO_USER_TOKEN must have 6 to 40 characters (Label Studio ignores others)")
    if values != saved:
        saved_path.parent.mkdir(parents=True, exist_ok=True)
        saved_path.write_text(json.dumps(values, indent=2))
        saved_path.chmod(0o600)
    return Credentials(**values)


def server_env(creds: Credentials, data_dir: Path) -> dict[str, str]:
    """The server's environment: our credentials, no bare PORT/HOST/..., nothing phoning home."""
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY_VARS}
    env.update(
        LABEL_STUDIO_USERNAME=creds.username,
        LABEL_STUDIO_PASSWORD=creds.password,
        LABEL_STUDIO_USER_TOKEN=creds.token,
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
        PYTHONUNBUFFERED="1",
    )
    return env


# --------------------------------------------------------------------------- ports, health


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        response = httpx.get(f"{url}/health", timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json().get("status") == "UP"


def check_token(url: str, token: str) -> dict[str, object]:
    """`whoami` with a legacy token; a clear error when it is refused."""
    response = httpx.get(f"{url}/api/current-user/whoami", headers={"Authorization": f"Token {token}"}, timeout=10)
    if response.status_code != 200:
        raise ServerError(
            f"Label Studio at {url} refused the token (HTTP {response.status_code} on "
            "/api/current-user/whoami). The user and token are fixed at the first boot of a data "
            "folder: use the token it was created with (see its assay-credentials.json), or start "
            "on a fresh --data-dir."
        )
    payload: dict[str, object] = response.json()
    return payload


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- start / stop


def read_state(data_dir: Path = DEFAULT_DATA_DIR) -> ServerHandle | None:
    path = Path(data_dir) / STATE_FILE
    if not path.exists():
        return None
    return ServerHandle(**json.loads(path.read_text()))


def start(
    *,
    port: int | None = None,
    data_dir: Path = DEFAULT_DATA_DIR,
    venv: Path = DEFAULT_VENV,
    timeout: float = 240.0,
    quiet: bool = False,
) -> ServerHandle:
    """Start Label Studio (or return the one already running on this data folder) and wait
    until it answers `/health` and accepts the token."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    running = read_state(data_dir)
    if running is not None and _pid_alive(running.pid) and is_healthy(running.url):
        check_token(running.url, running.token)
        return running
    executable = ensure_venv(Path(venv), quiet=quiet)
    creds = credentials(data_dir)
    if port is None:
        port = DEFAULT_PORT if port_is_free(DEFAULT_PORT) else free_port()
    elif not port_is_free(port):
        # Label Studio would silently move to port+1: refuse instead.
        raise ServerError(f"port {port} on 127.0.0.1 is busy: choose another with --port, or stop what uses it")
    url = f"http://127.0.0.1:{port}"
    log_path = data_dir / "server.log"
    command = [
        str(executable), "start", "--no-browser",
        "--internal-host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir),
    ]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=server_env(creds, data_dir), cwd=data_dir, start_new_session=True,
        )
    handle = ServerHandle(url, port, process.pid, str(data_dir), str(log_path), creds.username, creds.token)
    deadline = time.monotonic() + timeout
    while not is_healthy(url):
        if process.poll() is not None:
            raise ServerError(f"Label Studio exited with code {process.returncode} while starting:\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            _terminate(process.pid)
            raise ServerError(f"Label Studio did not answer {url}/health within {timeout:.0f}s:\n{_tail(log_path)}")
        time.sleep(0.5)
    try:
        check_token(url, creds.token)
    except ServerError:
        _terminate(process.pid)
        raise
    (data_dir / STATE_FILE).write_text(json.dumps(asdict(handle), indent=2))
    (data_dir / STATE_FILE).chmod(0o600)
    return handle


def stop(data_dir: Path = DEFAULT_DATA_DIR, timeout: float = 30.0) -> bool:
    """SIGTERM the server started on this data folder; True if one was running."""
    data_dir = Path(data_dir).resolve()
    handle = read_state(data_dir)
    if handle is None:
        return False
    was_running = _pid_alive(handle.pid)
    if was_running:
        _terminate(handle.pid, timeout)
    (data_dir / STATE_FILE).unlink(missing_ok=True)
    return was_running


def _terminate(pid: int, timeout: float = 30.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            waited, _ = os.waitpid(pid, os.WNOHANG)
            if waited == pid:
                return
        if not _pid_alive(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------- command line


def start_hint(handle: ServerHandle) -> str:
    """What to do next. On the default data folder, push and pull find the token themselves
    (`curate.review.client.token_from_env`), so no token needs exporting."""
    if Path(handle.data_dir).resolve() == DEFAULT_DATA_DIR.resolve():
        return f"set review.url: {handle.url} in the pipeline config; push and pull use this server's token by themselves"
    return (
        f"set review.url: {handle.url} in the pipeline config, and export the token from "
        f"{Path(handle.data_dir) / CREDENTIALS_FILE} as $LABEL_STUDIO_API_KEY (only the default data folder's "
        "token is found without it)"
    )



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m curate.review.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status", "install"])
    parser.add_argument("--port", type=int, default=None, help=f"default {DEFAULT_PORT}, or a free port if busy")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    args = parser.parse_args(argv)
    try:
        if args.action == "install":
            print(ensure_venv(args.venv))
        elif args.action == "start":
            handle = start(port=args.port, data_dir=args.data_dir, venv=args.venv)
            print(f"Label Studio is up at {handle.url} (pid {handle.pid}, log {handle.log_path})")
            print(f"user {handle.username}; password and token in {Path(handle.data_dir) / CREDENTIALS_FILE}")
            print(start_hint(handle))
        elif args.action == "stop":
            print("stopped" if stop(args.data_dir) else "no server was running")
        else:
            state = read_state(args.data_dir)
            if state is None or not _pid_alive(state.pid):
                print("not running")
                return 1
            print(f"{state.url} pid {state.pid}: {'healthy' if is_healthy(state.url) else 'not answering'}")
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
