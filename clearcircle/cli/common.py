"""What the command modules share: consoles, the --db/--pack options, failing with a message, opening the
store or the whole service with every failure turned into a message, times."""

from __future__ import annotations

import getpass
import time
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from clearcircle.config import Settings
from clearcircle.policy.pack import PackError
from clearcircle.service import Service, open_service
from clearcircle.store.db import StoreError
from clearcircle.store.repository import Store

console = Console()
err = Console(stderr=True)
DbOpt = Annotated[str | None, typer.Option("--db", help="database URL (default: sqlite:///clearcircle.db)")]
PackOpt = Annotated[Path | None, typer.Option("--pack", help="policy pack folder (default: built-in)")]


def say(mark: tuple[str, str], message: str, to: Console | None = None) -> None:
    """Print a message that may hold user text (rule ids, file contents): never parsed as Rich markup."""
    (to or err).print(Text.assemble(mark, " ", message), highlight=False)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error and return the exit to raise."""
    say(("error:", "red"), message)
    return typer.Exit(code)


def environment_settings() -> Settings:
    """Settings from the environment; a bad CLEARCIRCLE_* value is a message naming it and exit 2."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"CLEARCIRCLE_{'_'.join(map(str, e['loc'])).upper()}={e.get('input')!r}: {e['msg']}"
                             for e in exc.errors())
        raise fail(f"bad setting in the environment: {problems}") from None


def settings_for(db: str | None = None, pack: Path | None = None) -> Settings:
    """Settings from the environment, with --db and --pack on top."""
    settings = environment_settings()
    if db:
        settings.db_url = db
    if pack:
        settings.pack = pack
    return settings


def open_service_or_fail(settings: Settings) -> Service:
    """open_service, with every way it can fail turned into a message and exit code 2."""
    try:
        return open_service(settings)
    except PackError as exc:
        raise fail(f"invalid policy pack:\n{exc}") from None
    except (StoreError, OSError) as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # driver errors (unreachable server, bad credentials)
        raise fail(f"cannot open the store: {exc.__class__.__name__}: {exc}") from None


def service_for(db: str | None, pack: Path | None = None) -> Service:
    """The whole service (store migrated, pack loaded, pipeline) for a command."""
    return open_service_or_fail(settings_for(db, pack))


def actor() -> str:
    """Who did it, for the audit trail of staff steps taken from the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in a bare container
        return "cli"


def open_store(db: str | None) -> Store:
    """The store at --db (default from settings), migrated; a failure is a message and exit 2."""
    url = db or environment_settings().db_url
    try:
        store = Store(url)
        store.upgrade()
    except Exception as exc:
        raise fail(f"cannot open the store: {exc.__class__.__name__}: {exc}") from None
    return store


def when(ms: int | None) -> str:
    return "" if ms is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ms / 1000)) + "Z"
