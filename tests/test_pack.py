"""The built-in policy pack and the pack loader: norms cited, content-hash versions, every problem reported."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clearcircle.cli.main import app
from clearcircle.policy.pack import PackError, Problem, builtin_pack_path, load_pack, pack_version

REQUIRED_NORMS = {"S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S13", "S14", "S15", "S16"}
TEST_FILE = "rules/zz_test.yaml"


@pytest.fixture(scope="module")
def builtin():
    return load_pack(builtin_pack_path())


def copy_pack(tmp_path: Path, name: str = "pack") -> Path:
    dest = tmp_path / name
    shutil.copytree(builtin_pack_path(), dest)
    return dest


def rule(rid: str, *, spec: str = "S4", events: str = "[post_created]",
         when: str = 'any_of(text.categories, ["mlm"])', action: str = "review", severity: int = 2) -> str:
    """One rule in YAML, written for these tests (every field valid unless overridden)."""
    return (
        f"  - id: {rid}\n"
        f"    description: a rule written for the pack loader tests\n"
        f"    norm: {{spec: {spec}, citation: \"a citation written for the test\"}}\n"
        f"    category: test_rules\n"
        f"    events: {events}\n"
        f"    when: {when}\n"
        f"    action: {action}\n"
        f"    severity: {severity}\n"
    )


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line of `text` containing `needle`."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")


def broken_pack(tmp_path: Path, rules_text: str, file: str = TEST_FILE) -> tuple[Path, PackError]:
    path = copy_pack(tmp_path)
    (path / file).write_text(rules_text, encoding="utf-8")
    with pytest.raises(PackError) as info:
        load_pack(path)
    return path, info.value


def problems_of(exc: PackError, rule_id: str) -> list[Problem]:
    return [p for p in exc.problems if p.rule == rule_id]


def one_problem(exc: PackError, rule_id: str, text: str) -> Problem:
    found = problems_of(exc, rule_id)
    assert found, f"no problem reported for {rule_id!r}: {exc.problems}"
    problem = found[0]
    assert problem.file == TEST_FILE
    assert problem.line == line_of(text, f"- id: {rule_id}")
    assert str(problem).startswith(f"{TEST_FILE}:{problem.line}: rule {rule_id!r}: ")
    return problem


# --- the built-in pack ------------------------------------------------------------------------------------


def test_builtin_pack_loads(builtin):
    assert builtin.name == "operating-norms"
    assert len(builtin.rules) >= 20
    ids = [r.id for r in builtin.rules]
    assert len(ids) == len(set(ids))
    # the rules the pipeline tests rely on are there, in the modes the docs describe
    for rule_id in ("induced-share-text", "counterfeit-sale-text", "mlm-recruiting-text", "sensitive-words",
                    "moments-contact-solicitation", "friend-request-flood-hourly", "report-threshold",
                    "banned-account-activity", "restricted-feature-use", "personal-account-push",
                    "subscription-daily-push", "service-monthly-push"):
        assert builtin.rule(rule_id).spec.mode == "enforce", rule_id
    assert builtin.rule("unlicensed-food-sale").spec.mode == "enforce"  # S10: gated by the merchant registry
    # every rule is reachable through the per-event index
    indexed = {r.id for rules in builtin.by_event.values() for r in rules}
    assert indexed == set(ids)


def test_every_rule_cites_a_norm(builtin):
    for r in builtin.rules:
        assert re.fullmatch(r"S(?:[1-9]|1[0-6])", r.spec.norm.spec), r.id
        assert len(r.spec.norm.citation.strip()) >= 10, r.id
        assert r.spec.description.strip(), r.id


def test_rules_cover_the_norms(builtin):
    cited = {r.spec.norm.spec for r in builtin.rules}
    assert REQUIRED_NORMS <= cited, f"not cited: {sorted(REQUIRED_NORMS - cited)}"


def test_version_is_a_content_hash(builtin, tmp_path):
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", builtin.version)
    assert builtin.version == pack_version(builtin_pack_path())
    # the same content elsewhere is the same version: the hash is of the files, not of where they are
    copy = copy_pack(tmp_path)
    assert load_pack(copy).version == builtin.version


@pytest.mark.parametrize("edit", ["pack.yaml", "rules/goods.yaml", "lists/food.txt", "new list", "rename"])
def test_version_changes_when_any_file_changes(builtin, tmp_path, edit):
    path = copy_pack(tmp_path)
    if edit == "new list":
        (path / "lists" / "extra.txt").write_text("# a list added for the test\n快来围观\n", encoding="utf-8")
    elif edit == "rename":
        (path / "rules" / "goods.yaml").rename(path / "rules" / "goods2.yaml")
    else:
        file = path / edit
        file.write_text(file.read_text(encoding="utf-8") + "\n# edited by a test\n", encoding="utf-8")
    changed = load_pack(path)
    assert changed.version != builtin.version
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", changed.version)


def test_version_changes_on_a_one_character_edit_and_back(builtin, tmp_path):
    path = copy_pack(tmp_path)
    file = path / "lists" / "sensitive.txt"
    original = file.read_text(encoding="utf-8")
    file.write_text(original.replace("神药", "神丹", 1), encoding="utf-8")
    assert load_pack(path).version != builtin.version
    file.write_text(original, encoding="utf-8")
    assert load_pack(path).version == builtin.version


def test_a_valid_added_rule_loads(builtin, tmp_path):
    path = copy_pack(tmp_path)
    (path / TEST_FILE).write_text("rules:\n" + rule("zz-extra-rule"), encoding="utf-8")
    pack = load_pack(path)
    assert len(pack.rules) == len(builtin.rules) + 1
    added = pack.rule("zz-extra-rule")
    assert added.file == TEST_FILE and added.line == 2
    assert pack.version != builtin.version


# --- invalid packs: file, line, rule, and every problem at once -------------------------------------------


def test_yaml_syntax_error_names_the_line(tmp_path):
    text = "rules:\n" + rule("zz-fine") + "  - id: zz-broken\n    description: this: is not yaml\n"
    _, exc = broken_pack(tmp_path, text)
    syntax = [p for p in exc.problems if "YAML" in p.message]
    assert len(syntax) == 1
    assert syntax[0].file == TEST_FILE
    assert syntax[0].line == line_of(text, "this: is not yaml")


def test_unknown_signal_suggests_the_near_name(tmp_path):
    text = "rules:\n" + rule("zz-typo", events="[friend_request]", when="counters.friend_request_1h > 30")
    _, exc = broken_pack(tmp_path, text)
    problem = one_problem(exc, "zz-typo", text)
    assert "counters.friend_request_1h" in problem.message
    assert "did you mean" in problem.message
    assert "counters.friend_requests_1h" in problem.message


def test_duplicate_rule_id(tmp_path):
    text = "rules:\n" + rule("zz-twice") + rule("sensitive-words") + rule("zz-twice", severity=3)
    _, exc = broken_pack(tmp_path, text)
    dupes = [p for p in exc.problems if "duplicate" in p.message]
    assert {(p.rule, p.file) for p in dupes} == {("zz-twice", TEST_FILE), ("sensitive-words", TEST_FILE)}
    second = [p for p in dupes if p.rule == "zz-twice"][0]
    lines = [n for n, line in enumerate(text.splitlines(), 1) if "- id: zz-twice" in line]
    assert second.line == lines[1]
    # the message says where the first one is
    builtin_dupe = [p for p in dupes if p.rule == "sensitive-words"][0]
    assert "rules/goods.yaml" in builtin_dupe.message


def test_unknown_event_type(tmp_path):
    text = "rules:\n" + rule("zz-event", events="[post_created, post_teleported]")
    _, exc = broken_pack(tmp_path, text)
    assert "events" in one_problem(exc, "zz-event", text).message


def test_severity_out_of_range(tmp_path):
    text = "rules:\n" + rule("zz-severe", severity=9)
    _, exc = broken_pack(tmp_path, text)
    assert "severity" in one_problem(exc, "zz-severe", text).message


def test_bad_norm_number(tmp_path):
    text = "rules:\n" + rule("zz-norm", spec="S99")
    _, exc = broken_pack(tmp_path, text)
    assert "norm.spec" in one_problem(exc, "zz-norm", text).message


def test_signal_never_computed_for_the_event_type(tmp_path):
    text = "rules:\n" + rule("zz-follow-text", events="[follow]")
    _, exc = broken_pack(tmp_path, text)
    message = one_problem(exc, "zz-follow-text", text).message
    assert "text.categories" in message and "never computed" in message and "follow" in message


def test_unknown_restricted_feature(tmp_path):
    text = "rules:\n" + rule("zz-feature", action="{type: restrict, feature: teleport, days: 1}")
    _, exc = broken_pack(tmp_path, text)
    message = one_problem(exc, "zz-feature", text).message
    assert "feature" in message and "teleport" in message


def test_missing_pack_yaml(tmp_path):
    path = copy_pack(tmp_path)
    (path / "pack.yaml").unlink()
    with pytest.raises(PackError) as info:
        load_pack(path)
    problems = info.value.problems
    assert problems and any("pack.yaml" in str(p) and "missing" in str(p) for p in problems)
    # and the CLI says so too, without a traceback
    result = CliRunner().invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 1 and (result.exception is None or isinstance(result.exception, SystemExit))
    assert "pack.yaml" in result.output


def test_every_problem_is_reported_at_once(tmp_path):
    text = ("rules:\n" + rule("zz-a", severity=9) + rule("zz-b", spec="S99")
            + rule("zz-c", events="[follow]") + rule("zz-d", when="text.categoriez == 1")
            + rule("zz-e", action="{type: restrict, feature: teleport}") + rule("zz-f"))
    path = copy_pack(tmp_path)
    (path / TEST_FILE).write_text(text, encoding="utf-8")
    (path / "rules" / "zz_syntax.yaml").write_text("rules:\n  - id: [unclosed\n", encoding="utf-8")
    with pytest.raises(PackError) as info:
        load_pack(path)
    exc = info.value
    for rule_id in ("zz-a", "zz-b", "zz-c", "zz-d", "zz-e"):
        one_problem(exc, rule_id, text)
    assert not problems_of(exc, "zz-f")  # the valid rule is not blamed
    assert any(p.file == "rules/zz_syntax.yaml" and p.line is not None for p in exc.problems)
    # the exception text lists them all, one a line
    assert len(str(exc).splitlines()) >= 6


# --- `clearcircle policy check` ---------------------------------------------------------------------------


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_policy_check_builtin_exits_0():
    result = CliRunner().invoke(app, ["policy", "check", str(builtin_pack_path())])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_policy_check_broken_copy_exits_1_with_file_and_line(tmp_path):
    text = "rules:\n" + rule("zz-fine") + rule("zz-typo", events="[friend_request]",
                                                 when="counters.friend_request_1h > 30")
    path = copy_pack(tmp_path)
    (path / TEST_FILE).write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    flat = _flat(result.output)
    assert f"{TEST_FILE}:{line_of(text, '- id: zz-typo')}:" in flat
    assert "counters.friend_requests_1h" in flat


def test_policy_check_shows_problem_text_verbatim(tmp_path):
    """Problem text is data, not Rich markup: a YAML error quoting `[post_created]` must show it as written."""
    text = "rules:\n  - id: zz-fine\n    events: [post_created]: oops\n"
    path = copy_pack(tmp_path)
    (path / TEST_FILE).write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 1, result.output
    assert f"{TEST_FILE}:3:" in _flat(result.output)
    assert "[post_created]" in result.output


def test_policy_check_never_crashes_on_bracketed_rule_id(tmp_path):
    """An invalid id such as `[/x]` is reported (exit 1), not a MarkupError traceback."""
    text = "rules:\n" + rule('"[/x]"')
    path = copy_pack(tmp_path)
    (path / TEST_FILE).write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["policy", "check", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1
    assert "[/x]" in result.output
