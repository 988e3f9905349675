#!/usr/bin/env python3
"""A stand-in for `kvserve serve` that speaks just enough of its APIs for the load generator's
integration test: /metrics (the prefix-cache and token counters), /v1/completions and
/v1/chat/completions streaming (SSE) and the kvserve.v1 WebSocket protocol with token-id
prompts. Python standard library only. Prefix caching is modelled in whole blocks of 16
tokens, so the counters move exactly like the real server's would. Prints its port, then serves
until stdin closes (so it never outlives the test that started it)."""

import base64
import hashlib
import http.server
import json
import socketserver
import struct
import sys
import threading
import time

BLOCK = 16
STALL = 999  # max_tokens that makes the server stall (timeout tests)
lock = threading.Lock()
counters = {"hits": 0, "queries": 0, "prompt": 0, "generation": 0, "req_prompt": 0,
            "req_cached": 0}
cached_blocks = set()  # tuples of token prefixes that end on a block boundary


def admit(prompt):
    """Counts a prompt like the engine: whole cached blocks hit; every block becomes cached."""
    with lock:
        hit = 0
        for end in range(BLOCK, len(prompt) + 1, BLOCK):
            if tuple(prompt[:end]) in cached_blocks:
                hit = end
            else:
                break
        for end in range(BLOCK, len(prompt) + 1, BLOCK):
            cached_blocks.add(tuple(prompt[:end]))
        counters["queries"] += len(prompt)
        counters["hits"] += hit
        counters["prompt"] += len(prompt)
        # kvserve counts these when a request ends; at admission the totals are the same.
        counters["req_prompt"] += len(prompt)
        counters["req_cached"] += hit
    return hit


def output_tokens(prompt, n):
    return [(sum(prompt) + 7 * i) % 500 + 1000 for i in range(n)]


def chat_prompt(messages):
    # One "token" per word: enough for the counters to be consistent.
    ids = []
    for m in messages:
        ids.append(1 if m["role"] == "user" else 2)
        ids.extend(hash(w) % 30000 for w in m["content"].split())
    return ids


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/metrics":
            with lock:
                body = (
                    "# TYPE kvserve_prefix_cache_hits_tokens_total counter\n"
                    f"kvserve_prefix_cache_hits_tokens_total {counters['hits']}\n"
                    f"kvserve_prefix_cache_queries_tokens_total {counters['queries']}\n"
                    f"kvserve_prompt_tokens_total {counters['prompt']}\n"
                    f"kvserve_generation_tokens_total {counters['generation']}\n"
                    f"kvserve_request_prompt_tokens_total {counters['req_prompt']}\n"
                    f"kvserve_request_cached_prompt_tokens_total {counters['req_cached']}\n"
                ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/v1/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            self.websocket()
        else:
            self.send_error(404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        chat = self.path == "/v1/chat/completions"
        if self.path not in ("/v1/completions", "/v1/chat/completions"):
            self.send_error(404)
            return
        prompt = chat_prompt(body["messages"]) if chat else body["prompt"]
        n = body["max_tokens"]
        if n == STALL:
            time.sleep(30)
            return
        hit = admit(prompt)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()

        def send(obj):
            self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
            self.wfile.flush()

        if chat:
            send({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        for tok in output_tokens(prompt, n):
            time.sleep(0.001)
            text = f" w{tok}"
            choice = {"index": 0, "delta": {"content": text}} if chat else {"index": 0, "text": text}
            with lock:
                counters["generation"] += 1
            send({"choices": [choice]})
        send({"choices": [{"index": 0, "finish_reason": "length"}]})
        send({"choices": [], "usage": {"prompt_tokens": len(prompt), "completion_tokens": n,
                                       "prompt_tokens_details": {"cached_tokens": hit}}})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    # --- a minimal RFC 6455 server: text frames, client frames masked ---
    def websocket(self):
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept.decode())
        self.end_headers()
        self.wfile.flush()
        self.ws_send({"type": "hello", "protocol": "kvserve.v1"})
        while True:
            frame = self.ws_recv()
            if frame is None:
                self.close_connection = True
                return
            msg = json.loads(frame)
            if msg.get("type") != "start":
                continue
            rid = msg["id"]
            prompt = msg["prompt_token_ids"]
            n = msg["max_tokens"]
            if n == STALL:
                time.sleep(30)
                return
            hit = admit(prompt)
            self.ws_send({"type": "accepted", "id": rid, "prompt_tokens": len(prompt),
                          "cached_prompt_tokens": hit})
            for tok in output_tokens(prompt, n):
                time.sleep(0.001)
                with lock:
                    counters["generation"] += 1
                self.ws_send({"type": "delta", "id": rid, "text": "x", "token_ids": [tok]})
            self.ws_send({"type": "done", "id": rid, "finish_reason": "length",
                          "usage": {"prompt_tokens": len(prompt), "completion_tokens": n,
                                    "cached_prompt_tokens": hit}})

    def ws_send(self, obj):
        data = json.dumps(obj).encode()
        header = bytes([0x81])
        if len(data) < 126:
            header += bytes([len(data)])
        elif len(data) < 65536:
            header += bytes([126]) + struct.pack(">H", len(data))
        else:
            header += bytes([127]) + struct.pack(">Q", len(data))
        self.wfile.write(header + data)
        self.wfile.flush()

    def ws_recv(self):
        head = self.rfile.read(2)
        if len(head) < 2:
            return None
        opcode = head[0] & 0x0F
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack(">H", self.rfile.read(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", self.rfile.read(8))[0]
        mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
        if opcode == 0x8:  # close: answer and end
            self.wfile.write(bytes([0x88, 0]))
            self.wfile.flush()
            return None
        return payload.decode()


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def main():
    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()  # until the test closes our stdin
    server.shutdown()


if __name__ == "__main__":
    main()
