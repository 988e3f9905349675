"""A real Prometheus (its own instance: free loopback port, temporary data folder, 1 s scrapes)
scrapes kvserve while load runs; every query of every panel of the Grafana dashboard,
evaluated through Prometheus's HTTP API, must return a non-empty, non-NaN result and use a
kvserve_ metric."""

import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import requests

from kvserve_harness import KvServe, parse_args

HERE = os.path.dirname(os.path.abspath(__file__))
DASHBOARD = os.path.join(HERE, "..", "..", "monitoring", "grafana", "dashboards", "kvserve.json")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dashboard_queries():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    assert out, "the dashboard has no queries"
    return out


def evaluate(api, queries):
    """Every query once through Prometheus's HTTP API; returns the failures."""
    failures = []
    for title, expr in queries:
        r = requests.get(api + "/query", params={"query": expr}, timeout=10).json()
        if r.get("status") != "success":
            failures.append(f"{title}: {expr}: {r}")
            continue
        result = r["data"]["result"]
        if not result:
            failures.append(f"{title}: {expr}: empty result")
            continue
        for series in result:
            value = float(series["value"][1])
            if math.isnan(value):
                failures.append(f"{title}: {expr}: NaN for {series['metric']}")
    return failures


def load(url, stop, errors):
    """Streaming and non-streaming requests with a shared prefix (so the prefix cache hits)."""
    prefix = "You are a helpful assistant. " * 6
    i = 0
    while not stop.is_set():
        i += 1
        try:
            r = requests.post(url + "/v1/completions", timeout=120, json={
                "prompt": prefix + f"Question {i}:", "max_tokens": 8, "ignore_eos": True,
                "stream": i % 2 == 0})
            if r.status_code not in (200, 429):
                errors.append(r.text)
        except requests.RequestException as e:
            errors.append(str(e))


def main():
    args = parse_args()
    # --measure-actor-cpu: the dashboard's actor CPU panel reads a series only it exports.
    with KvServe(args.kvserve, ["--measure-actor-cpu"], model_args=args.model_args) as s, \
            tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: kvserve
    static_configs:
      - targets: ["127.0.0.1:{s.port}"]
""")
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        api = f"http://127.0.0.1:{port}/api/v1"
        stop = threading.Event()
        errors = []
        workers = [threading.Thread(target=load, args=(s.url, stop, errors)) for _ in range(4)]
        try:
            deadline = time.time() + 30
            while time.time() < deadline:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/-/ready", timeout=2).ok:
                        break
                except requests.RequestException:
                    pass
                time.sleep(0.2)
            else:
                raise AssertionError("prometheus did not become ready")
            for w in workers:
                w.start()
            # Wait for the target to be up and for a few scrapes under load.
            deadline = time.time() + 60
            while time.time() < deadline:
                r = requests.get(api + "/query", params={"query": "up{job='kvserve'}"}, timeout=5)
                res = r.json()["data"]["result"]
                if res and res[0]["value"][1] == "1":
                    break
                time.sleep(0.5)
            else:
                raise AssertionError("prometheus never scraped kvserve")
            # Rates over [1m] need two scrapes with traffic between them; on a loaded machine
            # scrapes and requests come late, so the queries are evaluated until all pass
            # (bounded), rather than once after a fixed sleep.
            queries = dashboard_queries()
            failures = [f"{title}: {expr} uses no kvserve_ metric"
                        for title, expr in queries if "kvserve_" not in expr]
            assert not failures, "\n".join(failures)
            time.sleep(5)
            deadline = time.time() + 150
            while True:
                failures = evaluate(api, queries)
                if not failures or time.time() > deadline:
                    break
                time.sleep(2)
            stop.set()
            for w in workers:
                w.join(180)
            assert not errors, errors[:3]
            assert not failures, "\n".join(failures)
            print(f"prometheus dashboard test: {len(queries)} queries ok")
        finally:
            stop.set()
            prom.terminate()
            try:
                prom.wait(20)
            except subprocess.TimeoutExpired:
                prom.kill()


if __name__ == "__main__":
    sys.exit(main())
