"""`python -m clearcircle.signals.media hash FILE...`: bank lines for images, hashed as live images are.

Prints `<PDQ hash> <label>  # quality Q` a file, the label made from the file name, ready to paste into a pack's
`media/*.txt` (and edit the label). A hash of quality under 50 is printed commented out: it would not match.
"""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path

from clearcircle.signals.media.bank import DEFAULT_MIN_QUALITY, format_hash
from clearcircle.signals.media.image import load, pdq_of


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "hash":
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    status = 0
    for name in argv[1:]:
        path = Path(name)
        image, error, _size = load(base64.b64encode(path.read_bytes()).decode())
        if image is None:
            print(f"# {name}: {error}", file=sys.stderr)
            status = 1
            continue
        pdq, quality = pdq_of(image)
        label = re.sub(r"[^a-z0-9_.-]+", "-", path.stem.lower()).strip("-._") or "image"
        comment = "" if quality >= DEFAULT_MIN_QUALITY else "# too featureless to match: "
        print(f"{comment}{format_hash(pdq)} {label[:64]}  # quality {quality}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
