"""Benchmarks of the real local stack: ingestion, upload throughput and catalog reads.

`python -m bench --tiers quick|full` starts its own stack on free ports, measures, stops it, and
writes `bench/results/<UTC timestamp>.json`. BENCHMARKS.md summarises the latest run."""
