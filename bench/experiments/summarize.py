#!/usr/bin/env python3
"""Prints the serving experiments' results (docs/bench-data/serve/*.json) as Markdown tables,
for docs/BENCHMARKS.md."""

import json
import sys
from pathlib import Path

import serve_common as sc

KEYS = {"kv_cache_on_off": ("mode", "input_len"), "prefix_commit": ("mode", "rate"),
        "block_size": ("workload", "block_size"), "eviction": ("policy", "memory"),
        "scheduling_policy": ("policy", "rate"), "gpu_memory_utilization": ("utilization",)}


def main():
    tag = sys.argv[1] if len(sys.argv) > 1 else ""
    for name, keys in KEYS.items():
        path = sc.REPO / "docs" / "bench-data" / "serve" / f"{name}{'-' + tag if tag else ''}.json"
        if not path.exists():
            continue
        exp = json.loads(path.read_text())
        print(f"### {name}\n\nCommit {exp['commit']}, {exp['device']}, {exp['machine']}.\n"
              f"Command: `{exp['script']}`\n")
        head = list(keys) + ["ok/sent", "TTFT med (ms)", "TTFT p90 (ms)", "TPOT med (ms)",
                             "ITL p99 (ms)", "E2E med (ms)", "tok/s", "out tok/s",
                             "hit % (usage / metrics)", "check"]
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in exp["runs"]:
            if "result" not in r:
                continue
            x = r["result"]
            hit = f"{100 * x['client_prefix_hit_rate']:.1f} / " + (
                f"{100 * x['server']['prefix_hit_rate']:.1f}" if x["server"]["available"] else "-")
            row = [str(r[k]) for k in keys] + [
                f"{x['completed']}/{x['num_requests']}", f"{x['ttft_ms']['median']:.0f}",
                f"{x['ttft_ms']['p90']:.0f}", f"{x['tpot_ms']['median']:.1f}",
                f"{x['itl_ms']['p99']:.0f}", f"{x['e2e_ms']['median']:.0f}",
                f"{x['total_token_throughput']:.1f}", f"{x['output_throughput']:.1f}", hit]
            row.append(x.get("check", "-"))
            print("| " + " | ".join(row) + " |")
        print()


if __name__ == "__main__":
    main()
