"""Images in posts (issue 3 point 6, `media.*`): OCR through the text pipeline, QR codes, PDQ hash banks, the
same photo from many accounts (altered copies included), and unreadable images as values, never errors.

Every image here is drawn by the test itself: text with Pillow's built-in scalable font (no system font
needed, so Latin letters and digits), QR codes with the `qrcode` package, "product photos" as seeded shapes.
The OCR engine loads once per process (about half a second); each distinct image is read once.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import zlib
from datetime import datetime, timedelta, timezone
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import qrcode
from api_fixtures import event as api_event
from api_fixtures import open_api
from PIL import Image, ImageDraw, ImageFont, ImageOps

from clearcircle.config import Settings
from clearcircle.events import parse_event
from clearcircle.policy.decision import Decision
from clearcircle.policy.pack import PackError, builtin_pack_path, load_pack
from clearcircle.service import open_service
from clearcircle.signals import counters
from clearcircle.signals.context import SignalContext, SignalValues
from clearcircle.signals.media import image as media_image
from clearcircle.signals.media import ocr
from clearcircle.signals.media.__main__ import main as hash_main
from clearcircle.signals.media.bank import format_hash, hamming, parse_hash
from clearcircle.signals.registry import load_builtin_signals

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=CST)
ORDINARY = "周末和朋友去爬山，风景很美"
_ids = count(1)


# --- drawing ---------------------------------------------------------------------------------------------


def font(size: int = 40) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)  # Pillow's bundled scalable font: Latin letters and digits


def text_image(*lines: str, size: tuple[int, int] = (720, 240)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((24, 30 + 90 * i), line, fill="black", font=font())
    return image


def product_photo(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A detailed, photo-like picture (high PDQ quality): seeded coloured shapes, no text."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(14):
        x, y = rng.randrange(size[0] - 40), rng.randrange(size[1] - 40)
        box = (x, y, x + rng.randrange(30, 300), y + rng.randrange(30, 300))
        fill = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return image


def qr_image(*payloads: str) -> Image.Image:
    """A photo-like background with one QR code per payload, side by side."""
    canvas = product_photo(900 + len(payloads), size=(420 * len(payloads) + 40, 480))
    for i, payload in enumerate(payloads):
        code = qrcode.QRCode(box_size=8, border=4)
        code.add_data(payload)
        code.make(fit=True)
        canvas.paste(code.make_image().get_image().convert("RGB").resize((360, 360)), (40 + 420 * i, 60))
    return canvas


def encode(image: Image.Image, fmt: str = "PNG", **options: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return base64.b64encode(buffer.getvalue()).decode()


def png_claiming(width: int, height: int) -> str:
    """A PNG whose header claims width x height pixels, with (almost) no pixel data: a decompression bomb's
    calling card. Nothing here decodes a pixel of it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return base64.b64encode(raw).decode()


# --- the pipeline ----------------------------------------------------------------------------------------


@pytest.fixture
def svc(sqlite_url, tmp_path):
    service = open_service(Settings(db_url=sqlite_url, key_file=tmp_path / "k"))
    yield service
    service.close()


def post(actor: str, *images: str, text: str = ORDINARY, at: datetime = T0, surface: str = "moments"):
    return parse_event({"id": f"media-{next(_ids)}", "type": "post_created", "occurred_at": at.isoformat(),
                        "actor": actor, "body": {"surface": surface, "text": text,
                                                 "images": [{"data_base64": d} for d in images]}})


def decide(service, *events) -> list[dict[str, Any]]:
    out = [o.decision for o in service.pipeline.submit(list(events))]
    for decision in out:
        Decision.model_validate(decision)
    return out


def ocr_text(data: str) -> str:
    """The text OCR read in an image (from the cache: asking does not read it again)."""
    return ocr.image_text(data, media_image.digest_of(data))[0]


# --- OCR: text in images goes through the text pipeline ------------------------------------------------------


