"""`tasklight-server migrate`: create every index and bring older documents up to date.

Run once per deployment and upgrade, before the services start (`make run` and the tests do it
first; Kubernetes runs it as a Job): the services only check the schema, and refuse to start on
a database that is not migrated.
"""

from __future__ import annotations

from shared.settings import Settings
from shared.store import open_store


async def migrate(settings: Settings) -> list[str]:
    """Migrate the configured database; what was done, one line each (empty: nothing to do)."""
    store = open_store(settings)
    try:
        return await store.migrate()
    finally:
        await store.close()


def main() -> int:
    """Migrate the database the environment names; print what was done."""
    import asyncio

    done = asyncio.run(migrate(Settings()))
    print("\n".join(done) if done else "the database is up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
