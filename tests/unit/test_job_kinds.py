"""Jobs are routed by task kind: an unknown kind is refused, never run as a CSV import; and a
job whose task went to another worker steps aside."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from marquee.recommendations.v1 import recommendations_pb2
from marquee.task.v1 import task_pb2
from services.common import jobs
from services.worker.csv_source import CsvLimits
from services.worker.ingest import Clients, ingest_csv
from services.worker.recommend import RecommendClients, recommend


def test_each_kind_has_its_job() -> None:
    assert jobs.job_name(jobs.INGEST_CSV) == "marquee.ingest_csv"


def test_an_unknown_kind_has_no_job() -> None:
    with pytest.raises(jobs.UnknownKind, match="kind 'sort_csv'; known kinds: dedupe, filter, "
                                               "ingest_csv, recommend, unique"):
        jobs.job_name("sort_csv")


class _Tasks:
    """The task service as the worker sees it: a claim of a task of `kind`, and the finish."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.finished: list[task_pb2.FinishTaskRequest] = []

    def ClaimTask(self, request: task_pb2.ClaimTaskRequest, timeout: float
                  ) -> task_pb2.ClaimTaskResponse:
        return task_pb2.ClaimTaskResponse(
            task=task_pb2.Task(task_id=request.task_id, kind=self.kind, file_id="f1"))

    def FinishTask(self, request: task_pb2.FinishTaskRequest, timeout: float) -> task_pb2.Task:
        self.finished.append(request)
        return task_pb2.Task(task_id=request.task_id, status=request.status)


class _Untouchable:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a refused task must not reach {name}")


def test_the_ingestion_job_refuses_a_task_of_another_kind() -> None:
    tasks = _Tasks(kind="dedupe_csv")
    clients = Clients(tasks=tasks, uploads=_Untouchable(),  # type: ignore[arg-type]
                      catalog=_Untouchable())
    limits = CsvLimits(max_row_chars=1 << 20, max_header_chars=64 << 10, max_columns=256)
    assert ingest_csv(clients, "t1", "w1", batch_size=10, limits=limits) == "failed"
    (finish,) = tasks.finished
    assert finish.status == "failed"
    assert "cannot run a task of kind 'dedupe_csv'" in finish.error


class _LeaseLost(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.FAILED_PRECONDITION

    def details(self) -> str:
        return "lease lost: the task ended or another worker took it"


class _TasksHandedOn(_Tasks):
    """The sweep handed the task to another worker while this one computed."""

    def FinishTask(self, request: task_pb2.FinishTaskRequest, timeout: float) -> task_pb2.Task:
        super().FinishTask(request, timeout)
        raise _LeaseLost()


class _CompletedRuns:
    def StartRun(self, request: Any, timeout: float) -> recommendations_pb2.StartRunResponse:
        return recommendations_pb2.StartRunResponse(completed=True)


def test_a_job_whose_task_was_handed_on_steps_aside() -> None:
    # Its lease ran out during a slow call: the holder ends the task, and this job's finish,
    # refused, must end the job quietly rather than as an unexpected error of the worker.
    tasks = _TasksHandedOn(kind=jobs.RECOMMEND)
    clients = RecommendClients(tasks=tasks, ratings=_Untouchable(),  # type: ignore[arg-type]
                               catalog=_Untouchable(),
                               recommendations=_CompletedRuns())  # type: ignore[arg-type]
    assert recommend(clients, "t1", "w1", min_votes=100) == "skipped"
    assert [f.status for f in tasks.finished] == ["done"]
