"""Registry look-ups on hashed identifiers: is this account linked to banned ones (ban evasion, S13)?"""

from __future__ import annotations

from clearcircle.signals.context import SignalContext
from clearcircle.signals.registry import REGISTRY


def _linked_banned(ctx: SignalContext) -> list[str]:
    if "_linked_banned" not in ctx.memo:
        banned = sorted({
            other for _kind, other in ctx.lookups.linked_accounts(ctx.event.actor)
            if ctx.lookups.account(other, ctx.at_ms).banned
        })
        ctx.memo["_linked_banned"] = banned
    return ctx.memo["_linked_banned"]


@REGISTRY.signal("identity.banned_links", version=1, type=int,
                 description="banned accounts sharing a device, phone, payment or identity hash with the actor")
def _banned_links(ctx: SignalContext) -> int:
    return len(_linked_banned(ctx))


@REGISTRY.signal("identity.linked_accounts", version=1, type=int,
                 description="other accounts sharing any identifier hash with the actor")
def _linked(ctx: SignalContext) -> int:
    return len({other for _kind, other in ctx.lookups.linked_accounts(ctx.event.actor)})
