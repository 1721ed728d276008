"""The pack's media data: hash banks of known-bad images and the settings for matching them.

A pack may hold a `media/` folder (policy staff's data, like `lists/`):

- `media/*.txt`: hash banks, one known-bad image a line, ``<PDQ hash: 64 hex digits> <label>``; `#` starts a
  comment. The label says what the image is (``counterfeit:lv-bag-replica``) and is what `media.bank_matches`
  reports, so a moderator sees why an image matched without seeing the banked image. A hash is made with
  ``python -m clearcircle.signals.media hash FILE...`` (the same decoding and downscaling as live images).
  A posted image is compared with its rotations and mirror images too (PDQ's dihedral hashes), so flipping
  a banked photo does not get it past the bank.
- `media/media.yaml` (optional): ``max_distance`` (Hamming distance of 256 bits at or under which a hash
  matches; 31 is PDQ's usual threshold) and ``min_quality`` (PDQ quality under which an image is never
  matched: flat, near-blank images have unstable hashes that would match each other).

This module is deliberately light (no image libraries): the pack loader imports it for every pack, also for
packs and processes that never see an image. Problems are reported like every other pack problem, with file
and line, all at once.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    import numpy as np

Found = tuple[str, int | None, str]  # (file, line, message): a problem, made a pack Problem by the loader

HASH_BITS = 256
DEFAULT_MAX_DISTANCE = 31  # PDQ's reference "confident match" threshold
DEFAULT_MIN_QUALITY = 50  # under this PDQ's quality metric says the image is too featureless to trust its hash
SETTINGS_FILE = "media.yaml"
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
LABEL = re.compile(r"^[a-z0-9][a-z0-9_:.-]{0,63}$")


def hamming(a: int, b: int) -> int:
    """Bits that differ between two 256-bit hashes."""
    return (a ^ b).bit_count()


@dataclass(frozen=True)
class BankEntry:
    pdq: int
    label: str
    source: str  # file:line, for staff tracing a match back to the bank line


@dataclass(frozen=True)
class MediaSettings:
    """What image signals read from the pack: the banks and how to match them."""

    entries: tuple[BankEntry, ...] = ()
    max_distance: int = DEFAULT_MAX_DISTANCE
    min_quality: int = DEFAULT_MIN_QUALITY

    @cached_property
    def _matrix(self) -> np.ndarray:
        """The bank as an N x 32 byte matrix: one vectorised XOR + popcount per image, however long the bank."""
        import numpy as np

        return np.array([list(e.pdq.to_bytes(32, "big")) for e in self.entries], dtype=np.uint8).reshape(-1, 32)

    def matches(self, hashes: Sequence[int], quality: int) -> list[str]:
        """Labels of the bank entries within `max_distance` of any of the hashes (an image's, and those of its
        rotations and mirror images); none for a low-quality image."""
        if not self.entries or quality < self.min_quality or not hashes:
            return []
        import numpy as np

        table = _popcount_table()
        nearest = np.min([table[self._matrix ^ np.frombuffer(h.to_bytes(32, "big"), dtype=np.uint8)].sum(axis=1)
                          for h in hashes], axis=0)
        return sorted({self.entries[i].label for i in np.flatnonzero(nearest <= self.max_distance)})


@functools.cache
def _popcount_table() -> np.ndarray:
    """Set bits of each byte value (numpy imported on first use, as everywhere in this module)."""
    import numpy as np

    return np.array([i.bit_count() for i in range(256)], dtype=np.uint16)


def parse_hash(text: str) -> int | None:
    """A PDQ hash written as 64 hex digits (the reference implementation's format), or None."""
    return int(text, 16) if _HEX.match(text) else None


def format_hash(pdq: int) -> str:
    return f"{pdq:064x}"


def _read_settings(path: Path, problems: list[Found]) -> dict[str, int]:
    rel = f"media/{SETTINGS_FILE}"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.append((rel, mark.line + 1 if mark else None, f"cannot read: {exc}"))
        return {}
    raw = raw or {}
    if not isinstance(raw, dict):
        problems.append((rel, 1, "must be a mapping (max_distance, min_quality)"))
        return {}
    out: dict[str, int] = {}
    limits = {"max_distance": (0, HASH_BITS // 4), "min_quality": (0, 100)}  # past 64 bits unrelated photos meet
    for key, value in raw.items():
        if key not in limits:
            problems.append((rel, None, f"unknown setting {key!r} (known: {', '.join(limits)})"))
            continue
        lo, hi = limits[key]
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            problems.append((rel, None, f"{key}: must be a whole number from {lo} to {hi}"))
            continue
        out[key] = value
    return out


def _read_bank(path: Path, rel: str, seen: dict[int, str], problems: list[Found]) -> list[BankEntry]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        problems.append((rel, None, f"not UTF-8: {exc}"))
        return []
    entries = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        pdq = parse_hash(parts[0])
        if len(parts) != 2 or pdq is None:
            problems.append((rel, number, "a bank line is `<PDQ hash: 64 hex digits> <label>`"))
            continue
        if not LABEL.match(parts[1]):
            problems.append((rel, number, f"label {parts[1]!r}: lower-case letters, digits and _ : . - "
                                          "(at most 64)"))
            continue
        where = f"{rel}:{number}"
        if pdq in seen:
            problems.append((rel, number, f"hash already banked at {seen[pdq]}"))
            continue
        seen[pdq] = where
        entries.append(BankEntry(pdq, parts[1], where))
    return entries


def load_media(root: Path) -> tuple[MediaSettings, list[Found]]:
    """Read `root/media/` (absent: an empty bank with the default settings) and every problem found in it."""
    problems: list[Found] = []
    folder = root / "media"
    if not folder.is_dir():
        return MediaSettings(), problems
    settings = _read_settings(folder / SETTINGS_FILE, problems) if (folder / SETTINGS_FILE).is_file() else {}
    seen: dict[int, str] = {}
    entries: list[BankEntry] = []
    for file in sorted(folder.glob("*.txt")):
        entries += _read_bank(file, file.relative_to(root).as_posix(), seen, problems)
    return MediaSettings(tuple(entries), **settings), problems
