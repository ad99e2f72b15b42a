"""What the two Python packages ship: the server's wheel (what the images install) carries the
browser package's modules for the api to serve, the client's wheel carries no server code, and
their commands never share a name."""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "python"
BROWSER_PACKAGE = ROOT / "clients" / "js"


def build_wheel(source: Path, out: Path) -> zipfile.ZipFile:
    """Build `source`'s wheel into `out` as pip would, and open it."""
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip_wheel, "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


def console_scripts(wheel: zipfile.ZipFile) -> dict[str, str]:
    """The wheel's console scripts, name → entry point."""
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    entry_points = configparser.ConfigParser()
    entry_points.read_string(wheel.read(name).decode())
    if not entry_points.has_section("console_scripts"):
        return {}
    return dict(entry_points.items("console_scripts"))


@pytest.fixture(scope="module")
def server_wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The server's wheel."""
    return build_wheel(ROOT, tmp_path_factory.mktemp("server"))


@pytest.fixture(scope="module")
def client_wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The client's wheel."""
    return build_wheel(CLIENT, tmp_path_factory.mktemp("client"))


def test_the_server_wheel_carries_every_browser_module_byte_for_byte(
    server_wheel: zipfile.ZipFile,
) -> None:
    modules = sorted(BROWSER_PACKAGE.glob("*.js"))
    assert modules, "clients/js/ has no module"
    for module in modules:
        shipped = f"services/api/client_js/{module.name}"
        assert shipped in server_wheel.namelist(), f"{module.name} is not in the wheel"
        assert server_wheel.read(shipped) == module.read_bytes()


def test_the_two_commands_have_names_of_their_own(
    server_wheel: zipfile.ZipFile, client_wheel: zipfile.ZipFile
) -> None:
    assert console_scripts(server_wheel) == {"tasklight-server": "shared.server_cli:main"}
    assert console_scripts(client_wheel) == {"tasklight": "tasklight.cli:main"}


def test_the_client_wheel_is_typed_has_its_pytest_plugin_and_no_server_code(
    client_wheel: zipfile.ZipFile,
) -> None:
    names = client_wheel.namelist()
    assert "tasklight/py.typed" in names
    assert not [n for n in names if n.startswith(("shared/", "services/"))]
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "tasklight = tasklight.pytest_plugin" in client_wheel.read(entry_points).decode()


def test_the_client_imports_nothing_of_the_server() -> None:
    imported: set[str] = set()
    for source in (CLIENT / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    assert not imported & {"shared", "services", "tests", "pymongo", "faststream"}


def test_the_clients_webhook_events_are_the_servers() -> None:
    from tasklight.cli_webhooks import EVENT_TYPES

    from shared.webhooks.events import EventType

    assert set(EVENT_TYPES) == {event.value for event in EventType}
