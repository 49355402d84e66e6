"""Topic set-up and client settings for any Kafka (the embedded brokers of ``make run`` and the
tests: ``services/devtools``)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from services.runtime.settings import Settings


def kafka_client_config(settings: Settings | None) -> dict[str, Any]:
    """Security keyword arguments for kafka-python clients (admin, producer, consumer)."""
    if settings is None:
        return {}
    config: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol.startswith("SASL"):
        config |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism or "PLAIN",  # Faust's default too
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password,
        }
    if settings.kafka_ssl_cafile is not None:
        config["ssl_cafile"] = str(settings.kafka_ssl_cafile)
    return config


def aiokafka_client_config(settings: Settings | None) -> dict[str, Any]:
    """Security keyword arguments for aiokafka clients; TLS goes through an ``ssl_context``."""
    if settings is None:
        return {}
    config = kafka_client_config(settings)
    cafile = config.pop("ssl_cafile", None)
    if cafile is not None or settings.kafka_security_protocol.endswith("SSL"):
        from aiokafka.helpers import create_ssl_context

        config["ssl_context"] = create_ssl_context(cafile=cafile)  # no cafile: the system CAs
    return config


def bootstrap_servers(bootstrap: str) -> list[str]:
    """``host:port`` entries of a comma-separated bootstrap setting."""
    return [server.strip() for server in bootstrap.split(",") if server.strip()]


def metadata_consumer(bootstrap: str, settings: Settings | None, timeout_ms: int = 10_000) -> KafkaConsumer:
    """A consumer that only reads metadata."""
    # Metadata comes from a consumer, not KafkaAdminClient.describe_topics/list_topics: those
    # parse the authorized-operations bits Tansu returns and fail ("14 is not a valid
    # ACLOperation"). allow_auto_create_topics=False so asking never creates a topic.
    return KafkaConsumer(
        bootstrap_servers=bootstrap_servers(bootstrap),
        client_id="omboard-admin",
        allow_auto_create_topics=False,
        request_timeout_ms=timeout_ms + 1_000,
        api_version_auto_timeout_ms=timeout_ms,
        **kafka_client_config(settings),
    )


def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    replication_factor: int = 1,
    settings: Settings | None = None,
    timeout: float = 30.0,
    configs: dict[str, str] | None = None,
) -> None:
    """Create the topics that do not exist yet (with ``configs``, e.g. compaction for a
    changelog) and wait until metadata shows them all.

    Every topic must exist with its partition count before anything produces to it: Tansu
    auto-creates unknown topics with 4 partitions, and a table's changelog partitions must be its
    inputs' partitions, or a provider's state is restored on a worker that does not own it.
    """
    wanted = sorted(set(names))
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers(bootstrap), client_id="omboard-admin", **kafka_client_config(settings)
    )
    consumer = metadata_consumer(bootstrap, settings)
    try:
        existing = consumer.topics()
        for name in wanted:
            if name in existing:
                continue
            # One request per topic: kafka-python raises on the first error in a response, and
            # another process may create the same topic at the same moment.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, partitions, replication_factor, topic_configs=configs or {})])
        deadline = time.monotonic() + timeout
        while True:
            consumer.topics()  # refreshes the metadata of every topic
            counts = {name: len(consumer.partitions_for_topic(name) or ()) for name in wanted}
            wrong = {name: n for name, n in counts.items() if n and n != partitions}
            if wrong:
                raise RuntimeError(f"topics exist with other partition counts than {partitions}: {wrong}")
            missing = [name for name, n in counts.items() if n == 0]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics not visible in metadata after {timeout}s: {missing}")
            time.sleep(0.05)
    finally:
        consumer.close()
        admin.close()
