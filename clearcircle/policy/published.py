"""Published policy packs: one pack in force for every worker, changed without a restart.

A pack given at start (CLEARCIRCLE_PACK or the built-in one) is each process's own; with many stateless
workers behind a load balancer, a new pack must reach all of them and every decision must name the version it
was made with. So a pack can be *published*: `clearcircle policy publish DIR` or `POST /v1/policy/publish`
validate it exactly as `policy check` does, and the store keeps its files and content-hash version (table
`published_packs`, append-only, with an audit entry). The newest publication is the pack in force.

`PackBook` gives the pipeline that pack, in the manner of the campaign overlays' CampaignBook: once a batch it
asks its source for the newest publication (one indexed row) and reloads only when that changed, so a worker
decides with a newly published pack from its next batch on. While nothing is published, the pack given at
start stays in force. A publication that does not load in this process (say, it names a signal this release
lacks: workers of two releases side by side) is logged and skipped, and the process keeps its current pack.

The policy side never touches the database: the source is the store's `PublishedPacks` (or anything with
`newest` and `files`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

from clearcircle.policy.pack import Pack, PackError, Problem, load_pack, pack_files
from clearcircle.signals.registry import SignalRegistry

log = logging.getLogger(__name__)

_KEEP = 4  # loaded packs kept by version, so a rollback to a recent one needs no reload


class PackSource(Protocol):
    def newest(self) -> tuple[int, str] | None:
        """(seq, version) of the newest publication; None when nothing was published."""
        ...

    def files(self, seq: int) -> dict[str, str]:
        """The files of publication `seq`: relative path -> text."""
        ...


def read_pack_files(path: Path) -> dict[str, str]:
    """The files a pack's version hashes (pack.pack_files), as relative path -> text, byte for byte (no
    newline translation), so the same files written out again hash to the same version."""
    files = {}
    for file in pack_files(path):
        rel = file.relative_to(path).as_posix()
        try:
            files[rel] = file.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PackError([Problem(rel, None, None, f"not UTF-8: {exc}")]) from None
    return files


def load_files(files: dict[str, str], registry: SignalRegistry | None = None) -> Pack:
    """Load (and validate) a pack given as its files: written to a temporary folder for the one pack loader.

    The folder is removed once loaded (a loaded pack holds everything it needs), so `Pack.path` names a
    folder that no longer exists. Names are expected checked (api.pack_files) or read from a folder.
    """
    root = Path(tempfile.mkdtemp(prefix="cc-published-"))
    try:
        for rel, text in files.items():
            target = root / rel
            if not target.resolve().is_relative_to(root.resolve()):
                raise PackError([Problem(rel, None, None, "a file outside the pack folder")])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(text.encode("utf-8"))
        return load_pack(root, registry)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def read_pack(path: Path, registry: SignalRegistry | None = None) -> tuple[Pack, dict[str, str]]:
    """Validate the pack folder exactly as `policy check` does and read its files for publishing.

    The files read are loaded again as every worker will load them, so what is published is what was
    validated and its version is the one the workers compute. Raises PackError listing every problem.
    """
    checked = load_pack(path, registry)  # problems named with the folder's own paths
    files = read_pack_files(path)
    pack = load_files(files, registry)
    if pack.version != checked.version:
        raise PackError([Problem("(pack)", None, None, "the folder changed while it was read; publish again")])
    return pack, files


class PackBook:
    """The pack in force for a pipeline: the newest published one, else the one given at start.

    `refresh(source)` is cheap when nothing changed (the source's one-row read) and is safe to call from
    several threads (the API's reads ask too, so they show the pack the next batch will use).
    """

    def __init__(self, base: Pack, registry: SignalRegistry | None = None) -> None:
        self.base = base
        self.registry = registry
        self.pack = base
        self.seq: int | None = None  # the publication in force; None: the pack given at start
        self._loaded: OrderedDict[str, Pack] = OrderedDict([(base.version, base)])
        self._skipped: set[int] = set()  # publications that did not load here (logged once each)
        self._lock = threading.Lock()

    def refresh(self, source: PackSource) -> Pack:
        """The pack in force now; reloads only when the newest publication changed."""
        newest = source.newest()
        with self._lock:
            if newest is None:
                self.pack, self.seq = self.base, None
                return self.pack
            seq, version = newest
            if seq == self.seq or seq in self._skipped:
                return self.pack
            pack = self._loaded.get(version)
            if pack is None:
                try:
                    pack = load_files(source.files(seq), self.registry)
                except PackError as exc:
                    self._skipped.add(seq)
                    log.error("published pack #%d (%s) does not load in this process; keeping %s:\n%s",
                              seq, version, self.pack.version, exc)
                    return self.pack
                if pack.version != version:  # the files hash to another version: not what was published
                    self._skipped.add(seq)
                    log.error("published pack #%d: files hash to %s, not %s; keeping %s", seq, pack.version,
                              version, self.pack.version)
                    return self.pack
                self._loaded[version] = pack
                while len(self._loaded) > _KEEP:
                    self._loaded.popitem(last=False)
            self._loaded.move_to_end(version)
            if pack is not self.pack:
                log.info("policy pack %s %s in force (publication #%d)", pack.name, version, seq)
            self.pack, self.seq = pack, seq
            return pack
