"""Helpers shared by the serving experiments (issue 9): start `kvserve serve` on a free loopback
port with the flags of DESIGN.md's table, wait for /health, run `kvserve bench serve` against
it, stop it, and keep every result with the machine, the commit and the command lines.

Every experiment script writes docs/bench-data/serve/<name>.json and draws docs/img/<name>*.png;
`--plot-only` redraws the figures from the JSON without running anything."""

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kvserve", default=str(REPO / "build" / "bin" / "kvserve"),
                        help="the kvserve executable (default: build/bin/kvserve)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (passed to the server)")
    parser.add_argument("--model", default="", help="--model of the server (default: its own)")
    parser.add_argument("--load-format", default="", help="e.g. dummy")
    parser.add_argument("--server-flags", default="",
                        help="more server flags, one string, e.g. '--max-num-seqs 8'")
    parser.add_argument("--backend", default="ws", help="bench backend: ws, openai-completions")
    parser.add_argument("--bench-flags", default="",
                        help="more `kvserve bench serve` flags, one string, e.g. '--tcp-quickack'")
    parser.add_argument("--out", default="", help="results JSON (default docs/bench-data/serve/)")
    parser.add_argument("--img-dir", default=str(REPO / "docs" / "img"))
    parser.add_argument("--tag", default="", help="suffix of the JSON and PNG names (e.g. h100)")
    parser.add_argument("--plot-only", action="store_true", help="redraw from the JSON")
    parser.add_argument("--server-timeout", type=float, default=300,
                        help="seconds to wait for the server to come up")


def out_path(args, name: str) -> Path:
    if args.out:
        return Path(args.out)
    suffix = f"-{args.tag}" if args.tag else ""
    return REPO / "docs" / "bench-data" / "serve" / f"{name}{suffix}.json"


def img_path(args, name: str) -> Path:
    suffix = f"-{args.tag}" if args.tag else ""
    Path(args.img_dir).mkdir(parents=True, exist_ok=True)
    return Path(args.img_dir) / f"{name}{suffix}.png"


def model_flags(args) -> list:
    flags = ["--device", args.device]
    if args.model:
        flags += ["--model", args.model]
    if args.load_format:
        flags += ["--load-format", args.load_format]
    return flags + args.server_flags.split()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git_commit() -> str:
    """HEAD's short hash, or $KVSERVE_COMMIT where the tree has no .git (the GPU machine)."""
    if os.environ.get("KVSERVE_COMMIT"):
        return os.environ["KVSERVE_COMMIT"]
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    distro = ""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return f"{distro}, {os.cpu_count()} cores, {cpu}"


def gpu_name() -> str:
    """The first GPU's name and memory as nvidia-smi reports them, or "" without one."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else ""
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return ""


def scrape(port: int) -> dict:
    """GET /metrics as {name: summed value over label sets}; {} when it fails."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode("utf-8", "replace")
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            pass
    return out


class MetricsPoller:
    """Polls /metrics while a run goes on and keeps the peaks of the running-request count and
    of the KV cache usage (context manager)."""

    def __init__(self, port: int, period_s: float = 0.2):
        self.port, self.period_s = port, period_s
        self.peak_running = 0.0
        self.peak_kv_usage = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            m = scrape(self.port)
            if m:
                self.samples += 1
                self.peak_running = max(self.peak_running,
                                        m.get("kvserve_num_requests_running", 0.0))
                self.peak_kv_usage = max(self.peak_kv_usage,
                                         m.get("kvserve_kv_cache_usage_ratio", 0.0))
            self._stop.wait(self.period_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)
        return False

    def result(self) -> dict:
        return {"peak_running": self.peak_running, "peak_kv_cache_usage": self.peak_kv_usage,
                "samples": self.samples}


class Server:
    """`kvserve serve` on a free loopback port; stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, args, flags: list, log_name: str):
        self.args = args
        self.port = free_port()
        self.cmd = [args.kvserve, "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.cmd += model_flags(args) + flags
        log_dir = REPO / "build-bench-logs"
        log_dir.mkdir(exist_ok=True)
        self.log_path = log_dir / f"{log_name}.log"
        self.proc = None
        self.start_s = 0.0

    def kv_pool_tokens(self) -> int:
        """Tokens of the KV pool, from the start log ("N blocks of B tokens = T tokens"); 0 when
        the log does not say."""
        import re
        m = re.search(r"(\d+) blocks of (\d+) tokens = (\d+) tokens",
                      self.log_path.read_text(errors="replace"))
        return int(m.group(3)) if m else 0

    def __enter__(self):
        self.log = open(self.log_path, "w")
        print("$ " + " ".join(self.cmd), file=sys.stderr, flush=True)
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT)
        started = time.monotonic()
        deadline = started + self.args.server_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.close()
                raise RuntimeError(f"kvserve serve exited with {self.proc.returncode}; "
                                   f"see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    self.start_s = time.monotonic() - started
                    print(f"server up in {self.start_s:.1f} s", file=sys.stderr, flush=True)
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"kvserve serve did not answer /health; see {self.log_path}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __exit__(self, *exc):
        self.stop()
        self.log.close()
        return False


def run_bench(args, server: Server, bench_flags: list, timeout: float = 900) -> dict:
    """Runs one `kvserve bench serve` and returns its JSON (with the command line added)."""
    tmp = REPO / "build-bench-logs" / f"bench-{server.port}.json"
    cmd = [args.kvserve, "bench", "serve", "--base-url", f"http://127.0.0.1:{server.port}",
           "--backend", args.backend, "--no-progress", "--output-json", str(tmp)] + bench_flags
    cmd += args.bench_flags.split()
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    sys.stderr.write(done.stdout)
    if done.returncode not in (0, 2) or not tmp.exists():
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"kvserve bench serve failed with {done.returncode}")
    result = json.loads(tmp.read_text())
    tmp.unlink()
    result["bench_command"] = " ".join(["kvserve"] + cmd[1:4] + ["URL"] + cmd[5:])
    result["server_command"] = " ".join(["kvserve"] + server.cmd[1:])
    result["server_start_s"] = round(server.start_s, 2)
    return result


def save(args, name: str, experiment: dict) -> Path:
    experiment.setdefault("commit", git_commit())
    experiment.setdefault("machine", machine())
    experiment.setdefault("device", args.device)
    if args.device == "cuda":
        experiment.setdefault("gpu", gpu_name())
    experiment.setdefault("script", " ".join(["python3", "bench/experiments/" + name + ".py"] +
                                             sys.argv[1:]))
    path = out_path(args, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Paths of this machine stay out of committed results: they are made relative to the repo.
    text = json.dumps(experiment, indent=1).replace(str(REPO) + "/", "")
    if os.environ.get("OUT"):  # the device machine's output folder, as the docs write it
        text = text.replace(os.environ["OUT"].rstrip("/") + "/", "$OUT/")
    path.write_text(text + "\n")
    print(f"wrote {path}", file=sys.stderr)
    return path


def load(args, name: str) -> dict:
    return json.loads(out_path(args, name).read_text())


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def footer(fig, experiment: dict) -> None:
    """Every figure names its machine and commit."""
    where = experiment.get("gpu") or experiment.get("device", "")
    fig.text(0.01, 0.005, f"{where} | {experiment.get('machine', '')} | "
             f"commit {experiment.get('commit', '')}", fontsize=6, color="gray")


def strip_requests(result: dict) -> dict:
    """Keeps per-request TTFTs (for distributions) but drops the rest of the samples."""
    reqs = result.pop("requests", [])
    result["ttfts_s"] = [r["ttft_s"] for r in reqs if r.get("success")]
    return result