def test_phone_number_and_marketing_words_in_an_image_fire_rules(svc):
    data = encode(text_image("Replica bags, buy now", "Call 13812345678"))
    [clean] = decide(svc, post("u-ocr-0", text="nice day"))
    assert clean["verdict"] == "allow"
    runs = ocr.runs
    [d] = decide(svc, post("u-ocr-1", data, text="nice day"))
    assert ocr.runs == runs + 1
    assert {"counterfeit-sale-text", "media-image-contact", "moments-contact-solicitation"} <= set(d["rules"])
    assert d["verdict"] == "remove"
    s = d["signals"]
    assert s["media.contacts"] == 1
    assert {"contact", "counterfeit", "commercial"} <= set(s["media.text_categories"])
    assert {"contact", "counterfeit", "commercial"} <= set(s["text.categories"])  # the same pass feeds text.*
    # evidence points into the text read in the image, as OCR read it
    read = ocr_text(data)
    spans = [e for e in d["evidence"] if e.get("span")]
    assert spans and all(e["field"] == "body.images.0.ocr" for e in spans)
    for item in spans:
        a, b = item["span"]
        assert read[a:b] == item["text"]
    assert "13812345678" in {e["text"] for e in spans}
    assert any(e["text"].lower() == "replica" for e in spans)


def test_ocr_signals_and_the_image_read_once(svc):
    data = encode(text_image("Wholesale price list", "WeChat: vx 2468abc", size=(760, 240)))
    runs = ocr.runs
    event = post("u-once-1", data, data, text="hello")  # the same image twice in one post
    [d] = decide(svc, event)
    assert ocr.runs == runs + 1
    ctx_texts = [t for t in ocr_text(data).splitlines() if t]
    assert any("2468" in t for t in ctx_texts)
    assert "commercial" in d["signals"]["text.categories"]
    decide(svc, post("u-once-2", data, text="hello again"))  # another account posts the same photo
    assert ocr.runs == runs + 1  # read once in this process, whoever posts it
    # media.ocr_chars counts what was read in both copies; text.length reads the image text too
    values = SignalValues(load_builtin_signals(), SignalContext(event, 0, None, None, svc.pack.resources))
    assert values["media.ocr_chars"] == 2 * len(ocr_text(data)) > 0
    assert values["text.length"] == len("hello") + values["media.ocr_chars"]
    assert ocr.runs == runs + 1


# --- Chinese text in images (a CJK font from Debian's fonts-noto-cjk, installed by scripts/test) ---------------

CJK_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")


@pytest.fixture(scope="module")
def cjk_font() -> Path:
    if not CJK_FONT.is_file():
        message = f"no CJK font at {CJK_FONT}: scripts/test installs Debian's fonts-noto-cjk"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CJK_FONT


def chinese_image(font_path: Path, *lines: str, background: Image.Image | None = None) -> Image.Image:
    image = background.copy() if background is not None else Image.new("RGB", (720, 260), "white")
    draw = ImageDraw.Draw(image)
    face = ImageFont.truetype(str(font_path), 44)
    for i, line in enumerate(lines):
        draw.text((24, 30 + 80 * i), line, fill="black", font=face)
    return image


def test_chinese_induced_sharing_in_an_image_is_read_and_fires_the_text_rules(svc, cjk_font):
    data = encode(chinese_image(cjk_font, "转发朋友圈集满30个赞", "加微信领取面膜"))
    event = post("u-zh-ocr-1", data, text="周末快乐")
    [d] = decide(svc, event)
    read = ocr_text(data)
    assert "转发朋友圈" in read and "微信" in read
    assert {"induced_share", "contact"} <= set(d["signals"]["text.categories"])
    values = SignalValues(load_builtin_signals(), SignalContext(event, 0, None, None, svc.pack.resources))
    assert {"induced_share", "contact"} <= set(values["media.text_categories"])  # found in the image, not the text
    assert "induced-share-text" in d["rules"]
    spans = [e for e in d["evidence"] if e.get("span")]
    assert spans and {e["field"] for e in spans} == {"body.images.0.ocr"}
    for item in spans:  # evidence is shown as the image says it
        a, b = item["span"]
        assert read[a:b] == item["text"]
    assert any("朋友圈" in e["text"] for e in spans)


