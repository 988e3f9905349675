#!/usr/bin/env python3
"""Plots the cache simulator's results: prefix hit rate (tokens) against pool size, one line per
eviction policy, one column per block size. The second row shows the hit rate of the tokens
after the system prompt (conversation history), where the policies differ most.

Usage: bench/plot_cache_simulator.py RESULTS.csv OUTPUT.png
(RESULTS.csv from `cache_simulator --csv RESULTS.csv`; needs matplotlib.)
"""
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

TICKS = [1.2, 2, 3, 4, 6, 8, 12, 24]

STYLES = {
    "dependent-lru": dict(color="tab:blue", marker="o"),
    "lru-any": dict(color="tab:red", marker="x", linestyle="--"),
    "dependent-lfu": dict(color="tab:green", marker="s", linestyle=":"),
    "dependent-lru+pinned": dict(color="tab:purple", marker="^", linestyle="-."),
}


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    rows = list(csv.DictReader(open(argv[1], newline="")))
    series = defaultdict(list)  # (block_size, policy) -> [(x, hit, other)]
    for r in rows:
        series[(int(r["block_size"]), r["policy"])].append(
            (float(r["pool_over_pinned"]), float(r["hit_rate"]), float(r["other_hit_rate"])))
    block_sizes = sorted({bs for bs, _ in series})
    fig, axes = plt.subplots(2, len(block_sizes), figsize=(5 * len(block_sizes), 8),
                             squeeze=False, sharex=True)
    for col, bs in enumerate(block_sizes):
        for policy, style in STYLES.items():
            pts = sorted(series.get((bs, policy), []))
            if not pts:
                continue
            xs = [p[0] for p in pts]
            axes[0][col].plot(xs, [100 * p[1] for p in pts], label=policy, **style)
            axes[1][col].plot(xs, [100 * p[2] for p in pts], label=policy, **style)
        axes[0][col].set_title(f"block size {bs}")
        for row in (0, 1):
            ax = axes[row][col]
            ax.set_xscale("log")
            ax.set_xticks(TICKS)
            ax.set_xticklabels([f"{t:g}x" for t in TICKS])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.grid(True, which="major", alpha=0.3)
            ax.axvline(1.2, color="grey", linewidth=0.8, linestyle=":")
        axes[1][col].set_xlabel("pool size / system-prompt tokens")
    axes[0][0].set_ylabel("prefix hit rate, all prompt tokens (%)")
    axes[1][0].set_ylabel("hit rate, tokens after the system prompt (%)")
    axes[0][0].legend(loc="lower right")
    fig.suptitle("KV cache simulator: multi-tenant chatbot workload")
    fig.tight_layout()
    fig.savefig(argv[2], dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
