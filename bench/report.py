"""The results as text tables (stdout) and as Markdown tables (BENCHMARKS.md)."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _rss(peaks: dict[str, float], names: tuple[str, ...]) -> str:
    return " ".join(f"{n[:3]}={peaks.get(n, 0):.0f}" for n in names)


def tables(results: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    out = []
    ingest_rows = []
    for r in results.get("ingest", []):
        if "ceiling_rows_per_s" not in r:  # an interrupted run
            continue
        ingest_rows.append([_fmt(r["rows"]), f"{r['bytes'] / 2**20:.1f}",
                            _fmt(r["e2e_rows_per_s"]), _fmt(r["ceiling_rows_per_s"]),
                            _fmt(r.get("ratio_to_ceiling")),
                            _fmt(r.get("ceiling_upsert_rows_per_s")),
                            _fmt(r["parse_rows_per_s"]), _fmt(r.get("naive_rows_per_s")),
                            _fmt(r.get("naive_peak_rss_mb")),
                            _rss(r["peak_rss_mb"], ("envoy", "upload", "task", "catalog",
                                                    "worker", "mongo"))])
    out.append(("Ingestion (rows/s; RSS in MB)",
                ["rows", "MiB", "e2e", "insert ceiling", "e2e/ceiling", "upsert ceiling",
                 "parse only", "naive insert", "naive peak RSS", "stack peak RSS"],
                ingest_rows))
    upload_rows = []
    for r in results.get("upload", []):
        upload_rows.append([f"{r['bytes'] / 2**20:,.0f}", _fmt(r["raw_mb_per_s"]),
                            _fmt(r["rest_mb_per_s"]), _fmt(r["rest_ratio"]),
                            _fmt(r["grpc_mb_per_s"]), _fmt(r["grpc_ratio"]),
                            _fmt(r.get("grpc_direct_mb_per_s")),
                            _fmt(r.get("grpc_sink_mb_per_s")),
                            _fmt(r.get("service_in_process_mb_per_s")),
                            *(_rss(r.get("peak_rss_mb_by_way", {}).get(way, {}),
                                   ("envoy", "upload")) for way in ("rest", "grpc"))])
    out.append(("Upload (MiB/s; RSS in MB)",
                ["MiB", "raw loopback", "REST via Envoy", "REST/raw", "gRPC via Envoy",
                 "gRPC/raw", "gRPC to upload svc", "gRPC to sink", "upload use case in-process",
                 "peak RSS REST",
                 "peak RSS gRPC"], upload_rows))
    scale = results.get("scale", [])
    smallest = scale[0]["peak_rss_mb"] if scale else {}
    watched = ("envoy", "upload", "catalog", "worker")
    scale_rows = []
    for r in scale:
        growth = " ".join(f"{n[:3]}={r['peak_rss_mb'].get(n, 0) / smallest[n]:.2f}"
                          for n in watched if smallest.get(n))
        scale_rows.append([f"{r['bytes'] / 2**20:,.0f}", _fmt(r["rows"]), r["via"],
                           _fmt(r["upload_mb_per_s"]), _fmt(r["e2e_rows_per_s"]),
                           _fmt(r["e2e_s"]), _rss(r["peak_rss_mb"], (*watched, "task")), growth])
    out.append(("Ingestion to done by file size (RSS in MB; growth = peak / the smallest "
                "file's peak)",
                ["MiB", "rows", "via", "upload MiB/s", "rows/s", "seconds", "stack peak RSS",
                 "growth"], scale_rows))
    cpu_rows = []
    for r in results.get("upload", []):
        for way, used in r.get("cpu_ms_per_mib", {}).items():
            cpu_rows.append([f"{r['bytes'] / 2**20:,.0f}", way, _fmt(used.get("envoy")),
                             _fmt(used.get("upload")), _fmt(used.get("bench")),
                             _fmt(sum(used.values()))])
    out.append(("Upload CPU time (ms per MiB; the machine has 2 cores, so 2 ms/MiB of CPU in "
                "all is at most ~1,000 MiB/s)",
                ["MiB", "way", "envoy", "upload service", "bench (client; sinks)", "total"],
                cpu_rows))
    read_rows = []
    for r in results.get("reads", []):
        read_rows.append([
            _fmt(r["movies"]), r["query"], str(r["concurrency"]), _fmt(r.get("p50_ms")),
            _fmt(r.get("p95_ms")), _fmt(r.get("p99_ms")), _fmt(r.get("rps")),
            _fmt(r.get("cache_hit_ratio")), _fmt(r.get("cold_ms")),
            _fmt(r.get("uncached_p50_ms")) if "uncached_skipped" not in r else "skip",
            _fmt(r.get("uncached_p99_ms")) if "uncached_skipped" not in r else "skip",
            _fmt(r.get("direct_p50_ms")) if "direct_skipped" not in r else "skip",
            _fmt(r.get("direct_p99_ms")) if "direct_skipped" not in r else "skip",
            _fmt(r.get("direct_rps")) if "direct_skipped" not in r else "skip",
            _fmt(r.get("ratio_p99")), _fmt(r.get("uncached_ratio_p99")),
        ])
    out.append(("GET /movies (ms; via Envoy as served / with the cache bypassed / pymongo "
                "direct)",
                ["movies", "query", "conc", "p50", "p95", "p99", "req/s", "hit ratio",
                 "cold", "uncached p50", "uncached p99", "direct p50", "direct p99",
                 "direct req/s", "p99/direct", "uncached p99/direct"], read_rows))
    rec_rows = []
    for r in results.get("recommend", []):
        c1, c16 = r.get("cached_c1", {}), r.get("cached_c16", {})
        rec_rows.append([_fmt(r["movies"]), r["criteria"], _fmt(r["compute_s"]),
                         _fmt(r["returned"]), _fmt(r["worker_peak_rss_mb"]),
                         _fmt(c1.get("p50_ms")), _fmt(c1.get("p99_ms")),
                         _fmt(c16.get("p50_ms")), _fmt(c16.get("p99_ms")),
                         _fmt(c16.get("rps"))])
    out.append(("Recommendations (202 to completed, s; cached GET /recommendations via Envoy, ms)",
                ["movies", "criteria", "compute s", "returned", "worker RSS MB", "c1 p50",
                 "c1 p99", "c16 p50", "c16 p99", "c16 req/s"], rec_rows))
    out.append(("Votes via Envoy at concurrency 16 (GET /movies and /movies/{id} ms, 4 readers, "
                "quiet and while voting)",
                ["movies", "votes", "votes/s", "counts exact", "quiet p50", "quiet p99",
                 "voting p50", "voting p99", "p99 ratio"],
                [[_fmt(r["movies_in_catalog"]), _fmt(r["votes"]), _fmt(r["votes_per_s"]),
                  str(r["counts_exact"]), _fmt(r["reads_quiet"]["p50_ms"]),
                  _fmt(r["reads_quiet"]["p99_ms"]), _fmt(r["reads_while_voting"]["p50_ms"]),
                  _fmt(r["reads_while_voting"]["p99_ms"]), _fmt(r["p99_ratio"])]
                 for r in results.get("votes", [])]))
    auth = results.get("auth", {})
    out.append(("Account routes via Envoy (ms, one client; ratio = p50 / the JWKS GET's p50)",
                ["route", "requests", "p50", "p95", "p99", "p50 ratio"],
                [[route, _fmt(r["requests"]), _fmt(r["p50_ms"]), _fmt(r["p95_ms"]),
                  _fmt(r["p99_ms"]), _fmt(r["p50_over_jwks"])] for route, r in auth.items()]))
    return out


def _measured(results: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The tables of the parts that ran (`--parts` may leave some out)."""
    return [table for table in tables(results) if table[2]]


def text(results: dict[str, Any]) -> str:
    lines = []
    for title, header, rows in _measured(results):
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
                  for i, h in enumerate(header)]
        lines.append("")
        lines.append(title)
        lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
        for row in rows:
            lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    lines = []
    for title, header, rows in _measured(results):
        lines += ["", f"**{title}**", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join("---:" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
