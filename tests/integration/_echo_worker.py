"""A real worker on the stream runtime for tests/integration/test_runtime.py, run as a subprocess.

Copies every message on omboard.events whose value is JSON to omboard.notifications.sent and
dead-letters the rest; a value of ``{"raise": true}`` makes the whole handler raise, as a bug
would. Configured by OMBOARD_* variables plus ECHO_WEB_PORT and ECHO_APP_ID.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from schemas.topics import EVENTS, NOTIFICATIONS_SENT
from services.runtime.deadletter import dead_letter
from services.runtime.logs import configure_logging
from services.runtime.settings import Settings
from services.runtime.stream_app import StreamApp
from services.runtime.streams import Outgoing, Received

SERVICE = "notifier"
STARTED = time.monotonic()

app = StreamApp(SERVICE, Settings(), web_port=int(os.environ["ECHO_WEB_PORT"]), app_id=os.environ["ECHO_APP_ID"])


class Bug(Exception):
    """What the echo worker raises when asked to, as a bug in a handler would."""


def echo_or_dead_letter(received: Received) -> Outgoing:
    try:
        value = json.loads(received.value or b"")
    except ValueError as error:
        return dead_letter(SERVICE, received, f"value is not JSON: {error}")
    if value == {"raise": True}:
        raise Bug("asked to")
    return Outgoing(NOTIFICATIONS_SENT, received.key, received.value, received.headers)


@app.agent(EVENTS, name="echo")
async def echo(batch: list[Received]) -> list[Outgoing]:
    return [echo_or_dead_letter(received) for received in batch]


@app.on_assigned
async def announce(assigned) -> None:
    # The test waits for this line; it is also how long a group join takes.
    print(f"ASSIGNED {len(assigned)} partitions after {time.monotonic() - STARTED:.2f}s", flush=True)


if __name__ == "__main__":
    configure_logging("echo")
    asyncio.run(app.run())
