"""Starts and stops a real `kvserve serve` for the Python tests: 127.0.0.1, a free port, the
default model with random weights (--load-format dummy) unless told otherwise. Every wait is
bounded; the server is stopped with SIGTERM and must exit 0."""

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time

import requests


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--kvserve", default=os.environ.get("KVSERVE_BIN", "build/bin/kvserve"))
    p.add_argument("--model-args", default=os.environ.get("KVSERVE_TEST_MODEL_ARGS",
                                                          "--load-format dummy"))
    return p.parse_args()


class KvServe:
    """`with KvServe(binary, extra_args) as s:` gives s.url, s.port, s.pid."""

    def __init__(self, binary, args=(), model_args="--load-format dummy", start_timeout=120):
        self.binary = binary
        self.args = ["serve", "--host", "127.0.0.1", "--port", "0"] + model_args.split() + list(args)
        self.start_timeout = start_timeout
        self.proc = None
        self.stderr_lines = []
        self.port = None

    def __enter__(self):
        self.proc = subprocess.Popen([self.binary] + self.args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        found = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.stderr_lines.append(line)
                m = re.search(r"serving .* on http://127\.0\.0\.1:(\d+)", line)
                if m and not found.is_set():
                    self.port = int(m.group(1))
                    found.set()
            found.set()

        threading.Thread(target=pump, daemon=True).start()
        if not found.wait(self.start_timeout) or self.port is None:
            self.kill()
            raise RuntimeError("kvserve did not start:\n" + "".join(self.stderr_lines[-30:]))
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("kvserve /health never answered")

    @property
    def pid(self):
        return self.proc.pid

    def stop(self, timeout=60):
        """SIGTERM, then wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError("kvserve did not exit after SIGTERM")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            sys.stderr.write("kvserve stderr (tail):\n" + "".join(self.stderr_lines[-30:]))
            self.kill()
            return False
        code = self.stop()
        if code != 0:
            sys.stderr.write("".join(self.stderr_lines[-30:]))
            raise RuntimeError(f"kvserve exited with {code} after SIGTERM")
        return False


def metric(text, series):
    """The value of one sample line of a Prometheus text exposition, or None."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def metric_sum(text, name):
    """Sum of every sample of `name` (all label sets)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.split()[-1])
    return total
