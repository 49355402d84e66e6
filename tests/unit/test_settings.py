"""Settings come from OMBOARD_* variables; bad ones stop the process naming each variable."""

from __future__ import annotations

import pytest

from services.runtime.settings import SettingsError, get_settings


@pytest.fixture(autouse=True)
def fresh_settings():
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_settings_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("OMBOARD_KAFKA_BOOTSTRAP", "kafka-1:9093,kafka-2:9093")
    monkeypatch.setenv("OMBOARD_PARTITIONS", "12")
    settings = get_settings()
    assert settings.kafka_bootstrap == "kafka-1:9093,kafka-2:9093" and settings.partitions == 12


def test_bad_settings_name_every_variable_and_never_echo_a_value(monkeypatch):
    monkeypatch.setenv("OMBOARD_PARTITIONS", "many")
    monkeypatch.setenv("OMBOARD_KAFKA_SECURITY_PROTOCOL", "hunter2-is-my-password")
    with pytest.raises(SettingsError) as raised:
        get_settings()
    message = str(raised.value)
    assert "OMBOARD_PARTITIONS" in message and "OMBOARD_KAFKA_SECURITY_PROTOCOL" in message
    assert "hunter2" not in message and "many" not in message


def test_a_batch_larger_than_what_a_provider_remembers_is_refused_where_the_apps_are_composed(monkeypatch):
    from services.bootstrap import bootstrap
    from services.domain.state import PROCESSED_MEMORY

    monkeypatch.setenv("OMBOARD_BATCH_SIZE", str(PROCESSED_MEMORY + 1))
    with pytest.raises(SettingsError, match="OMBOARD_BATCH_SIZE: at most 500"):
        bootstrap()
    monkeypatch.setenv("OMBOARD_BATCH_SIZE", "200")
    monkeypatch.setenv("OMBOARD_PROJECTION_BATCH_SIZE", "300")
    get_settings.cache_clear()
    settings = bootstrap().settings
    assert (settings.batch_size, settings.projection_batch_size) == (200, 300)
