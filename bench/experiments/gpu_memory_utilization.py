#!/usr/bin/env python3
"""--gpu-memory-utilization against the concurrency and throughput it allows (GPU backend).

For each utilisation, a random workload sent all at once (bounded by --num-prompts) measures
the output throughput, while /metrics is polled for the KV pool's size (the sum of
kvserve_kv_cache_blocks over its states, times the block size), the peak of
kvserve_num_requests_running (the concurrency the pool allowed) and of the KV cache usage."""

import argparse
import sys

import serve_common as sc

NAME = "gpu_memory_utilization"


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sc.add_common_args(p)
    p.set_defaults(device="cuda")
    p.add_argument("--utilizations", default="0.3,0.5,0.7,0.9")
    p.add_argument("--num-prompts", type=int, default=512)
    p.add_argument("--input-len", type=int, default=1024)
    p.add_argument("--output-len", type=int, default=256)
    p.add_argument("--block-size", type=int, default=16, help="the server's (for KV tokens)")
    args = p.parse_args()
    if not args.plot_only:
        runs = []
        for u in args.utilizations.split(","):
            flags = ["--gpu-memory-utilization", u, "--block-size", str(args.block_size)]
            server = sc.Server(args, flags, f"{NAME}-{u}")
            try:
                server.__enter__()
            except RuntimeError as e:  # e.g. too little memory for one max-length sequence
                print(f"util={u}: {e}", file=sys.stderr)
                runs.append({"utilization": float(u), "error": str(e),
                             "server_log": server.log_path.read_text(errors="replace")[-600:]})
                continue
            try:
                tokens = server.kv_pool_tokens()
                with sc.MetricsPoller(server.port) as poll:
                    r = sc.run_bench(args, server, [
                        "--workload", "random", "--num-prompts", str(args.num_prompts),
                        "--random-input-len", str(args.input_len), "--random-output-len",
                        str(args.output_len), "--request-rate", "inf", "--seed", "1",
                        "--label", f"util={u}", "--no-save-requests"])
                runs.append({"utilization": float(u), "kv_tokens": tokens, **poll.result(),
                             "result": r})
            finally:
                server.__exit__(None, None, None)
        sc.save(args, NAME, {"experiment": NAME, "runs": runs})
    plot(args, sc.load(args, NAME))


def plot(args, exp):
    plt = sc.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    rs = sorted((r for r in exp["runs"] if "result" in r), key=lambda r: r["utilization"])
    us = [r["utilization"] for r in rs]
    axes[0].plot(us, [r["result"]["output_throughput"] for r in rs], marker="o",
                 label="output tokens/s")
    axes[0].plot(us, [r["result"]["total_token_throughput"] for r in rs], marker="s",
                 label="prompt + output tokens/s")
    axes[0].set(xlabel="--gpu-memory-utilization", ylabel="tokens/s",
                title="memory utilisation against throughput")
    if rs and "peak_running" in rs[0]:
        axes[1].plot(us, [r["peak_running"] for r in rs], marker="o",
                     label="peak running requests (/metrics)")
        w = rs[0]["result"]["workload"]
        per_req = w.get("input_len", 0) + w.get("output_len", 0)
        if per_req:
            axes[1].plot(us, [r["kv_tokens"] / per_req for r in rs], marker="s", linestyle="--",
                         label=f"KV tokens / {per_req} (requests that fit)")
        axes[1].set_yscale("log")
    axes[1].set(xlabel="--gpu-memory-utilization", ylabel="requests",
                title="concurrency the KV pool allows")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    sc.footer(fig, exp)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(sc.img_path(args, NAME), dpi=120)


if __name__ == "__main__":
    main()
