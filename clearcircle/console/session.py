"""Console login: an API key in a form becomes a signed session cookie; every page names the roles it admits.

The cookie (starlette's SessionMiddleware: itsdangerous-signed, HttpOnly, SameSite=Strict, path /console) holds
the key's id and role, never the key itself, and every request re-checks that the key is still active with that
role, so revoking a key (`clearcircle keys revoke`) ends its console sessions at once. POST forms carry a
per-session CSRF token (a hidden field, or the X-CSRF-Token header htmx sends).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

from clearcircle.store.repository import Store

COOKIE = "cc_console"
SESSION_SECONDS = 8 * 3600  # one shift
CONSOLE_ROLES = frozenset({"moderator", "admin", "compliance"})  # an integrator key cannot log in
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Staff:
    """The logged-in person: their key's id, name and role."""

    key_id: str
    name: str
    role: str

    @property
    def actor(self) -> str:
        """How the console names this person in cases, audits and histories."""
        return f"console:{self.name[:80]}#{self.key_id}"


class LoginRequired(Exception):
    """No valid session: the page answers with a redirect to the login form."""


class Forbidden(Exception):
    """A logged-in role this page does not admit (HTTP 403)."""

    def __init__(self, role: str, allowed: frozenset[str]) -> None:
        self.role, self.allowed = role, allowed
        super().__init__(f"role {role!r} may not open this page; allowed: {', '.join(sorted(allowed))}")


class CsrfError(Exception):
    """A POST without the session's CSRF token (HTTP 403)."""


def session_secret(hash_key: bytes) -> str:
    """The cookie-signing secret, derived from the service's own secret so every worker and restart agrees
    without a new setting, and distinct from it so a cookie never reveals anything about identifier hashing."""
    return hmac.new(hash_key, b"clearcircle console session v1", hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (the login form gets one before anyone logs in)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return token


def key_id_of(secret: str) -> str | None:
    """The id part of a key as `Store.create_key` makes them (cc_<id>_<secret>)."""
    parts = secret.split("_", 2)
    return parts[1] if len(parts) == 3 and parts[0] == "cc" and parts[1] else None


def log_in(request: Request, store: Store, secret: str) -> Staff:
    """Check the key and start a fresh session for it. Raises Forbidden for a role the console does not admit
    and LoginRequired for an unknown or revoked key."""
    role = store.key_role(secret) if secret else None
    key_id = key_id_of(secret) if role else None
    key = next((k for k in store.list_keys() if k.id == key_id and k.revoked_ms is None), None) if key_id else None
    if role is None or key is None or key.role != role:
        raise LoginRequired("unknown or revoked API key")
    if role not in CONSOLE_ROLES:
        raise Forbidden(role, CONSOLE_ROLES)
    request.session.clear()  # a new session id and CSRF token at each login (no session fixation)
    request.session.update({"key_id": key.id, "role": role, "name": key.name, "csrf": secrets.token_urlsafe(24)})
    return Staff(key.id, key.name, role)


def current(request: Request, store: Store) -> Staff | None:
    """The session's person if their key is still active with the same role, else None (and the session ends)."""
    key_id, role = request.session.get("key_id"), request.session.get("role")
    if not key_id or not role:
        return None
    key = next((k for k in store.list_keys() if k.id == key_id), None)
    if key is None or key.revoked_ms is not None or key.role != role or role not in CONSOLE_ROLES:
        request.session.clear()
        return None
    return Staff(key.id, key.name, role)


def staff(*roles: str) -> Callable[[Request], Awaitable[Staff]]:
    """A dependency admitting a logged-in person of one of `roles`; POSTs must also carry the CSRF token.

    Like api.auth.require, it carries `allowed_roles`, so the console's role table can be read off the routes.
    """
    allowed = frozenset(roles)

    async def check(request: Request) -> Staff:
        person = current(request, request.app.state.service.store)
        if person is None:
            raise LoginRequired("log in first")
        if person.role not in allowed:
            raise Forbidden(person.role, allowed)
        if request.method == "POST":
            await check_csrf(request)
        return person

    check.allowed_roles = allowed  # type: ignore[attr-defined]
    return check


async def check_csrf(request: Request) -> None:
    """The form field or header must equal the session's token (constant-time compare)."""
    expected = request.session.get("csrf")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()  # starlette caches it: the route's Form fields read the same parse
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not expected or not sent or not hmac.compare_digest(expected, sent):
        raise CsrfError("missing or stale form token: reload the page and try again")
