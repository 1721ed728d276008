"""Transparency reports (S11): what was done in a calendar month, by violation category and account type.

"93 public and 233 personal accounts banned in March" is one cell of this report. For a month (in the pack's
time zone), from the stored decisions of events that occurred in it:

- actions: each measure applied (label, limit_reach, restrict, suspend, ban) and each removal of content
  (verdict `remove`), counted by the violation category of the rule that caused it (a strike-ladder step
  counts under `strike_ladder`, a moderator's own action under `moderator`), by account type (public =
  subscription or service account, personal, or unknown) and by action; plus the distinct accounts;
- appeals of the month's actions (however late they were filed), decided, upheld and overturned, and
  reversals (those appeals and the month's cases overturned);
- time to action: from the event's occurrence to the decision that acted (median and 90th percentile), and
  for moderator-decided cases from the event to the decision.

Writes `actions.csv`, `summary.csv`, `report.html` and one PNG per chart (matplotlib, Agg backend).
"""

from __future__ import annotations

import base64
import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, select_autoescape
from sqlalchemy import and_, func, select

from clearcircle.policy.pack import Pack
from clearcircle.review.errors import ReviewError
from clearcircle.signals.counters import calendar_window
from clearcircle.store import tables as t
from clearcircle.store.repository import Store

MEASURES = ("label", "limit_reach", "restrict", "suspend", "ban")
ACTIONS = (*MEASURES, "remove")
PUBLIC_TYPES = frozenset({"subscription", "service"})
_PAGE = 5000


def account_kind(account_type: str | None) -> str:
    """public (subscription / service account), personal, or unknown (never registered with us)."""
    if account_type in PUBLIC_TYPES:
        return "public"
    return "personal" if account_type == "personal" else "unknown"