def test_chinese_counterfeit_and_a_wechat_id_on_a_photo(svc, cjk_font):
    light = product_photo(5, size=(720, 260)).point(lambda v: 200 + v // 5)  # a pale photo behind the text
    data = encode(chinese_image(cjk_font, "高仿名牌包 A货 原单", "加V: abc12345", background=light), "JPEG",
                  quality=85)
    event = post("u-zh-ocr-2", data, text="新到的货")
    [d] = decide(svc, event)
    assert {"counterfeit-sale-text", "media-image-contact"} <= set(d["rules"])
    values = SignalValues(load_builtin_signals(), SignalContext(event, 0, None, None, svc.pack.resources))
    assert "counterfeit" in values["media.text_categories"] and values["media.contacts"] >= 1


def test_ordinary_chinese_text_in_an_image_is_read_and_left_alone(svc, cjk_font):
    data = encode(chinese_image(cjk_font, "周末和朋友去爬山", "风景很美"))
    event = post("u-zh-ocr-3", data, text="开心")
    [d] = decide(svc, event)
    assert "爬山" in ocr_text(data) and d["verdict"] == "allow"
    values = SignalValues(load_builtin_signals(), SignalContext(event, 0, None, None, svc.pack.resources))
    assert values["media.text_categories"] == [] and values["text.categories"] == []


def test_posts_without_images_read_no_media_signal_and_run_no_ocr(svc):
    runs = ocr.runs
    ds = decide(svc, post("u-plain", text="转发到朋友圈集满30个赞送面膜"), post("u-plain", text=ORDINARY),
                parse_event({"id": "media-fr-1", "type": "friend_request", "occurred_at": T0.isoformat(),
                             "actor": "u-plain", "body": {"target": "u-2", "message": "加我微信 abc123"}}))
    assert ocr.runs == runs
    for d in ds:
        assert not [name for name in d["signals"] if name.startswith("media.")], d["signals"]


def test_events_without_images_never_import_the_image_libraries(tmp_path):
    """In a fresh interpreter, deciding every kind of event without images loads no OCR, OpenCV or PDQ."""
    script = """
import json, sys
from pathlib import Path
from clearcircle.config import Settings
from clearcircle.events import parse_event
from clearcircle.service import open_service
tmp = Path(sys.argv[1])
svc = open_service(Settings(db_url=f"sqlite:///{tmp / 'db.sqlite'}", key_file=tmp / "k"))
at = "2026-03-02T09:00:00+08:00"
bodies = [("post_created", {"surface": "moments", "text": "加我微信 abc123 原单A货 ¥99"}),
          ("post_created", {"surface": "article", "text": "hello", "links": [{"url": "https://x.cn/a",
                                                                               "landing_text": "转发朋友圈"}]}),
          ("friend_request", {"target": "u-2", "message": "hi"}), ("share", {"item": "p-1", "destination": "moments"}),
          ("account_registered", {"account_type": "personal", "display_name": "小王"})]
svc.pipeline.submit([parse_event({"id": f"e{i}", "type": t, "occurred_at": at, "actor": "u-1", "body": b})
                     for i, (t, b) in enumerate(bodies)])
print(json.dumps([m for m in ("cv2", "pdqhash", "rapidocr_onnxruntime", "onnxruntime") if m in sys.modules]))
"""
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120,
                         check=True, cwd=Path(__file__).parent.parent)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_a_long_screenshot_is_read_in_overlapping_bands():
    assert ocr.bands(1000, 1500) == [(0, 1500)]
    strips = ocr.bands(1000, 9000)
    assert len(strips) == ocr.MAX_TILES and strips[0][0] == 0 and strips[-1][1] == 9000
    assert all(a[1] > b[0] for a, b in zip(strips, strips[1:], strict=False))  # neighbours overlap
    assert len(ocr.bands(500, 100_000)) == ocr.MAX_TILES


