"""The deployment files agree with the code: topics, services, settings and ports.

Docker and Kubernetes are not needed: the files are parsed (PyYAML) and compared with
``schemas.topics`` and ``services.runtime.settings.Settings``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.topics import ALL_TOPICS, COMPACTED, SERVICES
from services.devtools.apache_kafka import kafka_version
from services.runtime.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
PREFIX = "OMBOARD_"
_INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")


# -- loading -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def k8s() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                documents.append({**document, "_file": path.name})
    return documents


def _of_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] == kind]


def _compose_env(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's environment with ``${VAR:-default}`` resolved to its default."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: _INTERPOLATION.sub(lambda m: m.group(2) or "", str(value)) for key, value in env.items()}


def _configmap(k8s: list[dict[str, Any]]) -> dict[str, str]:
    (settings,) = [c for c in _of_kind(k8s, "ConfigMap") if c["metadata"]["name"] == "omboard-settings"]
    return settings["data"]


def _deployments(k8s: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _of_kind(k8s, "Deployment")}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _argv(container: dict[str, Any]) -> list[str]:
    return [*container.get("command", []), *container.get("args", [])]


def _web_port(env: dict[str, str], service: str) -> int:
    base = int(env.get("OMBOARD_WEB_PORT_BASE", Settings.model_fields["web_port_base"].default))
    return base + SERVICES.index(service)


def _setting_names(names: set[str]) -> set[str]:
    return {name for name in names if name.startswith(PREFIX)}


def _assert_settings(env: dict[str, str], where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fields = set(Settings.model_fields)
    unknown = {name for name in _setting_names(set(env)) if name.removeprefix(PREFIX).lower() not in fields}
    assert not unknown, f"{where}: {sorted(unknown)} are not fields of Settings (services/runtime/settings.py)"
    for name in list(env):
        if name.startswith(PREFIX):
            monkeypatch.setenv(name, env[name])
    Settings()  # every value parses


# -- topics --------------------------------------------------------------------------------------------


def _compose_topic_script(compose: dict[str, Any]) -> str:
    command = compose["services"]["kafka-topics"]["command"]
    return "\n".join(command) if isinstance(command, list) else command


def test_compose_creates_exactly_the_registry_topics(compose: dict[str, Any]) -> None:
    script = _compose_topic_script(compose)
    created = re.findall(r"^\s*create\s+(\S+)(.*)$", script, flags=re.MULTILINE)
    assert sorted(name for name, _ in created) == sorted(ALL_TOPICS)
    assert {name for name, options in created if "cleanup.policy=compact" in options} == set(COMPACTED)
    created = [name for name, _ in created]
    assert len(created) == len(set(created)), "a topic created twice"
    assert "kafka-topics.sh" in script and "--create" in script


def test_compose_topic_partitions_are_omboard_partitions(compose: dict[str, Any]) -> None:
    partitions = {int(p) for p in re.findall(r"--partitions\s+(\d+)", _compose_topic_script(compose))}
    for name in (*SERVICES, "api"):
        env = _compose_env(compose["services"][name])
        assert partitions == {int(env["OMBOARD_PARTITIONS"])}, name
    kafka_env = _compose_env(compose["services"]["kafka"])
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "a topic created on first use breaks Faust"


def test_kafka_topics_are_exactly_the_registry_topics(k8s: list[dict[str, Any]]) -> None:
    topics = _of_kind(k8s, "KafkaTopic")
    names = [t["spec"].get("topicName", t["metadata"]["name"]) for t in topics]
    assert sorted(names) == sorted(ALL_TOPICS)
    assert len(names) == len(set(names))
    compacted = {t["spec"]["topicName"] for t in topics if t["spec"].get("config", {}).get("cleanup.policy") == "compact"}
    assert compacted == set(COMPACTED)
    (kafka,) = _of_kind(k8s, "Kafka")
    for topic in topics:
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]


def test_kafka_topic_partitions_and_replicas_match_the_settings(k8s: list[dict[str, Any]]) -> None:
    settings = _configmap(k8s)
    for topic in _of_kind(k8s, "KafkaTopic"):
        assert topic["spec"]["partitions"] == int(settings["OMBOARD_PARTITIONS"]), topic["metadata"]["name"]
        assert topic["spec"]["replicas"] == int(settings["OMBOARD_REPLICATION_FACTOR"]), topic["metadata"]["name"]
    pools = _of_kind(k8s, "KafkaNodePool")
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    assert int(settings["OMBOARD_REPLICATION_FACTOR"]) <= brokers


def test_compose_and_strimzi_run_the_kafka_release_the_tests_run(compose: dict[str, Any], k8s: list[dict[str, Any]]) -> None:
    tested = kafka_version()  # deploy/kafka/pom.xml: what make setup fetches and every test runs on
    for name in ("kafka", "kafka-topics"):
        assert compose["services"][name]["image"] == f"apache/kafka:{tested}", name
    (kafka,) = _of_kind(k8s, "Kafka")
    assert kafka["spec"]["kafka"]["version"] == tested
    major_minor = ".".join(tested.split(".")[:2])
    assert kafka["spec"]["kafka"]["metadataVersion"].startswith(f"{major_minor}-IV")


def test_strimzi_kafka_runs_in_kraft_mode_with_node_pools(k8s: list[dict[str, Any]]) -> None:
    (kafka,) = _of_kind(k8s, "Kafka")
    annotations = kafka["metadata"]["annotations"]
    assert annotations["strimzi.io/kraft"] == "enabled" and annotations["strimzi.io/node-pools"] == "enabled"
    assert "zookeeper" not in kafka["spec"]
    roles = {role for pool in _of_kind(k8s, "KafkaNodePool") for role in pool["spec"]["roles"]}
    assert roles == {"controller", "broker"}
    bootstrap = _configmap(k8s)["OMBOARD_KAFKA_BOOTSTRAP"]
    plain = [listener for listener in kafka["spec"]["kafka"]["listeners"] if not listener["tls"]]
    assert bootstrap == f"{kafka['metadata']['name']}-kafka-bootstrap:{plain[0]['port']}"


# -- services -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_runs_in_compose(compose: dict[str, Any], service: str) -> None:
    assert compose["services"][service]["command"] == ["omboard", "worker", service]


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_a_k8s_deployment(k8s: list[dict[str, Any]], service: str) -> None:
    running = [d for d in _deployments(k8s).values() if _argv(_container(d)) == ["omboard", "worker", service]]
    assert len(running) == 1, f"no single Deployment runs `omboard worker {service}`"


def test_the_api_runs_in_compose_and_k8s_with_a_service(compose: dict[str, Any], k8s: list[dict[str, Any]]) -> None:
    assert compose["services"]["api"]["command"] == ["omboard", "api"]
    (api,) = [d for d in _deployments(k8s).values() if _argv(_container(d)) == ["omboard", "api"]]
    labels = api["spec"]["template"]["metadata"]["labels"]
    services = [s for s in _of_kind(k8s, "Service") if s["spec"]["selector"].items() <= labels.items()]
    assert services, "no Service selects the API's pods"
    port = int(_configmap(k8s)["OMBOARD_API_PORT"])
    container_ports = {p["name"]: p["containerPort"] for p in _container(api)["ports"]}
    assert all(container_ports.get(p["targetPort"], p["targetPort"]) == port for s in services for p in s["spec"]["ports"])


def test_every_service_is_built_from_the_project_dockerfile(compose: dict[str, Any]) -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, flags=re.MULTILINE)
    assert "pip install -r requirements.lock" in dockerfile
    assert "pip install --no-deps ." in dockerfile
    images = {compose["services"][name]["image"] for name in (*SERVICES, "api")}
    assert len(images) == 1, "one image for every omboard process"
    build = compose["services"][SERVICES[0]]["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_third_party_images_are_pinned(compose: dict[str, Any], k8s: list[dict[str, Any]]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        if image.startswith("omboard:"):
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and "/" not in tag, f"{name}: {image} is not pinned"
    for name in ("kafka", "kafka-topics", "prometheus", "grafana", "mailpit"):
        assert name in compose["services"], f"compose lacks {name}"
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert compose["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_compose_mounts_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name} mounts {source}, which does not exist"
    grafana = " ".join(compose["services"]["grafana"]["volumes"])
    assert "./grafana/provisioning:/etc/grafana/provisioning" in grafana
    assert "./grafana/dashboards:/var/lib/grafana/dashboards/omboard" in grafana
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/omboard.yaml").read_text(encoding="utf-8"))
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/omboard"
    prometheus = " ".join(compose["services"]["prometheus"]["volumes"])
    assert "./prometheus:/etc/prometheus" in prometheus


def test_kustomization_lists_existing_files(k8s: list[dict[str, Any]]) -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    for resource in kustomization["resources"]:
        assert (K8S / resource).exists(), resource
    listed = set(kustomization["resources"])
    for kind in ("Kafka", "KafkaNodePool", "KafkaTopic", "ConfigMap", "Deployment", "Service"):
        assert any(d["_file"] in listed for d in _of_kind(k8s, kind)), f"no {kind} in the kustomization"


# -- settings -------------------------------------------------------------------------------------------


def test_compose_sets_only_real_settings(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, service in compose["services"].items():
        with monkeypatch.context() as patch:
            _assert_settings(_compose_env(service), f"compose service {name}", patch)


def test_k8s_sets_only_real_settings(k8s: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        _assert_settings(_configmap(k8s), "ConfigMap omboard-settings", patch)
    for name, deployment in _deployments(k8s).items():
        env = {item["name"]: item.get("value", "") for item in _container(deployment).get("env", [])}
        with monkeypatch.context() as patch:
            _assert_settings(env, f"Deployment {name}", patch)
        sources = _container(deployment)["envFrom"]
        assert {"configMapRef": {"name": "omboard-settings"}} in sources, name


def test_compose_points_omboard_at_its_kafka_and_mail_sink(compose: dict[str, Any]) -> None:
    for name in (*SERVICES, "api"):
        env = _compose_env(compose["services"][name])
        assert env["OMBOARD_KAFKA_BOOTSTRAP"] == "kafka:9092", name
        assert env["OMBOARD_SMTP_HOST"] == "mailpit" and env["OMBOARD_SMTP_PORT"] == "1025", name
    assert "PLAINTEXT://kafka:9092" in compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]


# -- ports --------------------------------------------------------------------------------------------


def _healthcheck_port(service: dict[str, Any]) -> tuple[str, int]:
    test = " ".join(service["healthcheck"]["test"])
    match = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", test)
    assert match, test
    return match.group(2), int(match.group(1))


@pytest.mark.parametrize("service", SERVICES)
def test_compose_healthchecks_use_the_web_port(compose: dict[str, Any], service: str) -> None:
    definition = compose["services"][service]
    assert _healthcheck_port(definition) == ("/readyz", _web_port(_compose_env(definition), service))


def test_compose_api_healthcheck(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    assert _healthcheck_port(api) == ("/readyz", int(_compose_env(api)["OMBOARD_API_PORT"]))


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_probes_use_the_web_port(k8s: list[dict[str, Any]], service: str) -> None:
    (deployment,) = [d for d in _deployments(k8s).values() if _argv(_container(d)) == ["omboard", "worker", service]]
    container = _container(deployment)
    port = _web_port(_configmap(k8s), service)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert {"name": "web", "containerPort": port} in container["ports"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert "cpu" in container["resources"]["requests"] and "memory" in container["resources"]["limits"]


def test_prometheus_scrapes_every_process_on_its_port(compose: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "omboard"]
    targets = {label["labels"]["service"]: target for label in job["static_configs"] for target in label["targets"]}
    for service in SERVICES:
        env = _compose_env(compose["services"][service])
        assert targets[service] == f"{service}:{_web_port(env, service)}"
    assert targets["api"] == f"api:{_compose_env(compose['services']['api'])['OMBOARD_API_PORT']}"
    assert set(targets) == {*SERVICES, "api"}
    assert job.get("honor_labels") is True, "the services' own `service` label must not become exported_service"
    assert config["rule_files"] == ["rules/omboard.rules.yml"]
