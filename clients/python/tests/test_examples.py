"""The README's worked example is the file examples/quickstart.py, and it runs as it says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import Deployment

PACKAGE = Path(__file__).resolve().parents[1]


def test_the_readme_shows_the_example_that_runs() -> None:
    readme = (PACKAGE / "README.md").read_text()
    example = (PACKAGE / "examples" / "quickstart.py").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    shown = [block for block in blocks if "(API_URL, WS_URL, token=TOKEN)" in block]
    assert len(shown) == 2, "the README shows the blocking and the async part"
    for block in shown:
        assert block in example, "a README snippet differs from examples/quickstart.py"


def test_the_quickstart_runs_and_prints_what_the_readme_says(deployment: Deployment) -> None:
    env = {
        **os.environ,
        "TASKLIGHT_API_URL": deployment.api_url,
        "TASKLIGHT_WS_URL": deployment.ws_url,
        "TASKLIGHT_TOKEN": deployment.token,
    }
    done = subprocess.run(
        [sys.executable, str(PACKAGE / "examples" / "quickstart.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "counted: {'counted': 3}",
        "refused: 422 urn:tasklight:problem:invalid-task",
        "stopped: canceled",
        "pending: 0",
    ]
