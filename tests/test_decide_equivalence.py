"""The per-event speed-ups decide exactly as the plain code did.

Ledger folding keeps the base it folds into between folds (enforce._FOLDED) instead of re-validating it from
`ledger_base` every time: the state must come out byte for byte as when every fold starts afresh, through a
reload from JSON in between (a new unit of work) and through a reversal. Signal functions are looked up in a
per-event-type table (SignalRegistry.fns_for) that a later registration must not leave stale.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import orjson
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from clearcircle.config import Settings
from clearcircle.enforcement import enforce as enforcement
from clearcircle.enforcement.actions import Request
from clearcircle.enforcement.enforce import enforce, reverse
from clearcircle.enforcement.state import DAY_MS, AccountState
from clearcircle.events.schemas import parse_event
from clearcircle.policy.pack import builtin_pack_path, load_pack
from clearcircle.service import open_service
from clearcircle.signals.context import SignalContext, SignalValues
from clearcircle.signals.registry import SignalRegistry
from clearcircle.synthetic import generate

SETTINGS = load_pack(builtin_pack_path()).settings
BASE_MS = 1_770_000_000_000

request = st.tuples(
    st.sampled_from(["label", "limit_reach", "restrict", "suspend", "ban", "lift", "remove", "review"]),
    st.integers(min_value=0, max_value=200 * DAY_MS),
    st.sampled_from([None, 1.0, 7.0, 30.0]),
    st.booleans(),
    st.sampled_from(["a", "b", "c"]),
)
histories = st.lists(st.lists(request, min_size=1, max_size=3), min_size=1, max_size=40)


def _requests(i: int, reqs: list[tuple]) -> list[Request]:
    return [Request(action=action, account="acc", rule=f"r{key}-{action}", source=f"e{i}", at_ms=BASE_MS + offset,
                    days=days, feature=f"f{key}", label=f"l{key}", strike=strike, strike_days=90)
            for action, offset, days, strike, key in reqs]


def _play(groups: list[list[tuple]], *, cached: bool, reload_every: int = 0) -> AccountState:
    """Enforce each event's requests in turn; uncached: every fold validates its base from `ledger_base`."""
    state = AccountState(account_id="acc")
    for i, reqs in enumerate(groups):
        if reload_every and i % reload_every == 0:  # a new unit of work reads the stored JSON
            state = AccountState.model_validate_json(state.model_dump_json())
        enforce(_requests(i, reqs), lambda _a, s=state: s, SETTINGS)
        if not cached:
            enforcement._FOLDED.clear()
    return state


@settings(max_examples=120, deadline=None)
@given(histories, st.integers(min_value=0, max_value=7), st.data())
def test_folding_into_a_kept_base_equals_folding_afresh(groups, reload_every, data):
    with mock.patch.object(enforcement, "LEDGER_MAX", 3):  # fold on nearly every event
        enforcement._FOLDED.clear()
        fast = _play(groups, cached=True, reload_every=reload_every)
        plain = _play(groups, cached=False)
        assert fast.ledger_base is not None or len(groups) <= 3
        assert fast.model_dump_json() == plain.model_dump_json()
        # the snapshot a fold writes is the model's own dump, key order included
        assert orjson.dumps(enforcement._fold_snapshot(fast, {})[0]) == orjson.dumps(enforcement._snapshot(fast))
        if fast.ledger_base is not None:
            assert orjson.dumps(fast.ledger_base) == orjson.dumps(enforcement._snapshot(enforcement._base(fast)))
        k = data.draw(st.integers(min_value=0, max_value=len(groups) - 1))  # and an appeal after the folds
        assert reverse(fast, f"e{k}", "appeal:1", SETTINGS) == reverse(plain, f"e{k}", "appeal:1", SETTINGS)
        assert fast.model_dump_json() == plain.model_dump_json()
        # folding goes on from the reversed state as it would from a plain one
        more = _requests(len(groups), [("remove", 300 * DAY_MS, None, True, "a")] * 2)
        enforce(more, lambda _a: fast, SETTINGS)
        enforcement._FOLDED.clear()
        enforce(more, lambda _a: plain, SETTINGS)
        assert fast.model_dump_json() == plain.model_dump_json()


def _stored_as_dumped(state: AccountState) -> None:
    """The stored form (kept ledger entries) is the model's own dump with the ledger moved last."""
    stored = state.stored_json()
    dumped = orjson.loads(state.model_dump_json())
    assert list(orjson.loads(stored)) == [k for k in dumped if k != "ledger"] + ["ledger"]
    assert orjson.loads(stored) == dumped
    assert AccountState.model_validate_json(stored) == state


@settings(max_examples=120, deadline=None)
@given(histories, st.integers(min_value=0, max_value=5), st.data())
def test_the_stored_form_with_kept_ledger_entries_equals_a_full_dump(groups, copy_every, data):
    """Appends, folds (the oldest entries leave), copies, reloads and a reversal (a new list of entries), with
    the stored form taken after each: what it kept from the last one never shows through as stale."""
    with mock.patch.object(enforcement, "LEDGER_MAX", 4):
        enforcement._FOLDED.clear()
        state = AccountState(account_id="acc")
        _stored_as_dumped(state)
        for i, reqs in enumerate(groups):
            if copy_every and i % copy_every == 0:  # a copy shares what was kept; a reload keeps nothing
                state = state.model_copy(deep=bool(i % 2)) if i % 3 else \
                    AccountState.model_validate_json(state.stored_json())
            enforce(_requests(i, reqs), lambda _a, s=state: s, SETTINGS)
            _stored_as_dumped(state)
        k = data.draw(st.integers(min_value=0, max_value=len(groups) - 1))
        reverse(state, f"e{k}", "appeal:1", SETTINGS)
        _stored_as_dumped(state)
        state.ledger = [e.model_copy() for e in reversed(state.ledger)]  # equal entries, new objects, reordered
        _stored_as_dumped(state)
        if len(state.ledger) >= 3:
            state.ledger = state.ledger[:1] + state.ledger[2:]  # one gone from the middle: the rest shift
            _stored_as_dumped(state)
        if state.ledger:
            state.ledger[-1] = state.ledger[-1].model_copy(update={"rule": "changed"})  # another in its place
            _stored_as_dumped(state)


