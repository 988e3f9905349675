#!/usr/bin/env bash
# Issue 9's serving experiments on the GPU machine, from a copy of the working tree with the
# bundle of scripts/gpu_serve_bundle (carried): Llama-3-8B shapes with `--load-format dummy`
# (folder made by make_llama3_8b_folder.py), servers on 127.0.0.1, every stage bounded by what
# is left of KVSERVE_SUITE_SECONDS. JSON results go to $OUT (the names the docs use, tag h100),
# stage and server logs to $OUT/logs.tgz, and a short table is printed last.
#
#   bench/experiments/gpu_serve_suite.sh prefix kv util finish block
#
# Stages: prefix (early vs --no-enable-prefix-caching, 2,048-token system prompts), nagle
# (early at 2 and 4/s with the kernel's default ACK timing), ttft (early vs none at 1, 2, 4/s),
# kvshort (one idle request of 16-256 tokens, with and without the cache), finish
# (--prefix-commit finish, same workload), kv (KV cache on vs --no-kv-cache), util
# (--gpu-memory-utilization), block (block sizes 2..64 on shared-prefix and multi-turn),
# prefix96 (early vs none at 4, 8, 16/s with 96 requests per rate), curve (early vs none at 1, 2,
# 4, 8, 16/s with 40 requests per rate, to $OUT/prefix_commit-h100-$KVSERVE_SUITE_CURVE_TAG.json),
# evict (eviction policies and retention as the KV pool shrinks: 16 groups x 3 prompts of
# 2,048-token system prompts, pools of about 9k to 35k tokens), sched (fcfs vs lpm on a
# multi-turn workload with a waiting queue: at most 16 running, a 16k-token pool), rate4 (early
# vs none at 4/s, 96 requests, with 2,048- and 512-token steps), async (--async-scheduling on
# vs off, early mode at 4 and 16/s).
set -uo pipefail
cd "$(dirname "$0")/../.."
bundle=${KVSERVE_BUNDLE:-gpu-bundle-serve}
out=${OUT:-build-bench-logs/gpu-serve}
budget=${KVSERVE_SUITE_SECONDS:-540}
mkdir -p "$out" build-bench-logs
rm -f build-bench-logs/*.log
export PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH="$PWD/$bundle:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
model=models/llama-3-8b-dummy
python3 bench/experiments/make_llama3_8b_folder.py --out "$model" > /dev/null || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt"
# The client acknowledges at once (see `kvserve bench serve --tcp-quickack`); set
# KVSERVE_SUITE_BENCH_FLAGS= (empty) to measure with the kernel's default ACK timing.
bench_flags=${KVSERVE_SUITE_BENCH_FLAGS---tcp-quickack}
common=(--kvserve "$bundle/kvserve" --device cuda --model "$model" --load-format dummy
        --tag h100 --img-dir build-bench-logs/img --server-timeout 120
        "--bench-flags=$bench_flags")
# The shared-prefix workload of the prefix and block stages: 4 groups x 8 prompts sharing a
# 2,048-token system prompt, 32-token questions, 32 output tokens.
shared=(--groups 4 --prompts-per-group 8 --system-len 2048 --question-len 32 --output-len 32)
start=$SECONDS
left() { echo $((budget - (SECONDS - start))); }
summary=()
stage() {  # stage NAME SECONDS_NEEDED COMMAND...
  local name=$1 need=$2
  shift 2
  if [ "$(left)" -lt "$need" ]; then
    summary+=("$name: skipped ($(left) s left, needs $need)")
    return
  fi
  timeout "$(left)" "$@" > "build-bench-logs/stage-$name.log" 2>&1
  summary+=("$name: rc=$? at $((SECONDS - start)) s")
}

for s in "$@"; do
  case "$s" in
    prefix)
      stage prefix 90 python3 bench/experiments/prefix_commit.py "${common[@]}" "${shared[@]}" \
        --modes early,no-prefix-caching --rates 2,4,8,16 --one-server-per-mode \
        --out "$out/prefix_commit-h100.json" ;;
    nagle)
      stage nagle 30 python3 bench/experiments/prefix_commit.py "${common[@]}" "${shared[@]}" \
        --bench-flags= --modes early --rates 2,4 --one-server-per-mode \
        --out "$out/prefix_commit-h100-noquickack.json" ;;
    ttft)
      stage ttft 40 python3 bench/experiments/prefix_commit.py "${common[@]}" "${shared[@]}" \
        --modes early,no-prefix-caching --rates 1,2,4 --one-server-per-mode \
        --out "$out/prefix_commit-h100-lowrate.json" ;;
    kvshort)
      stage kvshort 30 python3 bench/experiments/kv_cache_on_off.py "${common[@]}" \
        --input-lens 16,64,256 --output-len 16 --num-prompts 2 \
        --out "$out/kv_cache_on_off-h100-short.json" ;;
    finish)
      stage finish 50 python3 bench/experiments/prefix_commit.py "${common[@]}" "${shared[@]}" \
        --modes finish --rates 2,4,8,16 --one-server-per-mode \
        --out "$out/prefix_commit_finish-h100.json" ;;
    kv)
      stage kv 60 python3 bench/experiments/kv_cache_on_off.py "${common[@]}" \
        --input-lens 128,512,1024,2048,4096 --output-len 32 --num-prompts 1 \
        --server-flags "--max-num-batched-tokens 8192" --out "$out/kv_cache_on_off-h100.json" ;;
    util)
      stage util 90 python3 bench/experiments/gpu_memory_utilization.py "${common[@]}" \
        --utilizations 0.25,0.3,0.4,0.6,0.9 --num-prompts 256 --input-len 512 \
        --output-len 128 --out "$out/gpu_memory_utilization-h100.json" ;;
    block)
      stage block 60 python3 bench/experiments/block_size.py "${common[@]}" "${shared[@]}" \
        --conversations 8 --turns 4 --rate 8 --out "$out/block_size-h100.json" ;;
    prefix96)
      stage prefix96 90 python3 bench/experiments/prefix_commit.py "${common[@]}" \
        --groups 12 --prompts-per-group 8 --system-len 2048 --question-len 32 --output-len 32 \
        --modes early,no-prefix-caching --rates 4,8,16 --one-server-per-mode \
        --out "$out/prefix_commit-h100-n96.json" ;;
    curve)
      stage curve 120 python3 bench/experiments/prefix_commit.py "${common[@]}" \
        --groups 5 --prompts-per-group 8 --system-len 2048 --question-len 32 --output-len 32 \
        --modes early,no-prefix-caching --rates 1,2,4,8,16 --one-server-per-mode \
        --out "$out/prefix_commit-h100-${KVSERVE_SUITE_CURVE_TAG:-curve}.json" ;;
    rate4)
      # The 5x check's weak point: 96 requests at 4/s, default steps and 512-token steps.
      for chunk in 2048 512; do
        stage "rate4-$chunk" 40 python3 bench/experiments/prefix_commit.py "${common[@]}" \
          --groups 12 --prompts-per-group 8 --system-len 2048 --question-len 32 \
          --output-len 32 --modes early,no-prefix-caching --rates 4 --one-server-per-mode \
          --server-flags="--max-num-batched-tokens $chunk" \
          --out "$out/prefix_commit-h100-rate4-chunk$chunk.json"
      done ;;
    evict)
      # Pools below 0.24 hold less than one 8,192-token sequence: --max-model-len 4096.
      stage evict 120 python3 bench/experiments/eviction.py "${common[@]}" \
        --memory-flag=--gpu-memory-utilization --memories 0.22,0.235,0.26 \
        --server-flags="--max-model-len 4096" --groups 16 --prompts-per-group 3 \
        --system-len 2048 --question-len 32 --output-len 32 --rate 12 \
        --out "$out/eviction-h100.json" ;;
    sched)
      stage sched 40 python3 bench/experiments/scheduling_policy.py "${common[@]}" \
        --rates 8,32 --conversations 48 --turns 4 --system-len 64 --question-len 128 \
        --output-len 32 \
        --server-flags="--max-num-seqs 16 --gpu-memory-utilization 0.23 --max-model-len 4096" \
        --out "$out/scheduling_policy-h100.json" ;;
    async)
      # Asynchronous steps on (the GPU default) and off, the shared-prefix workload.
      for mode in on off; do
        stage "async-$mode" 40 python3 bench/experiments/prefix_commit.py "${common[@]}" \
          "${shared[@]}" --modes early --rates 4,16 --one-server-per-mode \
          --server-flags="--async-scheduling $mode" \
          --out "$out/prefix_commit-h100-async-$mode.json"
      done ;;
    *) summary+=("$s: unknown stage") ;;
  esac
done

tar -czf "$out/logs.tgz" build-bench-logs/*.log 2> /dev/null
echo "== $(cat "$out/gpu.txt")"
python3 - "$out" <<'EOF'
import json, sys
from pathlib import Path
for path in sorted(Path(sys.argv[1]).glob("*.json")):
    exp = json.loads(path.read_text())
    print(f"== {path.name}")
    for r in exp["runs"]:
        key = " ".join(f"{k}={r[k]}" for k in ("mode", "policy", "memory", "rate", "input_len",
                                                "utilization", "block_size", "workload")
                       if k in r)
        if "result" not in r:
            print(f"  {key}: {r.get('error', 'no result')[:100]}")
            continue
        x = r["result"]
        srv = x["server"]
        hit = f"{100 * x['client_prefix_hit_rate']:.1f}/" + (
            f"{100 * srv['prefix_hit_rate']:.1f}" if srv["available"] else "-")
        extra = f" peak_run={r['peak_running']:.0f}" if "peak_running" in r else ""
        extra += f" kv_tok={r['kv_tokens']}" if "kv_tokens" in r else ""
        extra += f" preempt={srv['preemptions']:.0f} evict={srv['evictions']:.0f}" \
            if srv["available"] else ""
        print(f"  {key}: ok {x['completed']}/{x['num_requests']} ttft_med "
              f"{x['ttft_ms']['median']:.1f} tpot_med {x['tpot_ms']['median']:.2f} tok/s "
              f"{x['total_token_throughput']:.0f} out/s {x['output_throughput']:.0f} hit {hit} "
              f"check {x.get('check', '?')} start {x.get('server_start_s', 0)}s{extra}")
EOF
printf '%s\n' "${summary[@]}"
