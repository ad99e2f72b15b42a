"""Every name a UI module imports from another module of the UI (or from tasklight.js) is one
that module exports: a name that is gone breaks the whole page in the browser, not at build."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "services" / "api" / "static" / "ui"
#: Where each `/static/...` module of an import lives in the repository.
MODULES = {"/static/tasklight.js": ROOT / "clients" / "js" / "tasklight.js"} | {
    f"/static/ui/{path.name}": path for path in UI.glob("*.js")
}
IMPORT = re.compile(r"import\s*\{([^}]*)\}\s*from\s*\"([^\"]+)\"", re.S)


def exports(path: Path) -> set[str]:
    """Names a module exports with `export function|class|const|let`."""
    return set(
        re.findall(r"^export (?:async )?(?:function|class|const|let) (\w+)", path.read_text(), re.M)
    )


@pytest.mark.parametrize("module", sorted(UI.glob("*.js")), ids=lambda p: p.name)
def test_every_imported_name_is_exported(module: Path) -> None:
    missing = []
    for names, source in IMPORT.findall(module.read_text()):
        assert source in MODULES, f"{module.name} imports {source}, which is not served"
        wanted = {name.strip().split(" as ")[0] for name in names.split(",") if name.strip()}
        missing += [f"{name} from {source}" for name in wanted - exports(MODULES[source])]
    assert missing == []


@pytest.mark.parametrize(
    "module", sorted(set(UI.glob("*.js")) - {UI / "dom.js"}), ids=lambda p: p.name
)
def test_times_are_shown_in_the_one_format_of_dom_js(module: Path) -> None:
    # dom.js's formatTime / timeElement is the UI's one time format; a module that formats a
    # date itself shows a second one ("2:10:53 PM" beside "Dec 3, 02:10:53 PM")
    own = re.findall(r"\.toLocale\w*String\(|Intl\.DateTimeFormat", module.read_text())
    assert own == []
