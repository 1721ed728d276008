"""Load what deciding loads lazily, before a process takes traffic (a stream worker before it joins, `serve`
before it listens), so the first events are not slowed by seconds of loading."""

from __future__ import annotations

import gc
import logging
import time

from clearcircle.signals.classifier import shipped_model

log = logging.getLogger(__name__)

# one text per part of the marketing model (Han script, Latin script): scoring each runs its scorer once
_WARM_TEXTS = ("周末一起吃火锅吧", "Great dinner with old friends tonight")
# gc's third threshold after the warm-up: middle-generation passes between full collections (CPython's is 10)
FULL_COLLECTION_THRESHOLD = 100
# gc's first threshold in a process that decides batches nobody waits on one by one (a stream worker):
# allocations between young collections (CPython's is 700)
BATCH_YOUNG_THRESHOLD = 50_000


def _score_samples() -> None:
    model = shipped_model()
    for text in _WARM_TEXTS:
        model.score(text)


def _import_image_libraries() -> None:
    import cv2  # noqa: F401 - QR codes
    import pdqhash  # noqa: F401 - perceptual hashes
    from PIL import Image  # noqa: F401 - decoding


def _ocr_engine() -> None:
    from clearcircle.signals.media import ocr

    ocr.engine()


def warm_up(batches: bool = False) -> dict[str, float]:
    """Load what deciding loads lazily on first use, and return the seconds each part took (for the log).

    Measured on the first batches of a fresh process: the marketing model (`shipped_model`: the .npz and its
    n-gram tables, built by numba kernels that are imported, and loaded from numba's cache, on first use;
    about 1.5 s, ~6 s if the cache must be compiled), the scoring kernel (compiled or loaded on the first
    text scored), and for the first post with an image the image libraries and the OCR engine (about 2 s).
    The pack, its lexicons (Aho-Corasick automata, pinyin variants, the traditional/simplified table) are
    already built when the service opens. Loading them directly, not by deciding a made-up event, leaves
    nothing behind in the store and the audit chain. A part that fails to load is logged and left out: it is
    tried again when first used, where it fails (or not) as it would have without a warm-up.

    `batches`: the process decides batches that no request waits on one by one (a stream worker), so the
    collector may run less often for longer: see BATCH_YOUNG_THRESHOLD below."""
    timings: dict[str, float] = {}
    for name, load in (("marketing model", shipped_model), ("scoring kernel", _score_samples),
                       ("image libraries", _import_image_libraries), ("OCR engine", _ocr_engine)):
        started = time.perf_counter()
        try:
            load()
        except Exception as exc:  # noqa: BLE001 - a broken optional part must not keep the worker from starting
            log.warning("warm-up: could not load the %s (tried again on first use): %s: %s", name,
                        exc.__class__.__name__, exc)
            continue
        timings[name] = round(time.perf_counter() - started, 3)
    # what is loaded now lives as long as the process: out of the collector's sight, so full collections stop
    # walking its few hundred thousand objects (measured: about 10% of the CPU an event costs)
    gc.collect()
    gc.freeze()
    # what the process builds from here on is mostly its working set (account states, counter windows): long
    # lived and without cycles. With the default threshold a full collection walked it every ~4,000 events
    # (~60 ms each, nothing found: ~13 µs of every event's CPU); now one per 100 middle-generation passes
    # (~35,000 events)
    young, middle, _full = gc.get_threshold()
    if batches:
        # a unit of 1,000 events makes some 25,000 container objects, nearly all freed by reference counting
        # or kept in the working set, so most young and middle passes find nothing. Measured (gc.callbacks),
        # replaying 40,000 generated events into PostgreSQL: collector time 11-14 -> 3-4 µs an event (of
        # ~200), peak resident memory the same (667 MB); each young pass then takes ~10 ms, a pause that would
        # show in an API's p99 (`serve` keeps CPython's threshold), not in a worker's batch
        young = BATCH_YOUNG_THRESHOLD
    gc.set_threshold(young, middle, FULL_COLLECTION_THRESHOLD)
    return timings
