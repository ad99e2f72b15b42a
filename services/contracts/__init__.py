"""The contract documents under docs/contracts/, rendered from the code that serves them.

- `openapi.json`: the REST api (`app.openapi()`, what `/openapi.json` serves);
- `asyncapi-broker.json`: the RabbitMQ topology (FastStream's AsyncAPI of the worker's broker);
- `asyncapi-websocket.json`: the notifier's WebSocket protocol.

And the clients' protocol constants (`clients.GENERATED`): `clients/js/protocol.js` and
`clients/python/src/tasklight/protocol.py`, from the notifier's close codes and resume constants.

`make contracts` (`python -m services.contracts`) writes them; tests/unit/test_contracts.py fails
when a committed one differs from what the code renders, so a change to a contract is a diff.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.contracts.broker import broker_document
from services.contracts.clients import GENERATED, ROOT
from services.contracts.openapi import openapi_document
from services.contracts.websocket import websocket_document

#: Where the documents are committed.
CONTRACTS_DIR = Path(__file__).resolve().parents[2] / "docs" / "contracts"

#: File name → what renders it.
CONTRACTS: dict[str, Callable[[], dict[str, Any]]] = {
    "openapi.json": openapi_document,
    "asyncapi-broker.json": broker_document,
    "asyncapi-websocket.json": websocket_document,
}


def render(document: dict[str, Any]) -> str:
    """A document as the committed text: sorted keys, two-space indent, a final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered_files(directory: Path = CONTRACTS_DIR, root: Path = ROOT) -> dict[Path, str]:
    """Every rendered file's path → its text: the contracts in `directory`, the clients'
    constants under `root`."""
    files = {directory / name: render(build()) for name, build in CONTRACTS.items()}
    files |= {root / path: build() for path, build in GENERATED.items()}
    return files


def stale(directory: Path = CONTRACTS_DIR, root: Path = ROOT) -> list[Path]:
    """The rendered files that are missing or differ from what the code renders."""
    return [
        path
        for path, text in rendered_files(directory, root).items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]


def write(directory: Path = CONTRACTS_DIR, root: Path = ROOT) -> list[Path]:
    """Render every file; returns the paths of those that changed."""
    changed = []
    for path, text in rendered_files(directory, root).items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed
