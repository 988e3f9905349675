"""Issue 9's checks on a real server that preempts: `kvserve bench serve` against `kvserve serve`
(127.0.0.1, default model shapes, random weights) with a KV pool of 8 blocks of 16 tokens and
five 80-token requests sent at once, so running sequences outgrow the pool and are preempted.
The per-request counters (kvserve_request_prompt_tokens_total and the cached one) must equal the
requests' usage exactly, while kvserve_prompt_tokens_total, which counts computed tokens,
counts the recomputed prompts again: the check says `pass (N preemptions: ...)`."""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "net"))
from kvserve_harness import KvServe, parse_args  # noqa: E402

PROMPTS, INPUT_LEN, OUTPUT_LEN = 5, 16, 64


def main():
    args = parse_args()
    server_args = ["--device", "cpu", "--kv-cache-memory", "6MiB", "--block-size", "16",
                   "--max-model-len", "128"]
    with KvServe(args.kvserve, server_args, model_args=args.model_args) as s, \
            tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        done = subprocess.run(
            [args.kvserve, "bench", "serve", "--base-url", s.url, "--backend", "ws",
             "--workload", "random", "--random-input-len", str(INPUT_LEN),
             "--random-output-len", str(OUTPUT_LEN), "--num-prompts", str(PROMPTS),
             "--request-rate", "inf", "--seed", "3", "--no-progress", "--tcp-quickack",
             "--request-timeout", "120", "--max-duration", "200", "--output-json", out],
            capture_output=True, text=True, timeout=240)
        print(done.stdout[-3000:])
        assert done.returncode in (0, 2), done.stderr[-2000:]
        result = json.load(open(out))
        assert s.stop() == 0
    srv = result["server"]
    print("check:", result["check"], "| server:", srv)
    assert result["completed"] == PROMPTS, result
    assert srv["available"] and srv["checks_against"] == "per-request counters", srv
    assert srv["preemptions"] > 0, "the pool was meant to force preemption"
    assert srv["request_prompt_tokens"] == PROMPTS * INPUT_LEN, srv
    assert srv["generation_tokens"] == PROMPTS * OUTPUT_LEN, srv
    # Recomputed prompts (and the tokens generated before preemption) count again here.
    assert srv["prompt_tokens"] > PROMPTS * INPUT_LEN, srv
    assert srv["token_counts_match"], srv
    assert srv["hit_rate_diff_points"] <= 0.5, srv
    assert result["check"].startswith("pass ("), result["check"]
    print("ok")


if __name__ == "__main__":
    main()
