"""python -m bench.load: Locust against a fresh local stack, at rising user counts (`make load`).

Starts a stack as the other benchmarks do (bench/stack.py: gateway rate limits lifted, since
every simulated user comes from one address; default bcrypt rounds), seeds it with the TMDB
top-10k file through the upload route, runs bench/locustfile.py headless in steps of users,
then waits for every task the clients were given to end and checks that none was lost. Prints
a Markdown table and the results as JSON, and writes them to bench/results/load-<time>.json.

    --steps 5,10,20,40   user counts, one after the other (users are added, not restarted)
    --step-seconds 30    seconds at each count (default: 2 minutes of load in all)
    --wait 0.5,1.5       each user's think time between actions, seconds
    --drain-seconds 300  how long, after the load, the tasks may take to end
    --keep               keep the working directory (stack logs, Locust's CSVs)
    --markdown FILE      print FILE's results as Markdown (for BENCHMARKS.md) and exit
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from bench import load_checks, load_report, machine
from bench.datagen import TMDB
from bench.stack import Api, running_stack

RESULTS = Path(__file__).resolve().parent / "results"
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
# Ids of the uploaded CSVs' movies: apart from the TMDB ids (at most 7 digits) and the other
# benchmarks' bases (up to 1.3e9).
LOAD_ID_BASE = 7_000_000_000
SEED_TIMEOUT = 900.0
# Past the ratings service's periodic re-push of unconfirmed counts (RATINGS_SYNC_SECONDS, 30).
VOTE_COUNT_WAIT = 45.0
_start = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _start:7.1f}s] {message}", file=sys.stderr, flush=True)


def seed(api: Api) -> dict[str, Any]:
    """The TMDB file uploaded and ingested to done, as a user would."""
    with open(TMDB, "rb") as f:
        r = api.post("/files/upload", files={"file": (TMDB.name, f, "text/csv")})
    r.raise_for_status()
    started = time.monotonic()
    task = api.wait_task(r.json()["task_id"], timeout=SEED_TIMEOUT, interval=0.5)
    if task["status"] != "done":
        raise RuntimeError(f"seeding ended {task['status']}: {task.get('error')}")
    return {"rows_imported": task["rows_imported"], "rows_rejected": task["rows_rejected"],
            "seconds": round(time.monotonic() - started, 1)}


def run_locust(url: str, out: Path, args: argparse.Namespace) -> tuple[int, float]:
    """Locust in its own process (it monkey-patches with gevent); its exit code and CPU s."""
    env = {**os.environ, "LOAD_DATA": str(TMDB), "LOAD_OUT": str(out),
           "LOAD_STEPS": args.steps, "LOAD_STEP_SECONDS": str(args.step_seconds),
           "LOAD_SPAWN_RATE": str(args.spawn_rate), "LOAD_WAIT": args.wait,
           "LOAD_ID_BASE": str(LOAD_ID_BASE + int(time.time()) % 100_000 * 10_000)}
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "--host", url, "--only-summary", "--loglevel", "WARNING",
            "--csv", str(out / "locust"), "--stop-timeout", "0"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out / "locust.log", "wb") as logfile:
        proc = subprocess.Popen(argv, env=env, stdout=logfile, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=len(args.steps.split(",")) * args.step_seconds + 300)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
    # Reaped, so its CPU time is now in this process's children's.
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return code, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load")
    parser.add_argument("--steps", default="5,10,20,40")
    parser.add_argument("--step-seconds", type=float, default=30.0)
    parser.add_argument("--spawn-rate", type=float, default=4.0)
    parser.add_argument("--wait", default="0.5,1.5")
    parser.add_argument("--drain-seconds", type=float, default=300.0)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    if args.markdown:
        print(load_report.markdown(json.loads(args.markdown.read_text())))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="marquee-load-"))
    out = work / "locust"
    out.mkdir()
    results: dict[str, Any] = {
        "kind": "load", "complete": False, "machine": machine.describe(),
        "config": {"steps": [int(n) for n in args.steps.split(",")],
                   "step_seconds": args.step_seconds, "spawn_rate": args.spawn_rate,
                   "wait_s": args.wait, "drain_seconds": args.drain_seconds,
                   "workers": 1, "worker_concurrency": 1, "rate_limits": "lifted",
                   "locust_user": "bench/locustfile.py Visitor (FastHttpUser)"}}
    ok = False
    try:
        with machine.InterferenceWatch() as watch, running_stack(work) as stack:
            log(f"stack ready; working in {work}")
            api = Api(stack.gateway_url)
            results["seed"] = seed(api)
            log(f"seeded: {results['seed']}")
            client: MongoClient = MongoClient(stack.env["MONGO_URI"])
            db = client[stack.settings.mongo_db]
            logs_from = load_checks.log_offsets(work / "logs")
            cpu = load_checks.CpuShare(stack)
            log(f"locust: steps {args.steps} users, {args.step_seconds:.0f} s each")
            code, locust_cpu = run_locust(stack.gateway_url, out, args)
            results["cpu"] = cpu.finish(locust_cpu)
            results["locust_exit_code"] = code
            results["steps"] = load_checks.read_steps(out / "steps.jsonl")
            log("load done; waiting for the tasks to end")
            results["tasks"] = load_checks.drain(db, out / "tasks.txt", args.drain_seconds)
            results["vote_counts"] = load_checks.vote_counts(db, VOTE_COUNT_WAIT)
            log(f"vote counts: {results['vote_counts']['mismatched_after_load']} movies off "
                f"after the load, {results['vote_counts']['mismatched_at_end']} at the end")
            results["stack_log_problems"] = load_checks.log_problems(work / "logs", logs_from)
            results["restarts"] = {n: p.restarts for n, p in stack.procs.items() if p.restarts}
            client.close()
        results["interference"] = watch.seen
        results["highest_clean_users"] = load_report.highest_clean(results)
        results["complete"] = True
        ok = True
    finally:
        results["runtime_s"] = round(time.monotonic() - _start, 1)
        if results.get("steps"):
            RESULTS.mkdir(exist_ok=True)
            path = RESULTS / f"load-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
            path.write_text(json.dumps(results, indent=2) + "\n")
            print(load_report.markdown(results))
            print(json.dumps(load_report.summary(results)))
            log(f"results in {path}")
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work} (stack logs in {work / 'logs'}, Locust's in {out})")


if __name__ == "__main__":
    main()
