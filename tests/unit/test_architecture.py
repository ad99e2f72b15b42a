"""The structure docs/architecture.md describes holds: one door to MongoDB, and its example runs."""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("shared", "services", "examples")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_only_the_store_package_imports_pymongo() -> None:
    speaking = set()
    for top in PRODUCTION:
        for path in (ROOT / top).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            if relative.startswith("shared/store/"):
                continue
            if any(m == "pymongo" or m.startswith(("pymongo.", "bson")) for m in imports_of(path)):
                speaking.add(relative)
    assert speaking == set()


def test_unit_tests_name_the_stores_errors_not_pymongos() -> None:
    """A unit test that makes the database fail raises the store's own errors
    (`shared/store/errors.py`): the code under test knows no other. (BSON stays: the bench's
    wire test encodes it.)"""
    speaking = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "tests" / "unit").rglob("*.py")
        if any(m == "pymongo" or m.startswith("pymongo.") for m in imports_of(path))
    }
    assert speaking == set()


def test_no_raw_collection_leaves_the_store_package() -> None:
    """What the store's parts keep of PyMongo (`.collection`) is read only inside the package:
    a caller hands over the typed part (a `TaskStore`), never its collection."""
    reaching = set()
    for top in PRODUCTION:
        for path in (ROOT / top).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            if relative.startswith("shared/store/"):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            if any(isinstance(n, ast.Attribute) and n.attr == "collection" for n in ast.walk(tree)):
                reaching.add(relative)
    assert reaching == set()


def test_the_raw_document_type_is_named_once_and_used_in_the_store_only() -> None:
    """`Doc` (a document as PyMongo takes it) has one definition; outside the store no module
    needs it, for what leaves the store is typed."""
    defined, borrowed = set(), set()
    for top in PRODUCTION:
        for path in (ROOT / top).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in tree.body:
                targets = node.targets if isinstance(node, ast.Assign) else []
                if any(isinstance(t, ast.Name) and t.id == "Doc" for t in targets):
                    defined.add(relative)
            if not relative.startswith("shared/store/") and "shared.store.documents" in (
                imports_of(path)
            ):
                borrowed.add(relative)
    assert defined == {"shared/store/documents.py"}
    assert borrowed == set()


def test_the_worked_example_of_a_task_type_runs_and_its_test_passes() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    [example] = [
        block
        for block in re.findall(r"```python\n(.*?)```", text, re.S)
        if "MemoryContext" in block
    ]
    namespace: dict[str, Any] = {}
    exec(compile(example, "docs/architecture.md", "exec"), namespace)
    registry = namespace["Registry"]()
    namespace["register"](registry)
    assert registry.get("storage.resize").on_worker_lost == "requeue"
    asyncio.run(namespace["test_resize_reports_each_gib_and_stops_when_canceled"]())


def test_test_files_import_helpers_from_the_support_package_only() -> None:
    """A test file never imports another test file or a conftest: what tests share lives in
    tests/support/ (tests/README.md says where each test goes)."""
    borrowing = {}
    for path in (ROOT / "tests").rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        borrowed = {
            module
            for module in imports_of(path)
            if module.startswith("tests.")
            and not module.startswith("tests.support")
            and module.rsplit(".", 1)[-1].startswith(("test_", "conftest"))
        }
        if borrowed:
            borrowing[relative] = borrowed
    assert borrowing == {}
