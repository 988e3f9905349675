"""Bounded soak: 200 concurrent streaming WebSocket clients for at most 2 minutes on loopback,
some cancelling or disconnecting at random. Afterwards: every request the clients started is
accounted for (done + error + abandoned), the engine's counters agree (accepted == finished,
rejected == client-seen errors), no KV block is locked, and resident memory is within 10% of
its level after warm-up."""

import asyncio
import json
import os
import random
import sys
import time

import requests
import websockets

from kvserve_harness import KvServe, metric, metric_sum, parse_args

CLIENTS = int(os.environ.get("KVSERVE_SOAK_CLIENTS", "200"))
DURATION_S = float(os.environ.get("KVSERVE_SOAK_SECONDS", "60"))
# Warm-up ends when the KV pool has been touched once (its pages become resident on first use):
# at half-time, or later if no block has been evicted yet (an eviction means every block was
# taken once), as on a loaded machine that serves fewer requests; at three quarters at the latest.
WARMUP_S = DURATION_S / 2
WARMUP_LATEST_S = DURATION_S * 3 / 4


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Tally:
    def __init__(self):
        self.started = self.done = self.errors = self.abandoned = self.cancel_sent = 0
        self.error_codes = {}


async def client(url, index, deadline, tally, rng):
    """Requests back to back until the deadline; at the deadline an in-flight request is
    cancelled (so the run ends on time) and still counted by its final frame."""
    n = 0
    while time.time() < deadline:
        try:
            async with websockets.connect(url, open_timeout=30, close_timeout=5) as ws:
                json.loads(await asyncio.wait_for(ws.recv(), 30))  # hello
                while time.time() < deadline:
                    n += 1
                    gid = f"c{index}-{n}"
                    await ws.send(json.dumps({
                        "type": "start", "id": gid, "prompt": f"Client {index} request {n}:",
                        "max_tokens": rng.randint(4, 12), "ignore_eos": True,
                        "temperature": 0.8, "seed": index * 1000 + n}))
                    tally.started += 1
                    action = rng.random()
                    cancelled = False
                    while True:
                        if not cancelled and time.time() >= deadline:
                            cancelled = True
                            await ws.send(json.dumps({"type": "cancel", "id": gid}))
                        try:
                            f = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
                        except asyncio.TimeoutError:
                            continue
                        if f.get("id") != gid:
                            continue
                        if f["type"] == "delta" and action < 0.1:
                            # Disconnect abruptly mid-stream: the server must cancel.
                            tally.abandoned += 1
                            ws.transport.abort()
                            raise ConnectionAbortedError
                        if f["type"] == "delta" and action < 0.2 and not cancelled:
                            cancelled = True
                            tally.cancel_sent += 1
                            await ws.send(json.dumps({"type": "cancel", "id": gid}))
                        elif f["type"] == "done":
                            tally.done += 1
                            break
                        elif f["type"] == "error":
                            tally.errors += 1
                            tally.error_codes[f["code"]] = tally.error_codes.get(f["code"], 0) + 1
                            break
        except (ConnectionAbortedError, websockets.ConnectionClosed, OSError):
            await asyncio.sleep(0.05)


async def run_clients(url, http_url, seconds, tally, pid, rss):
    start = time.time()
    deadline = start + seconds
    rng = random.Random(1234)

    async def pool_cycled():
        r = await asyncio.to_thread(requests.get, http_url + "/metrics", timeout=10)
        return metric_sum(r.text, "kvserve_kv_cache_evictions_total") > 0

    async def sample_rss():
        await asyncio.sleep(WARMUP_S)
        while time.time() < start + WARMUP_LATEST_S and not await pool_cycled():
            await asyncio.sleep(1)
        rss.append(rss_kib(pid))
        rss.append(time.time() - start)

    await asyncio.gather(sample_rss(),
                         *(client(url, i, deadline, tally, random.Random(rng.random()))
                           for i in range(CLIENTS)))


def main():
    args = parse_args()
    with KvServe(args.kvserve, model_args=args.model_args,
                 args=["--max-model-len", "256", "--max-connections", "1024",
                       "--max-num-seqs", "64", "--kv-cache-memory", "160MiB"]) as s:
        url = f"ws://127.0.0.1:{s.port}/v1/ws"
        tally = Tally()
        t0 = time.time()
        rss = []
        asyncio.run(run_clients(url, s.url, DURATION_S, tally, s.pid, rss))
        rss_warm, warm_at = rss
        # Let cancelled and abandoned requests drain, bounded.
        deadline = time.time() + 30
        while time.time() < deadline:
            m = requests.get(s.url + "/metrics", timeout=10).text
            accepted = metric(m, "kvserve_requests_accepted_total") or 0
            finished = metric_sum(m, "kvserve_requests_finished_total")
            if accepted == finished and metric(m, "kvserve_num_requests_running") == 0:
                break
            time.sleep(0.5)
        elapsed = time.time() - t0
        assert elapsed < 120, elapsed
        m = requests.get(s.url + "/metrics", timeout=10).text
        accepted = metric(m, "kvserve_requests_accepted_total")
        rejected = metric(m, "kvserve_requests_rejected_total") or 0
        finished = metric_sum(m, "kvserve_requests_finished_total")
        locked = metric(m, 'kvserve_kv_cache_blocks{state="locked"}')
        rss_end = rss_kib(s.pid)
        print(f"soak: {CLIENTS} clients, {elapsed:.0f} s, started {tally.started}, "
              f"done {tally.done}, errors {tally.errors} {tally.error_codes}, "
              f"abandoned {tally.abandoned}, cancels sent {tally.cancel_sent}; metrics: "
              f"accepted {accepted}, rejected {rejected}, finished {finished}, "
              f"locked blocks {locked}; RSS {rss_warm} (at {warm_at:.0f} s) -> {rss_end} KiB")
        assert tally.started > CLIENTS, "too little load"
        assert tally.started == tally.done + tally.errors + tally.abandoned
        assert accepted + rejected == tally.started, (accepted, rejected, tally.started)
        assert accepted == finished, (accepted, finished)
        assert rejected == tally.errors, (rejected, tally.errors)
        assert locked == 0, locked
        assert rss_end <= rss_warm * 1.10, (rss_warm, rss_end)
    print("soak test: ok")


if __name__ == "__main__":
    sys.exit(main())
