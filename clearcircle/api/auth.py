"""API keys and roles: every route names the roles it admits; no key is 401, a wrong role 403.

Roles are least-privileged: an integrator (the platform backend) sends events and reads decisions; a
moderator reads accounts and cases; an admin manages the policy pack, audit and keys; compliance staff run the
merchant registry (file applications, verify, reject, revoke: S10) and, with admins, campaign overlays (S12),
and read the policy and decisions those touch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader

if TYPE_CHECKING:
    from clearcircle.store.repository import Store

_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key from `clearcircle keys create`")


def refusal(role: str | None, allowed: frozenset[str]) -> HTTPException | None:
    """The 401 (unknown or revoked key: `role` None) or 403 (a role not among `allowed`), or None: admitted."""
    if role is None:
        return HTTPException(401, "unknown or revoked API key", headers={"WWW-Authenticate": "ApiKey"})
    if role not in allowed:
        return HTTPException(403, f"role {role!r} may not do this; allowed: {', '.join(sorted(allowed))}")
    return None


async def role_of(store: Store, key: str) -> str | None:
    """The key's role (None: unknown or revoked), looked up on every request. A local SQLite look-up is cheaper
    than a hop to a worker thread; a network round trip is not."""
    return store.key_role(key) if store.blocking_reads_are_cheap else await run_in_threadpool(store.key_role, key)


def require(*roles: str) -> Callable[..., str]:
    """A dependency admitting only keys of the given roles; returns the caller's role."""
    allowed = frozenset(roles)

    async def check(request: Request, key: str | None = Depends(_KEY_HEADER)) -> str:
        if not key:
            raise HTTPException(401, "missing API key: send it in the X-API-Key header",
                                headers={"WWW-Authenticate": "ApiKey"})
        role = await role_of(request.app.state.service.store, key)
        if (refused := refusal(role, allowed)) is not None:
            raise refused
        return role

    check.allowed_roles = allowed  # type: ignore[attr-defined]  # read by the route-role test
    return check
