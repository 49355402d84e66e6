"""Reading topics in tests, waiting with bounded retries: the one reader every test uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

from tests.support.wait import eventually


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes | None]


class TopicReader:
    """Accumulates every record of some topics (no consumer group, no commits): from their start,
    or with ``from_end`` from where they end when it is made (what a test publishes after)."""

    def __init__(self, bootstrap: str, *topics: str, from_end: bool = False):
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                       allow_auto_create_topics=False)
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in sorted(self._consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            raise RuntimeError(f"none of {topics} exists")
        self._consumer.assign(partitions)
        if from_end:
            self._consumer.seek_to_end(*partitions)
            for partition in partitions:
                self._consumer.position(partition)  # taken now, not at the first poll
        else:
            self._consumer.seek_to_beginning(*partitions)
        self.records: list[Record] = []

    def poll(self) -> list[Record]:
        fresh = []
        for batch in self._consumer.poll(timeout_ms=200).values():
            for message in batch:
                fresh.append(Record(message.topic, message.partition, message.offset, message.key, message.value,
                                    dict(message.headers or [])))
        self.records += fresh
        return fresh

    def wait_for(self, condition: Callable[[list[Record]], bool], timeout: float = 30.0, what: str = "records") -> list[Record]:
        def read_until_it_holds() -> bool:
            return condition(self.records) or (bool(self.poll()) and condition(self.records))

        eventually(read_until_it_holds, what, timeout, interval=0, explain=lambda: f"have {len(self.records)} records")
        return self.records

    def read_all(self, timeout: float = 30.0) -> list[Record]:
        """Every record up to the end offsets as they are now."""
        ends = self._consumer.end_offsets(list(self._consumer.assignment()))
        total = sum(ends.values())  # every topic here starts at offset 0: nothing is deleted in a test
        return self.wait_for(lambda records: len(records) >= total, timeout, what=f"{total} records")

    def end_offsets(self) -> dict[int, int]:
        """Partition -> the offset after its last record (for a reader of one topic)."""
        ends = self._consumer.end_offsets(list(self._consumer.assignment()))
        return {tp.partition: offset for tp, offset in ends.items()}

    def close(self) -> None:
        self._consumer.close()


def committed_offset(bootstrap: str, group: str, topic: str, partition: int) -> int | None:
    """Where a consumer group has committed on one partition (OffsetFetch; joins no group)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, partition))
    finally:
        consumer.close()


def wait_committed_past(bootstrap: str, group: str, topic: str, partition: int, offset: int, timeout: float = 30.0) -> None:
    eventually(lambda: (committed_offset(bootstrap, group, topic, partition) or 0) > offset,
               f"{group} to commit past {topic}[{partition}]@{offset}", timeout, interval=0.2)


class Topics:
    """A TopicReader per topic, opened on first use: find what a test expects on any topic."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self._readers: dict[str, TopicReader] = {}

    def find_all(self, topic: str, match: Callable[[Record], bool], count: int, timeout: float = 30.0) -> list[Record]:
        """The first ``count`` matching records, in the order they were read."""
        reader = self._readers.get(topic) or self._readers.setdefault(topic, TopicReader(self.bootstrap, topic))
        records = reader.wait_for(lambda rs: sum(map(match, rs)) >= count, timeout,
                                  what=f"{count} matching record(s) on {topic}")
        return [record for record in records if match(record)][:count]

    def find(self, topic: str, match: Callable[[Record], bool], timeout: float = 30.0) -> Record:
        return self.find_all(topic, match, 1, timeout)[0]

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()


class GroupProgress:
    """How far a consumer group is behind on its topics: end offsets minus committed offsets,
    asked of the broker (one admin client, reused while polling)."""

    def __init__(self, bootstrap: str, group: str, *topics: str):
        from kafka import KafkaAdminClient

        self.group = group
        self._admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self._partitions = [TopicPartition(topic, p) for topic in topics
                            for p in sorted(self._consumer.partitions_for_topic(topic) or ())]

    def uncommitted(self) -> int:
        committed = self._admin.list_consumer_group_offsets(self.group)
        ends = self._consumer.end_offsets(self._partitions)
        return sum(max(0, end - (committed[tp].offset if tp in committed else 0)) for tp, end in ends.items())

    def close(self) -> None:
        self._admin.close()
        self._consumer.close()


def publish_events(bootstrap: str, events: list[dict], *, max_request_size: int = 1_048_576) -> None:
    """Validate and produce ``events`` to omboard.events, as upstream would, and wait for the broker."""
    from kafka import KafkaProducer

    from schemas.parsing import parse_event
    from schemas.topics import EVENTS
    from schemas.wire import event_to_kafka

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_request_size=max_request_size)
    try:
        for raw in events:
            key, value, headers = event_to_kafka(parse_event(raw))
            producer.send(EVENTS, key=key, value=value, headers=headers)
        producer.flush()
    finally:
        producer.close()
