"""One image of a post, read safely and cheaply: decode with limits, a PDQ hash, the QR codes it carries.

Images arrive as base64 in the event (`body.images[i].data_base64`) from anyone who can post, so decoding
is hostile-input handling: only common photo formats are opened (no EPS, PDF or TIFF decoders behind
Pillow), the pixel count is checked from the header before any pixel is decoded (a 3 MB PNG can claim
40000 x 40000 pixels), and every failure of the decoder becomes an error code on the image (`ImageFacts.
error`), never an exception out of the pipeline: a corrupt image is a fact about the post, and the post's
text must still be decided.

What is computed here is the cheap part (a few tens of ms an image): decode, PDQ, QR. OCR is in `ocr.py`,
run only when a signal asks for image text (it decodes the image once more, at its own size: tens of ms
beside OCR's hundreds). Results are cached twice, so this pass runs once per image of an event and the same
photo posted by many accounts is analysed once:

- by the `Image` model object (a weak-key map: nothing is kept once the event is gone), which is what the
  counter key function (`photo_keys`, called for the prefetch, then for recording) and the signals share;
- by the SHA-256 of the base64 text (a bounded LRU), across events.

Heavy libraries (Pillow, numpy, OpenCV, pdqhash) are imported on the first image, never for a process that
only decides events without images.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from clearcircle.signals.media.bank import DEFAULT_MIN_QUALITY

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from clearcircle.events.schemas import Image

MAX_BYTES = 8 * 1024 * 1024  # decoded; the event schema already caps the base64 at 4 MiB (3 MiB of bytes)
MAX_PIXELS = 40_000_000  # width x height from the header; long screenshots (1080 x 20000) still fit
MAX_SIDE = 30_000
WORK_PIXELS = 4_000_000  # QR detection and PDQ read at most this many pixels (2000 x 2000)
PDQ_SIDE = 512  # PDQ downsamples to 64 x 64 itself; hashing a 512-pixel copy is fast and barely moves the hash
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")  # what phones and apps send (MPO opens as JPEG); nothing exotic
PHOTO_KEY_PREFIX = "photo:"

# error codes, the values of `media.errors`
BAD_BASE64 = "bad_base64"
TOO_LARGE = "too_large"
TOO_MANY_PIXELS = "too_many_pixels"
NOT_AN_IMAGE = "not_an_image"  # not one of FORMATS (or not an image at all)
CORRUPT = "corrupt"  # the header is readable, the pixels are not (truncated, broken)

_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class ImageFacts:
    """What one image is, as far as the cheap pass can tell. `error` set: nothing else is."""

    digest: str
    error: str | None = None
    width: int = 0
    height: int = 0
    pdq: int | None = None  # 256-bit PDQ hash
    quality: int = 0  # PDQ quality, 0..100
    # the PDQ hashes of the image's 8 rotations and mirror images (the first is `pdq`): bank matching tries all,
    # so a mirrored or rotated copy of a banked photo still matches (measured: 4-8 bits off, unrelated ~128)
    dihedral: tuple[int, ...] = ()
    qr_kinds: tuple[str, ...] = ()  # one per QR code found: contact / payment / url / text / unreadable

    @property
    def photo_key(self) -> str | None:
        """The counter key of this photo (exact PDQ hash), or None when the hash is not to be trusted."""
        if self.pdq is None or self.quality < DEFAULT_MIN_QUALITY:
            return None
        return f"{PHOTO_KEY_PREFIX}{self.pdq:064x}"


K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A small thread-safe LRU map; the value is computed outside the lock (two threads may both compute
    the same value once, which is harmless here: the computation is a pure function of the key)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, compute: Callable[[], V]) -> V:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = compute()
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


_BY_DIGEST: LRU[str, ImageFacts] = LRU(2048)
_BY_OBJECT: weakref.WeakKeyDictionary[Image, ImageFacts] = weakref.WeakKeyDictionary()
_BY_OBJECT_LOCK = threading.Lock()


def digest_of(data_base64: str) -> str:
    """SHA-256 of the image as sent (the base64 text): the cache key across events."""
    return hashlib.sha256(data_base64.encode("utf-8", "surrogatepass")).hexdigest()


def decode_base64(text: str) -> bytes | None:
    """The bytes of an image's base64 text, or None. Accepts what backends send besides plain base64: a
    `data:image/...;base64,` prefix, line breaks, URL-safe letters, missing padding."""
    text = _DATA_URL.sub("", text.strip(), count=1)
    text = "".join(text.split())
    altchars = b"-_" if ("-" in text or "_" in text) else None
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        return None


def load(data_base64: str, max_pixels: int = WORK_PIXELS) -> tuple[PILImage | None, str | None, tuple[int, int]]:
    """(RGB image of at most `max_pixels`, error code, original (width, height)) of one image.

    Transparent parts are put on white (black text on a transparent background must stay readable) and
    the camera's EXIF orientation is applied (OCR reads upright text). JPEGs are decoded at a reduced scale
    straight away (`draft`), so a 12-megapixel photo costs what a 3-megapixel one does.
    """
    raw = decode_base64(data_base64)
    if raw is None:
        return None, BAD_BASE64, (0, 0)
    if len(raw) > MAX_BYTES:
        return None, TOO_LARGE, (0, 0)
    from PIL import Image, ImageOps, UnidentifiedImageError

    Image.init()  # register every format plugin once, so `formats` can name WEBP
    try:
        image = Image.open(io.BytesIO(raw), formats=FORMATS)
    except Image.DecompressionBombError:  # over twice Pillow's own limit: refused before our check
        return None, TOO_MANY_PIXELS, (0, 0)
    except (UnidentifiedImageError, ValueError, TypeError):
        return None, NOT_AN_IMAGE, (0, 0)
    except Exception:  # noqa: BLE001 - a hostile header may break any parser in any way
        return None, CORRUPT, (0, 0)
    size = image.size
    try:
        if size[0] <= 0 or size[1] <= 0 or size[0] * size[1] > MAX_PIXELS or max(size) > MAX_SIDE:
            return None, TOO_MANY_PIXELS, size
        if image.format in ("JPEG", "MPO"):
            scale = min(1.0, (max_pixels / (size[0] * size[1])) ** 0.5)
            image.draft("RGB", (max(1, round(size[0] * scale)), max(1, round(size[1] * scale))))
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, "white")
            image.paste(rgba, mask=rgba.getchannel("A"))
        else:
            image = image.convert("RGB")
        if image.width * image.height > max_pixels:
            scale = (max_pixels / (image.width * image.height)) ** 0.5
            image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))),
                                 Image.Resampling.BILINEAR)
        return image, None, size
    except Exception:  # noqa: BLE001 - truncated or broken pixel data, decompression errors, ...
        return None, CORRUPT, size


def pdq_of(image: PILImage) -> tuple[int, int]:
    """(PDQ hash as a 256-bit int, quality 0..100) of an RGB image, hashed at most PDQ_SIDE pixels a side.

    The int is the hash as the reference implementation prints it (64 hex digits), so hashes from other
    PDQ tools can be banked as they are.
    """
    hashes, quality = pdq_dihedral(image)
    return hashes[0], quality


def pdq_dihedral(image: PILImage) -> tuple[tuple[int, ...], int]:
    """The PDQ hashes of the image as it is, rotated 90/180/270 degrees and mirrored four ways (one DCT, so
    about 5 ms more than the plain hash), and the quality; the first hash is the image as it is."""
    import numpy as np
    import pdqhash

    small = image
    if max(image.size) > PDQ_SIDE:
        small = image.copy()
        small.thumbnail((PDQ_SIDE, PDQ_SIDE))
    vectors, quality = pdqhash.compute_dihedral(np.ascontiguousarray(np.asarray(small, dtype=np.uint8)))
    hashes = tuple(int.from_bytes(np.packbits(v.astype(np.uint8)).tobytes(), "big") for v in vectors)
    return hashes, int(quality)


# QR payloads are classified and then dropped: a payload may carry a person's contact or payment details
_CONTACT_QR = re.compile(
    r"^(?:https?://)?(?:u\.wechat\.com/|(?:[\w-]+\.)?weixin\.qq\.com/(?:r|g|q|u)/|work\.weixin\.qq\.com/"
    r"|qm\.qq\.com/|(?:[\w-]+\.)?qq\.com/(?:q|r)/|wa\.me/|t\.me/|line\.me/|(?:www\.)?whatsapp\.com/)"
    r"|^(?:tel|sms|smsto|mailto|weixin|wechat|mqqapi|mqq):|^(?:begin:vcard|mecard:|matmsg:)",
    re.IGNORECASE,
)
_PAYMENT_QR = re.compile(r"^(?:wxp://|(?:https?://)?(?:qr\.alipay\.com/|(?:[\w-]+\.)?alipay\.com/|"
                         r"payapp\.weixin\.qq\.com/|(?:[\w-]+\.)?95516\.com/)|alipays?:)", re.IGNORECASE)
_URL_QR = re.compile(r"^(?:https?://|www\.)", re.IGNORECASE)


def qr_kind(payload: str) -> str:
    """contact (a WeChat/QQ/messenger card or group, a phone, a vCard), payment (WeChat Pay, Alipay, UnionPay
    collection codes: a seller's), url, text, or unreadable (a code was found but not decoded)."""
    payload = payload.strip()
    if not payload:
        return "unreadable"
    if _CONTACT_QR.search(payload):
        return "contact"
    if _PAYMENT_QR.search(payload):
        return "payment"
    return "url" if _URL_QR.search(payload) else "text"


def qr_codes(image: PILImage) -> tuple[str, ...]:
    """The kind of each QR code in the image (OpenCV's ArUco-based detector, which also finds several)."""
    import cv2
    import numpy as np

    gray = np.asarray(image.convert("L"))
    try:
        found, payloads, points, _ = cv2.QRCodeDetectorAruco().detectAndDecodeMulti(gray)
    except cv2.error:
        return ()
    if not found or points is None:
        return ()
    return tuple(qr_kind(p) for p in payloads)


def _analyse(data_base64: str, digest: str) -> ImageFacts:
    image, error, size = load(data_base64)
    if image is None:
        return ImageFacts(digest, error=error, width=size[0], height=size[1])
    try:
        hashes, quality = pdq_dihedral(image)
        kinds = qr_codes(image)
    except ImportError:  # a broken install is not a fact about the image: fail loudly
        raise
    except Exception:  # noqa: BLE001 - a decoder surprise on a decodable image stays a fact, not a 500
        return ImageFacts(digest, error=CORRUPT, width=size[0], height=size[1])
    return ImageFacts(digest, width=size[0], height=size[1], pdq=hashes[0], quality=quality, qr_kinds=kinds,
                      dihedral=hashes)


def facts(image: Image) -> ImageFacts:
    """The cheap facts of one image of an event, computed once (see the module docstring for the caches)."""
    with _BY_OBJECT_LOCK:
        known = _BY_OBJECT.get(image)
    if known is not None:
        return known
    digest = digest_of(image.data_base64)
    result = _BY_DIGEST.get(digest, lambda: _analyse(image.data_base64, digest))
    with _BY_OBJECT_LOCK:
        _BY_OBJECT[image] = result
    return result


def photo_keys(images: Iterable[Image]) -> tuple[str, ...]:
    """The counter keys of a post's photos (`photo_posts` in counters.py): one per distinct trusted hash.

    The key is the exact PDQ hash; near-duplicates (resized, re-encoded, cropped, watermarked copies) meet
    under the band keys of `photo_band_hits` instead. Low-quality hashes (flat, near-blank images) are not
    counted: unrelated blank images would collide.
    """
    return tuple(dict.fromkeys(k for k in (facts(i).photo_key for i in images) if k))


def photo_band_hits(images: Iterable[Image], actor: str) -> tuple[tuple[str, str], ...]:
    """(key, member) of the `photo_bands` counter for a post's trusted photos (see `media.photos`)."""
    from clearcircle.signals.media.photos import band_hits

    return band_hits((f.pdq for f in map(facts, images) if f.photo_key and f.pdq is not None), actor)


def all_facts(images: Sequence[Image]) -> list[ImageFacts]:
    """The facts of each image, in order."""
    return [facts(i) for i in images]