def month_window(month: str, pack: Pack) -> tuple[int, int]:
    """[start, end) in ms of the month "YYYY-MM" in the pack's time zone."""
    try:
        first = datetime.strptime(month, "%Y-%m").replace(day=15, tzinfo=pack.settings.zone)
    except ValueError:
        raise ReviewError(f"month: {month!r} is not YYYY-MM") from None
    return calendar_window(int(first.timestamp() * 1000), pack.settings.zone, "month")


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class TransparencyReport:
    month: str
    start_ms: int
    end_ms: int
    pack_name: str
    # (category, account kind, action) -> count
    actions: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    # (account kind, action) -> distinct accounts
    accounts: dict[tuple[str, str], int] = field(default_factory=dict)
    appeals: dict[str, int] = field(default_factory=dict)
    reversals: int = 0
    cases: dict[str, int] = field(default_factory=dict)
    time_to_action_ms: dict[str, float | None] = field(default_factory=dict)
    time_to_review_ms: dict[str, float | None] = field(default_factory=dict)
    decisions: int = 0

    # -- views ----------------------------------------------------------------------------------------
    def by(self, index: int) -> dict[str, int]:
        """Counts of actions by one key: 0 category, 1 account kind, 2 action."""
        out: Counter[str] = Counter()
        for key, n in self.actions.items():
            out[key[index]] += n
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "month": self.month, "start_ms": self.start_ms, "end_ms": self.end_ms, "pack": self.pack_name,
            "decisions": self.decisions,
            "actions": [{"category": c, "account_type": k, "action": a, "count": n}
                        for (c, k, a), n in sorted(self.actions.items())],
            "by_category": self.by(0), "by_account_type": self.by(1), "by_action": self.by(2),
            "accounts": [{"account_type": k, "action": a, "accounts": n}
                         for (k, a), n in sorted(self.accounts.items())],
            "appeals": self.appeals, "reversals": self.reversals, "cases": self.cases,
            "time_to_action_ms": self.time_to_action_ms, "time_to_review_ms": self.time_to_review_ms,
        }

    def summary_rows(self) -> list[tuple[str, str]]:
        rows = [("month", self.month), ("decisions", str(self.decisions))]
        rows += [(f"accounts_{k}_{a}", str(n)) for (k, a), n in sorted(self.accounts.items())]
        rows += [(f"appeals_{k}", str(v)) for k, v in self.appeals.items()]
        rows += [("reversals", str(self.reversals))]
        rows += [(f"cases_{k}", str(v)) for k, v in self.cases.items()]
        for name, figures in (("time_to_action", self.time_to_action_ms), ("time_to_review", self.time_to_review_ms)):
            rows += [(f"{name}_{k}" if k == "count" else f"{name}_{k}_ms", "" if v is None else f"{v:.0f}")
                     for k, v in figures.items()]
        return rows

    # -- outputs --------------------------------------------------------------------------------------
    def actions_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["category", "account_type", "action", "count"])
        for (category, kind, action), n in sorted(self.actions.items()):
            writer.writerow([category, kind, action, n])
        return buf.getvalue()

    def summary_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["figure", "value"])
        writer.writerows(self.summary_rows())
        return buf.getvalue()

    def charts(self) -> dict[str, bytes]:
        """name -> PNG: actions by category, by account type and action (stacked), appeals."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        def png(fig: Figure) -> bytes:
            buf = io.BytesIO()
            fig.tight_layout()
            fig.savefig(buf, format="png", dpi=100)
            return buf.getvalue()

        out: dict[str, bytes] = {}
        by_category = self.by(0)
        fig = Figure(figsize=(7, 3.5))
        ax = fig.subplots()
        ax.barh(list(by_category) or ["(none)"], list(by_category.values()) or [0], color="#4c72b0")
        ax.set_xlabel("actions")
        ax.set_title(f"Actions by violation category, {self.month}")
        out["actions_by_category"] = png(fig)

        kinds = ["public", "personal", "unknown"]
        fig = Figure(figsize=(7, 3.5))
        ax = fig.subplots()
        bottom = [0] * len(ACTIONS)
        for kind, colour in zip(kinds, ("#dd8452", "#55a868", "#8c8c8c"), strict=True):
            values = [sum(n for (_c, k, a), n in self.actions.items() if k == kind and a == action)
                      for action in ACTIONS]
            ax.bar(ACTIONS, values, bottom=bottom, label=kind, color=colour)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_ylabel("actions")
        ax.set_title(f"Actions by account type, {self.month}")
        ax.legend()
        out["actions_by_account_type"] = png(fig)

        fig = Figure(figsize=(7, 3))
        ax = fig.subplots()
        names = ["filed", "upheld", "overturned", "open"]
        ax.bar(names, [self.appeals.get(n, 0) for n in names], color="#c44e52")
        ax.set_title(f"Appeals, {self.month}")
        out["appeals"] = png(fig)
        return out

    def html(self, chart_urls: dict[str, str] | None = None) -> str:
        """The report as one HTML page; charts inline (data: URLs) unless `chart_urls` gives their addresses."""
        if chart_urls is None:
            chart_urls = {name: "data:image/png;base64," + base64.b64encode(data).decode()
                          for name, data in self.charts().items()}
        return _TEMPLATE.render(r=self, d=self.to_dict(), charts=chart_urls, hours=_hours)

    def write(self, out_dir: Path) -> list[Path]:
        """actions.csv, summary.csv, one PNG per chart and report.html (which links the PNGs)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in (("actions.csv", self.actions_csv()), ("summary.csv", self.summary_csv())):
            (out_dir / name).write_text(text, encoding="utf-8")
            written.append(out_dir / name)
        urls = {}
        for name, data in self.charts().items():
            (out_dir / f"{name}.png").write_bytes(data)
            written.append(out_dir / f"{name}.png")
            urls[name] = f"{name}.png"
        (out_dir / "report.html").write_text(self.html(urls), encoding="utf-8")
        written.append(out_dir / "report.html")
        return written


