"""Read the labelled message sets listed in the data folder's README, deduplicated on normalised text.

The sets are public data nobody on this project wrote (`../shared/data/`). Which sets exist is data too:
the loader reads the markdown table of `README.md` (columns `set`, `file`, `language`), so a set added
there is trained on and evaluated with no code change. Every file has the same shape (`label<TAB>text`,
header line, labels `spam`/`ham`), so there is no per-set code either.

Deduplication runs over ALL sets on the normalised text, before any split: two messages that differ only by
spacing, width or case are one text, so a copy of a test message can never sit in training. A text that
carries both labels (in one set or across sets) is dropped: we cannot say which label is right.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from clearcircle.signals.text_normalize import normalize

__all__ = ["Corpus", "DataError", "DataSet", "Example", "default_data_dir", "load_corpus", "read_sets"]

LABELS = ("ham", "spam")
_CELL_MARKUP = re.compile(r"^[`*_]+|[`*_]+$")


class DataError(ValueError):
    """The data folder, its README table or a message file is missing or malformed (message says where)."""


@dataclass(frozen=True)
class DataSet:
    """One row of the README table: a set name, its message file and the language of its texts."""

    name: str
    path: Path
    language: str


@dataclass(frozen=True)
class Example:
    """One deduplicated message: the normalised text is its identity (dedup, split, features)."""

    text: str  # normalised: what the classifier reads
    original: str  # as it appears in the set (first occurrence), for the obfuscation benchmark
    spam: bool
    set: str
    language: str


@dataclass(frozen=True)
class Corpus:
    """Deduplicated examples (first occurrence wins, sets in README order) and what was dropped."""

    examples: list[Example]
    sets: list[DataSet]
    rows: int  # message lines read
    duplicates: int  # lines whose normalised text was already seen with the same label
    conflicts: int  # distinct normalised texts dropped because they carried both labels
    empty: int  # lines whose text normalises to nothing


def default_data_dir() -> Path:
    """`CLEARCIRCLE_DATA`, else `../shared/data` beside the repository (the folder holding `clearcircle/`)."""
    env = os.environ.get("CLEARCIRCLE_DATA")
    if env:
        return Path(env)
    repo_root = Path(__file__).resolve().parents[3]
    return (repo_root.parent / "shared" / "data").resolve()


def _cells(line: str) -> list[str]:
    return [_CELL_MARKUP.sub("", c.strip()).strip() for c in line.strip().strip("|").split("|")]


def read_sets(data_dir: Path) -> list[DataSet]:
    """The sets of the first README table that has `set`, `file` and `language` columns, in table order."""
    readme = data_dir / "README.md"
    try:
        lines = readme.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read {readme}: {exc.strerror or exc}") from None
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("|"):
            continue
        header = [c.lower() for c in _cells(line)]
        if not {"set", "file", "language"} <= set(header):
            continue
        col = {name: header.index(name) for name in ("set", "file", "language")}
        sets: list[DataSet] = []
        for row in lines[i + 1 :]:
            if not row.lstrip().startswith("|"):
                break  # the table ends at the first line that is not a table row
            cells = _cells(row)
            if all(set(c) <= set("-: ") for c in cells):
                continue  # the |---|---| line under the header
            if len(cells) <= max(col.values()):
                raise DataError(f"{readme}: short table row: {row.strip()!r}")
            name, file, language = (cells[col[k]] for k in ("set", "file", "language"))
            sets.append(DataSet(name, data_dir / file, language.lower()))
        if not sets:
            raise DataError(f"{readme}: the set table has no rows")
        return sets
    raise DataError(f"{readme}: no table with columns set, file and language")


def _read_messages(data: DataSet) -> Iterator[tuple[int, bool, str]]:
    """(line number, is spam, text) of one message file; refuses anything but the documented format."""
    try:
        fh = data.path.open(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"set {data.name}: cannot read {data.path}: {exc.strerror or exc}") from None
    with fh:
        header = fh.readline().rstrip("\r\n")
        if header.split("\t") != ["label", "text"]:
            raise DataError(f"{data.path}:1: header must be 'label<TAB>text', found {header[:40]!r}")
        for lineno, line in enumerate(fh, 2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            label, sep, text = line.partition("\t")
            if not sep or label not in LABELS:
                raise DataError(f"{data.path}:{lineno}: expected spam|ham<TAB>text")
            yield lineno, label == "spam", text


def load_corpus(data_dir: Path | None = None, sets: Iterable[DataSet] | None = None) -> Corpus:
    """Every set of the README table, normalised and deduplicated across sets; conflicting texts dropped."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    chosen = list(sets) if sets is not None else read_sets(data_dir)
    first: dict[str, Example] = {}
    conflicted: set[str] = set()
    rows = duplicates = empty = 0
    for data in chosen:
        for _lineno, spam, original in _read_messages(data):
            rows += 1
            text = normalize(original).text
            if not text.strip():
                empty += 1
                continue
            seen = first.get(text)
            if seen is None:
                first[text] = Example(text, original, spam, data.name, data.language)
            elif seen.spam != spam:
                conflicted.add(text)
            else:
                duplicates += 1
    examples = [e for t, e in first.items() if t not in conflicted]
    return Corpus(examples, chosen, rows, duplicates, len(conflicted), empty)
