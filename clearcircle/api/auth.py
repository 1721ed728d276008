"""API keys and roles: every route names the roles it admits; no key is 401, a wrong role 403.

Roles are least-privileged: an integrator (the platform backend) sends events and reads decisions; a
moderator reads accounts and cases; an admin manages the policy pack, audit and keys; compliance staff run the
merchant registry (file applications, verify, reject, revoke: S10) and, with admins, campaign overlays (S12),
and read the policy and decisions those touch.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader

_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key from `clearcircle keys create`")


def require(*roles: str) -> Callable[..., str]:
    """A dependency admitting only keys of the given roles; returns the caller's role."""
    allowed = frozenset(roles)

    async def check(request: Request, key: str | None = Depends(_KEY_HEADER)) -> str:
        if not key:
            raise HTTPException(401, "missing API key: send it in the X-API-Key header",
                                headers={"WWW-Authenticate": "ApiKey"})
        store = request.app.state.service.store
        # a local SQLite look-up is cheaper than a hop to a worker thread; a network round trip is not
        role = store.key_role(key) if store.blocking_reads_are_cheap else await run_in_threadpool(store.key_role, key)
        if role is None:
            raise HTTPException(401, "unknown or revoked API key", headers={"WWW-Authenticate": "ApiKey"})
        if role not in allowed:
            raise HTTPException(403, f"role {role!r} may not do this; allowed: {', '.join(sorted(allowed))}")
        return role

    check.allowed_roles = allowed  # type: ignore[attr-defined]  # read by the route-role test
    return check