# --- QR codes -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("payload", "kind"), [
    ("https://u.wechat.com/EJv9yLyZ0Jv2VJ5gPVk0Fk8", "contact"),
    ("http://weixin.qq.com/r/abcDEF123", "contact"),
    ("https://weixin.qq.com/g/AbCdEf", "contact"),
    ("https://qm.qq.com/cgi-bin/qm/qr?k=abc", "contact"),
    ("tel:+8613812345678", "contact"),
    ("BEGIN:VCARD\nFN:Wang\nTEL:13812345678\nEND:VCARD", "contact"),
    ("wxp://f2f0abcdEFGH", "payment"),
    ("https://qr.alipay.com/fkx12345", "payment"),
    ("https://example.com/menu", "url"),
    ("see you at 8", "text"),
    ("", "unreadable"),
])
def test_qr_payloads_are_classified(payload, kind):
    assert media_image.qr_kind(payload) == kind


def test_qr_codes_are_detected_counted_and_their_payloads_not_kept(svc):
    contact = "https://u.wechat.com/EJv9yLyZ0Jv2VJ5gPVk0Fk8"
    [d] = decide(svc, post("u-qr-1", encode(qr_image(contact, "https://example.com/menu")), text="周末愉快"))
    s = d["signals"]
    assert s["media.qr_codes"] == 2
    assert s["media.qr_kinds"] == ["contact", "url"]
    assert "media-qr-contact" in d["rules"] and d["verdict"] == "label"
    assert "u.wechat.com" not in json.dumps(d) and "example.com" not in json.dumps(d)
    # a QR code to an ordinary page, beside ordinary words, is nobody's business
    [plain] = decide(svc, post("u-qr-2", encode(qr_image("https://example.com/holiday-photos")), text=ORDINARY))
    assert plain["signals"]["media.qr_codes"] == 1
    assert plain["verdict"] == "allow" and "media-qr-contact" not in plain["rules"]
    # ... but beside selling wording it is the image form of "add me"
    [sell] = decide(svc, post("u-qr-3", encode(qr_image("https://example.com/shop")), text="限时特价，扫码下单"))
    assert sell["signals"]["media.qr_codes"] == 1 and "media-qr-contact" in sell["rules"]


def test_a_photo_without_qr_codes_counts_none(svc):
    [d] = decide(svc, post("u-qr-4", encode(product_photo(41)), text="在家"))
    assert "media.qr_codes" not in d["signals"] or d["signals"]["media.qr_codes"] == 0
    assert media_image.facts(post("u-x", encode(product_photo(41))).body.images[0]).qr_kinds == ()


# --- PDQ hash banks ------------------------------------------------------------------------------------------


def pdq_of(data: str) -> tuple[int, int]:
    image, error, _size = media_image.load(data)
    assert error is None
    return media_image.pdq_of(image)


def pack_with_bank(tmp_path: Path, lines: str, settings: str | None = None) -> Path:
    path = tmp_path / "pack"
    shutil.copytree(builtin_pack_path(), path)
    (path / "media" / "test_bank.txt").write_text(lines, encoding="utf-8")
    if settings is not None:
        (path / "media" / "media.yaml").write_text(settings, encoding="utf-8")
    return path


def test_a_reencoded_copy_of_a_banked_image_matches_and_an_unrelated_one_does_not(sqlite_url, tmp_path):
    banked = product_photo(7)
    banked_hash, quality = pdq_of(encode(banked))
    assert quality >= 50
    copy_data = encode(banked.resize((400, 300)), "JPEG", quality=50)  # resized, re-compressed: a new hash
    unrelated_data = encode(product_photo(8))
    near, far = hamming(pdq_of(copy_data)[0], banked_hash), hamming(pdq_of(unrelated_data)[0], banked_hash)
    assert 0 < near <= 31 < far
    mirrored_data = encode(ImageOps.mirror(banked), "JPEG", quality=80)  # flipped to dodge the bank
    assert hamming(pdq_of(mirrored_data)[0], banked_hash) > 31
    pack = pack_with_bank(tmp_path, f"# a test bank\n{format_hash(banked_hash)} counterfeit:test-bag  # drawn\n")
    service = open_service(Settings(db_url=sqlite_url, key_file=tmp_path / "k", pack=pack))
    try:
        [hit, mirrored, miss] = decide(service, post("u-bank-1", copy_data), post("u-bank-3", mirrored_data),
                                       post("u-bank-2", unrelated_data))
    finally:
        service.close()
    for d in (hit, mirrored):
        assert d["signals"]["media.bank_matches"] == ["counterfeit:test-bag"]
        assert "media-bank-match" in d["rules"] and d["verdict"] == "remove"
    assert miss["signals"]["media.bank_matches"] == [] and miss["verdict"] == "allow"
    # the threshold is the pack's: at 0 bits, only the very same hash matches
    strict = pack_with_bank(tmp_path / "strict", f"{format_hash(banked_hash)} counterfeit:test-bag\n",
                            "max_distance: 0\nmin_quality: 50\n")
    assert load_pack(strict).media.matches([pdq_of(copy_data)[0]], 100) == []
    assert load_pack(strict).media.matches([banked_hash], 100) == ["counterfeit:test-bag"]
    assert load_pack(strict).media.matches([banked_hash], 10) == []  # a featureless image never matches


