#!/usr/bin/env python3
"""Eviction under memory pressure: dependent-lru, dependent-lfu, lru-any and dependent-lru with
priority retention of the system prompts; prefix hit rate and TTFT as the KV pool shrinks.

The workload is shared-prefix with more system-prompt tokens than the smaller pools hold,
prompts in shuffled order, so groups compete for blocks. --kv-cache-memory sizes the pool on
the CPU backend; on a GPU pass --memory-flag --gpu-memory-utilization and fractions."""

import argparse

import serve_common as sc

NAME = "eviction"
POLICIES = (("dependent-lru", ["--eviction-policy", "dependent-lru"], []),
            ("dependent-lfu", ["--eviction-policy", "dependent-lfu"], []),
            ("lru-any", ["--eviction-policy", "lru-any"], []),
            ("dependent-lru + retention", ["--eviction-policy", "dependent-lru"],
             ["--retain-system-prompt", "100"]))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sc.add_common_args(p)
    p.add_argument("--memory-flag", default="--kv-cache-memory")
    p.add_argument("--memories", default="16MiB,24MiB,32MiB,64MiB,256MiB")
    p.add_argument("--groups", type=int, default=8)
    p.add_argument("--prompts-per-group", type=int, default=4)
    p.add_argument("--system-len", type=int, default=192)
    p.add_argument("--rate", default="4")
    args = p.parse_args()
    if not args.plot_only:
        runs = []
        for mem in args.memories.split(","):
            for policy, server_flags, bench_flags in POLICIES:
                with sc.Server(args, server_flags + [args.memory_flag, mem],
                               f"{NAME}-{mem}-{policy.replace(' ', '')}") as server:
                    r = sc.run_bench(args, server, [
                        "--workload", "shared-prefix", "--shared-prefix-groups", str(args.groups),
                        "--shared-prefix-prompts-per-group", str(args.prompts_per_group),
                        "--shared-prefix-system-len", str(args.system_len),
                        "--shared-prefix-question-len", "16", "--shared-prefix-output-len", "8",
                        "--request-rate", args.rate, "--seed", "1",
                        "--label", f"{policy} {mem}", "--no-save-requests"] + bench_flags)
                    runs.append({"policy": policy, "memory": mem, "result": r})
        sc.save(args, NAME, {"experiment": NAME, "runs": runs})
    plot(args, sc.load(args, NAME))


def to_mib(text):
    units = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "KB": 1e3 / 2**20, "MB": 1e6 / 2**20,
             "GB": 1e9 / 2**20}
    for u, f in units.items():
        if text.endswith(u):
            return float(text[:-len(u)]) * f
    return float(text)


def plot(args, exp):
    plt = sc.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    gpu = exp["runs"] and not exp["runs"][0]["memory"][-1].isalpha()
    for policy, _, _ in POLICIES:
        rs = [r for r in exp["runs"] if r["policy"] == policy]
        if not rs:
            continue
        rs.sort(key=lambda r: float(r["memory"]) if gpu else to_mib(r["memory"]))
        xs = [float(r["memory"]) if gpu else to_mib(r["memory"]) for r in rs]
        # The requests' usage, not /metrics: the server counts a preempted request's lookup
        # again when it is re-admitted, which inflates its hit rate under pressure.
        axes[0].plot(xs, [100 * r["result"]["client_prefix_hit_rate"] for r in rs], marker="o",
                     label=policy)
        axes[1].plot(xs, [r["result"]["ttft_ms"]["median"] for r in rs], marker="o", label=policy)
    xlabel = "--gpu-memory-utilization" if gpu else "KV pool (MiB, --kv-cache-memory)"
    axes[0].set(xlabel=xlabel, ylabel="prefix hit rate (%, requests' usage)",
               title="hit rate as the pool shrinks")
    axes[1].set(xlabel=xlabel, ylabel="median TTFT (ms)", title="TTFT as the pool shrinks")
    for ax in axes:
        if not gpu:
            ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    sc.footer(fig, exp)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(sc.img_path(args, NAME), dpi=120)


if __name__ == "__main__":
    main()
