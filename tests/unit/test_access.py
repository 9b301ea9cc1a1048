"""Access is declared in the protos, for every method, and nothing is allowed by default."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool

from marquee.access.v1 import access_pb2
from services.common import registry
from services.common.access import (
    SERVICE_KEY_HEADER,
    Access,
    AccessInterceptor,
    UndeclaredAccess,
    declared_access,
    method_path,
    policy,
    require_enabled_admin,
)
from services.common.errors import PermissionDenied, Unauthenticated
from services.common.tokens import Caller


def _every_method() -> list[Any]:
    return [m for spec in registry.SERVICES for s in spec.descriptors() for m in s.methods]


@pytest.mark.parametrize("method", _every_method(), ids=lambda m: m.full_name)
def test_every_method_of_every_registered_service_declares_its_access(method: Any) -> None:
    assert declared_access(method) in Access


def test_internal_methods_are_the_ones_only_services_call() -> None:
    internal = {m.full_name for m in _every_method() if declared_access(m) is Access.INTERNAL}
    assert internal == {
        "marquee.upload.v1.UploadService.GetFile", "marquee.upload.v1.UploadService.ReadFile",
        "marquee.upload.v1.UploadService.DeleteFile", "marquee.upload.v1.UploadService.StoreResult",
        "marquee.task.v1.TaskService.CreateTask", "marquee.task.v1.TaskService.ClaimTask",
        "marquee.task.v1.TaskService.ReportProgress", "marquee.task.v1.TaskService.FinishTask",
        "marquee.task.v1.TaskService.CheckTaskQuota",
        "marquee.catalog.v1.CatalogService.ImportMovies",
        "marquee.catalog.v1.CatalogService.CheckMovies",
        "marquee.catalog.v1.CatalogService.SetVoteCounts",
        "marquee.ratings.v1.RatingsService.DeleteMovieRatings",
        "marquee.ratings.v1.RatingsService.ListUserVotes",
        "marquee.catalog.v1.CatalogCandidatesService.GetCatalogVersion",
        "marquee.catalog.v1.CatalogCandidatesService.FindCandidates",
        "marquee.recommendations.v1.RecommendationsService.StartRun",
        "marquee.recommendations.v1.RecommendationsService.FinishRun",
        "marquee.auth.v1.AuthService.GetAccountStatus",
    }


def _service_with(option: int | None) -> Any:
    """A proto service with one method, declared `option` (None: no access option)."""
    pool = descriptor_pool.DescriptorPool()
    for dependency in (descriptor_pb2.DESCRIPTOR, access_pb2.DESCRIPTOR):
        proto = descriptor_pb2.FileDescriptorProto()
        dependency.CopyToProto(proto)
        pool.Add(proto)
    file = descriptor_pb2.FileDescriptorProto(
        name="probe.proto", package="probe.v1", syntax="proto3",
        dependency=["marquee/access/v1/access.proto"])
    file.message_type.add(name="Empty")
    method = file.service.add(name="Probe").method.add(
        name="Call", input_type=".probe.v1.Empty", output_type=".probe.v1.Empty")
    if option is not None:
        method.options.Extensions[access_pb2.access] = option
    pool.Add(file)
    return pool.FindServiceByName("probe.v1.Probe")


def test_a_method_without_access_stops_the_policy() -> None:
    with pytest.raises(UndeclaredAccess, match=r"probe\.v1\.Probe\.Call declares no access"):
        policy([_service_with(None)])


def test_unspecified_access_is_no_access() -> None:
    with pytest.raises(UndeclaredAccess):
        policy([_service_with(access_pb2.ACCESS_UNSPECIFIED)])


def test_policy_maps_paths_to_levels() -> None:
    service = _service_with(access_pb2.ACCESS_INTERNAL)
    assert policy([service]) == {"/probe.v1.Probe/Call": Access.INTERNAL}
    assert method_path(service.methods[0]) == "/probe.v1.Probe/Call"


class _Verifier:
    def verify(self, token: str) -> Caller:
        if token == "admin":
            return Caller("a1", "root", role="admin")
        if token != "good":
            raise Unauthenticated("bad token")
        return Caller("u1", "alice")


def _interceptor(levels: dict[str, Access], confirmed: list[Caller] | None = None,
                 still_admin: bool = True) -> AccessInterceptor:
    def confirm_admin(caller: Caller) -> None:
        if confirmed is not None:
            confirmed.append(caller)
        require_enabled_admin(exists=True, role="admin" if still_admin else "user",
                              disabled=False)

    return AccessInterceptor(levels, _Verifier(), "the-key",  # type: ignore[arg-type]
                             confirm_admin)


def test_a_method_missing_from_the_policy_is_refused_even_with_every_credential() -> None:
    interceptor = _interceptor({"/s/Known": Access.PUBLIC})
    with pytest.raises(PermissionDenied, match="not callable"):
        interceptor._authorize("/s/Unknown", {"authorization": "Bearer good",
                                              SERVICE_KEY_HEADER: "the-key"})


def test_each_level_asks_for_its_credential() -> None:
    interceptor = _interceptor({"/s/Pub": Access.PUBLIC, "/s/User": Access.USER,
                                "/s/Int": Access.INTERNAL})
    assert interceptor._authorize("/s/Pub", {}) is None
    assert interceptor._authorize("/s/User", {"authorization": "Bearer good"}) == \
        Caller("u1", "alice")
    with pytest.raises(Unauthenticated):
        interceptor._authorize("/s/User", {SERVICE_KEY_HEADER: "the-key"})
    assert interceptor._authorize("/s/Int", {SERVICE_KEY_HEADER: "the-key"}) is None
    for metadata in ({}, {"authorization": "Bearer good"}, {SERVICE_KEY_HEADER: "wrong"}):
        with pytest.raises(PermissionDenied):
            interceptor._authorize("/s/Int", metadata)
    # Health and reflection stay open to probes and grpcurl.
    assert interceptor._authorize("/grpc.health.v1.Health/Check", {}) is None


def test_admin_methods_need_the_admin_role_in_the_token_and_in_the_account_now() -> None:
    confirmed: list[Caller] = []
    interceptor = _interceptor({"/s/Admin": Access.ADMIN}, confirmed)
    assert interceptor._authorize("/s/Admin", {"authorization": "Bearer admin"}) == \
        Caller("a1", "root", role="admin")
    assert confirmed == [Caller("a1", "root", role="admin")]
    with pytest.raises(PermissionDenied, match="only an administrator"):
        interceptor._authorize("/s/Admin", {"authorization": "Bearer good"})
    assert len(confirmed) == 1  # a user's token is refused without asking the auth service
    for metadata in ({}, {SERVICE_KEY_HEADER: "the-key"}):
        with pytest.raises(Unauthenticated):
            interceptor._authorize("/s/Admin", metadata)
    demoted = _interceptor({"/s/Admin": Access.ADMIN}, still_admin=False)
    with pytest.raises(PermissionDenied, match="no longer an administrator"):
        demoted._authorize("/s/Admin", {"authorization": "Bearer admin"})


@pytest.mark.parametrize(("exists", "role", "disabled", "message"), [
    (False, "admin", False, "no longer exists"),
    (True, "admin", True, "disabled"),
    (True, "user", False, "no longer an administrator"),
])
def test_an_admin_account_must_exist_be_enabled_and_keep_the_role(
        exists: bool, role: str, disabled: bool, message: str) -> None:
    with pytest.raises(PermissionDenied, match=message):
        require_enabled_admin(exists=exists, role=role, disabled=disabled)
    require_enabled_admin(exists=True, role="admin", disabled=False)
