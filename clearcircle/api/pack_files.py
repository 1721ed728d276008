"""A policy pack sent over HTTP as {relative path: text}: written to a folder so the one pack loader reads it.

Shared by pack validation (admin) and backtests: a path that could leave the folder is refused with a 422.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from fastapi import HTTPException


def write_pack_files(files: dict[str, str], root: Path) -> None:
    """Write each file below `root`; a name that is absolute, climbs out or is not .yaml/.yml/.txt is a 422."""
    for rel, text in files.items():
        parts = PurePosixPath(rel).parts
        if (not parts or rel.startswith("/") or "\\" in rel or any(p in ("..", ".") for p in parts)
                or PurePosixPath(*parts).as_posix() != rel or not rel.endswith((".yaml", ".yml", ".txt"))):
            raise HTTPException(422, f"bad pack file name {rel!r}: a relative path inside the pack ending in .yaml, "
                                     ".yml or .txt")
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
