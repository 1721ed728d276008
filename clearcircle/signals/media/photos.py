"""The same photo from many accounts, near-duplicates included: PDQ bands as counter keys, Hamming-verified.

A reseller's copy of a supplier's product photo is rarely byte-identical: apps re-encode it, resize it,
crop a little, stamp a shop name on it. Its PDQ hash then lands a few to a few dozen bits away from the
original's (measured on 50 photos drawn like the test suite's: JPEG at quality 20, 2-10 bits; half size,
6-18; a small text watermark, 6-26; 5% of the area cut off the edges, 14-32, at the edge of the threshold;
5% of the width cut off one side, 60-90, beyond it: PDQ is weak on crops; unrelated photos, over 100), so
counting exact hashes misses most of the crowd. Comparing each new photo with every photo of the last 7 days is out
of the question in the real-time path, so this is locality-sensitive hashing in its simplest form:

- the 256 bits are cut into `BANDS` bands of 16 bits; each band value is a counter key (`photo_bands`,
  one hit per band of each distinct photo of a post), so two photos that agree on any whole band meet
  under one key. Two photos d bits apart share a band for certain when d < `BANDS` (pigeonhole) and
  with a probability that falls with d beyond (about 0.88 at 31 bits if the flips were spread evenly;
  in practice edits flip bits in clusters, which helps). An unrelated photo shares a given band by chance
  once in 65,536, so a key holds a handful of strangers at most, not the feed;
- the member of each hit is the photo's full hash and the poster (an SHA-256 prefix of the account id, so
  the member fits its column whatever the id): the candidates under the bands are VERIFIED by Hamming
  distance against the pack's `max_distance` (media.yaml, 31 by default, PDQ's threshold) and the
  distinct posters of the verified ones counted: the union over all bands, not the most of any one.

Reading a key's members needs a counter reader that returns them (`MemberReader.members`); a reader that
can only count (see `photo_accounts`) gets today's exact-hash count from the `photo_posts` counter instead,
so nothing gets worse where the near-duplicate read is not available.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from clearcircle.signals.media.bank import DEFAULT_MAX_DISTANCE, HASH_BITS, hamming

__all__ = ["BANDS", "BAND_COUNTER", "EXACT_COUNTER", "MemberReader", "band_hits", "band_keys", "band_member",
           "photo_accounts"]

BANDS = 16
BAND_BITS = HASH_BITS // BANDS
BAND_COUNTER = "photo_bands"  # key per band value, member = full hash + poster (counters.py)
EXACT_COUNTER = "photo_posts"  # key per exact hash, member = poster (counters.py): the count-only fallback
BAND_KEY_PREFIX = "photoband:"
_HASH_HEX = HASH_BITS // 4
_POSTER_HEX = 16  # 64 bits of SHA-256: distinct posters among a photo's candidates never collide in practice


class CounterReader(Protocol):
    def count(self, key: str, name: str, since_ms: int, until_ms: int, distinct: bool = False) -> int: ...


@runtime_checkable
class MemberReader(Protocol):
    """A counter reader that can also list the members of a key's hits in a window (since, until]."""

    def members(self, key: str, name: str, since_ms: int, until_ms: int) -> list[str]: ...


def band_keys(pdq: int) -> tuple[str, ...]:
    """The counter keys of one photo: `photoband:<band index>:<band value>`, band 0 the hash's top 16 bits."""
    mask = (1 << BAND_BITS) - 1
    return tuple(f"{BAND_KEY_PREFIX}{i:x}:{(pdq >> (BAND_BITS * (BANDS - 1 - i))) & mask:04x}" for i in range(BANDS))


def poster_of(actor: str) -> str:
    """The poster as kept in a band member: a fixed-length digest, so any account id fits the member column."""
    return hashlib.sha256(actor.encode("utf-8", "surrogatepass")).hexdigest()[:_POSTER_HEX]


def band_member(pdq: int, actor: str) -> str:
    """`<64 hex digits of the hash><16 hex digits of the poster>`: what the verification reads back."""
    return f"{pdq:0{_HASH_HEX}x}{poster_of(actor)}"


def _parse_member(member: str) -> tuple[int, str] | None:
    if len(member) != _HASH_HEX + _POSTER_HEX:
        return None
    try:
        return int(member[:_HASH_HEX], 16), member[_HASH_HEX:]
    except ValueError:
        return None


def band_hits(hashes: Iterable[int], actor: str) -> tuple[tuple[str, str], ...]:
    """(key, member) of every band hit of a post's distinct photos; a band value shared by two photos of the
    same post is one hit (the counter store keeps one hit per key and event), with the first photo's hash."""
    out: dict[str, str] = {}
    for pdq in dict.fromkeys(hashes):
        member = band_member(pdq, actor)
        for key in band_keys(pdq):
            out.setdefault(key, member)
    return tuple(out.items())


def photo_accounts(reader: CounterReader, pdq: int, since_ms: int, until_ms: int,
                   max_distance: int = DEFAULT_MAX_DISTANCE) -> int:
    """Distinct accounts that posted this photo or a near-duplicate (Hamming distance at most `max_distance`)
    in the window (since, until], the post being decided included.

    With a `MemberReader`: the union of the verified candidates of all bands. With a reader that can only
    count: the distinct posters of the exact hash (`photo_posts`), what was counted before bands existed.
    """
    if not isinstance(reader, MemberReader):
        return reader.count(f"photo:{pdq:0{_HASH_HEX}x}", EXACT_COUNTER, since_ms, until_ms, distinct=True)
    posters: set[str] = set()
    seen: set[str] = set()
    for key in band_keys(pdq):
        for member in reader.members(key, BAND_COUNTER, since_ms, until_ms):
            if member in seen:
                continue
            seen.add(member)
            parsed = _parse_member(member)
            if parsed is not None and hamming(parsed[0], pdq) <= max_distance:
                posters.add(parsed[1])
    return len(posters)
