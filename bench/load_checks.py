"""What `make load` checks besides Locust's own figures: that every task the clients were given
ended (none lost), what the stack logged as a warning or an error during the load, and who used
the machine's CPU (the stack, Locust, or other people's processes on this shared machine)."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.memory import cpu_seconds
from devstack.stack import Stack

TERMINAL = ("done", "failed", "cancelled")
LOG_SAMPLES = 3  # log lines kept per (process, level, message)


def read_steps(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def drain(db: Any, given: Path, timeout: float) -> dict[str, Any]:
    """Waits until every task a client was given has ended (or `timeout`), then counts them:
    an id missing from the task store or still active is lost; a recommendation counts as
    completed only when its task is done and its run `completed`."""
    kinds: dict[str, str] = {}
    if given.exists():
        for line in given.read_text().splitlines():
            kind, _, task_id = line.partition(" ")
            kinds[task_id] = kind
    tasks = db["task_tasks"]
    started = time.monotonic()
    while True:
        docs = {d["_id"]: d for d in tasks.find({"_id": {"$in": list(kinds)}},
                                                 {"status": 1, "kind": 1, "error": 1})}
        active = [i for i in kinds if docs.get(i, {}).get("status") not in TERMINAL]
        # Tasks nobody was told about must end too: a 202 still on its way when Locust
        # stopped its users, or one lost between the services and the client.
        untold = list(tasks.find({"status": {"$nin": list(TERMINAL)},
                                  "_id": {"$nin": list(kinds)}},
                                 {"status": 1, "kind": 1, "created_at": 1}))
        if (not active and not untold) or time.monotonic() - started > timeout:
            break
        time.sleep(1)
    drained_s = round(time.monotonic() - started, 1)
    by_kind: dict[str, Counter[str]] = {}
    for task_id, kind in kinds.items():
        by_kind.setdefault(kind, Counter())[docs.get(task_id, {}).get("status", "missing")] += 1
    runs = {r["task_id"]: r.get("status") for r in db["recommendations_runs"].find(
        {"task_id": {"$in": [i for i, k in kinds.items() if k == "recommend"]}},
        {"task_id": 1, "status": 1})}
    not_completed = [i for i, k in kinds.items() if k == "recommend" and runs.get(i) != "completed"]
    failed = [{"task_id": i, "kind": kinds[i], "error": str(d.get("error", ""))[:300]}
              for i, d in docs.items() if d.get("status") == "failed"]
    return {"given": len(kinds), "by_kind": {k: dict(v) for k, v in by_kind.items()},
            "lost": len(active) + len(untold), "lost_ids": active[:20],
            "lost_untold": [{"task_id": d["_id"], "kind": d.get("kind"),
                             "status": d.get("status"), "created_at": str(d.get("created_at"))}
                            for d in untold[:20]],
            "drain_s": drained_s,
            "recommendations_not_completed": len(not_completed),
            "recommendations_not_completed_ids": not_completed[:20],
            "failed": failed[:20]}


def log_offsets(logs: Path) -> dict[str, int]:
    """Each log file's size now: the load's lines are the ones after it."""
    return {p.name: p.stat().st_size for p in logs.glob("*.log")}


def _problem(name: str, line: str) -> tuple[str, str] | None:
    """(level, message) of a warning or worse; None for other lines."""
    try:
        entry = json.loads(line)
    except ValueError:
        entry = None
    if isinstance(entry, dict) and "level" in entry:
        level = str(entry["level"]).lower()
        if level in ("warning", "error", "critical"):
            return level, str(entry.get("msg", ""))[:200]
        return None
    lowered = line.lower()
    for level in ("critical", "error", "warning"):
        if f"[{level}]" in lowered or (level == "error" and "traceback" in lowered):
            return level, line[:200]
    if name == "stack.log" and ("exited" in lowered or "restart" in lowered):
        return "error", line[:200]
    return None


def log_problems(logs: Path, offsets: dict[str, int]) -> list[dict[str, Any]]:
    """Warnings and errors every process logged since `offsets`, counted by message."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path in sorted(logs.glob("*.log")):
        with open(path, "rb") as f:
            f.seek(offsets.get(path.name, 0))
            text = f.read().decode(errors="replace")
        for line in text.splitlines():
            problem = _problem(path.name, line)
            if problem is None:
                continue
            key = (path.stem, *problem)
            entry = found.setdefault(key, {"process": path.stem, "level": problem[0],
                                           "message": problem[1], "count": 0, "lines": []})
            entry["count"] += 1
            if len(entry["lines"]) < LOG_SAMPLES:
                entry["lines"].append(line[:1000])
    return sorted(found.values(), key=lambda e: (e["level"] != "critical",
                                                e["level"] != "error", -e["count"]))


