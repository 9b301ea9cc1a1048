"""The registry is the one list of services: nothing served, started or compiled is missing from
it, and what it says is consistent."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from services.common import registry

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTOR_SET = ROOT / "build" / "gen" / "marquee.pb"


def _proto_services() -> set[str]:
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes()).file
    return {f"{f.package}.{s.name}" for f in files if f.package.startswith("marquee.")
            for s in f.service}


def test_every_marquee_proto_service_is_served_by_a_registered_service() -> None:
    served = {d.full_name for spec in registry.SERVICES for d in spec.descriptors()}
    assert _proto_services() == served, (
        "each proto service needs a ServiceSpec in services/common/registry.py "
        "(docs/adding-a-service.md)")


def test_every_service_package_with_a_main_is_registered() -> None:
    packages = {p.parent.name for p in (ROOT / "services").glob("*/__main__.py")}
    # The worker is a Celery process, not a gRPC service.
    assert packages - {"worker"} == {s.name for s in registry.SERVICES}


def test_names_and_ports_are_unique() -> None:
    names = [s.name for s in registry.SERVICES]
    ports = [s.port for s in registry.SERVICES]
    assert len(set(names)) == len(names)
    assert len(set(ports)) == len(ports)


def test_start_order_puts_each_service_after_what_it_names() -> None:
    order = [s.name for s in registry.start_order()]
    assert sorted(order) == sorted(s.name for s in registry.SERVICES)
    for spec in registry.SERVICES:
        assert all(order.index(a) < order.index(spec.name) for a in spec.after), spec.name


def test_an_unknown_name_is_an_error() -> None:
    with pytest.raises(KeyError, match="no service named 'ratingz'"):
        registry.spec("ratingz")
