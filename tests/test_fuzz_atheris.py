"""A bounded, coverage-guided fuzz run (atheris / libFuzzer) of the text normaliser and the rule-expression parser.

Each target runs in its own subprocess for FUZZ_SECONDS (this file is also the harness: `python
tests/test_fuzz_atheris.py normalize|expr [libFuzzer flags]`). A target fails on any exception but the
documented one (ExprError for conditions; none for the normaliser) and on a broken offset map; libFuzzer
then prints the crashing input. Cost: about 2 x 15 s. Skipped where atheris has no wheel (it has them for
CPython 3.11 on x86_64, which CI is).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ_SECONDS = int(os.environ.get("CLEARCIRCLE_FUZZ_SECONDS", "15"))


def _normalize_target() -> None:
    import atheris

    with atheris.instrument_imports():
        from clearcircle.signals.text_normalize import normalize

    def one(data: bytes) -> None:
        text = atheris.FuzzedDataProvider(data).ConsumeUnicode(4096)  # any code point, surrogates included
        result = normalize(text)
        offsets = result.offsets
        if len(offsets) != len(result.text) or any(not 0 <= o < len(text) for o in offsets) \
                or any(a >= b for a, b in zip(offsets, offsets[1:], strict=False)):
            raise AssertionError(f"broken offset map for {text!r}")
        result.span(0, len(result.text))

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


def _expr_target() -> None:
    import atheris

    with atheris.instrument_imports():
        from clearcircle.policy.expr import ExprError, compile_condition

    # one signal of every declared type (the registry itself loads models and threads it does not need here)
    signals = {"account.age_days": int, "text.marketing": float, "text.categories": list, "event.surface": str,
               "account.banned": bool, "counts.shares": (int, float), "account.class": (str, type(None))}
    names = sorted(signals)

    def one(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        # half the time a real signal name, so the fuzzer gets past name resolution into typing
        source = fdp.ConsumeUnicode(512)
        if fdp.ConsumeBool() and names:
            source = names[fdp.ConsumeIntInRange(0, len(names) - 1)] + source
        try:
            condition = compile_condition(source, signals)
        except ExprError:
            return
        try:
            condition.evaluate({})
        except Exception as exc:  # a compiled condition may only fail as ConditionRuntimeError
            from clearcircle.policy.expr import ConditionRuntimeError

            if not isinstance(exc, ConditionRuntimeError):
                raise

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


@pytest.mark.parametrize("target", ["normalize", "expr"])
def test_fuzz_run_finds_no_crash(target, tmp_path):
    pytest.importorskip("atheris", reason="atheris has wheels for CPython 3.11 on x86_64 only")
    proc = subprocess.run([sys.executable, str(Path(__file__)), target, f"-max_total_time={FUZZ_SECONDS}",
                           "-rss_limit_mb=2048", "-timeout=10", f"-artifact_prefix={tmp_path}/"],
                          capture_output=True, text=True, timeout=FUZZ_SECONDS + 300, cwd=tmp_path)
    report = proc.stderr[-4000:]
    assert proc.returncode == 0, f"fuzzing {target} found a problem:\n{report}"
    assert "cov:" in proc.stderr, report  # libFuzzer ran and reported coverage


if __name__ == "__main__":
    {"normalize": _normalize_target, "expr": _expr_target}[sys.argv.pop(1)]()
