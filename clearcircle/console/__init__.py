"""The moderator console (issue 6 point 6): server-rendered pages in the API's own process, at /console.

    mount(app, service)        serve it from a FastAPI app (api.app.create_app calls this)
    build_console(service)     the console as its own ASGI app (what mount mounts)
    page_roles(console)        (method, path) -> roles a page admits, read off the routes themselves

Pages are Jinja2 templates (templates/) with htmx (static/, vendored: no CDN, no front-end build). Login takes an
API key and keeps a signed session cookie (console.session); every page names the roles it admits. Reads and
steps call the core: clearcircle.review (queue, cases, appeals, rule statistics, transparency reports), the store
(accounts, merchants, campaigns).
"""

from __future__ import annotations

from clearcircle.console.app import build_console, mount, page_roles

__all__ = ["build_console", "mount", "page_roles"]
