"""The README is for users first: it opens with the two commands, documents every setting and
every built-in task type, runs the CLI from the virtualenv, links the performance figures
instead of holding them, and, like every file of the repository, stands alone (it names product
patterns, never notes from outside the repository)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from shared.registry import load_registry
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
#: Words that point outside the repository: planning notes and issue numbers.
OUTSIDE_REFERENCE = re.compile(
    r"\bseeds? \d|\bseed's\b|\bthe seeds?\b|DESIGN\.md|\bissue\s*#?\d+", re.IGNORECASE
)


def env_name(field: str) -> str:
    return {"mongodb_url": "MONGODB_URL", "amqp_url": "AMQP_URL"}.get(
        field, f"TASKLIGHT_{field.upper()}"
    )


def test_every_setting_is_documented_in_the_configuration_table() -> None:
    missing = [env_name(f) for f in Settings.model_fields if f"`{env_name(f)}`" not in README]
    assert missing == []


def test_the_readme_opens_with_make_run_and_make_test() -> None:
    opening = README[:400]
    assert "make run" in opening
    assert "make test" in opening


def test_every_built_in_task_type_is_in_the_readme_table() -> None:
    names = [task_type.name for task_type in load_registry("", builtin_tasks=True)]
    assert names, "no built-in task type"
    missing = [name for name in names if f"| `{name}` |" not in README]
    assert missing == []


def test_cli_examples_run_from_the_virtualenv() -> None:
    commands = re.findall(r"^(\S*tasklight(?:-server)?) ", README, re.MULTILINE)
    assert commands, "the README shows no CLI command"
    assert {c for c in commands if not c.startswith(".venv/bin/")} == set()


def test_the_benchmark_lives_in_docs_performance_and_is_linked() -> None:
    performance = (ROOT / "docs" / "performance.md").read_text()
    assert "[docs/performance.md](docs/performance.md)" in README
    assert "| tasklight: HTTP submit" in performance
    assert "| tasklight: HTTP submit" not in README


def test_no_file_of_the_repository_points_outside_it() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True
    ).stdout.split("\0")
    texts = [
        ROOT / f
        for f in tracked
        if f
        and f.endswith(
            (
                ".md",
                ".py",
                ".js",
                ".ts",
                ".json",
                ".toml",
                ".yml",
                ".yaml",
                ".css",
                "Makefile",
                ".ci/run",
                ".ci/prerequisites",
                "Caddyfile",
                "Dockerfile",
            )
        )
    ]
    found = []
    for path in texts:
        if not path.is_file() or "package-lock" in path.name:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE_REFERENCE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == []
