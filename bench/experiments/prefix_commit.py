#!/usr/bin/env python3
"""Prefix caching with --prefix-commit early, with --prefix-commit finish, and with
--no-enable-prefix-caching on the shared-prefix workload: TTFT distribution and throughput
against the request rate."""

import argparse

import serve_common as sc

NAME = "prefix_commit"
MODES = (("early", ["--prefix-commit", "early"]),
         ("finish", ["--prefix-commit", "finish"]),
         ("no-prefix-caching", ["--no-enable-prefix-caching"]))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sc.add_common_args(p)
    p.add_argument("--rates", default="1,2,4,8", help="sessions/s, comma-separated")
    p.add_argument("--modes", default=",".join(m for m, _ in MODES),
                   help="comma-separated subset of early, finish, no-prefix-caching")
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--prompts-per-group", type=int, default=6)
    p.add_argument("--system-len", type=int, default=256)
    p.add_argument("--question-len", type=int, default=16)
    p.add_argument("--output-len", type=int, default=16)
    p.add_argument("--one-server-per-mode", action="store_true",
                   help="one server for all rates of a mode (each rate draws other system "
                        "prompts, so no rate finds another's prefixes); saves server starts")
    args = p.parse_args()
    if not args.plot_only:
        modes = [m for m in MODES if m[0] in args.modes.split(",")]
        rates = args.rates.split(",")
        runs = []

        def one(server, mode, i, rate):
            # On a shared server each rate has its own seed: other system prompts.
            seed = 1 + i if args.one_server_per_mode else 1
            r = sc.run_bench(args, server, [
                "--workload", "shared-prefix",
                "--shared-prefix-groups", str(args.groups),
                "--shared-prefix-prompts-per-group", str(args.prompts_per_group),
                "--shared-prefix-system-len", str(args.system_len),
                "--shared-prefix-question-len", str(args.question_len),
                "--shared-prefix-output-len", str(args.output_len),
                "--request-rate", rate, "--seed", str(seed), "--label", f"{mode} rate={rate}"])
            runs.append({"mode": mode, "rate": float(rate), "result": sc.strip_requests(r)})
            # Saved after every run: a stage cut short by its time limit keeps what it measured.
            sc.save(args, NAME, {"experiment": NAME, "runs": runs})

        for mode, flags in modes:
            if args.one_server_per_mode:
                with sc.Server(args, flags, f"{NAME}-{mode}") as server:
                    for i, rate in enumerate(rates):
                        one(server, mode, i, rate)
            else:
                for i, rate in enumerate(rates):
                    # A fresh server per point: every point starts from an empty cache.
                    with sc.Server(args, flags, f"{NAME}-{mode}-{rate}") as server:
                        one(server, mode, i, rate)
    plot(args, sc.load(args, NAME))


def plot(args, exp):
    plt = sc.pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for mode, _ in MODES:
        rs = sorted((r for r in exp["runs"] if r["mode"] == mode), key=lambda r: r["rate"])
        if not rs:
            continue
        rates = [r["rate"] for r in rs]
        axes[0].plot(rates, [r["result"]["ttft_ms"]["median"] for r in rs], marker="o",
                     label=mode)
        axes[1].plot(rates, [r["result"]["total_token_throughput"] for r in rs], marker="o",
                     label=mode)
        # The distribution at the middle rate: below saturation, where the modes differ.
        mid = rs[len(rs) // 2]
        top = mid["result"].get("ttfts_s", [])
        if top:
            xs = sorted(t * 1000 for t in top)
            axes[2].step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post",
                         label=f"{mode} @ {mid['rate']:g}/s")
    # Issue 9's check: reuse cuts the median TTFT at least 5x against no prefix caching.
    for mode in ("early", "finish"):
        base = {r["rate"]: r["result"]["ttft_ms"]["median"] for r in exp["runs"]
                if r["mode"] == "no-prefix-caching"}
        pts = sorted((r["rate"], base[r["rate"]] / r["result"]["ttft_ms"]["median"])
                     for r in exp["runs"] if r["mode"] == mode and r["rate"] in base
                     and r["result"]["ttft_ms"]["median"] > 0)
        if pts:
            axes[3].plot(*zip(*pts), marker="o", label=mode)
    axes[3].axhline(5, color="gray", linestyle="--", label="5x")
    axes[3].set(xlabel="request rate (req/s)", ylabel="median TTFT ratio", yscale="log",
                title="no-prefix-caching / mode")
    axes[0].set(xlabel="request rate (req/s)", ylabel="median TTFT (ms)", yscale="log",
                title="TTFT against rate")
    axes[1].set(xlabel="request rate (req/s)", ylabel="tokens/s (prompt + output)",
                title="throughput against rate")
    axes[2].set(xlabel="TTFT (ms)", ylabel="fraction of requests", xscale="log",
                title="TTFT distribution at the middle rate")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    sc.footer(fig, exp)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(sc.img_path(args, NAME), dpi=120)


if __name__ == "__main__":
    main()
