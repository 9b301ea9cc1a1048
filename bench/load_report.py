"""The figures of a `make load` run as Markdown tables (BENCHMARKS.md) and one JSON summary."""

from __future__ import annotations

from typing import Any

ALL_HTTP = "all HTTP requests"
TASK = "TASK"


def _http(step: dict[str, Any]) -> dict[str, Any]:
    return next((r for r in step["routes"] if r["name"] == ALL_HTTP),
                {"requests": 0, "failures": 0, "p50_ms": 0, "p95_ms": 0, "p99_ms": 0})


def _rps(route: dict[str, Any], step: dict[str, Any]) -> float:
    return round(route["requests"] / step["seconds"], 1) if step["seconds"] else 0.0


def _failures(step: dict[str, Any]) -> int:
    """HTTP failures and task timings that failed (a task not done, or done wrong)."""
    return sum(r["failures"] for r in step["routes"] if r["name"] != ALL_HTTP)


def server_errors(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Failures that are the system's: a 5xx, or no answer at all (status 0)."""
    return [{"users": s["users"], **e} for s in results.get("steps", []) for e in s["errors"]
            if e["type"] != TASK and e["error"][:1] in ("5", "0")]


def highest_clean(results: dict[str, Any]) -> int | None:
    """The most users of a step that, like every step before it, had no failure, in a run
    that lost no task; None when even the first step failed."""
    tasks = results.get("tasks", {})
    if tasks.get("lost") or tasks.get("recommendations_not_completed"):
        return None
    if (results.get("vote_counts") or {}).get("mismatched_at_end"):
        return None
    best = None
    for step in results.get("steps", []):
        if _failures(step):
            break
        best = step["users"]
    return best


def summary(results: dict[str, Any]) -> dict[str, Any]:
    steps = []
    for step in results.get("steps", []):
        http = _http(step)
        tasks = {r["name"]: {"n": r["requests"], "failures": r["failures"],
                             "p50_ms": r["p50_ms"], "p95_ms": r["p95_ms"]}
                 for r in step["routes"] if r["type"] == TASK}
        steps.append({"users": step["users"], "seconds": step["seconds"],
                      "requests_per_s": _rps(http, step), "requests": http["requests"],
                      "failures": _failures(step), "p50_ms": http["p50_ms"],
                      "p95_ms": http["p95_ms"], "p99_ms": http["p99_ms"],
                      "tasks": tasks, "loadavg_1m": step["loadavg_1m"]})
    return {"kind": "load", "steps": steps, "tasks": results.get("tasks"),
            "vote_counts": results.get("vote_counts"),
            "highest_clean_users": results.get("highest_clean_users"),
            "server_errors": server_errors(results), "cpu": results.get("cpu"),
            "interference": results.get("interference"), "complete": results.get("complete")}


def markdown(results: dict[str, Any]) -> str:
    steps = results.get("steps", [])
    out = ["| users | req/s | requests | failures | p50 ms | p95 ms | p99 ms | "
           "upload 202 -> done p50 / p95 ms | recommendation 202 -> completed p50 / p95 ms | "
           "load avg 1 min |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for step in steps:
        http = _http(step)
        task = {r["name"]: r for r in step["routes"] if r["type"] == TASK}

        def timing(name: str, task: dict[str, Any] = task) -> str:
            r = task.get(name)
            return f"{r['p50_ms']:,.0f} / {r['p95_ms']:,.0f} (n={r['requests']})" if r else ""

        out.append(f"| {step['users']} | {_rps(http, step)} | {http['requests']:,} | "
                   f"{_failures(step)} | {http['p50_ms']} | {http['p95_ms']} | "
                   f"{http['p99_ms']} | {timing('upload 202 -> done')} | "
                   f"{timing('recommendation 202 -> completed')} | {step['loadavg_1m']} |")
    names = sorted({(r["type"], r["name"]) for s in steps for r in s["routes"]
                    if r["type"] != TASK and r["name"] != ALL_HTTP}, key=lambda k: k[1])
    out += ["", "Per route, each step: req/s, p50 / p95 / p99 ms (failures when any).", "",
            "| route | " + " | ".join(f"{s['users']} users" for s in steps) + " |",
            "|---|" + "---|" * len(steps)]
    for _, name in names:
        cells = []
        for step in steps:
            r = next((r for r in step["routes"] if r["name"] == name), None)
            if r is None:
                cells.append("")
                continue
            failed = f", **{r['failures']} failed**" if r["failures"] else ""
            cells.append(f"{_rps(r, step)}/s, {r['p50_ms']} / {r['p95_ms']} / "
                         f"{r['p99_ms']}{failed}")
        out.append(f"| `{name}` | " + " | ".join(cells) + " |")
    errors = [(s["users"], e) for s in steps for e in s["errors"]]
    if errors:
        out += ["", "| users | route | error | count |", "|---:|---|---|---:|"]
        out += [f"| {u} | `{e['name']}` | {e['error'][:120]} | {e['count']} |"
                for u, e in errors]
    tasks = results.get("tasks") or {}
    if tasks:
        out += ["", f"Tasks given to clients: {tasks['given']} {tasks['by_kind']}; lost: "
                    f"{tasks['lost']}; recommendations not completed: "
                    f"{tasks['recommendations_not_completed']}; all ended "
                    f"{tasks['drain_s']} s after the load."]
    counts = results.get("vote_counts")
    if counts:
        out.append(f"Vote counts ({counts['votes']} votes on {counts['movies_voted']} movies): "
                   f"{counts['mismatched_after_load']} movies' catalog counts differed from the "
                   f"votes stored right after the load, {counts['mismatched_at_end']} after "
                   f"{counts['checked_for_s']} s.")
    cpu = results.get("cpu")
    if cpu:
        out.append(f"CPU during the load ({cpu['cores']} cores, {cpu['wall_s']} s): machine "
                   f"busy {cpu['machine_busy_cores']} cores, the stack {cpu['stack_cores']}, "
                   f"Locust {cpu['locust_cores']}, other people's processes "
                   f"{cpu['others_cores']}.")
    out.append(f"Highest load with zero errors and zero lost tasks: "
               f"{results.get('highest_clean_users')} users.")
    return "\n".join(out)
