#!/usr/bin/env python3
"""KV cache on vs --no-kv-cache: decode tokens/s of one sequence against its length.

One request at a time (max concurrency 1), random token-id prompts of each input length,
a fixed number of output tokens with ignore_eos; decode tokens/s = 1000 / median TPOT (ms).
Each length has its own seed, so no prompt is a prefix of an earlier one."""

import argparse

import serve_common as sc

NAME = "kv_cache_on_off"


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sc.add_common_args(p)
    p.add_argument("--input-lens", default="32,128,512", help="comma-separated")
    p.add_argument("--output-len", type=int, default=16)
    p.add_argument("--num-prompts", type=int, default=2)
    args = p.parse_args()
    if not args.plot_only:
        runs = []
        for mode, flags in (("cache", []), ("no-kv-cache", ["--no-kv-cache"])):
            with sc.Server(args, flags, f"{NAME}-{mode}") as server:
                for n in [int(x) for x in args.input_lens.split(",")]:
                    r = sc.run_bench(args, server, [
                        "--workload", "random", "--num-prompts", str(args.num_prompts),
                        "--random-input-len", str(n), "--random-output-len",
                        str(args.output_len), "--max-concurrency", "1", "--request-rate", "inf",
                        "--seed", str(n), "--label", f"{mode} len={n}", "--no-save-requests"])
                    runs.append({"mode": mode, "input_len": n, "result": r})
        sc.save(args, NAME, {"experiment": NAME, "runs": runs})
    plot(args, sc.load(args, NAME))


def plot(args, exp):
    plt = sc.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for mode in ("cache", "no-kv-cache"):
        pts = [(r["input_len"], 1000.0 / r["result"]["tpot_ms"]["median"])
               for r in exp["runs"] if r["mode"] == mode and r["result"]["tpot_ms"]["median"] > 0]
        if pts:
            xs, ys = zip(*sorted(pts))
            ax.plot(xs, ys, marker="o", label="KV cache" if mode == "cache" else "--no-kv-cache")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("prompt length (tokens)")
    ax.set_ylabel("decode tokens/s (one sequence)")
    ax.set_title("KV cache on vs off: decode speed against sequence length")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    sc.footer(fig, exp)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(sc.img_path(args, NAME), dpi=120)


if __name__ == "__main__":
    main()
