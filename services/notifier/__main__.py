"""`python -m services.notifier`: serve WebSocket push until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from services.notifier.app import Notifier
from shared.logs import setup_logging
from shared.settings import Settings


async def serve(settings: Settings) -> None:
    """Run one notifier until a stop signal arrives; then close connections with 1001."""
    notifier = Notifier(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await notifier.start()
    try:
        await stop.wait()
    finally:
        await notifier.stop()


def main() -> None:
    """Entry point."""
    setup_logging("notifier")
    # One line per connection opened and closed is noise at thousands of connections.
    logging.getLogger("websockets.server").setLevel(logging.WARNING)
    asyncio.run(serve(Settings()))


if __name__ == "__main__":
    main()