def test_the_hash_tool_prints_bank_lines_that_load(tmp_path, capsys):
    file = tmp_path / "Fake_Bag.png"
    product_photo(9).save(file)
    assert hash_main(["hash", str(file)]) == 0
    line = capsys.readouterr().out.strip()
    assert parse_hash(line.split()[0]) == pdq_of(encode(product_photo(9)))[0]
    assert line.split()[1] == "fake_bag"
    assert load_pack(pack_with_bank(tmp_path, line + "\n")).media.entries[0].label == "fake_bag"


def test_the_media_tool_reads_text_and_reports_missing_files(tmp_path, capsys):
    file = tmp_path / "banner.png"
    text_image("Replica bags").save(file)
    assert hash_main(["ocr", str(file)]) == 0
    name, millis, text = capsys.readouterr().out.splitlines()[-1].split("\t")
    assert name == str(file) and millis.endswith(" ms") and "replica" in text.lower()
    assert hash_main(["hash", str(tmp_path / "missing.png")]) == 1
    assert hash_main(["ocr", str(tmp_path / "missing.png")]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert hash_main(["unknown"]) == 2


def test_bank_and_settings_problems_are_reported_with_file_and_line(tmp_path):
    good = "ab" * 32
    lines = f"# header\n{good} ok-label\nnot-a-hash label\n{'cd' * 32} Bad Label\n{good} again\n{'ef' * 32}\n"
    with pytest.raises(PackError) as info:
        load_pack(pack_with_bank(tmp_path, lines, "max_distance: 300\ncolour: red\n"))
    found = {(p.file, p.line) for p in info.value.problems}
    assert {("media/test_bank.txt", 3), ("media/test_bank.txt", 4), ("media/test_bank.txt", 5),
            ("media/test_bank.txt", 6)} <= found
    messages = " | ".join(str(p) for p in info.value.problems)
    assert "already banked at media/test_bank.txt:2" in messages
    assert "max_distance" in messages and "colour" in messages


def test_the_builtin_pack_ships_an_empty_bank_and_the_media_rules():
    pack = load_pack(builtin_pack_path())
    assert pack.media.entries == () and pack.media.max_distance == 31
    ids = {r.id for r in pack.rules}
    assert {"media-qr-contact", "media-image-contact", "media-bank-match", "media-photo-many-accounts",
            "media-unreadable-image"} <= ids
    assert pack.rule("media-unreadable-image").spec.mode == "shadow"


# --- the same photo from many accounts -------------------------------------------------------------------------


def test_the_same_photo_posted_by_many_accounts(db_url, tmp_path):
    photo = encode(product_photo(21))
    other = encode(product_photo(22))
    service = open_service(Settings(db_url=db_url, key_file=tmp_path / "k"))
    try:
        seen, fired = [], []
        for i in range(10):  # ten accounts, six hours apart, post the same photo
            [d] = decide(service, post(f"u-crowd-{i}", photo, other if i == 0 else photo,
                                       at=T0 + timedelta(hours=6 * i)))
            seen.append(d["signals"]["media.photo_accounts_7d"])
            fired.append("media-photo-many-accounts" in d["rules"])
            if i == 3:  # the same account posting it again is still one account
                [again] = decide(service, post("u-crowd-3", photo, at=T0 + timedelta(hours=6 * i, minutes=5)))
                assert again["signals"]["media.photo_accounts_7d"] == 4
        assert seen == list(range(1, 11))
        assert fired == [False] * 9 + [True] and d["verdict"] == "review"
        # 7 days and 13 hours on, the posts of hours 0, 6 and 12 are out of the window: 7 posters + this one
        [late] = decide(service, post("u-crowd-late", photo, at=T0 + timedelta(days=7, hours=13)))
        assert late["signals"]["media.photo_accounts_7d"] == 8
    finally:
        service.close()


def test_photo_counter_hits_once_per_distinct_photo():
    a, b = encode(product_photo(31)), encode(product_photo(32))
    flat = encode(Image.new("RGB", (300, 300), "white"))  # featureless: no trusted hash, not counted
    event = post("u-hits", a, b, a, flat, "bm90IGFuIGltYWdl")
    hits = [h for h in counters.hits_for(event) if h[1] == "photo_posts"]
    assert len(hits) == 2 and {m for _k, _n, m in hits} == {"u-hits"}
    assert all(k.startswith("photo:") and len(k) == len("photo:") + 64 for k, _n, _m in hits)
    bands = [h for h in counters.hits_for(event) if h[1] == "photo_bands"]  # near-duplicates: 16 bands a photo
    assert len(bands) == 32 and {m[:64] for _k, _n, m in bands} == {k.removeprefix("photo:") for k, _n, _m in hits}
    assert [h for h in counters.hits_for(post("u-hits", text="no images")) if h[1] == "photo_posts"] == []


# --- near-duplicates: the same photo re-encoded, resized, cropped or watermarked -------------------------------


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def crop(image: Image.Image, area: float = 0.05) -> Image.Image:
    """The middle of the image, `area` of it cut away (about 1.3% off each side for 5%)."""
    keep = (1 - area) ** 0.5
    w, h = round(image.width * keep), round(image.height * keep)
    left, top = (image.width - w) // 2, (image.height - h) // 2
    return image.crop((left, top, left + w, top + h))


def watermark(image: Image.Image, text: str = "@shop_8888") -> Image.Image:
    marked = image.copy()
    ImageDraw.Draw(marked).text((marked.width - 180, marked.height - 40), text, fill="white", font=font(20))
    return marked


def resized(image: Image.Image, factor: float) -> Image.Image:
    return image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS)


