"""The browser package (clients/js/): its package.json names files that exist, its declarations
name exactly what its modules export, and `tsc --noEmit` accepts them against the examples."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.deployment import required_tool

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "js"
#: Seconds tsc may take on a busy machine (about 3 s alone).
TSC_TIMEOUT_S = 120


def exported_names(source: str) -> set[str]:
    """Names a module (or its declarations) exports with `export function|class|const`."""
    return set(re.findall(r"^export (?:async )?(?:function|class|const) (\w+)", source, re.M))


def test_the_package_is_an_es_module_whose_exports_exist() -> None:
    manifest = json.loads((PACKAGE / "package.json").read_text())
    assert manifest["type"] == "module"
    targets = [
        target
        for entry in manifest["exports"].values()
        for target in (entry.values() if isinstance(entry, dict) else [entry])
    ]
    assert "./tasklight.js" in targets
    for target in targets:
        assert (PACKAGE / target).is_file(), f"package.json exports missing {target}"


@pytest.mark.parametrize("module", ["tasklight", "playwright"])
def test_the_declarations_name_what_the_module_exports(module: str) -> None:
    code = exported_names((PACKAGE / f"{module}.js").read_text())
    declared = exported_names((PACKAGE / f"{module}.d.ts").read_text())
    assert code, f"{module}.js exports nothing"
    assert declared == code


def test_tsc_accepts_the_declarations_against_the_examples() -> None:
    required_tool("node", "nodejs")
    tsc = PACKAGE / "node_modules" / ".bin" / "tsc"
    assert tsc.exists(), "run `make install` (npm ci in clients/js/)"
    done = subprocess.run(
        [str(tsc), "--noEmit", "-p", str(PACKAGE)],
        capture_output=True,
        text=True,
        timeout=TSC_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
