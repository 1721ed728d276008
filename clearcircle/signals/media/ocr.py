"""Text in images, read by OCR that runs offline: RapidOCR (PaddleOCR's PP-OCRv4 models, Chinese and English)
on onnxruntime, with the ONNX models inside the `rapidocr-onnxruntime` wheel, so nothing is downloaded.

OCR is the slow part of an image (0.2-1.1 s on this project's 2-core machine, a long screenshot about 2.7 s;
the decode, PDQ and QR pass takes 20-250 ms), so it runs only when a signal asks for image text, once per
distinct image in the process (an LRU keyed by the image's SHA-256): the same product photo posted by fifty
accounts is read once. The engine is loaded on the first image (about 0.5 s); a process that never sees an
image never imports it.

Speed: the image (each band of it, below) is scaled to at most `OCR_SIDE` pixels on its longer side before
OCR, and detection is told to scale down only (`det_limit_type="max"`; the package's default scales the
SHORTER side UP to 736, which made a 720 x 240 banner four times slower). Measured on this project's 2-core
machine: a 1080 x 1440 image with 20-40 px text is read in about 0.7-0.9 s at 1280 against 0.9-1.0 s
unscaled, every line still read; 960 would be faster again (about 0.55 s) but leaves small text in real
photos fewer pixels, so 1280 is the trade. A long screenshot is read in up to `MAX_TILES` horizontal bands
that overlap a little, so its text keeps a readable size; lines read twice in an overlap are kept once.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import TYPE_CHECKING, Any

from clearcircle.signals.media.image import LRU, load

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

OCR_SIDE = 1280
MAX_TILES = 6
OCR_PIXELS = 8_000_000  # decoding budget for OCR: a long screenshot keeps more of its resolution than for QR/PDQ

log = logging.getLogger(__name__)
_engine: Any = None
_lock = threading.Lock()  # one engine; onnxruntime already uses every core for one image
_texts: LRU[str, tuple[str, bool]] = LRU(2048)
runs = 0  # images read by OCR in this process (tests check it: once per image, never without images)


def engine() -> Any:
    """The RapidOCR engine, loaded once per process on first use."""
    global _engine
    with _lock:
        if _engine is None:
            from rapidocr_onnxruntime import RapidOCR

            # no 180-degree text classifier: upside-down text is rare in posts and it costs per line
            _engine = RapidOCR(det_limit_type="max", use_cls=False, print_verbose=False)
    return _engine


def bands(width: int, height: int) -> list[tuple[int, int]]:
    """(top, bottom) of the horizontal bands an image is read in: one unless it is over twice as tall as
    wide; then bands about 1.5 widths tall (at most MAX_TILES), each overlapping its neighbours by a tenth."""
    if height <= 2 * width:
        return [(0, height)]
    count = min(MAX_TILES, math.ceil(height / (1.5 * width)))
    band = math.ceil(height / count)
    overlap = band // 10
    return [(max(0, i * band - overlap), min(height, (i + 1) * band + overlap)) for i in range(count)]


def read_image(image: PILImage) -> str:
    """The text OCR reads in a decoded image, lines joined by newlines (no cache: `image_text` caches)."""
    import numpy as np

    global runs
    runs += 1
    ocr = engine()
    lines: list[str] = []
    previous: set[str] = set()
    for top, bottom in bands(image.width, image.height):
        tile = image if (top, bottom) == (0, image.height) else image.crop((0, top, image.width, bottom))
        if max(tile.size) > OCR_SIDE:
            tile = tile.copy() if tile is image else tile
            tile.thumbnail((OCR_SIDE, OCR_SIDE))
        bgr = np.ascontiguousarray(np.asarray(tile)[:, :, ::-1])
        with _lock:
            result, _elapsed = ocr(bgr)
        current = [str(text).strip() for _box, text, _score in result or ()]
        lines += [t for t in current if t and t not in previous]  # an overlap's lines, read twice, once
        previous = set(current)
    return "\n".join(lines)


def _text_of(data_base64: str) -> tuple[str, bool]:
    image, error, _size = load(data_base64, OCR_PIXELS)
    if image is None:
        return "", error is None
    try:
        return read_image(image), True
    except ImportError:  # a broken install is not a fact about the image: fail loudly
        raise
    except Exception:  # noqa: BLE001 - the model choking on one image must not fail the post's decision
        log.exception("OCR failed on an image")
        return "", False


def image_text(data_base64: str, digest: str) -> tuple[str, bool]:
    """(text read in the image, lines joined by newlines; whether OCR ran without failing), once per image."""
    return _texts.get(digest, lambda: _text_of(data_base64))
