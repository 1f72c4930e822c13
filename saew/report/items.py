"""What a report is made of: plots (a PNG or a note saying why it is missing), tables and
paragraphs, each filed under a section; and what a build returns."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# the page's sections, in order: the findings open it, before any table
SECTION_ORDER = ["Findings", "Cluster quality", "Release", "Evolution", "Cluster flows", "Clusters",
                 "Co-activation", "Matching", "Training", "Other"]


@dataclass(frozen=True)
class Item:
    """One plot of the report: a PNG file, or a note saying why it is missing."""
    section: str
    title: str
    caption: str
    file: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Table:
    section: str
    title: str
    caption: str
    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    note: str | None = None


@dataclass(frozen=True)
class Text:
    """Paragraphs of plain sentences (HTML-escaped when rendered), e.g. the findings."""
    section: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    note: str | None = None


@dataclass(frozen=True)
class Result:
    folder: Path
    items: list[Item]
    tables: list[Table]
    texts: list[Text] = field(default_factory=list)

    @property
    def files(self) -> list[str]:
        return [it.file for it in self.items if it.file]


def slug(s: str) -> str:
    """A file-name-safe form of a title or link name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-")
