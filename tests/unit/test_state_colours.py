"""Each task state has a colour of its own in the web UI, readable on its background: a state
chip is told apart at a glance (canceling is not canceled), read from app.css itself."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import pytest

from shared.lifecycle import TaskState

STYLESHEET = Path(__file__).resolve().parents[2] / "services" / "api" / "static" / "app.css"
#: The stylesheet without its comments (a comment before a rule is not part of its selector).
CSS = re.sub(r"/\*.*?\*/", "", STYLESHEET.read_text(), flags=re.DOTALL)
#: The smallest colour difference (CIE76 ΔE) between two states' text colours: about 25 is where
#: two colours stop reading as shades of one (canceling's old orange was 14 from canceled's amber).
MIN_DIFFERENCE = 25
#: WCAG AA for the chips' small text.
MIN_CONTRAST = 4.5


def declarations(selector: str) -> dict[str, str]:
    """The declarations of every rule whose selector list holds `selector`, later ones winning."""
    found: dict[str, str] = {}
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", CSS):
        if selector in (s.strip() for s in selectors.split(",")):
            for name, value in re.findall(r"([\w-]+)\s*:\s*([^;]+);", body):
                found[name] = value.strip()
    return found


def colour(value: str) -> str:
    """A `#rrggbb` value, with `var(--x)` looked up in `:root`."""
    custom = re.fullmatch(r"var\((--[\w-]+)\)", value)
    if custom:
        value = declarations(":root")[custom.group(1)]
    assert re.fullmatch(r"#[0-9a-fA-F]{6}", value), value
    return value


def state_colours(state: TaskState) -> tuple[str, str]:
    """A state chip's (text, background): its `.state-…` rule over `.chip`'s."""
    rules = declarations(".chip") | declarations(f".state-{state.value}")
    return colour(rules["color"]), colour(rules["background"])


def linear(hex_colour: str) -> list[float]:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    return [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]


def luminance(hex_colour: str) -> float:
    r, g, b = linear(hex_colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def lab(hex_colour: str) -> tuple[float, float, float]:
    """CIE L*a*b* (D65) of an sRGB colour."""
    r, g, b = linear(hex_colour)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def test_every_two_states_have_clearly_different_colours() -> None:
    colours = {state: state_colours(state)[0] for state in TaskState}
    close = [
        f"{a.value}/{b.value}: {math.dist(lab(colours[a]), lab(colours[b])):.1f}"
        for a, b in itertools.combinations(TaskState, 2)
        if math.dist(lab(colours[a]), lab(colours[b])) < MIN_DIFFERENCE
    ]
    assert close == []
    assert len(set(map(state_colours, TaskState))) == len(TaskState)


@pytest.mark.parametrize("state", list(TaskState), ids=str)
def test_a_state_chip_is_readable_on_its_background(state: TaskState) -> None:
    text, background = state_colours(state)
    lighter, darker = sorted((luminance(text), luminance(background)), reverse=True)
    assert (lighter + 0.05) / (darker + 0.05) >= MIN_CONTRAST


def test_the_check_reads_the_colours_the_stylesheet_gives() -> None:
    assert state_colours(TaskState.FAILED) == (
        declarations(":root")["--err"],
        declarations(":root")["--err-soft"],
    )