def _hours(ms: float | None) -> str:
    if ms is None:
        return "–"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 3_600_000:
        return f"{ms / 1000:.1f} s" if ms < 60_000 else f"{ms / 60_000:.1f} min"
    return f"{ms / 3_600_000:.1f} h"


def _category(rule: str, categories: dict[str, str]) -> str:
    if rule.startswith("strike-ladder"):
        return "strike_ladder"
    if rule == "moderator":
        return "moderator"
    return categories.get(rule, "other")


def transparency_report(store: Store, pack: Pack, month: str) -> TransparencyReport:
    """The month's figures from the store (read only); categories come from the pack's rules."""
    start, end = month_window(month, pack)
    report = TransparencyReport(month=month, start_ms=start, end_ms=end, pack_name=pack.name)
    categories = {r.id: r.spec.category for r in pack.rules}
    per_account: dict[tuple[str, str], set[str]] = {}
    latencies: list[float] = []
    touched: set[str] = set()
    rows_all: list[Any] = []
    d = t.decisions.c
    last = ""
    while True:
        with store.reads.connect() as conn:
            rows = conn.execute(select(d.event_id, d.verdict, d.subject, d.occurred_ms, d.decided_ms, d.payload)
                                .where(d.occurred_ms >= start, d.occurred_ms < end, d.event_id > last)
                                .order_by(d.event_id).limit(_PAGE)).all()
        if not rows:
            break
        last = rows[-1].event_id
        report.decisions += len(rows)
        for r in rows:
            payload = orjson.loads(r.payload)
            acted = [a for a in payload.get("actions", []) if a["action"] in MEASURES]
            removal = r.verdict == "remove"
            if acted or removal:
                latencies.append(max(0, r.decided_ms - r.occurred_ms))
                touched.update(a["account"] for a in acted)
                if removal:
                    touched.add(r.subject)
                rows_all.append((r, payload, acted, removal))
    types = _account_types(store, touched)
    for r, payload, acted, removal in rows_all:
        for a in acted:
            kind = account_kind(types.get(a["account"]))
            report.actions[(_category(a["rule"], categories), kind, a["action"])] += 1
            per_account.setdefault((kind, a["action"]), set()).add(a["account"])
        if removal:
            rule = next((x for x in payload.get("rules", []) if _rule_action(pack, x) == "remove"),
                        (payload.get("rules") or ["moderator"])[0])
            kind = account_kind(types.get(r.subject))
            report.actions[(_category(rule, categories), kind, "remove")] += 1
            per_account.setdefault((kind, "remove"), set()).add(r.subject)
    report.accounts = {k: len(v) for k, v in sorted(per_account.items())}
    report.time_to_action_ms = {"median": percentile(latencies, 0.5), "p90": percentile(latencies, 0.9),
                                "count": float(len(latencies))}
    _appeals_and_cases(store, report, start, end)
    return report


def _rule_action(pack: Pack, rule_id: str) -> str | None:
    try:
        return pack.rule(rule_id).action.type
    except KeyError:
        return None


def _account_types(store: Store, accounts: set[str]) -> dict[str, str | None]:
    ids = sorted(accounts)
    out: dict[str, str | None] = {}
    with store.reads.connect() as conn:
        for i in range(0, len(ids), 500):
            for r in conn.execute(select(t.accounts.c.id, t.accounts.c.account_type)
                                  .where(t.accounts.c.id.in_(ids[i:i + 500]))):
                out[r.id] = r.account_type
    return out