COPIES = {  # how resellers' apps alter a supplier's photo
    "jpeg-q20": lambda im: jpeg(im, 20),
    "jpeg-q45": lambda im: jpeg(im, 45),
    "half-size": lambda im: resized(im, 0.5),
    "three-quarter-size-jpeg": lambda im: jpeg(resized(im, 0.75), 60),
    "crop-5pct": crop,
    "crop-5pct-jpeg": lambda im: jpeg(crop(im), 50),
    "watermark": watermark,
    "watermark-jpeg": lambda im: jpeg(watermark(im, "VX: shop88"), 50),
    "double-size": lambda im: resized(im, 2.0),
}


class MemoryCounters:
    """An in-memory counter reader (count and members) over the hits real events make (`counters.hits_for`):
    a stand-in for the store, to test the photo counting on its own."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str, int, str]] = []

    def record(self, event: Any, at_ms: int) -> None:
        self.hits += [(key, name, at_ms, member) for key, name, member in counters.hits_for(event)]

    def members(self, key: str, name: str, since_ms: int, until_ms: int) -> list[str]:
        return [m for k, n, at, m in self.hits if k == key and n == name and since_ms < at <= until_ms]

    def count(self, key: str, name: str, since_ms: int, until_ms: int, distinct: bool = False) -> int:
        found = self.members(key, name, since_ms, until_ms)
        return len(set(found)) if distinct else len(found)


def pdq_hash(image: Image.Image) -> int:
    return media_image.facts(post("u-hash", encode(image)).body.images[0]).pdq


def test_near_duplicate_copies_are_within_the_distance_and_unrelated_photos_far():
    original = product_photo(74)
    h = pdq_hash(original)
    distances = {name: hamming(h, pdq_hash(make(original))) for name, make in COPIES.items()}
    assert max(distances.values()) <= 31, distances  # none beyond PDQ's threshold
    assert sum(d > 0 for d in distances.values()) >= 6, distances  # most copies no longer hash as the original
    assert min(hamming(h, pdq_hash(product_photo(seed))) for seed in range(100, 110)) > 64


def test_band_keys_and_members():
    from clearcircle.signals.media.photos import BANDS, band_hits, band_keys, band_member

    h = pdq_hash(product_photo(74))
    keys = band_keys(h)
    assert len(keys) == len(set(keys)) == BANDS and all(k.startswith("photoband:") for k in keys)
    assert keys[0].endswith(f":{h >> 240:04x}") and keys[-1].endswith(f":{h & 0xFFFF:04x}")
    member = band_member(h, "u-" + "x" * 126)  # the longest account id still fits the member column
    assert len(member) <= 128 and int(member[:64], 16) == h
    # one hit per band value and post, even when two photos of the post share it
    assert len(band_hits([h, h ^ 1], "u-a")) == BANDS + 1


def test_copies_posted_by_different_accounts_count_as_one_photo():
    from clearcircle.signals.media.photos import photo_accounts

    reader, at = MemoryCounters(), 1_000
    original = product_photo(74)
    images = [original] + [make(original) for make in COPIES.values()]
    for i, image in enumerate(images):
        reader.record(post(f"u-copy-{i}", encode(image), encode(product_photo(200 + i))), at + i)
    since, until = 0, at + len(images)
    assert photo_accounts(reader, pdq_hash(original), since, until) == len(images)  # all ten accounts
    # the exact-hash count a reader without members falls back to sees only the copies that hash the same
    count_only = type("CountOnly", (), {"count": reader.count})()
    identical = sum(pdq_hash(image) == pdq_hash(original) for image in images)
    assert photo_accounts(count_only, pdq_hash(original), since, until) == identical < len(images) // 2
    # each unrelated photo posted beside a copy is its own photo: one account
    assert [photo_accounts(reader, pdq_hash(product_photo(200 + i)), since, until)
            for i in range(len(images))] == [1] * len(images)


def test_a_candidate_sharing_a_band_but_far_away_is_not_counted():
    from clearcircle.signals.media.photos import BANDS, band_hits, band_keys, photo_accounts

    h = pdq_hash(product_photo(74))
    far = h ^ ((1 << 240) - 1)  # the same first band, every other bit flipped: 240 bits away
    near = h ^ 0b1011  # 3 bits away, in the last band
    assert band_keys(far)[0] == band_keys(h)[0] and band_keys(near)[:-1] == band_keys(h)[:-1]
    reader = MemoryCounters()
    for actor, pdq in (("u-self", h), ("u-far", far), ("u-near", near)):
        reader.hits += [(key, "photo_bands", 10, member) for key, member in band_hits([pdq], actor)]
    assert photo_accounts(reader, h, 0, 10) == 2  # u-self and u-near, not u-far
    assert photo_accounts(reader, h, 0, 10, max_distance=2) == 1
    assert len(band_hits([h], "u-self")) == BANDS


def test_copies_of_a_photo_from_many_accounts_fire_the_crowd_rule(db_url, tmp_path):
    """Through the real pipeline and store: nine altered copies and the original, ten accounts, one photo."""
    original = product_photo(74)
    copies = [encode(make(original), "JPEG", quality=90) for make in COPIES.values()] + [encode(original)]
    service = open_service(Settings(db_url=db_url, key_file=tmp_path / "k"))
    try:
        seen, other = [], []
        for i, data in enumerate(copies):
            at = T0 + timedelta(hours=6 * i)
            [d] = decide(service, post(f"u-near-{i}", data, at=at))
            seen.append(d["signals"]["media.photo_accounts_7d"])
            if i in (0, 4, 9):  # a few unrelated photos among them (each image costs an OCR pass: keep it short)
                [o] = decide(service, post(f"u-other-{i}", encode(product_photo(300 + i)), at=at))
                other.append(o["signals"]["media.photo_accounts_7d"])
        assert seen[0] == 1 and seen[-1] == 10 and seen == sorted(seen)
        assert "media-photo-many-accounts" in d["rules"] and d["verdict"] == "review"
        assert other == [1, 1, 1]  # different photos never join the crowd
    finally:
        service.close()


# --- unreadable images are values, not errors --------------------------------------------------------------


def truncated_png() -> str:
    raw = base64.b64decode(encode(product_photo(51)))
    return base64.b64encode(raw[: len(raw) // 2]).decode()


@pytest.mark.parametrize(("data", "code"), [
    ("!!! not base64 at all !!!", "bad_base64"),
    (base64.b64encode(b"hello, not an image").decode(), "not_an_image"),
    (base64.b64encode(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n").decode(), "not_an_image"),
    ("truncated", "corrupt"),
    (png_claiming(10_000, 5_000), "too_many_pixels"),
    (png_claiming(20_000, 20_000), "too_many_pixels"),  # beyond Pillow's own bomb limit
], ids=["base64", "text", "eps", "truncated", "50-megapixels", "400-megapixels"])
def test_an_unreadable_image_is_an_error_value_and_the_post_is_still_decided(svc, data, code):
    data = truncated_png() if data == "truncated" else data
    [d] = decide(svc, post("u-bad", data, text="转发到朋友圈集满30个赞送面膜"))
    assert d["signals"]["media.errors"] == [code]
    assert "media-unreadable-image" in d["shadow_rules"]
    assert "induced-share-text" in d["rules"]  # the text is decided as ever


def test_a_readable_image_beside_a_corrupt_one_is_still_read(svc):
    good = encode(text_image("Replica watches", "Call 13912345678"))
    [d] = decide(svc, post("u-mixed", "bm90IGFuIGltYWdl", good, text="hi"))
    assert d["signals"]["media.errors"] == ["not_an_image"]
    assert "counterfeit" in d["signals"]["text.categories"]
    assert {e["field"] for e in d["evidence"] if e.get("span")} == {"body.images.1.ocr"}


def test_decoding_limits_and_lenient_base64():
    assert media_image.load(base64.b64encode(b"\0" * (media_image.MAX_BYTES + 1)).decode())[1] == "too_large"
    photo = product_photo(61)
    raw = base64.b64decode(encode(photo))
    for variant in ("data:image/png;base64," + base64.b64encode(raw).decode(),
                    base64.encodebytes(raw).decode(),  # MIME line breaks
                    base64.urlsafe_b64encode(raw).decode().rstrip("=")):
        image, error, size = media_image.load(variant)
        assert error is None and size == (640, 480) and image.mode == "RGB"
    big, error, size = media_image.load(encode(product_photo(62, size=(4000, 3000)), "JPEG", quality=80))
    assert error is None and size == (4000, 3000) and big.width * big.height <= media_image.WORK_PIXELS
    transparent = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    ImageDraw.Draw(transparent).text((10, 30), "HELLO", fill=(0, 0, 0, 255), font=font(30))
    flat, error, _ = media_image.load(encode(transparent))
    assert error is None and flat.getpixel((0, 0)) == (255, 255, 255)  # transparency put on white, text kept black


def test_a_corrupt_image_through_the_api_is_200_with_a_decision(sqlite_url, tmp_path):
    """Invalid image data is not invalid input: the event is valid JSON of the contract, so it is decided
    (200), with the refusal in media.errors; a 422 would leave the post's text undecided."""
    with open_api(sqlite_url, tmp_path) as api:
        ev = api_event("post_created", "media-api-1", images=[{"data_base64": "bm90IGFuIGltYWdl"},
                                                             {"data_base64": png_claiming(9000, 9000)}])
        response = api.post_event(ev)
        assert response.status_code == 200, response.text
        decision = response.json()
        assert decision["signals"]["media.errors"] == ["not_an_image", "too_many_pixels"]
        assert decision["shadow_rules"] == ["media-unreadable-image"]
