"""The `websockets` client against kvserve's kvserve.v1 protocol: several concurrent
generations multiplexed on one socket, cancel, and error frames."""

import asyncio
import json
import sys

import websockets

from kvserve_harness import KvServe, parse_args


async def read_until(ws, pred, limit=5000, timeout=120):
    frames = []
    async def loop():
        for _ in range(limit):
            f = json.loads(await ws.recv())
            frames.append(f)
            if pred(f):
                return
        raise AssertionError("no matching frame")
    await asyncio.wait_for(loop(), timeout)
    return frames


async def multiplexed(url):
    async with websockets.connect(url, max_size=1 << 22) as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello" and hello["protocol"] == "kvserve.v1", hello
        ids = [f"g{i}" for i in range(4)]
        for i, gid in enumerate(ids):
            await ws.send(json.dumps({"type": "start", "id": gid, "prompt": f"Story {i}:",
                                      "max_tokens": 12 + i, "temperature": 0.7, "seed": i,
                                      "ignore_eos": True}))
        done = {}
        text = {gid: "" for gid in ids}
        accepted = set()

        def all_done(f):
            if f["type"] == "done":
                done[f["id"]] = f
            return len(done) == len(ids)

        frames = await read_until(ws, all_done)
        for f in frames:
            if f["type"] == "accepted":
                accepted.add(f["id"])
                assert f["prompt_tokens"] > 0 and 0 <= f["cached_prompt_tokens"] <= f["prompt_tokens"]
            elif f["type"] == "delta":
                assert f["id"] in accepted, "delta before accepted"
                text[f["id"]] += f["text"]
            elif f["type"] == "error":
                raise AssertionError(f)
        for i, gid in enumerate(ids):
            assert done[gid]["usage"]["completion_tokens"] == 12 + i, done[gid]
            assert done[gid]["finish_reason"] == "length"
            assert done[gid]["timings"]["time_to_first_token_s"] > 0
            assert len(done[gid]["timings"]["inter_token_latencies_s"]) == 11 + i
        # Deltas of different generations interleave on the socket.
        deltas = [f["id"] for f in frames if f["type"] == "delta"]
        switches = sum(1 for a, b in zip(deltas, deltas[1:]) if a != b)
        assert switches >= len(ids) - 1, switches


async def cancel_and_errors(url):
    async with websockets.connect(url) as ws:
        await ws.recv()  # hello
        await ws.send(json.dumps({"type": "start", "id": "long", "prompt": "Count:",
                                  "max_tokens": 4000, "ignore_eos": True}))
        await ws.send(json.dumps({"type": "start", "id": "short", "prompt": "Hi",
                                  "max_tokens": 3, "ignore_eos": True}))
        await read_until(ws, lambda f: f["type"] == "delta" and f["id"] == "long")
        await ws.send(json.dumps({"type": "cancel", "id": "long"}))
        frames = await read_until(ws, lambda f: f["type"] == "done" and f["id"] == "long")
        long_done = frames[-1]
        assert long_done["finish_reason"] == "cancelled", long_done
        assert long_done["usage"]["completion_tokens"] < 4000
        # The short one was not disturbed.
        short = [f for f in frames if f.get("id") == "short" and f["type"] in ("done", "error")]
        if not short:
            short = [(await read_until(ws, lambda f: f.get("id") == "short" and
                                       f["type"] in ("done", "error")))[-1]]
        assert short[0]["type"] == "done" and short[0]["usage"]["completion_tokens"] == 3
        # Error frames keep the socket usable.
        await ws.send("{not json")
        f = json.loads(await ws.recv())
        assert f["type"] == "error" and f["code"] == "invalid_json"
        await ws.send(b"\x00\x01")
        f = json.loads(await ws.recv())
        assert f["code"] == "binary_frame"
        await ws.send(json.dumps({"type": "start", "id": "x", "prompt": "a", "top_k": -7}))
        f = json.loads(await ws.recv())
        assert f["code"] == "invalid_argument" and f["id"] == "x"
        await ws.send(json.dumps({"type": "ping"}))
        f = json.loads(await ws.recv())
        assert f["type"] == "pong"


async def several_sockets(url, n=8):
    async def one(i):
        async with websockets.connect(url) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "start", "id": "a", "prompt": f"Item {i}",
                                      "max_tokens": 5, "ignore_eos": True}))
            frames = await read_until(ws, lambda f: f["type"] in ("done", "error"))
            assert frames[-1]["type"] == "done", frames[-1]
    await asyncio.gather(*(one(i) for i in range(n)))


def main():
    args = parse_args()
    with KvServe(args.kvserve, model_args=args.model_args) as s:
        url = f"ws://127.0.0.1:{s.port}/v1/ws"
        asyncio.run(multiplexed(url))
        asyncio.run(cancel_and_errors(url))
        asyncio.run(several_sockets(url))
    print("websocket client test: ok")


if __name__ == "__main__":
    sys.exit(main())
