"""The README is for users first: it opens with the two commands, documents every setting and
every built-in task type, runs the CLI from the virtualenv, names only paths that exist, links
the performance figures and the problem types instead of holding copies of them, and, like
every file of the repository, stands alone (it names product patterns, never notes from
outside the repository)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from services.api.problems import PROBLEM_TYPES
from shared.registry import load_registry
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
#: Words that point outside the repository: planning notes and issue numbers.
OUTSIDE_REFERENCE = re.compile(
    r"\bseeds? \d|\bseed's\b|\bthe seeds?\b|DESIGN\.md|\bissue\s*#?\d+", re.IGNORECASE
)


def tracked_files() -> list[str]:
    """The repository's files, as git tracks them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True
    ).stdout
    return [name for name in listed.split("\0") if name]


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


#: A fenced code block, at any indentation (a block in a list item is indented).
CODE_BLOCK = re.compile(r"^([ \t]*)```[^\n]*\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def cli_commands(markdown: str) -> list[str]:
    """The program of every command line of the code blocks that runs one of the CLIs."""
    return [
        command
        for _, block in CODE_BLOCK.findall(markdown)
        for command in re.findall(r"^\s*(\S*tasklight(?:-server)?)\s", block, re.MULTILINE)
    ]


def test_cli_examples_run_from_the_virtualenv() -> None:
    commands = cli_commands(README)
    assert {c for c in commands if not c.startswith(".venv/bin/")} == set()
    assert ".venv/bin/tasklight-server" in commands, "the README shows no server CLI command"
    assert ".venv/bin/tasklight" in commands, "the README shows no client CLI command"


def test_the_cli_check_sees_commands_in_indented_blocks() -> None:
    # A block inside a list item is indented: its commands are checked like any other
    markdown = "- Users:\n\n  ```sh\n  tasklight-server users list   # names\n  ```\n"
    assert cli_commands(markdown) == ["tasklight-server"]


def repository_paths(markdown: str) -> set[str]:
    """Every path of the repository the markdown names: link targets, and code spans that
    start with one of the repository's top-level folders or files."""
    top = {path.split("/")[0] for path in tracked_files()}
    named = {link.split("#")[0] for link in re.findall(r"\]\(([^)\s]+)\)", markdown)}
    named |= set(re.findall(r"`([^`\s]+)`", markdown))
    return {
        name.rstrip("/")
        for name in named
        if name and "://" not in name and name.split("/")[0] in top
    }


def test_every_path_the_readme_names_exists() -> None:
    paths = repository_paths(README)
    assert "shared/lifecycle.py" in paths  # the check sees the paths it is meant to
    missing = sorted(
        p for p in paths if not (any(ROOT.glob(p)) if "*" in p else (ROOT / p).exists())
    )
    assert missing == []


def bare_file_names(markdown: str) -> set[str]:
    """The file names the markdown names without a folder (as in "shared/  store.py, …")."""
    return set(
        re.findall(
            r"(?<![\w/.*-])(\w[\w-]*\.(?:py|js|ts|md|json|ya?ml|toml|css|png|txt))\b", markdown
        )
    )


def test_every_file_name_the_readme_names_is_a_file_of_the_repository() -> None:
    names = {path.rsplit("/", 1)[-1] for path in tracked_files()}
    assert sorted(bare_file_names(README) - names) == []


def test_the_file_name_check_sees_names_listed_under_a_folder() -> None:
    listing = "shared/   store.py (the only writer), batching.py; see `docs/deploy.md`"
    assert bare_file_names(listing) == {"store.py", "batching.py"}


def test_the_readme_leaves_the_list_of_problem_types_to_docs_backend_md() -> None:
    assert "[docs/backend.md](docs/backend.md#problem-types)" in README
    assert "### Problem types" in (ROOT / "docs" / "backend.md").read_text()
    # A few real ones as examples, not a second list to keep complete
    paragraph = README.split("Problem types: ", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"`([a-z]+(?:-[a-z]+)*)`", paragraph)) - {"x-problem-types"}
    known = {t.removeprefix("urn:tasklight:problem:") for t in PROBLEM_TYPES}
    assert named - known == set()
    assert 0 < len(named) <= 5, sorted(named)


def test_the_benchmark_lives_in_docs_performance_and_is_linked() -> None:
    performance = (ROOT / "docs" / "performance.md").read_text()
    assert "[docs/performance.md](docs/performance.md)" in README
    assert "| tasklight: HTTP submit" in performance
    assert "| tasklight: HTTP submit" not in README


def test_no_file_of_the_repository_points_outside_it() -> None:
    tracked = tracked_files()
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
