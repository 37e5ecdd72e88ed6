"""docker-compose.yml: valid by the Compose specification, wired to a config the collector loads."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

REPO = Path(__file__).parent.parent.parent
SCHEMA = REPO.parent / "shared" / "schemas" / "compose-spec.json"
VENDORED = REPO / "tests" / "data" / "compose-spec.json"


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_file_validates_against_the_compose_specification() -> None:
    schema = json.loads(VENDORED.read_text())
    jsonschema.Draft7Validator(schema).validate(_compose())  # the schema says draft-07
    if SCHEMA.exists():  # the workplace's copy, when present, is the same document
        assert json.loads(SCHEMA.read_text()) == schema


def test_compose_schema_check_can_fail() -> None:
    schema = json.loads(VENDORED.read_text())
    bad = _compose()
    bad["services"]["collector"]["ports"] = "4317"  # must be a list
    try:
        jsonschema.Draft7Validator(schema).validate(bad)
    except jsonschema.ValidationError:
        return
    raise AssertionError("an invalid compose file passed validation")


def test_the_collector_service_mounts_the_golden_config_and_publishes_its_ports() -> None:
    service = _compose()["services"]["collector"]
    assert service["image"].startswith("otel/opentelemetry-collector-contrib:")
    mount = next(v for v in service["volumes"] if v.endswith("/etc/mfotel/otelcol.yaml:ro"))
    config_path = REPO / mount.split(":")[0]
    config = yaml.safe_load(config_path.read_text())
    protocols = config["receivers"]["otlp"]["protocols"]
    ports = {p.split(":")[0] for p in service["ports"]}
    for endpoint in (
        protocols["grpc"]["endpoint"],
        protocols["http"]["endpoint"],
        config["extensions"]["health_check"]["endpoint"],
    ):
        host, port = endpoint.rsplit(":", 1)
        assert host == "0.0.0.0" and port in ports  # reachable from the host
    exporter = config["exporters"]["otlp_http/otlp"]
    assert exporter["endpoint"] == "http://lgtm:4318" and "lgtm" in _compose()["services"]
