#!/usr/bin/env python3
"""--scheduling-policy fcfs vs lpm on the multi-turn workload: TTFT and throughput against the
rate of new conversations. The order of the waiting queue matters only when requests wait: on a
GPU, bound the running batch (--server-flags "--max-num-seqs N") and/or the KV pool so that a
queue forms. Results are saved after every run."""

import argparse

import serve_common as sc

NAME = "scheduling_policy"


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sc.add_common_args(p)
    p.add_argument("--rates", default="1,2,4")
    p.add_argument("--conversations", type=int, default=8)
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--system-len", type=int, default=64)
    p.add_argument("--question-len", type=int, default=32)
    p.add_argument("--output-len", type=int, default=16)
    args = p.parse_args()
    if not args.plot_only:
        runs = []
        for policy in ("fcfs", "lpm"):
            for rate in args.rates.split(","):
                with sc.Server(args, ["--scheduling-policy", policy],
                               f"{NAME}-{policy}-{rate}") as server:
                    r = sc.run_bench(args, server, [
                        "--workload", "multi-turn", "--multi-turn-conversations",
                        str(args.conversations), "--multi-turn-turns", str(args.turns),
                        "--multi-turn-system-len", str(args.system_len),
                        "--multi-turn-question-len", str(args.question_len),
                        "--multi-turn-output-len", str(args.output_len), "--request-rate", rate,
                        "--seed", "1", "--label", f"{policy} rate={rate}", "--no-save-requests"])
                    runs.append({"policy": policy, "rate": float(rate), "kv_tokens":
                                 server.kv_pool_tokens(), "result": r})
                sc.save(args, NAME, {"experiment": NAME, "runs": runs})
    plot(args, sc.load(args, NAME))


def plot(args, exp):
    plt = sc.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for policy in ("fcfs", "lpm"):
        rs = sorted((r for r in exp["runs"] if r["policy"] == policy), key=lambda r: r["rate"])
        if not rs:
            continue
        rates = [r["rate"] for r in rs]
        axes[0].plot(rates, [r["result"]["ttft_ms"]["median"] for r in rs], marker="o",
                     label=f"{policy} median")
        axes[0].plot(rates, [r["result"]["ttft_ms"]["p90"] for r in rs], marker="x",
                     linestyle="--", label=f"{policy} p90")
        axes[1].plot(rates, [r["result"]["total_token_throughput"] for r in rs], marker="o",
                     label=policy)
        axes[2].plot(rates, [100 * r["result"]["client_prefix_hit_rate"] for r in rs],
                     marker="o", label=policy)
    axes[0].set(xlabel="new conversations / s", ylabel="TTFT (ms)", title="TTFT")
    axes[1].set(xlabel="new conversations / s", ylabel="tokens/s", title="throughput")
    axes[2].set(xlabel="new conversations / s", ylabel="prefix hit rate (%, requests' usage)",
                title="hit rate")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    sc.footer(fig, exp)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(sc.img_path(args, NAME), dpi=120)


if __name__ == "__main__":
    main()
