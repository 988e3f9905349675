#!/usr/bin/env python3
"""Eviction under memory pressure: dependent-lru, dependent-lfu, lru-any and dependent-lru with
priority retention of the system prompts; prefix hit rate and TTFT as the KV pool shrinks.

The workload is shared-prefix with more system-prompt tokens than the smaller pools hold,
prompts in shuffled order, so groups compete for blocks. --kv-cache-memory sizes the pool on
the CPU backend; on a GPU pass --memory-flag --gpu-memory-utilization and fractions (the pool's
size in tokens is read from each server's start log and kept as `kv_tokens`). A server that
does not start (a pool too small for --max-model-len) is recorded with its error, and the
results are saved after every run, so a stage cut short keeps what it measured."""

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
    p.add_argument("--question-len", type=int, default=16)
    p.add_argument("--output-len", type=int, default=8)
    p.add_argument("--rate", default="4")
    args = p.parse_args()
    if not args.plot_only:
        runs = []
        for mem in args.memories.split(","):
            for policy, server_flags, bench_flags in POLICIES:
                run = {"policy": policy, "memory": mem}
                try:
                    with sc.Server(args, server_flags + [args.memory_flag, mem],
                                   f"{NAME}-{mem}-{policy.replace(' ', '')}") as server:
                        run["kv_tokens"] = server.kv_pool_tokens()
                        run["result"] = sc.run_bench(args, server, [
                            "--workload", "shared-prefix",
                            "--shared-prefix-groups", str(args.groups),
                            "--shared-prefix-prompts-per-group", str(args.prompts_per_group),
                            "--shared-prefix-system-len", str(args.system_len),
                            "--shared-prefix-question-len", str(args.question_len),
                            "--shared-prefix-output-len", str(args.output_len),
                            "--request-rate", args.rate, "--seed", "1",
                            "--label", f"{policy} {mem}", "--no-save-requests"] + bench_flags)
                except (RuntimeError, OSError) as e:
                    run["error"] = str(e)
                runs.append(run)
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
    ok = [r for r in exp["runs"] if "result" in r]
    gpu = bool(ok) and not ok[0]["memory"][-1].isalpha()
    # On the GPU the x axis is the pool in tokens (from the start log) where it was recorded.
    tokens = gpu and all(r.get("kv_tokens") for r in ok)

    def x_of(r):
        if tokens:
            return r["kv_tokens"] / 1000
        return float(r["memory"]) if gpu else to_mib(r["memory"])

    for policy, _, _ in POLICIES:
        rs = sorted((r for r in ok if r["policy"] == policy), key=x_of)
        if not rs:
            continue
        xs = [x_of(r) for r in rs]
        # The requests' usage, not /metrics: the server counts a preempted request's lookup
        # again when it is re-admitted, which inflates its hit rate under pressure.
        axes[0].plot(xs, [100 * r["result"]["client_prefix_hit_rate"] for r in rs], marker="o",
                     label=policy)
        axes[1].plot(xs, [r["result"]["ttft_ms"]["median"] for r in rs], marker="o", label=policy)
    xlabel = ("KV pool (thousand tokens, --gpu-memory-utilization)" if tokens else
              "--gpu-memory-utilization" if gpu else "KV pool (MiB, --kv-cache-memory)")
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
