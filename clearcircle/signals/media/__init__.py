"""Image signals (`media.*`): what a post's images say, for rules to read (issue 3, point 6; SPEC S5, S6, S16).

Marketers move what text filters catch into images: a phone number or WeChat ID drawn on a photo, a QR code
instead of an ID, the same supplier's product photo posted by a whole downline. Per image of a post:

- decode safely (`image.py`): an unreadable, oversized or non-image attachment is an error code in
  `media.errors`, never an exception (the post's text is still decided; the API answers 200);
- OCR (`ocr.py`): the text read in each image goes through the SAME text pipeline as the post's own text
  (normaliser, lexicon, entities, classifier), because `text.texts_of` lists it as the field
  `body.images.<i>.ocr`: `text.categories`, `text.evidence` and `text.marketing` include image text, and
  every text rule of the pack applies to it. `media.text_categories` and `media.contacts` are the image
  part of that same pass, for rules about hiding things in images;
- QR codes (OpenCV): counted and classified (contact card / WeChat or QQ link, payment code, URL, text); the
  payloads themselves are never kept, they may carry a person's contact or payment details;
- PDQ perceptual hash: matched against the pack's hash banks of known-bad images (`bank.py`), and counted per
  photo so a photo posted by many accounts is seen, near-duplicates included (`photos.py`: PDQ bands as
  counter keys, candidates verified by Hamming distance).

Every image is analysed once per event (ctx.memo) and once per process (caches in image.py and ocr.py); a post
without images costs nothing here, and no image library is imported for it.
"""

from __future__ import annotations

from clearcircle.signals.context import SignalContext
from clearcircle.signals.entities import CONTACT_KINDS
from clearcircle.signals.media.bank import MediaSettings
from clearcircle.signals.media.image import ImageFacts, all_facts
from clearcircle.signals.media.ocr import image_text
from clearcircle.signals.media.photos import photo_accounts
from clearcircle.signals.registry import REGISTRY
from clearcircle.signals.text import text_entities, text_hits

POST = ("post_created",)
PHOTO_COUNTER = "photo_posts"  # defined in counters.py; keyed by photo (image.photo_keys), member = the poster
PHOTO_BAND_COUNTER = "photo_bands"  # defined in counters.py; keyed by PDQ band (photos.py), member = hash + poster
PHOTO_WINDOW_MS = 7 * 24 * 3_600_000
IMAGE_FIELD = "body.images."
_NO_SETTINGS = MediaSettings()


def ocr_field(index: int) -> str:
    """Where evidence found in an image's text points: `body.images.<i>.ocr` (spans are in the OCR text)."""
    return f"{IMAGE_FIELD}{index}.ocr"


def image_facts(ctx: SignalContext) -> list[ImageFacts]:
    """The cheap facts of each image of the post (decode, PDQ, QR), in order; [] for any other event."""
    if "_media_facts" not in ctx.memo:
        images = ctx.event.body.images if ctx.event.type == "post_created" else []
        ctx.memo["_media_facts"] = all_facts(images) if images else []
    return ctx.memo["_media_facts"]


def image_texts(ctx: SignalContext) -> list[tuple[str, str]]:
    """(field, text) of every image of the post that has text, read by OCR once; what `texts_of` adds."""
    if "_media_texts" not in ctx.memo:
        out = []
        for index, (image, facts) in enumerate(zip(ctx.event.body.images, image_facts(ctx), strict=True)):
            if facts.error is None:
                text, _ok = image_text(image.data_base64, facts.digest)
                if text:
                    out.append((ocr_field(index), text))
        ctx.memo["_media_texts"] = out
    return ctx.memo["_media_texts"]


def _has_images(ctx: SignalContext) -> bool:
    return ctx.event.type == "post_created" and bool(ctx.event.body.images)


signal = REGISTRY.signal


@signal("media.errors", version=1, reads=POST, type=list,
        description="why images could not be read, one code each: bad_base64, too_large, too_many_pixels, "
                    "not_an_image, corrupt (the post is still decided on everything else)")
def _errors(ctx: SignalContext) -> list[str]:
    return sorted({f.error for f in image_facts(ctx) if f.error})


@signal("media.ocr_chars", version=1, reads=POST, type=int,
        description="characters of text read by OCR in the post's images")
def _ocr_chars(ctx: SignalContext) -> int:
    return sum(len(text) for _field, text in image_texts(ctx)) if _has_images(ctx) else 0


@signal("media.text_categories", version=1, reads=POST, type=list,
        description="lexicon categories found in the text of the post's images (OCR through the text pipeline; "
                    "a phone number, WeChat ID or QQ number counts as contact)")
def _text_categories(ctx: SignalContext) -> list[str]:
    if not _has_images(ctx):
        return []
    return sorted({fh.hit.category for fh in text_hits(ctx) if fh.field.startswith(IMAGE_FIELD)})


@signal("media.contacts", version=1, reads=POST, type=int,
        description="distinct phone numbers, WeChat IDs and QQ numbers in the text of the post's images")
def _contacts(ctx: SignalContext) -> int:
    if not _has_images(ctx):
        return 0
    return len({(fe.entity.kind, fe.entity.value) for fe in text_entities(ctx)
                if fe.field.startswith(IMAGE_FIELD) and fe.entity.kind in CONTACT_KINDS})


@signal("media.qr_codes", version=1, reads=POST, type=int, description="QR codes found in the post's images")
def _qr_codes(ctx: SignalContext) -> int:
    return sum(len(f.qr_kinds) for f in image_facts(ctx))


@signal("media.qr_contacts", version=1, reads=POST, type=int,
        description="QR codes that are a contact: a WeChat/QQ card or group, a messenger link, a phone, a vCard")
def _qr_contacts(ctx: SignalContext) -> int:
    return sum(f.qr_kinds.count("contact") for f in image_facts(ctx))


@signal("media.qr_kinds", version=1, reads=POST, type=list,
        description="kinds of QR code found: contact, payment (a WeChat Pay/Alipay collection code), url, text, "
                    "unreadable (found, not decoded); the payloads are never kept")
def _qr_kinds(ctx: SignalContext) -> list[str]:
    return sorted({kind for f in image_facts(ctx) for kind in f.qr_kinds})


@signal("media.bank_matches", version=1, reads=POST, type=list,
        description="labels of the pack's hash-bank images (media/*.txt) that an image of the post matches, "
                    "also rotated or mirrored: PDQ Hamming distance at most media.yaml max_distance (31 by default)")
def _bank_matches(ctx: SignalContext) -> list[str]:
    settings: MediaSettings = ctx.resources.get("media") or _NO_SETTINGS
    return sorted({label for f in image_facts(ctx) for label in settings.matches(f.dihedral, f.quality)})


@signal("media.photo_accounts_7d", version=2, reads=POST, type=int,
        description="distinct accounts that posted the same photo in the last 7 days, this post's author "
                    "included; re-encoded, resized, lightly cropped or watermarked copies count as the same "
                    "photo (PDQ within media.yaml max_distance, found through PDQ bands); the most over the "
                    "post's photos")
def _photo_accounts(ctx: SignalContext) -> int:
    settings: MediaSettings = ctx.resources.get("media") or _NO_SETTINGS
    hashes = {f.pdq for f in image_facts(ctx) if f.photo_key and f.pdq is not None}
    since = ctx.at_ms - PHOTO_WINDOW_MS
    return max((photo_accounts(ctx.counters, h, since, ctx.at_ms, settings.max_distance) for h in hashes),
               default=0)
