"""Wiring the core from settings: the one way the faces (API, CLI) get a store, a pack and a pipeline."""

from __future__ import annotations

from dataclasses import dataclass

from clearcircle.config import Settings, identifier_key
from clearcircle.pipeline import Pipeline
from clearcircle.policy.pack import Pack, builtin_pack_path, load_pack
from clearcircle.store.repository import PublishedPacks, Store


@dataclass
class Service:
    settings: Settings
    store: Store
    pipeline: Pipeline

    @property
    def pack(self) -> Pack:
        """The pack in force: the newest published one (policy.published), else the one given at start. Asked
        of the store each time (one indexed row), so every worker's reads show what its next batch decides with."""
        with self.store.reads.connect() as conn:
            return self.pipeline.packs.refresh(PublishedPacks(conn))

    def close(self) -> None:
        self.store.close()


def open_service(settings: Settings | None = None, *, migrate: bool = True) -> Service:
    """Open the store (migrating it unless told not to), load the pack, build the pipeline."""
    settings = settings or Settings()
    store = Store(settings.db_url, redis_url=settings.redis_url)
    if migrate:
        store.upgrade()
    else:
        store.check()
    pack = load_pack(settings.pack or builtin_pack_path())
    service = Service(settings, store, Pipeline(store, pack, identifier_key(settings)))
    service.pipeline.pack = service.pack  # a published pack, if any, is in force from the start
    return service