def _appeals_and_cases(store: Store, report: TransparencyReport, start: int, end: int) -> None:
    a, c, d = t.appeals.c, t.cases.c, t.decisions.c
    with store.reads.connect() as conn:
        # appeals of the month's actions (by when the appealed event occurred), however late they were filed
        filed = dict(conn.execute(select(a.status, func.count()).select_from(
            t.appeals.join(t.decisions, d.event_id == a.event_id)).where(
            d.occurred_ms >= start, d.occurred_ms < end).group_by(a.status)).all())
        decided_cases = conn.execute(select(c.status, c.created_ms, c.decided_ms).where(
            and_(c.decided_ms.is_not(None), c.created_ms >= start, c.created_ms < end))).all()
        opened = dict(conn.execute(select(c.source, func.count()).where(c.created_ms >= start, c.created_ms < end)
                                   .group_by(c.source)).all())
    report.appeals = {"filed": sum(filed.values()), "open": filed.get("open", 0), "upheld": filed.get("upheld", 0),
                      "overturned": filed.get("overturned", 0)}
    report.appeals["decided"] = report.appeals["upheld"] + report.appeals["overturned"]
    overturned_cases = sum(1 for r in decided_cases if r.status == "overturned")
    report.reversals = report.appeals["overturned"] + overturned_cases
    report.cases = {**{f"opened_{k}": v for k, v in sorted(opened.items())},
                    "upheld": sum(1 for r in decided_cases if r.status == "upheld"), "overturned": overturned_cases}
    waits = [max(0, r.decided_ms - r.created_ms) for r in decided_cases if r.status in ("upheld", "overturned")]
    report.time_to_review_ms = {"median": percentile(waits, 0.5), "p90": percentile(waits, 0.9),
                                "count": float(len(waits))}


_TEMPLATE = Environment(autoescape=select_autoescape(default=True, default_for_string=True)).from_string("""\
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Transparency report {{ r.month }}</title>
<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}img{max-width:100%}</style></head>
<body>
<h1>Transparency report: {{ r.month }}</h1>
<p>Policy pack <code>{{ r.pack_name }}</code>. Events that occurred in the month: {{ r.decisions }} decided.</p>
<h2>Accounts acted on, by account type</h2>
<table><tr><th>action</th><th>public</th><th>personal</th><th>unknown</th></tr>
{% for action in ["ban", "suspend", "restrict", "limit_reach", "label", "remove"] %}
<tr><td>{{ action }}</td>{% for kind in ["public", "personal", "unknown"] %}
<td>{{ r.accounts.get((kind, action), 0) }}</td>{% endfor %}</tr>{% endfor %}
</table>
<h2>Actions by violation category</h2>
<img src="{{ charts.actions_by_category }}" alt="actions by violation category">
<table><tr><th>category</th><th>actions</th></tr>
{% for name, n in d.by_category.items() %}<tr><td>{{ name }}</td><td>{{ n }}</td></tr>{% endfor %}
</table>
<h2>Actions by account type and action</h2>
<img src="{{ charts.actions_by_account_type }}" alt="actions by account type">
<h2>Appeals and reversals</h2>
<img src="{{ charts.appeals }}" alt="appeals">
<table><tr><th>figure</th><th>count</th></tr>
{% for k, v in d.appeals.items() %}<tr><td>appeals {{ k }}</td><td>{{ v }}</td></tr>{% endfor %}
<tr><td>reversals (appeals and cases overturned)</td><td>{{ r.reversals }}</td></tr>
{% for k, v in d.cases.items() %}<tr><td>cases {{ k }}</td><td>{{ v }}</td></tr>{% endfor %}
</table>
<h2>Time to action</h2>
<table><tr><th></th><th>median</th><th>90th percentile</th><th>n</th></tr>
<tr><td>automatic (event to decision)</td><td>{{ hours(d.time_to_action_ms.median) }}</td>
<td>{{ hours(d.time_to_action_ms.p90) }}</td><td>{{ d.time_to_action_ms.count|int }}</td></tr>
<tr><td>reviewed (event to moderator decision)</td><td>{{ hours(d.time_to_review_ms.median) }}</td>
<td>{{ hours(d.time_to_review_ms.p90) }}</td><td>{{ d.time_to_review_ms.count|int }}</td></tr>
</table>
</body></html>
""")
