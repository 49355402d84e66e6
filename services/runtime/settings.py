"""One settings model for every process, read from ``OMBOARD_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMBOARD_", extra="ignore")

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: Path | None = None
    partitions: int = Field(default=4, ge=1, le=1000)
    replication_factor: int = Field(default=1, ge=1)
    # How long the group waits for a silent worker before its partitions move; Apache Kafka's
    # group.min.session.timeout.ms is 6 s.
    broker_session_timeout: float = Field(default=10.0, gt=0)
    data_dir: Path = Path("var/data")
    # The broker `omboard run` (and the test suite) starts: unset, Apache Kafka where Java and its
    # jars are (make setup), else Tansu; "kafka" or "tansu" chooses explicitly.
    embedded_broker: Literal["kafka", "tansu"] | None = None

    # The read model (services/readmodel): production sets OMBOARD_DATABASE_URL, a libpq URL
    # (postgresql://user@host:5432/omboard); unset, `omboard run` and the test stacks start an
    # embedded PostgreSQL under var/postgres.
    database_url: str | None = None

    # The catalog that plans tasks (a second municipality is a second file).
    catalog_path: Path | None = None

    # Time: a file holding an ISO timestamp freezes "now" for tests and demos; unset means the wall clock.
    clock_file: Path | None = None
    timezone: str = "Europe/Stockholm"
    sweep_interval: float = Field(default=5.0, gt=0)

    # Mail
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
    # CA bundle (PEM) that signed the SMTP server's certificate, for STARTTLS to a relay with an
    # internal CA; unset: the system's trusted CAs.
    smtp_cafile: Path | None = None
    mail_from: str = "omboard@uppsala.se"
    klk_it_email: str = "it.support@uppsala.se"
    # Who gets a provider's mail when the provider has named no contact for it.
    fallback_email: str = "it.support@uppsala.se"
    # Where mail links point: the status page (served by the reporting worker), + "/providers/<id>".
    status_page_url: str = "http://127.0.0.1:8001"
    # Fallbacks when a provider has named nobody for a task: the provider's own fallback address
    # first, then the system's (e.g. KLK IT's system manager), then fallback_email. JSON objects:
    # OMBOARD_FALLBACK_CONTACTS='{"p1": "chef@omsorg.example"}'. system_contacts also takes KLK IT's
    # tasks of that system instead of klk_it_email.
    fallback_contacts: dict[str, str] = Field(default_factory=dict)  # provider id -> email
    system_contacts: dict[str, str] = Field(default_factory=dict)  # system -> email
    # A directory of mail templates (``<kind>.<sv|en>.txt.j2``) that take precedence over the
    # built-in ones in services/domain/templates; unset: the built-in ones only.
    mail_templates_dir: Path | None = None

    # Batches. Messages a worker takes, handles and commits at once: a few hundred amortise a produce
    # round trip (DESIGN.md, batching). A redelivery is of at most one batch, so it may not exceed
    # what a provider's facts remember to de-duplicate (services.domain.state.PROCESSED_MEMORY, which
    # the composition root checks it against).
    batch_size: int = Field(default=500, ge=1)
    # Changelog records the read model writes per transaction: enough to amortise the round trips,
    # few enough to commit often.
    projection_batch_size: int = Field(default=2000, ge=1)

    # HTTP
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    web_port_base: int = 6066  # worker N of schemas.topics.SERVICES serves health and metrics on base + N
    # Where each worker's health and metrics server listens: loopback on a developer machine; a
    # container sets 0.0.0.0 so probes and Prometheus can reach it.
    web_bind: str = "127.0.0.1"
    web_port: int | None = None  # overrides the base for a single worker (tests, the launcher)
    # The status API and page, served inside the reporting worker (its ledger is local to it).
    status_host: str = "127.0.0.1"
    status_port: int = 8001
    # How long POST /v1/tasks/{id}/status waits for the ledger to show a published change.
    status_wait_timeout: float = Field(default=10.0, gt=0)

    # Access (services/http/access.py): a JSON list of {name, key_sha256, role, event_types?,
    # provider_id?}; make one with `omboard keys hash`. Unset or empty: the APIs refuse everything.
    api_keys: str | None = None
    # The key the CLI (`omboard task ...`) presents to the status API.
    api_key: SecretStr | None = None

    log_level: str = "INFO"


class SettingsError(SystemExit):
    """Settings that cannot be used: stops the process with each variable and what is wrong with it
    (values are left out: a password or key may be among them)."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        raise bad_settings([(f"OMBOARD_{'_'.join(str(part) for part in item['loc']).upper()}", item["msg"])
                            for item in error.errors(include_input=False, include_url=False)]) from None


def bad_settings(problems: list[tuple[str, str]]) -> SettingsError:
    """The error that stops the process: each variable and what is wrong with it."""
    return SettingsError("omboard: bad settings in the environment:\n"
                         + "\n".join(f"  {variable}: {reason}" for variable, reason in problems))
