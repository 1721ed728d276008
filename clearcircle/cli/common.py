"""What the command modules share: consoles, the --db option, failing with a message, the store, times."""

from __future__ import annotations

import getpass
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from clearcircle.config import Settings
from clearcircle.store.repository import Store

console = Console()
err = Console(stderr=True)
DbOpt = Annotated[str | None, typer.Option("--db", help="database URL (default: sqlite:///clearcircle.db)")]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error (never parsed as Rich markup: it may hold user text) and return the exit to raise."""
    err.print(Text.assemble(("error:", "red"), " ", message), highlight=False)
    return typer.Exit(code)


def actor() -> str:
    """Who did it, for the audit trail of staff steps taken from the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in a bare container
        return "cli"


def open_store(db: str | None) -> Store:
    """The store at --db (default from settings), migrated; a failure is a message and exit 2."""
    try:
        store = Store(db or Settings().db_url)
        store.upgrade()
    except Exception as exc:
        raise fail(f"cannot open the store: {exc.__class__.__name__}: {exc}") from None
    return store


def when(ms: int | None) -> str:
    return "" if ms is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ms / 1000)) + "Z"
