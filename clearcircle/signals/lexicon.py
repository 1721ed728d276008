"""Keyword lists by category, matched in one Aho-Corasick pass over normalised text.

Policy staff own the lists (`lists/<category>.txt` in a policy pack); engineers own the matcher. Terms and
texts go through the same `Normalizer`, so a list entry written once (``加微信``, ``wx``) also catches
``加 微 信``, ``加​微​信`` and ``ＷＸ``; every `Hit` is reported in the ORIGINAL text, so the evidence a
moderator or regulator sees is what the user wrote.

Matching rules:

- Every occurrence of every term is found (overlapping matches: ``加微信`` and ``微信`` both hit).
- A term also matches in its other spellings ("aliases", built from the list, so policy staff write a
  term once): the key contact words inside it spelled as marketers do (加微信 -> 加薇信, 加威芯, 加vx,
  加weixin, 加V; qq号 -> 扣扣号, 企鹅号), and its pinyin (加微信 -> jiaweixin, jiavx; 发展下线 -> fazhanxiaxian,
  fzxx); see `variants.py` for which terms get which. An alias hit reports the list term it belongs to.
- A term edge that is an ASCII letter must not touch an ASCII letter in the text, and an ASCII-digit edge
  must not touch an ASCII digit: ``wx`` does not hit inside ``twxy``, ``11`` not inside ``2011``. Edges
  are judged on the text as written: a separator the normaliser removed still counts as a boundary, so
  "add my wx: abc" hits ``wx`` although the normalised text is "addmywxabc". CJK edges match anywhere,
  except that a term starting with 加 ("add") does not match where 加 ends another word (增加, 参加, 更加:
  `variants.GUARDED_JIA_BEFORE`).
- A term listed in several categories hits once per category; the same term at the same place is
  reported once.

Engine: ahocorasick_rs (as a DFA), one pass over the normalised text for every term and alias of every
category. `clearcircle bench-text` measures it against pyahocorasick on this lexicon and generated CJK posts
(ahocorasick_rs is about 3x faster per message and per character here) and times the whole text path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import ahocorasick_rs

from clearcircle.signals import variants
from clearcircle.signals.text_normalize import DEFAULT_NORMALIZER, SEP, Normalized, Normalizer

__all__ = ["MAX_TERM_CHARS", "Hit", "Lexicon", "LexiconError", "build_automaton", "read_term_file"]

MAX_TERM_CHARS = 64


class LexiconError(ValueError):
    """A keyword list cannot be loaded; the message names the file (or category) and line."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None) -> None:
        self.source = source
        self.line = line
        where = f"{source}:{line}: " if source and line else f"{source}: " if source else ""
        super().__init__(where + message)


@dataclass(frozen=True)
class Hit:
    """One occurrence of a list term; `start`/`end`/`text` are in the original text, as the user wrote it."""

    category: str
    term: str  # the term as written in its list (first spelling, if several normalise alike)
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class _Entry:
    category: str
    term: str
    source: str
    line: int | None


# Edge classes of a normalised term: which neighbouring character would glue it into a longer ASCII word.
_FREE, _LETTER, _DIGIT = 0, 1, 2


def _hit_order(hit: Hit) -> tuple[int, int, str, str]:
    return hit.start, hit.end, hit.category, hit.term


def _edge_class(ch: str) -> int:
    if ch.isascii() and ch.isalpha():
        return _LETTER
    if ch.isascii() and ch.isdigit():
        return _DIGIT
    return _FREE


def read_term_file(path: Path) -> list[tuple[int, str]]:
    """(line number, term) for each term of a list file: '#' starts a comment, blank lines are skipped.

    UTF-8, with or without a byte-order mark (Windows editors add one). Terms are returned stripped but
    not normalised, so tools (linters, the admin UI) can show them as written.
    """
    try:
        content = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LexiconError(f"not UTF-8 ({exc.reason} at byte {exc.start})", source=str(path)) from None
    except OSError as exc:
        raise LexiconError(f"cannot read: {exc.strerror}", source=str(path)) from None
    out = []
    for number, line in enumerate(content.splitlines(), start=1):
        term = line.split("#", 1)[0].strip()
        if term:
            out.append((number, term))
    return out


