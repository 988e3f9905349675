#!/usr/bin/env python3
"""--gpu-memory-utilization against the concurrency and throughput it allows (GPU backend).

For each utilisation, a random workload sent all at once (bounded by --num-prompts) measures
the output throughput; the server's log line with the KV blocks that fit and the peak of
kvserve_num_requests_running are not read here: the throughput curve is the result."""

import argparse

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
    args = p.parse_args()
    if not args.plot_only:
        runs = []
        for u in args.utilizations.split(","):
            with sc.Server(args, ["--gpu-memory-utilization", u], f"{NAME}-{u}") as server:
                r = sc.run_bench(args, server, [
                    "--workload", "random", "--num-prompts", str(args.num_prompts),
                    "--random-input-len", str(args.input_len), "--random-output-len",
                    str(args.output_len), "--request-rate", "inf", "--seed", "1",
                    "--label", f"util={u}", "--no-save-requests"])
                runs.append({"utilization": float(u), "result": r})
        sc.save(args, NAME, {"experiment": NAME, "runs": runs})
    plot(args, sc.load(args, NAME))


def plot(args, exp):
    plt = sc.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    rs = sorted(exp["runs"], key=lambda r: r["utilization"])
    ax.plot([r["utilization"] for r in rs], [r["result"]["output_throughput"] for r in rs],
            marker="o")
    ax.set(xlabel="--gpu-memory-utilization", ylabel="output tokens/s",
           title="memory utilisation against throughput")
    ax.grid(True, alpha=0.3)
    sc.footer(fig, exp)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(sc.img_path(args, NAME), dpi=120)


if __name__ == "__main__":
    main()
