"""docker-compose.kafka.yml: checked by reading it (no Docker engine on these machines)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from zapstream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.kafka.yml"
WHATSAPP_VARIABLES = {
    "WHATSAPP_APP_SECRET",
    "WHATSAPP_VERIFY_TOKEN",
    "WHATSAPP_ACCESS_TOKEN",
    "WHATSAPP_PHONE_NUMBER_ID",
}


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load(COMPOSE.read_text())  # resolves the `<<:` merge keys too
    return dict(compose["services"])


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else list(command)


def zapstream_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if s.get("image", "").startswith("zapstream")}


def test_kafka_runs_as_a_single_kraft_node_that_is_broker_and_controller(
    services: dict[str, dict[str, Any]],
) -> None:
    env = services["kafka"]["environment"]

    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "CONTROLLER://:9093" in env["KAFKA_LISTENERS"]
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert len(env["CLUSTER_ID"]) == 22  # Kafka's base64 Uuid
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"


def test_kafka_image_tag_is_the_embedded_brokers_default_version(
    services: dict[str, dict[str, Any]],
) -> None:
    image, tag = services["kafka"]["image"].split(":")

    assert image == "apache/kafka"
    assert tag == Settings.model_fields["kafka_version"].default


def test_workers_can_be_scaled_having_no_container_name_and_no_host_ports(
    services: dict[str, dict[str, Any]],
) -> None:
    worker = services["worker"]

    assert command_of(worker) == ["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert "media-data:/data/media" in worker["volumes"]  # MEDIA_DIR, shared by every worker


def test_exactly_one_service_is_the_sink_and_it_cannot_be_scaled(
    services: dict[str, dict[str, Any]],
) -> None:
    sinks = [name for name, s in services.items() if command_of(s) == ["sink"]]

    assert sinks == ["sink"]
    assert "container_name" in services["sink"]  # `--scale sink=2` is refused
    assert any(v.endswith(":/data") for v in services["sink"]["volumes"])


def test_every_service_that_talks_to_kafka_points_at_the_kafka_service(
    services: dict[str, dict[str, Any]],
) -> None:
    clients = zapstream_services(services)

    assert set(clients) == {"topics", "api", "worker", "embedder", "sink"}
    for name, service in clients.items():
        assert service["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name


def required_from_host(value: Any, variable: str) -> bool:
    """`${VAR:?message}`: Compose refuses to start while VAR is unset or empty."""
    return isinstance(value, str) and re.fullmatch(rf"\$\{{{variable}:\?.+\}}", value) is not None


def test_whatsapp_secrets_are_required_from_the_host_never_defaulted(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in zapstream_services(services).items():
        env = service["environment"]
        assert set(env) >= WHATSAPP_VARIABLES, name
        for variable in WHATSAPP_VARIABLES:
            assert required_from_host(env[variable], variable), (name, variable)


def test_services_run_in_production_mode_so_dev_secrets_are_refused(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in zapstream_services(services).items():
        assert service["environment"]["ENV"] == "production", name


def test_the_api_requires_an_admin_token_and_the_worker_passes_the_helpdesk_through(
    services: dict[str, dict[str, Any]],
) -> None:
    assert required_from_host(services["api"]["environment"]["ADMIN_TOKEN"], "ADMIN_TOKEN")
    worker = services["worker"]["environment"]
    # optional together: without a URL no helpdesk is called; with one, the worker
    # itself refuses to start until HELPDESK_SECRET is set (ENV=production)
    assert worker["HELPDESK_WEBHOOK_URL"] is None
    assert worker["HELPDESK_SECRET"] is None


def test_topics_are_created_once_kafka_is_healthy_and_before_anything_else_starts(
    services: dict[str, dict[str, Any]],
) -> None:
    assert command_of(services["topics"]) == ["topics", "create"]
    assert services["topics"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert "healthcheck" in services["kafka"]
    for name in ("api", "worker", "sink"):
        assert services[name]["depends_on"]["topics"] == {
            "condition": "service_completed_successfully"
        }, name


def test_the_api_listens_on_all_interfaces_at_port_8000(
    services: dict[str, dict[str, Any]],
) -> None:
    api = services["api"]

    assert command_of(api) == ["api"]
    assert api["environment"]["WEBHOOK_HOST"] == "0.0.0.0"
    assert "8000:8000" in api["ports"]


def test_the_image_installs_cpu_torch_before_the_project() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()

    torch = dockerfile.index(
        'pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu'
    )
    assert torch < dockerfile.index("RUN pip install .")


def test_the_embedder_runs_as_a_scalable_service(services: dict[str, dict[str, Any]]) -> None:
    embedder = services["embedder"]
    assert command_of(embedder) == ["embedder"]
    assert "container_name" not in embedder
    assert "ports" not in embedder
