"""`clearcircle campaigns ...`: campaign overlays (S12) from files, without a deploy or a restart.

`load FILE` validates a YAML campaign against the pack (every problem with its field path, exit 1) and
creates it, or changes the campaign of that name; a running server picks it up at its next batch. Exit codes:
1 invalid or not allowed, 2 bad input or an unusable store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.table import Table
from rich.text import Text

from clearcircle.cli.common import DbOpt, actor, console, environment_settings, err, fail, open_store, when
from clearcircle.policy.campaigns import CampaignError, campaign_status, parse_campaign
from clearcircle.policy.pack import PackError, builtin_pack_path, load_pack
from clearcircle.signals.registry import load_builtin_signals
from clearcircle.store.repository import CampaignConflict, now_ms

campaigns_app = typer.Typer(help="Campaign overlays (S12): time-boxed stricter policy.", no_args_is_help=True)
PackOpt = Annotated[Path | None, typer.Option("--pack", help="policy pack to validate against (default: built-in)")]


@campaigns_app.command("load")
def load_cmd(file: Annotated[Path, typer.Argument(metavar="CAMPAIGN.yaml")], db: DbOpt = None,
             pack: PackOpt = None) -> None:
    """Create a campaign from a YAML file, or change the campaign of that name."""
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise fail(f"{file}: not valid YAML: {exc}") from None
    try:
        loaded = load_pack(pack or environment_settings().pack or builtin_pack_path())
    except PackError as exc:
        raise fail(f"invalid policy pack:\n{exc}") from None
    try:
        spec = parse_campaign(data, loaded, load_builtin_signals())
    except CampaignError as exc:
        for problem in exc.problems:
            err.print(Text.assemble(("✗", "red"), f" {file}: {problem['field']}: {problem['message']}"),
                      highlight=False)
        raise typer.Exit(1) from None
    store = open_store(db)
    try:
        campaign, change = store.campaign_save(spec.wire(), spec.starts_ms, spec.ends_ms, actor())
    except CampaignConflict as exc:
        raise fail(str(exc), 1) from None
    finally:
        store.close()
    console.print(Text.assemble(("✓", "green"), f" campaign {spec.name} {change} (revision {campaign['revision']}, "
                                               f"{campaign_status(campaign, now_ms())})"), highlight=False)


@campaigns_app.command("list")
def list_cmd(db: DbOpt = None) -> None:
    """Every campaign with its window and status now."""
    store = open_store(db)
    try:
        campaigns = store.campaign_list()
    finally:
        store.close()
    at = now_ms()
    table = Table(title=f"{len(campaigns)} campaign(s)")
    for col in ("name", "status", "starts", "ends", "ended", "revision", "overrides"):
        table.add_column(col, no_wrap=col in ("name", "status"))
    for c in campaigns:
        table.add_row(Text(c["name"]), campaign_status(c, at), when(c["starts_ms"]), when(c["ends_ms"]),
                      when(c["ended_ms"]), str(c["revision"]), Text(", ".join(c["spec"]["overrides"])))
    console.print(table)


@campaigns_app.command("show")
def show_cmd(name: str, db: DbOpt = None) -> None:
    """One campaign as stored (YAML) and its history. Exit 1 if there is none."""
    store = open_store(db)
    try:
        campaign = store.campaign(name)
        history = store.campaign_history(name) if campaign else []
    finally:
        store.close()
    if campaign is None:
        raise fail(f"no campaign {name!r}", 1)
    console.print(Text(f"status: {campaign_status(campaign, now_ms())}, revision {campaign['revision']}"),
                  highlight=False)
    console.print(Text(yaml.safe_dump(campaign["spec"], allow_unicode=True, sort_keys=False)), highlight=False)
    table = Table(title="history")
    for col in ("when", "change", "revision", "by"):
        table.add_column(col)
    for h in history:
        table.add_row(when(h["at_ms"]), h["change"], str(h["revision"]), Text(h["by"]))
    console.print(table)


@campaigns_app.command("end")
def end_cmd(name: str, db: DbOpt = None) -> None:
    """End a campaign now (events stamped from now on are decided without it)."""
    store = open_store(db)
    try:
        _campaign, ended = store.campaign_end(name, actor())
    except CampaignConflict as exc:
        raise fail(str(exc), 1) from None
    finally:
        store.close()
    console.print(Text.assemble(("✓", "green"), f" campaign {name} " + ("ended" if ended else "was already ended")),
                  highlight=False)