_BUILT: dict[tuple[Normalizer, bool, tuple[_Entry, ...]], Lexicon] = {}
_BUILT_LIMIT = 8


def build_automaton(patterns: Iterable[str]) -> ahocorasick_rs.AhoCorasick:
    """The lexicon's matcher: ahocorasick_rs as a DFA (the fastest of its three implementations on our texts,
    about 25 ms to build for the built-in lists), standard match kind so that overlapping matches are found."""
    return ahocorasick_rs.AhoCorasick(list(patterns), implementation=ahocorasick_rs.Implementation.DFA)


class Lexicon:
    """Immutable set of categorised terms with a prebuilt automaton; build once, share between threads."""

    def __init__(
        self, entries: Iterable[_Entry], *, normalizer: Normalizer = DEFAULT_NORMALIZER, aliases: bool = True
    ) -> None:
        """Prefer `from_dir` / `from_terms`; this takes entries already tagged with their source.

        `aliases` (default True) adds the other spellings of each term (see the module docstring).
        """
        self._normalizer = normalizer
        categories: set[str] = set()
        patterns: dict[str, int] = {}  # normalised term or alias -> pattern index
        owners: list[list[tuple[str, str]]] = []  # pattern index -> [(category, term as written)]

        def own(key: str, category: str, term: str) -> bool:
            index = patterns.setdefault(key, len(patterns))
            if index == len(owners):
                owners.append([])
            if any(c == category for c, _ in owners[index]):
                return False
            owners[index].append((category, term))
            return True

        terms: list[tuple[str, str, str]] = []  # (normalised, category, term as written)
        size = 0
        for entry in entries:
            categories.add(entry.category)
            key = self.normalize_term(entry.term, source=entry.source, line=entry.line)
            if own(key, entry.category, entry.term):
                size += 1
                terms.append((key, entry.category, entry.term))
        # Aliases after every list term, so a spelling that is also a term of its own reports that term.
        alias_count = 0
        if aliases:
            for key, category, term in terms:
                for alias in self._aliases(key):
                    alias_count += own(alias, category, term)
        self.categories: frozenset[str] = frozenset(categories)
        self.alias_count = alias_count
        self._size = size
        self._patterns = tuple(patterns)
        self._owners = tuple(tuple(o) for o in owners)
        self._edges = tuple((_edge_class(p[0]), _edge_class(p[-1])) for p in self._patterns)
        self._guarded = frozenset(i for i, p in enumerate(self._patterns) if p.startswith("加"))
        self._automaton = build_automaton(self._patterns) if self._patterns else None

    def _aliases(self, key: str) -> list[str]:
        """Other spellings of a normalised term, normalised the same way; the term itself left out."""
        out: list[str] = []
        for raw in (*variants.key_word_aliases(key), *variants.pinyin_aliases(key),
                    *variants.mixed_pinyin_aliases(key)):
            alias = self._normalizer.normalize(raw).text
            if alias and alias != key and alias not in out and len(alias) <= MAX_TERM_CHARS:
                out.append(alias)
        return out

    @classmethod
    def from_dir(cls, path: Path, *, normalizer: Normalizer = DEFAULT_NORMALIZER, aliases: bool = True) -> Lexicon:
        """Load every `path/*.txt`: the file stem is the category, one term a line (see `read_term_file`)."""
        path = Path(path)
        if not path.is_dir():
            raise LexiconError("not a directory of keyword lists", source=str(path))
        entries = tuple(
            _Entry(file.stem, term, str(file), number)
            for file in sorted(path.glob("*.txt"))
            for number, term in read_term_file(file)
        )
        # A pack is loaded again on reloads, campaign switches and in every test that opens a service; the
        # same lists give the same (immutable) lexicon, so it is built once.
        key = (normalizer, aliases, entries)
        lexicon = _BUILT.get(key)
        if lexicon is None:
            lexicon = cls(entries, normalizer=normalizer, aliases=aliases)
            if len(_BUILT) >= _BUILT_LIMIT:
                _BUILT.pop(next(iter(_BUILT)), None)
            _BUILT[key] = lexicon
        return lexicon

    @classmethod
    def from_terms(
        cls, terms: Mapping[str, Iterable[str]], *, normalizer: Normalizer = DEFAULT_NORMALIZER, aliases: bool = True
    ) -> Lexicon:
        """Build from `{category: terms}`, e.g. in tests or for a campaign overlay held in memory."""
        for category, items in terms.items():
            if isinstance(items, str):  # would silently become one term per character
                raise LexiconError("terms must be a list of strings, not one string", source=category)
        entries = [
            _Entry(category, term.strip(), f"category {category!r}", None)
            for category, items in terms.items()
            for term in items
        ]
        return cls(entries, normalizer=normalizer, aliases=aliases)

    def __len__(self) -> int:
        """Distinct (category, normalised term) pairs of the lists (aliases not counted)."""
        return self._size

    @property
    def normalizer(self) -> Normalizer:
        """The normaliser terms were folded with: texts must go through the same one (see `match`)."""
        return self._normalizer

    def terms(self) -> list[tuple[str, str]]:
        """(category, term as written) of every list term, aliases left out; for tools and benchmarks."""
        seen: dict[tuple[str, str], None] = {}
        for owners in self._owners:
            for owner in owners:
                seen.setdefault(owner)
        return list(seen)

    @property
    def patterns(self) -> tuple[str, ...]:
        """Every normalised term and alias the automaton holds (for benchmarks and tooling)."""
        return self._patterns

    def __repr__(self) -> str:
        return f"<Lexicon {len(self)} terms in {sorted(self.categories)}>"

    def normalize_term(self, term: str, *, source: str | None = None, line: int | None = None) -> str:
        """The form `term` is matched in: normalised, without separators at its edges.

        Separators at a term's edges are dropped because they could never meet the text: between two
        words they are normalised away. Raises `LexiconError` (naming `source` and `line`) for a term that
        is longer than `MAX_TERM_CHARS` or empty once normalised. Lint tools use this to find duplicates.
        """
        term = term.strip()
        if len(term) > MAX_TERM_CHARS:
            raise LexiconError(
                f"term {term[:20]!r}... is longer than {MAX_TERM_CHARS} characters", source=source, line=line
            )
        text = self._normalizer.normalize(term).text
        while text and self._normalizer.char_kind(text[0]) == SEP:
            text = text[1:]
        while text and self._normalizer.char_kind(text[-1]) == SEP:
            text = text[:-1]
        if not text:
            raise LexiconError(f"term {term!r} is empty after normalisation", source=source, line=line)
        return text

    def match(self, text: str | Normalized) -> list[Hit]:
        """Every term occurrence in `text`, sorted by start (then end, category, term).

        Pass a `Normalized` made by this lexicon's normalizer to share one normalisation between lexicons.
        """
        norm = text if isinstance(text, Normalized) else self._normalizer.normalize(text)
        if self._automaton is None or not norm.text:
            return []
        found = self._automaton.find_matches_as_indexes(norm.text, overlapping=True)
        offsets, original, edges, owners = norm.offsets, norm.original, self._edges, self._owners
        guarded = self._guarded
        hits: list[Hit] = []
        # (pattern, start, end) is unique and a pattern lists each category once, so no hit repeats.
        for index, start, end in found:
            left, right = edges[index]
            if (left and not self._free_edge(norm, start - 1, start, left)) or (
                right and not self._free_edge(norm, end - 1, end, right)
            ):
                continue
            if index in guarded and start and norm.text[start - 1] in variants.GUARDED_JIA_BEFORE:
                continue
            a, b = offsets[start], offsets[end - 1] + 1  # = norm.span(start, end), inlined: hot loop
            for category, term in owners[index]:
                hits.append(Hit(category, term, a, b, original[a:b]))
        hits.sort(key=_hit_order)
        return hits

    def _free_edge(self, norm: Normalized, before: int, after: int, edge: int) -> bool:
        """Whether normalised positions `before` and `after` are not one ASCII word glued together."""
        if before < 0 or after >= len(norm.text):
            return True
        if _edge_class(norm.text[before]) != edge or _edge_class(norm.text[after]) != edge:
            return True
        gap = norm.original[norm.offsets[before] + 1 : norm.offsets[after]]
        return self._normalizer.has_separator(gap)
