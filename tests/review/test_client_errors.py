"""The SDK adapter's error messages, against respx mocks of Label Studio (no server)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import httpx
import pytest
import respx

from curate.review.client import ReviewClient, ReviewServerError, token_from_env
from curate.review.config import ReviewConfig

URL = "http://ls.invalid:8080"


@respx.mock
def test_refused_token_names_url_status_and_fix() -> None:
    respx.get(f"{URL}/api/current-user/whoami").mock(
        return_value=httpx.Response(401, json={"detail": "Invalid token."})
    )
    with pytest.raises(ReviewServerError) as caught:
        ReviewClient(URL, "wrong-token").whoami()
    message = str(caught.value)
    assert URL in message and "HTTP 401" in message and "token" in message and "Invalid token." in message


@respx.mock
def test_server_error_points_at_the_log() -> None:
    respx.get(url__startswith=f"{URL}/api/projects/").mock(return_value=httpx.Response(500, text="boom"))
    with pytest.raises(ReviewServerError, match=r"HTTP 500 .*export annotations.*server\.log"):
        ReviewClient(URL, "token-123456").export(7)


@respx.mock
def test_unreachable_server_says_how_to_start_one() -> None:
    respx.get(f"{URL}/api/current-user/whoami").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(ReviewServerError, match=r"cannot reach Label Studio at http://ls\.invalid:8080.*make review-server"):
        ReviewClient(URL, "token-123456").whoami()


def test_missing_token_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from curate.review import server

    monkeypatch.setattr(server, "DEFAULT_DATA_DIR", tmp_path)  # no local server to fall back on
    monkeypatch.delenv("MY_LS_TOKEN", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_USER_TOKEN", raising=False)
    with pytest.raises(ReviewServerError, match=r"\$MY_LS_TOKEN"):
        token_from_env(ReviewConfig(token_env="MY_LS_TOKEN"))
    monkeypatch.setenv("LABEL_STUDIO_USER_TOKEN", "fallback-token")
    assert token_from_env(ReviewConfig(token_env="MY_LS_TOKEN")) == "fallback-token"


def test_token_of_the_local_server_is_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from curate.review import server

    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_USER_TOKEN", raising=False)
    monkeypatch.setattr(server, "DEFAULT_DATA_DIR", tmp_path)
    handle = server.ServerHandle("http://127.0.0.1:8123", 8123, 1, str(tmp_path), "log", "u", "local-token-1")
    (tmp_path / server.STATE_FILE).write_text(json.dumps(dataclasses.asdict(handle)))
    assert token_from_env(ReviewConfig(url="http://127.0.0.1:8123/")) == "local-token-1"
    with pytest.raises(ReviewServerError):
        token_from_env(ReviewConfig(url="http://127.0.0.1:9999"))
