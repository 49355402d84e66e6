"""The runtime's produce path without a broker: a refused batch waits and is produced again, and
readiness says why meanwhile; records are measured before they are produced."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, NotLeaderForPartitionError

from schemas.wire import MAX_RECORD_BYTES
from services.runtime.streams import Outgoing, RecordTooLarge, check_fits, send_all, stalled


@dataclass
class RefusingProducer:
    """Refuses the first ``failures`` sends with a Kafka error, then delivers."""

    failures: list[Exception]
    delivered: list[Outgoing] = field(default_factory=list)

    async def send(self, topic: str, value: bytes, key: bytes, partition: Any, timestamp: Any, headers: list | None) -> Any:
        if self.failures:
            raise self.failures.pop(0)
        self.delivered.append(Outgoing(topic, key, value, tuple(headers or ()), partition))
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        done.set_result(f"{topic}@{len(self.delivered)}")
        return done


@dataclass(eq=False)  # hashable by identity, like a StreamApp
class FakeApp:
    producer: RefusingProducer
    id: str = "omboard-test"


def test_a_refused_batch_waits_and_is_produced_again_while_readiness_says_why():
    app = FakeApp(RefusingProducer([NotLeaderForPartitionError(), KafkaTimeoutError()]))
    waits: list[float] = []
    seen_while_waiting: list[str | None] = []

    async def sleep(seconds: float) -> None:  # injected: no real waiting
        waits.append(seconds)
        seen_while_waiting.append(stalled(app))

    message = Outgoing("omboard.tasks.siebel", b"p1", b"{}")
    delivered = asyncio.run(send_all(app, [message], sleep=sleep))  # type: ignore[arg-type]

    assert delivered == ["omboard.tasks.siebel@1"]
    assert app.producer.delivered == [message]
    assert waits == [0.5, 1.0], "back-off doubles"
    assert all(reason and "cannot produce 1 message(s) to omboard.tasks.siebel" in reason for reason in seen_while_waiting)
    assert stalled(app) is None, "readiness is clear once the batch is taken"


def test_a_record_too_large_is_named_before_it_reaches_the_producer():
    with pytest.raises(RecordTooLarge, match="the ledger of provider p1 would be a record of"):
        check_fits("the ledger of provider p1", b"p1", b"x" * MAX_RECORD_BYTES)
    assert check_fits("a small one", b"p1", b"x" * 1000) == b"x" * 1000
    with pytest.raises(RecordTooLarge, match="a message to omboard.notifications"):
        Outgoing("omboard.notifications", b"p1", b"y" * MAX_RECORD_BYTES).checked()