def _busy_cpu_s() -> float:
    """CPU seconds the whole machine has been busy (every process, anyone's)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuShare:
    """CPU used during the load by the stack's processes, Locust, and everyone else."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.names = tuple(stack.procs)
        self.wall = time.monotonic()
        self.busy = _busy_cpu_s()
        self.ours = cpu_seconds(stack, self.names)

    def finish(self, locust_cpu_s: float) -> dict[str, Any]:
        wall = time.monotonic() - self.wall
        busy = _busy_cpu_s() - self.busy
        now = cpu_seconds(self.stack, self.names)
        used = {n: round(now[n] - self.ours[n], 1) for n in now}
        used["locust"] = round(locust_cpu_s, 1)
        others = busy - sum(used.values())
        cores = os.cpu_count() or 1
        return {"wall_s": round(wall, 1), "cores": cores, "cpu_s": used,
                "machine_busy_cores": round(busy / wall, 2),
                "stack_cores": round(sum(v for n, v in used.items()
                                         if n not in ("locust", "bench")) / wall, 2),
                "locust_cores": round(locust_cpu_s / wall, 2),
                "others_cores": round(max(others, 0.0) / wall, 2)}


def _count_mismatches(db: Any) -> list[dict[str, Any]]:
    """Movies whose counts in the catalog differ from the votes the ratings service holds."""
    votes: dict[str, list[int]] = {}
    for v in db["ratings_votes"].find({}, {"movie_id": 1, "rating_type": 1}):
        up = str(v["rating_type"]).upper().startswith("UP")
        votes.setdefault(v["movie_id"], [0, 0])[0 if up else 1] += 1
    shown = {m["_id"]: [m.get("upvotes") or 0, m.get("downvotes") or 0]
             for m in db["catalog_movies"].find(
                 {"$or": [{"upvotes": {"$gt": 0}}, {"downvotes": {"$gt": 0}},
                          {"_id": {"$in": list(votes)}}]}, {"upvotes": 1, "downvotes": 1})}
    return [{"movie_id": m, "catalog": shown.get(m, [0, 0]), "votes": votes.get(m, [0, 0])}
            for m in sorted(set(votes) | set(shown))
            if shown.get(m, [0, 0]) != votes.get(m, [0, 0])]


def vote_counts(db: Any, wait: float) -> dict[str, Any]:
    """Every movie's up/down counts in the catalog against the votes stored, once the load is
    over (the API promises them exact as soon as a vote call returns), then again until they
    agree or `wait` passes (the ratings service re-pushes unconfirmed counts periodically)."""
    started = time.monotonic()
    first = _count_mismatches(db)
    wrong = first
    while wrong and time.monotonic() - started < wait:
        time.sleep(2)
        wrong = _count_mismatches(db)
    return {"movies_voted": len(db["ratings_votes"].distinct("movie_id")),
            "votes": db["ratings_votes"].estimated_document_count(),
            "mismatched_after_load": len(first), "mismatched_sample": first[:10],
            "mismatched_at_end": len(wrong), "mismatched_at_end_sample": wrong[:10],
            "checked_for_s": round(time.monotonic() - started, 1)}
