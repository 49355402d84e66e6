"""The one way to build a service's Faust app, and the "pydantic" codec."""

from __future__ import annotations

from typing import Any

import faust
from faust.serializers import codecs
from faust.types.auth import CredentialsT
from pydantic import BaseModel

from schemas.topics import SERVICES
from services.runtime.broker import aiokafka_client_config, bootstrap_servers
from services.runtime.health import install_health
from services.runtime.settings import Settings


class PydanticCodec(codecs.Codec):
    """Encodes pydantic models as their JSON; decodes to the bytes, untouched.

    Decoding belongs in the agent, on purpose: when a codec raises inside Faust, Faust logs the
    error and drops the message, and no dead-letter record is ever written. An agent that calls
    ``Model.model_validate_json`` itself can catch the error and dead-letter the message.
    """

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, BaseModel):
            return obj.model_dump_json().encode()
        if isinstance(obj, bytes):  # already encoded, e.g. a message passed on unchanged
            return obj
        raise TypeError(f"the pydantic codec encodes BaseModel or bytes, not {type(obj).__name__}")

    def _loads(self, s: bytes) -> bytes:
        return s


codecs.register("pydantic", PydanticCodec())


def broker_credentials(settings: Settings) -> CredentialsT | None:
    protocol = settings.kafka_security_protocol
    ssl_context = aiokafka_client_config(settings).get("ssl_context") if protocol.endswith("SSL") else None
    if protocol.startswith("SASL"):
        # Faust derives SASL_SSL from the presence of an ssl_context.
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            ssl_context=ssl_context,
            mechanism=settings.kafka_sasl_mechanism or "PLAIN",
        )
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context)
    return None


def create_app(
    service: str, settings: Settings, *, web_port: int | None = None, app_id: str | None = None
) -> faust.App:
    """A Faust app for ``service``; its consumer group is the app id, ``omboard-<service>``.

    ``web_port`` overrides the fixed per-service port (tests pass a free one); ``app_id`` lets a
    test or benchmark run beside the real service without joining its consumer group.
    """
    if web_port is None:
        web_port = settings.web_port or settings.web_port_base + SERVICES.index(service)
    # Faust creates its datadir without parents, and var/data does not exist on a fresh checkout.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    servers = bootstrap_servers(settings.kafka_bootstrap)
    app = faust.App(
        app_id or f"omboard-{service}",
        broker=[f"kafka://{server}" for server in servers],
        broker_credentials=broker_credentials(settings),
        # Default at_least_once, handlers idempotent: with exactly_once our agents crash at start
        # (maybe_start_producer() is then a TransactionManager), and even made to start they
        # duplicated tasks and mail in kill tests, since send_all's sends stay outside Faust's
        # transactions (tests/benchmarks/exactly_once.py; docs/decisions.md).
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        # No __assignor-__leader topic: nothing here runs on_leader tasks.
        topic_disable_leader=True,
        # The first group join waits about half the session timeout; heartbeats at a third of it.
        broker_session_timeout=settings.broker_session_timeout,
        broker_heartbeat_interval=settings.broker_session_timeout / 3,
        store="memory://",  # RocksDB is not installed; tables recover from their changelogs
        datadir=settings.data_dir / service,
        web_port=web_port,
        web_bind=settings.web_bind,
        web_host=settings.web_bind if settings.web_bind != "0.0.0.0" else "localhost",
        key_serializer="raw",
        value_serializer="raw",  # agents decode, so a bad message can be dead-lettered
    )
    install_health(app, service)
    return app
