"""Hash chaining and verification of audit rows.

Each row's hash covers its content and the previous row's hash, not its own sequence number: so an edited
row fails its own hash, a deleted row leaves a gap in the sequence, and a moved row still matches its own
hash but no longer links to its predecessor, which tells the three apart. A head row, written in the same
transaction, catches a deleted tail.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditRow:
    seq: int
    at_ms: int
    kind: str
    subject: str
    payload: str
    prev_hash: str
    hash: str


def row_hash(prev_hash: str, at_ms: int, kind: str, subject: str, payload: str) -> str:
    data = "\x1f".join((prev_hash, str(at_ms), kind, subject, payload)).encode()
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Finding:
    seq: int
    problem: str

    def __str__(self) -> str:
        return f"row {self.seq}: {self.problem}"


def _sealed_digest(payload: str) -> str:
    """The decision digest an audit row sealed; "" if the payload is not what we wrote (reported as edited)."""
    try:
        value = json.loads(payload)
    except ValueError:
        return ""
    return value.get("sha256", "") if isinstance(value, dict) else ""


def verify(rows: Iterable[AuditRow], head: tuple[int, str] | None,
           decisions: Iterable[tuple[str, str]] = ()) -> tuple[int, list[Finding]]:
    """Walk the chain in sequence order, then check each stored decision (event id, payload) against the
    digest its audit row sealed. Returns (rows checked, findings); no findings means intact."""
    findings: list[Finding] = []
    sealed: dict[str, tuple[int, str]] = {}
    prev_seq, prev_hash, checked = 0, GENESIS, 0
    for row in rows:
        checked += 1
        if row.seq > prev_seq + 1:
            gap = f"{prev_seq + 1}" if row.seq == prev_seq + 2 else f"{prev_seq + 1}..{row.seq - 1}"
            findings.append(Finding(prev_seq + 1, f"deleted: row(s) {gap} missing"))
        own = row_hash(row.prev_hash, row.at_ms, row.kind, row.subject, row.payload)
        if own != row.hash:
            findings.append(Finding(row.seq, "edited: content does not match its hash"))
        elif row.prev_hash != prev_hash and row.seq == prev_seq + 1:
            findings.append(Finding(row.seq, "reordered: does not link to the row before it"))
        prev_seq, prev_hash = row.seq, row.hash
        if row.kind == "decision":
            sealed[row.subject] = (row.seq, _sealed_digest(row.payload))
    for event_id, payload in decisions:
        seq, digest = sealed.pop(event_id, (None, None))
        if seq is None:
            findings.append(Finding(0, f"decision {event_id!r} has no audit entry (inserted)"))
        elif hashlib.sha256(payload.encode()).hexdigest() != digest:
            findings.append(Finding(seq, f"decision {event_id!r} edited: does not match its sealed digest"))
    if decisions != ():
        for event_id, (seq, _digest) in sorted(sealed.items(), key=lambda kv: kv[1][0]):
            findings.append(Finding(seq, f"decision {event_id!r} deleted"))
    if head is not None:
        head_seq, head_hash = head
        if head_seq > prev_seq:
            findings.append(Finding(prev_seq + 1, f"deleted: rows {prev_seq + 1}..{head_seq} missing at the end"))
        elif head_seq == prev_seq and head_hash != prev_hash:
            findings.append(Finding(head_seq, "edited: last row does not match the recorded head"))
    elif checked:
        findings.append(Finding(0, "head record missing"))
    return checked, findings
