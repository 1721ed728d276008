"""Loading a policy pack from its folder, validating every file, and hashing it into a version.

Layout: `pack.yaml` (settings), `rules/*.yaml` (each a `rules:` list), `lists/*.txt` (keyword lists, one
category a file), optionally `media/` (hash banks of known-bad images: `clearcircle/signals/media/bank.py`).
Every problem is reported with file, line and rule, all at once, so policy staff fix a pack in one round.
The version is a content hash, recorded in every decision.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from clearcircle.policy.expr import Condition, ExprError, compile_condition
from clearcircle.policy.rules import Action, PackSettings, RuleSpec, check_feature
from clearcircle.signals.lexicon import Lexicon, LexiconError
from clearcircle.signals.media.bank import MediaSettings, load_media
from clearcircle.signals.registry import SignalRegistry, load_builtin_signals

BUILTIN_PACKS = Path(__file__).parent / "packs"
DEFAULT_PACK = "operating-norms"
_LINE = "__line__"


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    rule: str | None
    message: str

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        return f"{where}: " + (f"rule {self.rule!r}: " if self.rule else "") + self.message


class PackError(ValueError):
    """The pack is invalid; `problems` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class Rule:
    spec: RuleSpec
    action: Action
    condition: Condition
    file: str
    line: int

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass(frozen=True)
class Pack:
    name: str
    version: str
    path: Path
    settings: PackSettings
    rules: tuple[Rule, ...]
    lexicon: Lexicon
    by_event: dict[str, tuple[Rule, ...]] = field(repr=False)
    media: MediaSettings = field(default_factory=MediaSettings, repr=False)  # media/: image hash banks

    @property
    def resources(self) -> dict[str, Any]:
        """What signals may read from the pack (keyword lists, weights, quotas and time zone in settings)."""
        return {"lexicon": self.lexicon, "settings": self.settings, "media": self.media}

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)


class _LineLoader(yaml.SafeLoader):
    """A safe YAML loader that records the line of every mapping, for error messages."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping[_LINE] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _strip_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_lines(v) for k, v in value.items() if k != _LINE}
    if isinstance(value, list):
        return [_strip_lines(v) for v in value]
    return value


def builtin_pack_path(name: str = DEFAULT_PACK) -> Path:
    return BUILTIN_PACKS / name


def pack_files(path: Path) -> list[Path]:
    """Every file that makes up the pack, in a stable order (what the version hashes)."""
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ".txt"))


def pack_version(path: Path) -> str:
    digest = hashlib.sha256()
    for file in pack_files(path):
        digest.update(file.relative_to(path).as_posix().encode() + b"\x00")
        digest.update(file.read_bytes() + b"\x00")
    return "sha256:" + digest.hexdigest()


def _read_yaml(file: Path, rel: str, problems: list[Problem]) -> Any:
    try:
        return yaml.load(file.read_text(encoding="utf-8"), Loader=_LineLoader)  # noqa: S506 - safe subclass
    except UnicodeDecodeError as exc:
        problems.append(Problem(rel, None, None, f"not UTF-8: {exc}"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.append(Problem(rel, mark.line + 1 if mark else None, None, f"YAML syntax: {exc}"))
    return None


def _pydantic_problems(exc: ValidationError, rel: str, line: int | None, rule: str | None) -> list[Problem]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "literal[")))
        out.append(Problem(rel, line, rule, f"{loc}: {err['msg']}" if loc else err["msg"]))
    return out


def _load_rule(raw: Any, rel: str, registry: SignalRegistry, problems: list[Problem]) -> Rule | None:
    if not isinstance(raw, dict):
        problems.append(Problem(rel, None, None, "each entry of `rules` must be a mapping"))
        return None
    line = raw.get(_LINE)
    rule_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    try:
        spec = RuleSpec.model_validate(_strip_lines(raw))
        action = spec.resolved_action()
        check_feature(action.feature)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, rel, line, rule_id))
        return None
    except ValueError as exc:
        problems.append(Problem(rel, line, rule_id, f"action.feature: {exc}"))
        return None
    try:
        condition = compile_condition(spec.when, registry.types())
    except ExprError as exc:
        col = f" (column {exc.col + 1})" if exc.col is not None else ""
        hint = f"; {exc.hint}" if exc.hint else ""
        problems.append(Problem(rel, line, spec.id, f"when{col}: {exc.message}{hint}"))
        return None
    for name in sorted(condition.names):
        if not any(registry[name].applies_to(t) for t in spec.events):
            problems.append(Problem(rel, line, spec.id, f"when: signal {name!r} is never computed for "
                                    f"{', '.join(spec.events)} (it reads {', '.join(sorted(registry[name].reads))})"))
            return None
    return Rule(spec, action, condition, rel, line or 0)


def load_pack(path: str | Path, registry: SignalRegistry | None = None) -> Pack:
    """Load and validate the pack at `path`; raises PackError listing every problem."""
    root = Path(path)
    registry = registry or load_builtin_signals()
    problems: list[Problem] = []
    if not (root / "pack.yaml").is_file():
        raise PackError([Problem("pack.yaml", None, None, f"missing: {root.name or root} is not a policy pack")])
    settings = PackSettings(name="invalid")
    raw_settings = _read_yaml(root / "pack.yaml", "pack.yaml", problems)
    if raw_settings is not None:
        try:
            settings = PackSettings.model_validate(_strip_lines(raw_settings))
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, "pack.yaml", None, None))
        for step in settings.strikes.ladder:
            try:
                check_feature(step.feature)
            except ValueError as exc:
                problems.append(Problem("pack.yaml", None, None, f"strikes.ladder: {exc}"))
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for file in sorted((root / "rules").glob("*.y*ml")):
        rel = file.relative_to(root).as_posix()
        doc = _read_yaml(file, rel, problems)
        if doc is None:
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
            problems.append(Problem(rel, 1, None, "a rules file is a mapping with a `rules:` list"))
            continue
        for raw in doc["rules"]:
            rule = _load_rule(raw, rel, registry, problems)
            if rule is None:
                continue
            if rule.id in seen:
                problems.append(Problem(rel, rule.line, rule.id, f"duplicate rule id (first in {seen[rule.id]})"))
                continue
            seen[rule.id] = f"{rel}:{rule.line}"
            rules.append(rule)
    lexicon = Lexicon.from_terms({})
    if (root / "lists").is_dir():
        try:
            lexicon = Lexicon.from_dir(root / "lists")
        except LexiconError as exc:
            problems.append(Problem("lists", None, None, str(exc)))
    media, found = load_media(root)
    problems += [Problem(file, line, None, message) for file, line, message in found]
    if problems:
        raise PackError(problems)
    by_event: dict[str, list[Rule]] = {}
    for rule in rules:
        for event_type in rule.spec.events:
            by_event.setdefault(event_type, []).append(rule)
    return Pack(
        name=settings.name,
        version=pack_version(root),
        path=root,
        settings=settings,
        rules=tuple(rules),
        lexicon=lexicon,
        by_event={k: tuple(v) for k, v in by_event.items()},
        media=media,
    )
