"""The server helper's pieces that need no Label Studio: environment, credentials, ports,
install commands (recorded, not run)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from curate.review import server


def test_server_env_clears_bare_names_and_goes_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("PORT", "USERNAME", "PASSWORD", "USER_TOKEN", "HOST"):
        monkeypatch.setenv(name, "leak")
    env = server.server_env(server.Credentials("a@b.c", "pw-123456", "token-123456"), tmp_path)
    assert not {"PORT", "USERNAME", "PASSWORD", "USER_TOKEN", "HOST"} & env.keys()
    assert env["LABEL_STUDIO_USER_TOKEN"] == "token-123456"
    assert env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"
    assert env["SENTRY_DSN"] == "" and env["COLLECT_ANALYTICS"] == "false"


def test_credentials_from_env_or_generated_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("LABEL_STUDIO_USERNAME", "LABEL_STUDIO_PASSWORD", "LABEL_STUDIO_USER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    first = server.credentials(tmp_path)
    assert 6 <= len(first.token) <= 40 and server.credentials(tmp_path) == first
    saved = tmp_path / server.CREDENTIALS_FILE
    assert json.loads(saved.read_text())["token"] == first.token and saved.stat().st_mode & 0o077 == 0
    monkeypatch.setenv("LABEL_STUDIO_USER_TOKEN", "abc")
    with pytest.raises(server.ServerError, match="6 to 40"):
        server.credentials(tmp_path)


def test_busy_port_is_refused_not_moved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "ensure_venv", lambda *a, **k: tmp_path / "label-studio")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not server.port_is_free(port)
        with pytest.raises(server.ServerError, match=f"port {port}"):
            server.start(port=port, data_dir=tmp_path)


@pytest.mark.parametrize("uv", ["/usr/bin/uv", None])
def test_install_uses_uv_or_falls_back_to_venv_and_pip(uv: str | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    commands: list[list[str]] = []

    def record(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(server.shutil, "which", lambda name: uv)
    monkeypatch.setattr(server.subprocess, "run", record)
    server._install(tmp_path / "venv", "1.23.2", quiet=True)
    if uv:
        assert commands[0][:2] == [uv, "venv"] and commands[1][:3] == [uv, "pip", "install"]
    else:
        assert commands[0] == [sys.executable, "-m", "venv", str(tmp_path / "venv")]
        assert commands[1][1:4] == ["-m", "pip", "install"]
    assert commands[1][-1] == "label-studio==1.23.2"


def test_stop_without_server_is_harmless(tmp_path: Path) -> None:
    assert server.stop(tmp_path) is False


def test_start_message_asks_for_no_token_on_the_default_data_folder(tmp_path: Path) -> None:
    handle = server.ServerHandle("http://127.0.0.1:8080", 8080, 1, str(server.DEFAULT_DATA_DIR), "log", "u", "t")
    hint = server.start_hint(handle)
    assert "review.url: http://127.0.0.1:8080" in hint and "LABEL_STUDIO_API_KEY" not in hint and "token by themselves" in hint
    elsewhere = server.start_hint(server.ServerHandle("http://127.0.0.1:9", 9, 1, str(tmp_path), "log", "u", "t"))
    assert str(tmp_path / server.CREDENTIALS_FILE) in elsewhere and "LABEL_STUDIO_API_KEY" in elsewhere
