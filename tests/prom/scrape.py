#!/usr/bin/env python3
"""scrape.py — a real Prometheus scrapes a real tpool-server.

Starts tpool-server and Prometheus (Debian's `prometheus`, which
`./setup.sh test` installs, best effort) on 127.0.0.1, scraping every
second; puts load on the cpu pool and a queue on the io pool; then asks
Prometheus's HTTP API, with PromQL, for the completed tasks, their rate and
the queued tasks, and checks them against what /health/thread-pools says.
Prints the queries and their answers. Plain build only (exit 77, skipped,
under a sanitizer); exits 77 too, saying so, when prometheus is not
installed.

Usage: scrape.py SERVER SANITIZE
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

WAIT_S = 60


def fail(msg):
    print("scrape.py: " + msg, file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=WAIT_S) as r:
        return r.status


def wait_for(what, check):
    """Polls check() until it returns a true value (returned), or fails."""
    until = time.monotonic() + WAIT_S
    while time.monotonic() < until:
        v = check()
        if v:
            return v
        time.sleep(0.2)
    fail("timed out waiting for " + what)


def main():
    server, sanitize = sys.argv[1], sys.argv[2]
    if sanitize != "none":
        print(f"prometheus test: skipped: plain build only "
              f"(b_sanitize={sanitize})")
        sys.exit(77)
    prom = shutil.which("prometheus")
    if not prom:
        print("prometheus test: skipped: prometheus is not installed "
              "(Debian's prometheus, which ./setup.sh test installs)")
        sys.exit(77)
    work = tempfile.mkdtemp()
    procs = []
    try:
        with open(os.path.join(work, "config.ini"), "w") as f:
            f.write("[http]\nlisten = 127.0.0.1:0\n"
                    f"[demo]\ndata_dir = {work}/data\ndb_rows = 10\n"
                    "[pool.io]\nworkers = 1\n[pool.cpu]\nworkers = 2\n"
                    "[pool.inference]\nworkers = 1\n[pool.embedding]\n"
                    "workers = 1\n[pool.db]\nworkers = 1\n")
        log = open(os.path.join(work, "server.log"), "w+")
        procs.append(subprocess.Popen(
            [server, "-c", os.path.join(work, "config.ini")],
            stdout=log, stderr=subprocess.STDOUT))

        def port_of_server():
            log.seek(0)
            m = re.search(r"Listening on http://127\.0\.0\.1:(\d+)/",
                          log.read())
            return m and int(m.group(1))
        port = wait_for("the server's port", port_of_server)
        base = f"http://127.0.0.1:{port}"

        pport = free_port()
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1s\n"
                    "scrape_configs:\n  - job_name: tpool\n"
                    f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n")
        plog = open(os.path.join(work, "prometheus.log"), "w")
        procs.append(subprocess.Popen(
            [prom, "--config.file=" + os.path.join(work, "prometheus.yml"),
             "--storage.tsdb.path=" + os.path.join(work, "tsdb"),
             f"--web.listen-address=127.0.0.1:{pport}"],
            stdout=plog, stderr=subprocess.STDOUT))
        papi = f"http://127.0.0.1:{pport}/api/v1/query?query="

        def query(q):
            try:
                r = get(papi + urllib.parse.quote(q))
            except OSError:
                return None
            res = r.get("data", {}).get("result", [])
            return float(res[0]["value"][1]) if res else None

        def pool(name):
            return get(f"{base}/health/thread-pools/{name}")

        # The load must come after a first scrape, or the rate sees none.
        wait_for("Prometheus to scrape the server",
                 lambda: query('up{job="tpool"}') == 1)

        # Load on cpu: 40 tasks of 20 ms, 4 at a time.
        def load(n):
            for _ in range(n):
                post(f"{base}/tasks/cpu",
                     {"name": "prom_load", "work": "sleep", "ms": 20})
        threads = [threading.Thread(target=load, args=(10,)) for _ in range(4)]
        for t in threads:
            t.start()
        # A queue on io: one long task holds its only worker, four wait.
        waiters = [threading.Thread(
            target=post, args=(f"{base}/tasks/io",
                               {"name": "held", "work": "sleep", "ms": ms}))
            for ms in (15000, 1, 1, 1, 1)]
        waiters[0].start()
        wait_for("the io worker to be busy",
                 lambda: pool("io")["active_threads"] == 1)
        for t in waiters[1:]:
            t.start()
        wait_for("four queued io tasks", lambda: pool("io")["queued_tasks"] == 4)
        for t in threads:
            t.join()

        completed = pool("cpu")["completed"]
        if completed != 40:
            fail(f"cpu completed {completed}, expected 40")
        q1 = 'tpool_tasks_completed_total{pool="cpu"}'
        wait_for(q1 + " == 40", lambda: query(q1) == completed)
        q2 = 'tpool_pool_queued_tasks{pool="io"}'
        got = wait_for(q2 + " == 4", lambda: query(q2) == 4 and query(q2))
        json_queued = pool("io")["queued_tasks"]
        if json_queued != 4:
            fail(f"the JSON says {json_queued} queued on io, expected 4")
        q3 = 'rate(tpool_tasks_completed_total{pool="cpu"}[1m])'
        rate = wait_for(q3 + " > 0", lambda: (query(q3) or 0) > 0 and query(q3))
        q4 = 'sum(tpool_pool_workers)'
        workers = wait_for(q4, lambda: query(q4))
        summary = get(f"{base}/health/thread-pools")["summary"]
        if workers != summary["total_workers"]:
            fail(f"{q4} = {workers}, the JSON says {summary['total_workers']}")
        print(f"{q1} = {completed:g} (JSON completed: {completed})")
        print(f"{q2} = {got:g} (JSON queued_tasks: {json_queued})")
        print(f"{q3} = {rate:.4g} tasks/s")
        print(f"{q4} = {workers:g} (JSON total_workers: "
              f"{summary['total_workers']})")
        for t in waiters:
            t.join()
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)
    print("scrape.py: ok")


main()
