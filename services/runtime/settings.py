"""One settings model for every process, read from ``OMBOARD_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
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
    # Faust's first group join waits about half of this; keep it low on the embedded broker.
    broker_session_timeout: float = Field(default=10.0, gt=0)
    data_dir: Path = Path("var/data")

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
    mail_from: str = "omboard@uppsala.se"
    klk_it_email: str = "it.support@uppsala.se"
    # Who gets a provider's mail when the provider has named no contact for it.
    fallback_email: str = "it.support@uppsala.se"
    status_page_url: str = "http://127.0.0.1:8000"

    # HTTP
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    web_port_base: int = 6066  # worker N of schemas.topics.SERVICES serves health and metrics on base + N
    web_port: int | None = None  # overrides the base for a single worker (tests, the launcher)

    log_level: str = "INFO"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
