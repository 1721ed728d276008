"""Pure helpers that turn stored records into what the templates show: highlighted evidence, images, the
account timeline, times in the platform's zone and a bar chart as inline SVG data. No database, no HTTP."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

# magic bytes -> MIME type of the image formats the media signals read
_IMAGE_TYPES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"),
                (b"RIFF", "image/webp"), (b"BM", "image/bmp"))


@dataclass(frozen=True)
class Segment:
    """A run of text, marked when an evidence span covers it (with the categories of those spans)."""

    text: str
    marked: bool
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class Highlighted:
    """One text field of the event with its evidence spans marked."""

    field: str
    segments: list[Segment]
    hits: int


def fmt_ms(ms: int | None, zone: ZoneInfo) -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, zone).strftime("%Y-%m-%d %H:%M %z")


def fmt_age(ms: int) -> str:
    """A duration as the queue shows SLA age: 3d 4h, 5h 12m, 7m."""
    minutes = max(0, ms) // 60_000
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {mins}m" if hours else f"{mins}m"


def field_text(payload: dict[str, Any], path: str) -> str | None:
    """The text at an evidence field path (`body.text`, `body.links.0.landing_text`) in the stored event."""
    node: Any = payload
    for part in path.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node if isinstance(node, str) else None


def segments(text: str, spans: list[tuple[int, int, str]]) -> list[Segment]:
    """Split `text` at the span boundaries; a piece is marked when any span covers it. Spans out of range are
    clipped, so a bad span can never hide text."""
    cuts = {0, len(text)}
    clean = []
    for start, end, category in spans:
        start, end = max(0, min(start, len(text))), max(0, min(end, len(text)))
        if start < end:
            clean.append((start, end, category))
            cuts.update((start, end))
    points = sorted(cuts)
    out: list[Segment] = []
    for a, b in zip(points, points[1:], strict=False):
        cats = tuple(sorted({c for s, e, c in clean if s <= a and b <= e}))
        piece = Segment(text[a:b], bool(cats), cats)
        if out and out[-1].marked == piece.marked and out[-1].categories == piece.categories:
            out[-1] = Segment(out[-1].text + piece.text, piece.marked, piece.categories)
        else:
            out.append(piece)
    return out


def highlight(payload: dict[str, Any] | None, evidence: list[dict[str, Any]]) -> list[Highlighted]:
    """Every text field of the event with the decision's text evidence marked in it. The post's main text
    always shows, marked or not; other fields show when evidence points into them. Evidence in text read from
    images (OCR) has no original in the event and is listed by the template on its own."""
    if payload is None:
        return []
    by_field: dict[str, list[tuple[int, int, str]]] = {}
    for item in evidence:
        span = item.get("span")
        if item.get("signal") == "text.evidence" and item.get("field") and span and len(span) == 2:
            by_field.setdefault(item["field"], []).append((int(span[0]), int(span[1]), item.get("category") or ""))
    fields = ["body.text", "body.message", "body.note", "body.display_name"]
    fields += [f for f in by_field if f not in fields]
    out = []
    for path in fields:
        text = field_text(payload, path)
        if text is not None and (path in by_field or path == "body.text"):
            # the same span from two rules is one mark
            spans = sorted(set(by_field.get(path, [])))
            out.append(Highlighted(path, segments(text, spans), len({(s, e) for s, e, _ in spans})))
    return out


def unplaced_evidence(payload: dict[str, Any] | None, evidence: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Text evidence whose field is not in the stored event (OCR of an image): shown as quoted snippets."""
    return [e for e in evidence if e.get("signal") == "text.evidence" and e.get("field")
            and (payload is None or field_text(payload, e["field"]) is None)]


def images(payload: dict[str, Any] | None) -> list[str]:
    """The post's images as data: URLs the page can show (an undecodable or unknown image is left out)."""
    out = []
    for image in ((payload or {}).get("body") or {}).get("images") or []:
        data = image.get("data_base64") if isinstance(image, dict) else None
        if not data:
            continue
        try:
            head = base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4), validate=False)
        except (binascii.Error, ValueError):
            continue
        mime = next((m for magic, m in _IMAGE_TYPES if head.startswith(magic)), None)
        if mime is not None:
            out.append(f"data:{mime};base64,{data}")
    return out


def timeline(changes: list[dict[str, Any]], decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Decisions about the account (with their event time) and changes to its state, one list newest first."""
    items = [{"at_ms": c["at_ms"], "kind": c["kind"], "change": c} for c in changes]
    items += [{"at_ms": d.get("occurred_ms"), "kind": "decision", "decision": d} for d in decisions]
    return sorted(items, key=lambda i: i["at_ms"] or 0, reverse=True)


@dataclass(frozen=True)
class Bar:
    label: str
    enforced: int
    shadow: int
    y: int
    enforced_w: float
    shadow_w: float


def bars(rows: list[tuple[str, int, int]], width: float = 360.0, height: int = 18) -> list[Bar]:
    """Horizontal bars (enforced hits, then shadow hits stacked) scaled to the largest total."""
    top = max((e + s for _, e, s in rows), default=0) or 1
    return [Bar(label, e, s, i * (height + 6), width * e / top, width * s / top)
            for i, (label, e, s) in enumerate(rows)]
