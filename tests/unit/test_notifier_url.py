"""Where pages are told to open the WebSocket (`TASKLIGHT_NOTIFIER_PUBLIC_URL`)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from services.api.ui import notifier_url
from shared.settings import Settings


def page_request(scheme: str, host: str) -> Request:
    """A GET of `/` as it reaches the api, with this scheme and Host header."""
    return Request(
        {
            "type": "http",
            "scheme": scheme,
            "method": "GET",
            "path": "/",
            "query_string": b"",
            "headers": [(b"host", host.encode())],
            "server": ("10.0.0.5", 8000),
        }
    )


#: Settings of a deployment reached as tasks.example.com (and tasklight.example.com over TLS).
KNOWN = Settings(
    notifier_port=8001,
    allowed_origins="http://tasks.example.com:8000,https://tasklight.example.com",
)


def test_by_default_pages_use_the_notifier_port_of_their_own_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TASKLIGHT_NOTIFIER_PUBLIC_URL", raising=False)
    request = page_request("http", "tasks.example.com:8000")

    assert notifier_url(request, KNOWN) == "ws://tasks.example.com:8001/ws"


@pytest.mark.parametrize("public_url", ["", "/ws"])
def test_a_host_the_deployment_does_not_know_is_never_used(
    monkeypatch: pytest.MonkeyPatch, public_url: str
) -> None:
    monkeypatch.setenv("TASKLIGHT_NOTIFIER_PUBLIC_URL", public_url)
    request = page_request("http", "evil.example")

    assert "evil.example" not in notifier_url(request, KNOWN)
    assert "evil.example" not in notifier_url(request, Settings())


def test_the_public_url_wins_over_any_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLIGHT_NOTIFIER_PUBLIC_URL", "/ws")
    public = Settings(public_url="https://tasklight.example.com/")
    for host in ("evil.example", "tasks.example.com:8000", "127.0.0.1:8000"):
        assert notifier_url(page_request("http", host), public) == "wss://tasklight.example.com/ws"


@pytest.mark.parametrize(
    ("scheme", "host", "expected"),
    [
        ("http", "tasks.example.com:8000", "ws://tasks.example.com:8000/ws"),
        ("https", "tasklight.example.com", "wss://tasklight.example.com/ws"),
    ],
)
def test_a_path_means_the_page_origin_behind_a_gateway(
    monkeypatch: pytest.MonkeyPatch, scheme: str, host: str, expected: str
) -> None:
    """Given `/ws`, a page gets its own scheme (ws or wss), host and port: the gateway's."""
    monkeypatch.setenv("TASKLIGHT_NOTIFIER_PUBLIC_URL", "/ws")

    assert notifier_url(page_request(scheme, host), KNOWN) == expected


def test_a_full_url_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLIGHT_NOTIFIER_PUBLIC_URL", "wss://push.example.com/ws")

    request = page_request("https", "tasklight.example.com")
    assert notifier_url(request, Settings()) == "wss://push.example.com/ws"
