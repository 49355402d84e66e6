"""Which embedded broker a machine runs: Apache Kafka where Java is, Tansu where it is not.

``OMBOARD_EMBEDDED_BROKER=kafka|tansu`` chooses explicitly; asking for Apache Kafka on a machine
that cannot run it is an error, not a silent fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, Self

from services.devtools.apache_kafka import ApacheKafka, kafka_version, unavailable_reason
from services.devtools.tansu import TansuBroker

BrokerKind = Literal["kafka", "tansu"]


class Broker(Protocol):
    fresh: bool  # True when it holds nothing from an earlier start

    @property
    def bootstrap(self) -> str: ...
    def start(self) -> Self: ...
    def stop(self) -> None: ...


@dataclass(frozen=True)
class Choice:
    kind: BrokerKind
    why: str  # one line for a person: which broker, and why that one

    @property
    def description(self) -> str:
        if self.kind == "kafka":
            return f"Apache Kafka {kafka_version()} (KRaft)"
        return "Tansu (memory only)"


def choose(requested: BrokerKind | None) -> Choice:
    reason = unavailable_reason()
    if requested == "tansu":
        return Choice("tansu", "Tansu, as OMBOARD_EMBEDDED_BROKER asks: it keeps nothing when it stops")
    if requested == "kafka":
        if reason:
            raise RuntimeError(f"OMBOARD_EMBEDDED_BROKER=kafka, but Apache Kafka cannot run here: {reason}")
        return Choice("kafka", f"Apache Kafka {kafka_version()}, as OMBOARD_EMBEDDED_BROKER asks")
    if reason:
        return Choice("tansu", f"falling back to Tansu, memory only: Apache Kafka cannot run here, {reason}")
    return Choice("kafka", f"Apache Kafka {kafka_version()}")


def embedded_broker(choice: Choice, data_dir: Path, *, port: int | None = None, log_path: Path | None = None) -> Broker:
    """A broker of the chosen kind; Apache Kafka keeps its log segments in ``data_dir``."""
    if choice.kind == "kafka":
        return ApacheKafka(data_dir, port=port, log_path=log_path)
    return TansuBroker(port, log_path=log_path)
