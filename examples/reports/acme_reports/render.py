"""Turning a report's figures into a document: pure functions, no I/O."""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Section:
    """One section of a report: a heading and its rows of (label, amount)."""

    heading: str
    rows: tuple[tuple[str, int], ...]


def figures_for(heading: str) -> Section:
    """Stand-in for a query: three rows whose amounts follow from the heading, so that the same
    report always renders the same."""
    seed = hashlib.sha256(heading.encode()).digest()
    return Section(
        heading, tuple((f"{heading} {i + 1}", seed[i] * 100 + seed[i + 3]) for i in range(3))
    )


def to_html(title: str, sections: list[Section]) -> str:
    """The report as a standalone HTML page."""
    parts = [f"<!doctype html>\n<title>{escape(title)}</title>\n<h1>{escape(title)}</h1>"]
    for section in sections:
        rows = "".join(
            f"<tr><td>{escape(label)}</td><td>{amount}</td></tr>" for label, amount in section.rows
        )
        parts.append(f"<h2>{escape(section.heading)}</h2>\n<table>{rows}</table>")
    return "\n".join(parts) + "\n"


def to_csv(title: str, sections: list[Section]) -> str:
    """The report as CSV: one line per row, with its section."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["report", "section", "label", "amount"])
    for section in sections:
        for label, amount in section.rows:
            writer.writerow([title, section.heading, label, amount])
    return out.getvalue()
