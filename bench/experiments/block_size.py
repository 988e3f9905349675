#!/usr/bin/env python3
"""Block sizes 2..64: TTFT, throughput and prefix hit rate on the shared-prefix and multi-turn
workloads, at one request rate."""

import argparse

import serve_common as sc

NAME = "block_size"


def workloads(args):
    return {
        "shared-prefix": ["--workload", "shared-prefix", "--shared-prefix-groups",
                          str(args.groups), "--shared-prefix-prompts-per-group",
                          str(args.prompts_per_group), "--shared-prefix-system-len",
                          str(args.system_len), "--shared-prefix-question-len",
                          str(args.question_len), "--shared-prefix-output-len",
                          str(args.output_len), "--request-rate", args.rate],
        "multi-turn": ["--workload", "multi-turn", "--multi-turn-conversations",
                       str(args.conversations), "--multi-turn-turns", str(args.turns),
                       "--multi-turn-system-len", "0", "--multi-turn-question-len",
                       str(args.question_len), "--multi-turn-output-len", str(args.output_len),
                       "--request-rate", args.rate],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sc.add_common_args(p)
    p.add_argument("--block-sizes", default="2,4,8,16,32,64")
    p.add_argument("--workloads", default="shared-prefix,multi-turn", help="comma-separated")
    p.add_argument("--rate", default="2", help="sessions/s")
    p.add_argument("--system-len", type=int, default=200)
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--prompts-per-group", type=int, default=6)
    p.add_argument("--conversations", type=int, default=6)
    p.add_argument("--turns", type=int, default=4)
    p.add_argument("--question-len", type=int, default=40)
    p.add_argument("--output-len", type=int, default=16)
    args = p.parse_args()
    if args.backend == "openai-completions" and "multi-turn" in args.workloads:
        p.error("multi-turn needs --backend ws or openai-chat")
    if not args.plot_only:
        runs = []
        for bs in args.block_sizes.split(","):
            for wl, flags in workloads(args).items():
                if wl not in args.workloads.split(","):
                    continue
                with sc.Server(args, ["--block-size", bs], f"{NAME}-{bs}-{wl}") as server:
                    r = sc.run_bench(args, server, flags + ["--seed", "1", "--label",
                                                            f"block={bs} {wl}",
                                                            "--no-save-requests"])
                    runs.append({"block_size": int(bs), "workload": wl, "result": r})
        sc.save(args, NAME, {"experiment": NAME, "runs": runs})
    plot(args, sc.load(args, NAME))


def plot(args, exp):
    plt = sc.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for wl in ("shared-prefix", "multi-turn"):
        rs = sorted((r for r in exp["runs"] if r["workload"] == wl), key=lambda r: r["block_size"])
        if not rs:
            continue
        bs = [r["block_size"] for r in rs]
        axes[0].plot(bs, [r["result"]["ttft_ms"]["median"] for r in rs], marker="o", label=wl)
        axes[1].plot(bs, [r["result"]["total_token_throughput"] for r in rs], marker="o",
                     label=wl)
        axes[2].plot(bs, [100 * r["result"]["server"].get("prefix_hit_rate",
                                                          r["result"]["client_prefix_hit_rate"])
                          for r in rs], marker="o", label=wl)
    axes[0].set(ylabel="median TTFT (ms)", title="TTFT")
    axes[1].set(ylabel="tokens/s (prompt + output)", title="throughput")
    axes[2].set(ylabel="prefix hit rate (%)", title="hit rate (/metrics)")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("block size (tokens)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    sc.footer(fig, exp)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(sc.img_path(args, NAME), dpi=120)


if __name__ == "__main__":
    main()
