"""`python -m clearcircle.signals.media hash|ocr FILE...`: bank lines for images, or the text OCR reads in them.

`hash` prints `<PDQ hash> <label>  # quality Q` a file, the label made from the file name, ready to paste into a
pack's `media/*.txt` (and edit the label). A hash of quality under 50 is printed commented out: it would not match.
`ocr` prints, per file, the milliseconds OCR took (engine load excluded, reported once) and the text read, as
the pipeline reads it: a quick way to see what an image will feed the text signals, and how long it costs.
"""

from __future__ import annotations

import base64
import re
import sys
import time
from pathlib import Path

from clearcircle.signals.media.bank import DEFAULT_MIN_QUALITY, format_hash
from clearcircle.signals.media.image import load, pdq_of

COMMANDS = ("hash", "ocr")


def _read(name: str) -> str | None:
    try:
        return base64.b64encode(Path(name).read_bytes()).decode()
    except OSError as exc:
        print(f"# {name}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return None


def _hash(names: list[str]) -> int:
    status = 0
    for name in names:
        data = _read(name)
        image, error, _size = load(data) if data is not None else (None, "unreadable file", (0, 0))
        if image is None:
            if data is not None:
                print(f"# {name}: {error}", file=sys.stderr)
            status = 1
            continue
        pdq, quality = pdq_of(image)
        label = re.sub(r"[^a-z0-9_.-]+", "-", Path(name).stem.lower()).strip("-._") or "image"
        comment = "" if quality >= DEFAULT_MIN_QUALITY else "# too featureless to match: "
        print(f"{comment}{format_hash(pdq)} {label[:64]}  # quality {quality}")
    return status


def _ocr(names: list[str]) -> int:
    from clearcircle.signals.media import ocr

    started = time.perf_counter()
    ocr.engine()
    print(f"# engine loaded in {(time.perf_counter() - started) * 1000:.0f} ms")
    status = 0
    for name in names:
        data = _read(name)
        if data is None:
            status = 1
            continue
        started = time.perf_counter()
        image, error, _size = load(data, ocr.OCR_PIXELS)
        if image is None:
            print(f"# {name}: {error}", file=sys.stderr)
            status = 1
            continue
        text = ocr.read_image(image)
        elapsed = (time.perf_counter() - started) * 1000
        print(f"{name}\t{elapsed:.0f} ms\t{text.replace(chr(10), ' | ')}")
    return status


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in COMMANDS:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    return _hash(argv[1:]) if argv[0] == "hash" else _ocr(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