def test_a_base_is_not_shared_by_two_states_with_the_same_ledger_base():
    """A copy of a state (same `ledger_base` dict) must not fold into the base its original went on changing."""
    history = [("remove", 0, None, True, "a"), ("label", DAY_MS, 7.0, False, "a"),
               ("suspend", 2 * DAY_MS, 7.0, True, "b"), ("restrict", 3 * DAY_MS, 30.0, True, "c")]
    with mock.patch.object(enforcement, "LEDGER_MAX", 2):
        enforcement._FOLDED.clear()
        one = AccountState(account_id="acc")
        for i, r in enumerate(history):
            enforce(_requests(i, [r]), lambda _a: one, SETTINGS)
        assert [e.source for e in one.ledger] == ["e2", "e3"]  # e0, e1 folded into the base
        two = one.model_copy(deep=True)
        two.ledger_base = one.ledger_base  # the one thing shared, as by a shallow copy
        reference = AccountState.model_validate_json(two.model_dump_json())
        for i in (10, 11):  # `one` folds e2, then e3, into the base it keeps
            enforce(_requests(i, [("label", 9 * DAY_MS, 1.0, False, "z")]), lambda _a: one, SETTINGS)
        step = _requests(20, [("label", 9 * DAY_MS, 1.0, False, "y")])
        enforce(step, lambda _a: two, SETTINGS)  # folds e2 only: from its own ledger_base, not one's base
        enforcement._FOLDED.clear()
        enforce(step, lambda _a: reference, SETTINGS)
        assert two.model_dump_json() == reference.model_dump_json()
        assert "c" not in (two.ledger_base or {}).get("restrictions", {})


def _replay(tmp: Path, name: str, events: list[dict]) -> tuple[list[bytes], list[tuple[str, str]]]:
    service = open_service(Settings(db_url=f"sqlite:///{tmp / name}.db", hash_key="k", key_file=tmp / "k"))
    try:
        parsed = [parse_event(e) for e in events]
        decisions = [orjson.dumps(o.decision) for i in range(0, len(parsed), 250)
                     for o in service.pipeline.submit(parsed[i:i + 250])]
        with service.store.engine.connect() as conn:
            states = [tuple(r) for r in conn.execute(sa.text("SELECT id, state FROM accounts ORDER BY id"))]
        return decisions, states
    finally:
        service.close()


def test_a_generated_history_decides_alike_with_and_without_the_kept_bases(tmp_path):
    """Through the pipeline, with ledgers small enough that the busiest accounts fold on every request."""
    events = list(generate(3000, accounts=150, seed=11))
    with mock.patch.object(enforcement, "LEDGER_MAX", 6):
        enforcement._FOLDED.clear()
        fast = _replay(tmp_path, "fast", events)
        assert enforcement._FOLDED, "no fold happened: the test proves nothing"
        enforcement._FOLDED.clear()
        with mock.patch.object(enforcement, "_FOLDED_MAX", 0):  # every kept base is dropped at once
            plain = _replay(tmp_path, "plain", events)
    assert fast[0] == plain[0]
    assert fast[1] == plain[1]
    assert any(orjson.loads(state).get("ledger_base") for _id, state in fast[1])


def test_signal_table_sees_a_signal_registered_after_it_was_built():
    registry = SignalRegistry()
    registry.register_fn("s.one", lambda ctx: 1, version=1, reads=("post_created",), type=int, description="one")
    event = parse_event({"id": "e1", "type": "post_created", "occurred_at": "2026-03-01T00:00:00Z", "actor": "u1",
                         "body": {"surface": "moments", "text": "hi"}})
    ctx = SignalContext(event, 0, None, None, {})
    assert SignalValues(registry, ctx)["s.one"] == 1
    registry.register_fn("s.two", lambda ctx: 2, version=1, reads=("share",), type=int, description="two")
    registry.register_fn("s.three", lambda ctx: 3, version=1, type=int, description="three")
    values = SignalValues(registry, ctx)
    assert (values["s.one"], values["s.two"], values["s.three"]) == (1, None, 3)  # s.two: not for posts
    try:
        values["s.unknown"]
    except KeyError as exc:
        assert "s.unknown" in str(exc)
    else:
        raise AssertionError("an unknown signal name must raise KeyError")


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["post", "share", "share_to_moments", "like", "follow"]),
                       st.tuples(st.integers(0, 20), st.one_of(st.none(), st.integers(0, 20)),
                                 st.one_of(st.none(), st.integers(0, 20))), max_size=4),
       st.integers(0, 20), st.lists(st.sampled_from(["post", "share", "share_to_moments", "like"]), max_size=3))
def test_restricted_from_agrees_with_the_restrictions_in_force(held, at, features):
    state = AccountState(account_id="acc", restrictions={
        f: {"since_ms": since, "until_ms": until, "lifted_ms": lifted, "source": "e", "rule": "r"}
        for f, (since, until, lifted) in held.items()})
    view = state.view(at)
    assert view.restricted_from(features) == any(f in view.restrictions for f in features)
