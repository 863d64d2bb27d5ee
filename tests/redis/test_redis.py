#!/usr/bin/env python3
"""test_redis.py — system tests of tpool-server's Redis Streams durable
queue ([redis], POST /queue, GET /tasks/{entry id}, the redis health
source), one case per run:

  redis_replicas  three replicas share a stream; one is killed -9 midway
                  and started again under a new consumer name; every entry
                  ends with exactly one result record, and the counters
                  agree with what Redis holds
  redis_poison    an entry whose consumer dies on every delivery is
                  dead-lettered after max_deliveries
  redis_restart   redis-server (AOF, fsync always) is killed -9 midway and
                  restarted: /health and POST /queue say 503 meanwhile, and
                  nothing is lost or run twice
  redis_burst     a burst of entries on a tiny pool: refused submits are
                  offered again, every entry ends ok exactly once
  redis_routes    the HTTP routes' replies and errors, the health object,
                  /metrics, bad [redis] values, a SIGHUP reload

Usage: test_redis.py CASE, with TPOOL_SERVER (tpool-server, built with
[redis]), TPOOL_SANITIZE (the build's b_sanitize: counts are divided by 5
and deadlines multiplied by 4 under a sanitizer) and REDIS_SERVER
(redis-server) in the environment; run.sh sets them. Every case starts its
own redis-server and tpool-server(s) on 127.0.0.1, on free ports, in a
temporary directory, and stops all of them whatever happens. Needs only
the standard library and redis-py.
"""
import atexit
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import redis

SERVER = os.environ.get("TPOOL_SERVER", "")
SANITIZE = os.environ.get("TPOOL_SANITIZE", "none")
REDIS_SERVER = os.environ.get("REDIS_SERVER", "redis-server")
SLOW = SANITIZE not in ("", "none")
SCALE = 5 if SLOW else 1  # counts are divided by this under a sanitizer
SLOWER = 4 if SLOW else 1  # and deadlines multiplied by this

STREAM = "tpool:tasks"
GROUP = "tpool"
DEAD = "tpool:dead"
PREFIX = "tpool:result:"
RECORD_FIELDS = {"status", "result", "attempts", "consumer", "finished_at"}
HEALTH_FIELDS = ["connected", "stream", "group", "consumer", "lag", "pending",
                 "in_flight", "received", "acked", "reclaimed",
                 "dead_lettered", "duplicates"]
METRIC_FAMILIES = {
    "tpool_redis_connected": "gauge",
    "tpool_redis_received_total": "counter",
    "tpool_redis_acked_total": "counter",
    "tpool_redis_reclaimed_total": "counter",
    "tpool_redis_dead_lettered_total": "counter",
    "tpool_redis_duplicate_runs_total": "counter",
    "tpool_redis_lag": "gauge",
    "tpool_redis_pending": "gauge",
}
ENTRY_ID = re.compile(r"^[0-9]+-[0-9]+$")
SANITIZER_REPORT = re.compile(
    r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: ThreadSanitizer|"
    r"runtime error:|ERROR: MemorySanitizer")

START = time.monotonic()


class Fail(Exception):
    pass


def fail(msg):
    raise Fail(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def say(msg):
    print(f"[{time.monotonic() - START:7.2f}s] {msg}", flush=True)


def scaled(count):
    return max(1, count // SCALE)


def wait_until(what, probe, timeout_s, interval_s=0.05):
    """Calls probe() until it returns a true value, which is returned; fails
    after timeout_s (times SLOWER) saying what it waited for."""
    limit = timeout_s * SLOWER
    deadline = time.monotonic() + limit
    while True:
        v = probe()
        if v:
            return v
        if time.monotonic() > deadline:
            fail(f"timed out after {limit:g} s waiting for {what}")
        time.sleep(interval_s)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None, timeout_s=30):
    """One request. Returns (status, body: JSON when it says so, else text,
    headers). Never raises for an HTTP error status."""
    if body is not None and not isinstance(body, bytes):
        body = (body if isinstance(body, str) else json.dumps(body)).encode()
    req = urllib.request.Request(url, data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s * SLOWER) as r:
            status, raw, hdrs = r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        status, raw, hdrs = e.code, e.read(), e.headers
    text = raw.decode("utf-8", "replace")
    if "json" in (hdrs.get("Content-Type") or ""):
        try:
            return status, json.loads(text), hdrs
        except ValueError:
            fail(f"{method} {url}: {status} with invalid JSON: {text[:200]!r}")
    return status, text, hdrs


# ---- processes -------------------------------------------------------------

PROCS = []  # every process started, for the last-resort cleanup


def spawn(args, log_path):
    with open(log_path, "ab") as log:
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
    PROCS.append(p)
    return p


def kill_all():
    for p in PROCS:
        if p.poll() is None:
            try:
                p.kill()
            except OSError:
                pass
    for p in PROCS:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


atexit.register(kill_all)


def on_term(sig, frame):
    raise SystemExit(128 + sig)  # unwinds through the finally blocks


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)


def tail(path, lines=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"({e})\n"


class RedisServer:
    """A redis-server of the test's own, on 127.0.0.1."""

    def __init__(self, work, aof=False):
        self.dir = os.path.join(work, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.aof = aof
        self.proc = None
        self.log = os.path.join(work, "redis-server.log")
        self.url = f"redis://127.0.0.1:{self.port}"

    def start(self):
        args = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port),
                "--dir", self.dir, "--save", "", "--daemonize", "no",
                "--logfile", self.log]
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.proc = spawn(args, self.log)

        def up():
            if self.proc.poll() is not None:
                fail(f"redis-server exited ({self.proc.returncode}):\n"
                     + tail(self.log))
            try:
                return self.client().ping()
            except redis.RedisError:
                return False
        wait_until(f"redis-server on port {self.port} to answer PING", up, 30)
        say(f"redis-server pid {self.proc.pid} on port {self.port}"
            + (" (AOF, appendfsync always)" if self.aof else ""))

    def client(self):
        """A new client (one made before a restart keeps a dead
        connection)."""
        return redis.Redis(host="127.0.0.1", port=self.port,
                           decode_responses=True, socket_timeout=30 * SLOWER,
                           socket_connect_timeout=10)

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=30)
        say(f"redis-server killed -9 (pid {self.proc.pid})")


POOL_DEFAULTS = {"io": None, "cpu": None, "inference": None,
                 "embedding": None, "db": None}


def config_text(port, redis_url, data_dir, pools, redis_keys=None,
                routes=None, http_keys=None, general=None):
    """A tpool-server config: pools maps a pool name to its keys (a pool of
    the five built in that is not there is disabled)."""
    out = ["[general]", "shutdown_timeout = 10", "log_level = info"]
    out += [f"{k} = {v}" for k, v in (general or {}).items()]
    out += ["[http]", f"listen = 127.0.0.1:{port}"]
    out += [f"{k} = {v}" for k, v in (http_keys or {}).items()]
    out += ["[demo]", f"data_dir = {data_dir}", "db_rows = 10",
            "embedding_dim = 8"]
    for name in list(POOL_DEFAULTS) + [p for p in pools
                                       if p not in POOL_DEFAULTS]:
        out.append(f"[pool.{name}]")
        if name not in pools:
            out.append("enabled = false")
            continue
        out += [f"{k} = {v}" for k, v in pools[name].items()]
    if routes:
        out.append("[routes]")
        out += [f"{k} = {v}" for k, v in routes.items()]
    out += ["[redis]", f"url = {redis_url}"]
    out += [f"{k} = {v}" for k, v in (redis_keys or {}).items()]
    return "\n".join(out) + "\n"


class Server:
    """A tpool-server of the test's own; start() may be called again after
    kill() or stop() (same config, same port)."""

    def __init__(self, env, name, text=None, port=None):
        self.env = env
        self.name = name
        self.port = port or free_port()
        self.conf = os.path.join(env.work, name + ".ini")
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.starts = 0
        self.log = None
        self.consumer = None
        self.last = None  # the "redis" object of the last health poll
        self.max_in_flight = 0  # the most in_flight polls saw
        if text is not None:
            self.write_config(text)

    def write_config(self, text):
        with open(self.conf, "w") as f:
            f.write(text.replace("@PORT@", str(self.port)))

    def start(self):
        self.starts += 1
        self.log = os.path.join(self.env.work,
                                f"{self.name}.{self.starts}.log")
        self.env.logs.append(self.log)
        self.proc = spawn([SERVER, "--config", self.conf], self.log)
        self.last = None
        want = f"Listening on http://127.0.0.1:{self.port}/"

        def listening():
            if self.proc.poll() is not None:
                fail(f"{self.name} exited ({self.proc.returncode}) at "
                     f"start:\n" + tail(self.log))
            with open(self.log, errors="replace") as f:
                return want in f.read()
        wait_until(f"{self.name} to listen on port {self.port}", listening,
                   60)
        h = self.health()
        check("redis" in h, f"{self.name}: no \"redis\" object in "
              "/health/thread-pools")
        self.consumer = h["redis"]["consumer"]
        say(f"{self.name} pid {self.proc.pid} on port {self.port}, "
            f"consumer {self.consumer}")
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=30)
        say(f"{self.name} killed -9 (pid {self.proc.pid}, consumer "
            f"{self.consumer})")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        """SIGTERM, and the drain must end with status 0 in time."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60 * SLOWER)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            fail(f"{self.name} did not exit within {60 * SLOWER} s of "
                 "SIGTERM")
        if rc != 0:
            self.env.check_sanitizers()  # fails with the report, if any
            fail(f"{self.name} exited with status {rc} after SIGTERM:\n"
                 + tail(self.log))
        say(f"{self.name} stopped (status 0)")

    def get(self, path, **kw):
        return http("GET", self.base + path, **kw)

    def post(self, path, body=None, **kw):
        return http("POST", self.base + path, body, **kw)

    def health(self):
        status, doc, _ = self.get("/health/thread-pools")
        check(status == 200, f"{self.name}: /health/thread-pools answered "
              f"{status}: {doc}")
        return doc

    def redis_health(self):
        return self.health()["redis"]

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()


class Env:
    """What one case starts, and its cleanup."""

    def __init__(self, case):
        self.case = case
        self.work = tempfile.mkdtemp(prefix=f"tpool-{case}-")
        self.data = os.path.join(self.work, "data")
        self.logs = []
        self.redis = None

    def start_redis(self, aof=False):
        self.redis = RedisServer(self.work, aof)
        self.logs.append(self.redis.log)
        self.redis.start()
        return self.redis

    def check_sanitizers(self):
        for path in self.logs:
            with open(path, errors="replace") as f:
                text = f.read()
            m = SANITIZER_REPORT.search(text)
            if m:
                start = max(0, m.start() - 200)
                fail(f"a sanitizer report in {os.path.basename(path)}:\n"
                     + text[start:start + 3000])

    def dump_logs(self):
        for path in self.logs:
            print(f"---- the end of {os.path.basename(path)} ----",
                  file=sys.stderr)
            print(tail(path), file=sys.stderr, end="")

    def cleanup(self):
        kill_all()
        if os.environ.get("TPOOL_TEST_KEEP"):
            print(f"kept {self.work} (TPOOL_TEST_KEEP)", file=sys.stderr)
        else:
            shutil.rmtree(self.work, ignore_errors=True)


# ---- Redis reads -----------------------------------------------------------

def group_info(r):
    for g in r.xinfo_groups(STREAM):
        if g["name"] == GROUP:
            return g
    return None


def idle_group(r):
    """True once the group has nothing left to deliver or acknowledge."""
    g = group_info(r)
    return g is not None and g["pending"] == 0 and g["lag"] == 0


def result_keys(r):
    return {k for k in r.scan_iter(match=PREFIX + "*", count=10000)}


def records(r, ids):
    """The result records of ids, {id: {field: value}}; missing ones are
    empty dicts."""
    out = {}
    ids = list(ids)
    for i in range(0, len(ids), 2000):
        p = r.pipeline(transaction=False)
        for eid in ids[i:i + 2000]:
            p.hgetall(PREFIX + eid)
        for eid, rec in zip(ids[i:i + 2000], p.execute()):
            out[eid] = rec
    return out


def ttls(r, ids):
    out = []
    ids = list(ids)
    for i in range(0, len(ids), 2000):
        p = r.pipeline(transaction=False)
        for eid in ids[i:i + 2000]:
            p.ttl(PREFIX + eid)
        out += p.execute()
    return out


def check_record(eid, rec, status, attempts=None, ran=True):
    """Checks a result record; ran: its result is a task's reply (false for
    an entry that could not run, and for dead ones)."""
    check(set(rec) == RECORD_FIELDS,
          f"record of {eid}: fields {sorted(rec)}, expected "
          f"{sorted(RECORD_FIELDS)}")
    check(rec["status"] == status,
          f"record of {eid}: status {rec['status']}, expected {status}: {rec}")
    if attempts is not None:
        check(rec["attempts"] == str(attempts),
              f"record of {eid}: attempts {rec['attempts']}, expected "
              f"{attempts}: {rec}")
    try:
        result = json.loads(rec["result"])
        float(rec["finished_at"])
    except ValueError:
        fail(f"record of {eid}: result or finished_at unreadable: {rec}")
    if ran:
        check(isinstance(result, dict) and result.get("status") == status,
              f"record of {eid}: result {rec['result']} does not say "
              f"{status}")
    return result


def check_one_record_each(r, ids, expect):
    """Exactly one result record per entry of ids, nothing else: expect
    maps an id to (status, attempts). Returns the records."""
    keys = result_keys(r)
    want = {PREFIX + eid for eid in ids}
    check(keys == want,
          f"{len(keys)} result records for {len(want)} entries: "
          f"{len(want - keys)} missing (e.g. {sorted(want - keys)[:3]}), "
          f"{len(keys - want)} unexpected (e.g. {sorted(keys - want)[:3]})")
    recs = records(r, ids)
    for eid, rec in recs.items():
        status, attempts = expect(eid)
        check_record(eid, rec, status, attempts)
    left = [t for t in ttls(r, ids) if t <= 0]
    check(not left, f"{len(left)} result records without a TTL")
    return recs


def check_nothing_pending(r):
    g = group_info(r)
    check(g is not None, f"no group {GROUP} on {STREAM}")
    check(g["pending"] == 0 and g["lag"] == 0,
          f"XINFO GROUPS: pending {g['pending']}, lag {g['lag']} (expected "
          "0 and 0)")
    summary = r.xpending(STREAM, GROUP)
    check(summary["pending"] == 0, f"XPENDING: {summary}")


# ---- the cases ---------------------------------------------------------------

def case_replicas(env):
    """Three replicas; one killed -9 when a third of the entries have their
    result record, and started again under a new name."""
    n = scaled(50000)
    rs = env.start_redis()
    r = rs.client()
    # kind: (body, pool (None: routed by name), status, attempts), the
    # first two made with a random generator g
    kinds = {
        "sleep": (lambda g: {"work": "sleep", "ms": g.randint(0, 2)},
                  lambda g: g.choice(["io", "cpu"]), "ok", 1),
        "spin": (lambda g: {"work": "spin", "ms": 1}, lambda g: "cpu", "ok",
                 1),
        "hash": (lambda g: {"work": "hash", "bytes": 1000}, lambda g: "cpu",
                 "ok", 1),
        "fail": (lambda g: {"work": "fail", "ms": 0}, lambda g: "io",
                 "failed", 1),
        "flaky": (lambda g: {"work": "flaky", "failures": 1, "attempts": 2},
                  lambda g: "io", "ok", 2),
        "embed": (lambda g: {"work": "embed", "text": "a short text to embed",
                             "name": "doc.embed"}, lambda g: None, "ok", 1),
    }
    names = list(kinds)
    weights = [3, 1, 1, 1, 1, 1]
    expect = {}  # entry id -> kind

    def add(client, g, count):
        """Adds count entries of random kinds in one pipeline."""
        p = client.pipeline(transaction=False)
        chosen = g.choices(names, weights, k=count)
        for k in chosen:
            body, pool, _, _ = kinds[k]
            fields = {"task": json.dumps(body(g))}
            where = pool(g)
            if where:
                fields["pool"] = where
            p.xadd(STREAM, fields)
        for eid, k in zip(p.execute(), chosen):
            expect[eid] = k

    preload = n * 3 // 5
    t0 = time.monotonic()
    rng = random.Random(1)
    for i in range(0, preload, 1000):
        add(r, rng, min(1000, preload - i))
    say(f"preloaded {preload} entries in {time.monotonic() - t0:.2f} s")

    pools = {"io": {"workers": 4, "retry_backoff": 0.001},
             "cpu": {"workers": 2, "retry_backoff": 0.001},
             "embedding": {"workers": 1, "retry_backoff": 0.001}}
    text = config_text("@PORT@", rs.url, env.data, pools,
                       {"reclaim_after": 2},
                       routes={"*.embed": "embedding"})
    replicas = [Server(env, f"replica{i}", text) for i in range(3)]
    for s in replicas:
        s.start()
    names_seen = {s.consumer for s in replicas}
    check(len(names_seen) == 3, f"consumer names not distinct: {names_seen}")

    # Polls every replica's health about every 100 ms.
    polling = threading.Event()
    polling.set()
    rounds = [0]
    live = list(replicas)

    def poll():
        while polling.is_set():
            for s in list(live):
                try:
                    st, doc, _ = http("GET", s.base + "/health/thread-pools",
                                      timeout_s=5)
                    if st == 200 and "redis" in doc:
                        s.last = doc["redis"]
                        s.max_in_flight = max(s.max_in_flight,
                                              s.last["in_flight"])
                except OSError:
                    pass  # killed, or starting again
            rounds[0] += 1
            time.sleep(0.1)
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()

    # The rest of the entries, added while the replicas run.
    added = {"error": None}

    def adder():
        try:
            client, g = rs.client(), random.Random(2)
            rest = n - preload
            for i in range(0, rest, 250):
                add(client, g, min(250, rest - i))
                time.sleep(0.06)
        except Exception as e:  # noqa: BLE001 — reported by the main thread
            added["error"] = repr(e)
    adding = threading.Thread(target=adder, daemon=True)
    adding.start()

    def done_count():
        return r.dbsize() - 1  # the stream, and one key per record

    t_start = time.monotonic()
    wait_until(f"{n // 3} result records", lambda: done_count() >= n // 3,
               120)
    victim = replicas[1]
    seen_round = rounds[0]
    # The victim's last health poll before the kill.
    wait_until("a health poll of every replica",
               lambda: rounds[0] >= seen_round + 1 and all(
                   s.last for s in replicas), 30)
    victim.kill()
    killed_pending = 0
    for c in r.xinfo_consumers(STREAM, GROUP):
        if c["name"] == victim.consumer:
            killed_pending = c["pending"]
    live.remove(victim)
    seen_round = rounds[0]
    wait_until("the poller to finish a round after the kill",
               lambda: rounds[0] >= seen_round + 2, 30)
    last = dict(victim.last)
    say(f"at the kill: {done_count()} records, entries "
        f"{'still being added' if adding.is_alive() else 'all added'}; "
        f"the killed replica had "
        f"in_flight {last['in_flight']}, acked {last['acked']} at its last "
        f"poll, and {killed_pending} entries pending in Redis")
    again = Server(env, "replica1-again", port=victim.port)
    again.conf = victim.conf
    again.start()
    check(again.consumer != victim.consumer,
          f"the restarted replica kept the name {victim.consumer}")
    live.append(again)

    adding.join(timeout=120 * SLOWER)
    check(not adding.is_alive(), "the adder did not finish")
    check(added["error"] is None, f"adding entries: {added['error']}")
    check(len(expect) == n, f"{len(expect)} entries added, expected {n}")
    wait_until(f"a result record for each of the {n} entries and the group "
               "idle", lambda: done_count() >= n and idle_group(r), 150,
               interval_s=0.2)
    elapsed = time.monotonic() - t_start
    polling.clear()
    poller.join(timeout=30)
    say(f"all {n} entries done {elapsed:.1f} s after the replicas started "
        f"({n / elapsed:.0f}/s); the most in_flight seen: " + ", ".join(
            f"{s.name} {s.max_in_flight}" for s in replicas + [again]))
    # [redis] batch 64, max_in_flight 0 = four batches: "Reading stops at
    # this many" (tpool_redis.h).
    for s in replicas + [again]:
        check(s.max_in_flight <= 4 * 64,
              f"{s.name} held {s.max_in_flight} entries at once, more than "
              "max_in_flight (4 batches of 64 = 256)")

    check(r.xlen(STREAM) == n, f"XLEN {r.xlen(STREAM)}, expected {n}")
    recs = check_one_record_each(
        r, expect, lambda eid: kinds[expect[eid]][2:])
    check_nothing_pending(r)
    check(r.xlen(DEAD) == 0, f"{r.xlen(DEAD)} dead letters")

    by_consumer = {}
    for rec in recs.values():
        by_consumer[rec["consumer"]] = by_consumer.get(rec["consumer"], 0) + 1
    everyone = {s.consumer for s in replicas} | {again.consumer}
    check(set(by_consumer) <= everyone,
          f"records written by unknown consumers: "
          f"{set(by_consumer) - everyone}")
    say(f"records per consumer: {by_consumer}")

    # Each live replica's acked counter is the number of records it wrote
    # (counters are updated as the script's reply comes back: let them
    # settle).
    def counters_settled():
        hs = {s.name: s.redis_health() for s in live}
        return hs if all(hs[s.name]["acked"] == by_consumer.get(
            s.consumer, 0) and hs[s.name]["in_flight"] == 0 and
            hs[s.name]["lag"] == 0 and hs[s.name]["pending"] == 0
            for s in live) else None
    try:
        hs = wait_until("each live replica's acked to equal its records "
                        "(and in_flight, lag and pending 0)",
                        counters_settled, 10)
    except Fail:
        hs = {s.name: s.redis_health() for s in live}
        fail("acked counters disagree with the records: " + ", ".join(
            f"{s.name} ({s.consumer}) acked {hs[s.name]['acked']}, "
            f"in_flight {hs[s.name]['in_flight']}, lag {hs[s.name]['lag']}, "
            f"pending {hs[s.name]['pending']}, records "
            f"{by_consumer.get(s.consumer, 0)}" for s in live))
    for s in live:
        say(f"{s.name}: {hs[s.name]}")
    check(by_consumer.get(victim.consumer, 0) >= last["acked"],
          f"the killed replica acked {last['acked']} but wrote "
          f"{by_consumer.get(victim.consumer, 0)} records")
    dups = sum(h["duplicates"] for h in hs.values())
    check(dups <= last["in_flight"],
          f"{dups} duplicate runs on the live replicas, more than the "
          f"{last['in_flight']} entries the killed one held")
    reclaimed = sum(h["reclaimed"] for h in hs.values())
    check(reclaimed >= killed_pending,
          f"the live replicas reclaimed {reclaimed} entries; the killed one "
          f"left {killed_pending} pending")
    if last["in_flight"] > 0:
        check(reclaimed >= 1, "the killed replica held entries, none was "
              "reclaimed")
    for name, h in hs.items():
        check(h["dead_lettered"] == 0, f"{name} dead-lettered "
              f"{h['dead_lettered']}")
        check(h["connected"] is True, f"{name} not connected: {h}")
    for c in r.xinfo_consumers(STREAM, GROUP):
        check(c["pending"] == 0, f"consumer {c['name']} still has "
              f"{c['pending']} pending")
    say(f"duplicates {dups} (bound {last['in_flight']}), reclaimed "
        f"{reclaimed} (killed left {killed_pending} pending)")
    for s in live:
        s.stop()


def case_poison(env):
    """An entry whose consumer dies on every delivery goes to the dead
    letters after max_deliveries."""
    rs = env.start_redis()
    r = rs.client()
    text = config_text("@PORT@", rs.url, env.data,
                       {"io": {"workers": 1}, "cpu": {"workers": 2}},
                       {"consumer": "poison-1", "reclaim_after": 1,
                        "max_deliveries": 3})
    task = json.dumps({"work": "sleep", "ms": 60000})
    eid = r.xadd(STREAM, {"task": task, "pool": "cpu"})
    say(f"entry {eid}: {task} on cpu")
    s = Server(env, "poison", text)
    for delivery in (1, 2, 3):
        s.start()
        check(s.consumer == "poison-1", f"consumer {s.consumer}")

        def running():
            h = s.health()
            return (len(h["pools"]["cpu"]["active_tasks"]) == 1
                    and h["redis"]["in_flight"] == 1)
        wait_until(f"delivery {delivery} to run", running, 30)
        rows = r.xpending_range(STREAM, GROUP, min="-", max="+", count=10)
        check(len(rows) == 1 and rows[0]["message_id"] == eid
              and rows[0]["consumer"] == "poison-1"
              and rows[0]["times_delivered"] == delivery,
              f"XPENDING after delivery {delivery}: {rows}")
        s.kill()
    s.start()
    wait_until("the entry in the dead letters", lambda: r.xlen(DEAD) == 1,
               30)
    wait_until("dead_lettered 1 on the replica",
               lambda: s.redis_health()["dead_lettered"] == 1, 10)
    dead = r.xrange(DEAD, "-", "+")
    check(len(dead) == 1, f"XRANGE {DEAD}: {dead}")
    fields = dead[0][1]
    check(set(fields) == {"task", "pool", "entry", "reason", "deliveries"},
          f"dead letter fields: {fields}")
    check(fields["task"] == task and fields["pool"] == "cpu",
          f"dead letter lost the entry's fields: {fields}")
    check(fields["entry"] == eid, f"dead letter entry {fields['entry']}, "
          f"expected {eid}")
    check(fields["reason"], f"dead letter without a reason: {fields}")
    check(fields["deliveries"] == "3", f"dead letter deliveries "
          f"{fields['deliveries']}, expected 3")
    rec = r.hgetall(PREFIX + eid)
    result = check_record(eid, rec, "dead", 0, ran=False)
    check(rec["consumer"] == "poison-1", f"record consumer {rec['consumer']}")
    check(isinstance(result, dict) and "error" in result,
          f"a dead record's result without an error: {rec['result']}")
    check(r.ttl(PREFIX + eid) > 0, "the dead record has no TTL")
    check_nothing_pending(r)
    check(r.xlen(STREAM) == 1, f"XLEN {STREAM} {r.xlen(STREAM)}")
    h = s.health()
    check(h["pools"]["cpu"]["submitted"] == 0 and
          not h["pools"]["cpu"]["active_tasks"],
          f"the dead entry ran a fourth time: {h['pools']['cpu']}")
    check(h["redis"]["dead_lettered"] == 1 and h["redis"]["acked"] == 0,
          f"health: {h['redis']}")
    st, text_m, _ = s.get("/metrics")
    check(st == 200, f"/metrics answered {st}")
    m = re.search(r"^tpool_redis_dead_lettered_total (\S+)$", text_m, re.M)
    check(m and float(m.group(1)) == 1,
          f"/metrics tpool_redis_dead_lettered_total: "
          f"{m.group(1) if m else 'missing'}")
    st, doc, _ = s.get("/tasks/" + eid)
    check(st == 200 and doc["status"] == "dead" and doc["state"] == "done",
          f"GET /tasks/{eid}: {st} {doc}")
    say(f"dead letter: {fields}; record: {rec}")
    s.stop()


def case_restart(env):
    """redis-server killed -9 midway through the adds and restarted from
    its AOF."""
    n = scaled(3000)
    rs = env.start_redis(aof=True)
    # Two loops: POST /queue goes through each loop's own client.
    text = config_text("@PORT@", rs.url, env.data,
                       {"io": {"workers": 8}, "cpu": {"workers": 1}},
                       http_keys={"loop_threads": 2})
    s = Server(env, "replica", text).start()
    accepted = []  # ids answered 202
    lock = threading.Lock()
    unavailable = [0]  # 503s the adders saw
    errors = []
    threads_n = 4
    per = [n // threads_n + (1 if i < n % threads_n else 0)
           for i in range(threads_n)]
    spread_s = 4.0  # the adds, spread over about this long

    def adder(k, count):
        rng = random.Random(k)
        try:
            t0 = time.monotonic()
            for i in range(count):
                body = {"work": "sleep", "ms": rng.randint(1, 5)}
                deadline = time.monotonic() + 120 * SLOWER
                while True:
                    st, doc, hdrs = s.post("/queue/io", body)
                    if st == 202:
                        break
                    if st != 503:
                        errors.append(f"POST /queue/io: {st} {doc}")
                        return
                    with lock:
                        unavailable[0] += 1
                    if time.monotonic() > deadline:
                        errors.append("POST /queue/io: 503 for too long")
                        return
                    time.sleep(0.05)
                with lock:
                    accepted.append(doc["id"])
                pause = t0 + (i + 1) * spread_s / count - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        except Exception as e:  # noqa: BLE001 — reported by the main thread
            errors.append(repr(e))
    adders = [threading.Thread(target=adder, args=(k, per[k]), daemon=True)
              for k in range(threads_n)]
    for t in adders:
        t.start()
    wait_until(f"{n // 2} entries accepted",
               lambda: len(accepted) >= n // 2 or errors, 60)
    check(not errors, f"adding: {errors[:3]}")
    rs.kill()
    at_kill = len(accepted)
    t_down = time.monotonic()

    def unreachable():
        st, doc, _ = s.get("/health")
        return st == 503 and any(x.get("reason") == "redis_unreachable"
                                 for x in doc.get("reasons", [])) and doc
    doc = wait_until("/health to say redis_unreachable", unreachable, 10)
    say(f"/health while Redis is down: {json.dumps(doc)}")
    st, doc, hdrs = s.post("/queue/io", {"work": "sleep", "ms": 1})
    check(st == 503, f"POST /queue/io while Redis is down: {st} {doc}")
    check(hdrs.get("Retry-After"), "a 503 without Retry-After")
    st, doc, _ = s.get("/tasks/" + accepted[0])
    check(st == 503, f"GET /tasks/{{id}} while Redis is down: {st} {doc}")
    h = s.redis_health()
    check(h["connected"] is False, f"health while Redis is down: {h}")
    st, text_m, _ = s.get("/metrics")
    check(re.search(r"^tpool_redis_connected 0$", text_m, re.M),
          "/metrics: tpool_redis_connected is not 0 while Redis is down")
    wait_until("the adders to meet a 503", lambda: unavailable[0] > 0, 10)
    time.sleep(max(0.0, 1.5 - (time.monotonic() - t_down)))
    rs.start()
    say(f"Redis was down {time.monotonic() - t_down:.1f} s; {at_kill} "
        "entries accepted before")
    for t in adders:
        t.join(timeout=180 * SLOWER)
    check(not any(t.is_alive() for t in adders), "the adders did not finish")
    check(not errors, f"adding: {errors[:3]}")
    check(len(accepted) == n, f"{len(accepted)} entries accepted, "
          f"expected {n}")
    r = rs.client()

    def all_done():
        length = r.xlen(STREAM)
        return r.dbsize() - 1 >= length and idle_group(r)
    wait_until("every entry's result record, the group idle", all_done, 120,
               interval_s=0.2)
    ids = [e[0] for e in r.xrange(STREAM, "-", "+")]
    lost = set(accepted) - set(ids)
    check(not lost, f"{len(lost)} entries answered 202 are not in the "
          f"stream after the restart (e.g. {sorted(lost)[:3]})")
    check(len(ids) >= n, f"XLEN {len(ids)} < {n}")
    if len(ids) > n:
        say(f"{len(ids) - n} entries added twice (an XADD whose reply was "
            "lost in the kill, retried)")
    check_one_record_each(r, ids, lambda eid: ("ok", 1))
    check_nothing_pending(r)

    def settled():
        h = s.redis_health()
        return h if h["connected"] and h["in_flight"] == 0 and \
            h["acked"] == len(ids) and h["lag"] == 0 and \
            h["pending"] == 0 else None
    try:
        h = wait_until("the replica's acked to equal the records", settled,
                       10)
    except Fail:
        fail(f"the replica's counters after the restart: "
             f"{s.redis_health()}, {len(ids)} records")
    check(h["duplicates"] == 0, f"{h['duplicates']} duplicate runs: {h}")
    st, doc, _ = s.get("/health")
    check(st == 200, f"/health after the restart: {st} {doc}")
    say(f"{len(ids)} entries, {unavailable[0]} 503s met by the adders; "
        f"health: {h}")
    s.stop()


def case_burst(env):
    """Entries at once onto a tiny pool: refused submits are retried."""
    n = scaled(5000)
    rs = env.start_redis()
    r = rs.client()
    text = config_text("@PORT@", rs.url, env.data,
                       {"io": {"workers": 1, "queue_limit": 4},
                        "cpu": {"workers": 2, "queue_limit": 4}})
    s = Server(env, "replica", text).start()
    rng = random.Random(5)
    p = r.pipeline(transaction=False)
    for _ in range(n):
        p.xadd(STREAM, {"task": json.dumps({"work": "sleep",
                                            "ms": rng.randint(0, 1)}),
                        "pool": "cpu"})
    t0 = time.monotonic()
    ids = p.execute()
    say(f"{n} entries added in {time.monotonic() - t0:.2f} s")
    wait_until(f"{n} result records, the group idle",
               lambda: r.dbsize() - 1 >= n and idle_group(r), 120,
               interval_s=0.2)
    say(f"done in {time.monotonic() - t0:.1f} s")
    check_one_record_each(r, ids, lambda eid: ("ok", 1))
    check_nothing_pending(r)

    def settled():
        h = s.health()
        return h if h["redis"]["acked"] == n and \
            h["redis"]["in_flight"] == 0 and h["redis"]["lag"] == 0 and \
            h["redis"]["pending"] == 0 else None
    try:
        h = wait_until("acked == entries", settled, 10)
    except Fail:
        fail(f"counters: {s.redis_health()}, {n} records")
    cpu = h["pools"]["cpu"]
    check(h["redis"]["duplicates"] == 0 and h["redis"]["received"] == n,
          f"health: {h['redis']}")
    check(cpu["completed"] == n and cpu["failed"] == 0,
          f"pool cpu: completed {cpu['completed']}, failed {cpu['failed']}")
    say(f"pool cpu: submitted {cpu['submitted']}, rejected "
        f"{cpu['rejected']}, completed {cpu['completed']}; redis: "
        f"{h['redis']}")
    s.stop()


def error_message(doc):
    return doc.get("error", {}).get("message", "") if isinstance(doc, dict) \
        else ""


def case_routes(env):
    """The routes' replies and errors, the health object, /metrics, bad
    [redis] values, a SIGHUP reload."""
    rs = env.start_redis()
    r = rs.client()
    pools = {"io": {"workers": 1}, "cpu": {"workers": 2},
             "embedding": {"workers": 1}}
    routes = {"*.embed": "embedding"}

    def text(http_keys=None, batch=None):
        keys = {"batch": batch} if batch else {}
        return config_text("@PORT@", rs.url, env.data, pools, keys,
                           routes=routes, http_keys=http_keys)
    s = Server(env, "server", text()).start()

    # /health, and the redis object.
    st, doc, _ = s.get("/health")
    check(st == 200, f"/health: {st} {doc}")
    h = s.redis_health()
    check(list(h) == HEALTH_FIELDS, f"the redis health object's fields: "
          f"{list(h)}, expected {HEALTH_FIELDS}")
    check(h["connected"] is True and h["stream"] == STREAM and
          h["group"] == GROUP, f"health: {h}")
    check(h["consumer"] == f"{socket.gethostname()}:{s.proc.pid}",
          f"default consumer name {h['consumer']}, expected HOSTNAME:PID "
          f"({socket.gethostname()}:{s.proc.pid})")
    for k in HEALTH_FIELDS[6:]:
        check(isinstance(h[k], int) and not isinstance(h[k], bool),
              f"health {k}: {h[k]!r}")
    wait_until("lag and pending known",
               lambda: isinstance(s.redis_health()["lag"], int) and
               isinstance(s.redis_health()["pending"], int), 10)

    # POST /queue/cpu, then GET /tasks/{id}: waiting, then done.
    body = {"work": "sleep", "ms": 500}
    before = r.xlen(STREAM)
    st, doc, _ = s.post("/queue/cpu", body)
    check(st == 202, f"POST /queue/cpu: {st} {doc}")
    check(list(doc) == ["id"] and ENTRY_ID.match(doc["id"]),
          f"POST /queue/cpu answered {doc}")
    eid = doc["id"]
    st, waiting, _ = s.get("/tasks/" + eid)
    check(st == 202 and waiting == {"id": eid, "state": "waiting"},
          f"GET /tasks/{eid} while it runs: {st} {waiting}")
    check(r.xlen(STREAM) == before + 1, "XLEN did not grow by one")
    entry = r.xrange(STREAM, eid, eid)
    check(entry and entry[0][1] == {"task": json.dumps(body), "pool": "cpu"},
          f"the entry's fields: {entry}")

    def done(entry_id):
        def probe():
            st, doc, _ = s.get("/tasks/" + entry_id)
            check(st in (200, 202), f"GET /tasks/{entry_id}: {st} {doc}")
            return doc if st == 200 else None
        return wait_until(f"{entry_id} done", probe, 30, interval_s=0.05)
    doc = done(eid)
    check(set(doc) == {"id", "state", "status", "result", "attempts",
                       "consumer", "finished_at", "age_s"},
          f"GET /tasks/{{id}} when done: fields {sorted(doc)}")
    check(doc["id"] == eid and doc["state"] == "done" and
          doc["status"] == "ok" and doc["attempts"] == 1 and
          doc["consumer"] == h["consumer"], f"GET /tasks/{eid}: {doc}")
    check(isinstance(doc["finished_at"], int) and
          abs(doc["finished_at"] - time.time()) < 60,
          f"finished_at {doc['finished_at']!r}")
    check(isinstance(doc["age_s"], (int, float)) and doc["age_s"] >= 0,
          f"age_s {doc['age_s']!r}")
    st, direct, _ = s.post("/tasks/cpu", {"work": "sleep", "ms": 1})
    check(st == 200, f"POST /tasks/cpu: {st} {direct}")
    check(set(doc["result"]) == set(direct),
          f"a record's result has {sorted(doc['result'])}; POST /tasks/cpu "
          f"answers {sorted(direct)}")

    # A kind with a "result": the same shape and answer as POST /tasks/cpu.
    body = {"work": "hash", "bytes": 1000}
    st, doc, _ = s.post("/queue/cpu", body)
    check(st == 202, f"POST /queue/cpu: {st} {doc}")
    queued = done(doc["id"])["result"]
    st, direct, _ = s.post("/tasks/cpu", body)
    check(st == 200, f"POST /tasks/cpu: {st} {direct}")
    shape = {"id", "pool", "name", "status", "attempts", "queue_wait_s",
             "run_s", "loop", "result"}
    check(set(direct) == shape, f"POST /tasks/cpu answers {sorted(direct)}")
    check(set(queued) == shape, f"the queued hash's result: "
          f"{sorted(queued)}, expected {sorted(shape)}")
    check(queued["result"] == direct["result"] and queued["pool"] == "cpu"
          and queued["status"] == "ok",
          f"queued {queued} vs direct {direct}")

    # POST /queue: routed by name.
    body = {"work": "embed", "text": "hello", "name": "doc.embed"}
    st, doc, _ = s.post("/queue", body)
    check(st == 202, f"POST /queue (routed): {st} {doc}")
    entry = r.xrange(STREAM, doc["id"], doc["id"])
    check(entry[0][1] == {"task": json.dumps(body)},
          f"a routed entry's fields: {entry}")
    res = done(doc["id"])["result"]
    check(res["pool"] == "embedding" and res["name"] == "doc.embed" and
          res["result"]["dimension"] == 8, f"routed result: {res}")

    # Refusals: nothing is added.
    before = r.xlen(STREAM)
    st, doc, _ = s.post("/queue", {"work": "sleep", "ms": 1,
                                   "name": "nowhere"})
    check(st == 404 and "no route" in error_message(doc),
          f"POST /queue, a name without a route: {st} {doc}")
    st, doc, _ = s.post("/queue", {"work": "sleep", "ms": 1})
    check(st == 400 and error_message(doc).startswith("name:"),
          f"POST /queue without a name: {st} {doc}")
    bad = [
        (b'{"work":"sleep","ms":"x"}', "ms:"),
        (b'{"work":"sleep","ms":-1}', "ms:"),
        (b'{"work":"nope"}', "work:"),
        (b'{"ms":1}', "work:"),
        (b"not json", "body:"),
        (b"[1,2]", "body:"),
        (b"", "body:"),
        (b'{"work":"sleep","ms":1,"count":2}', "count:"),
        (b'{"work":"sleep","ms":1,"bogus":1}', "bogus:"),
        (b'{"work":"hash"}', "bytes:"),
        (b'{"work":"query","key":1}', "work:"),
        (b'{"work":"sleep","ms":1,"name":""}', "name:"),
        (b'{"work":"sleep","ms":1,"attempts":0}', "attempts:"),
        (b'{"work":"sleep","ms":1,"delay_s":1}', "delay_s: a queued entry"),
    ]
    for raw, field in bad:
        st, doc, _ = s.post("/queue/cpu", raw)
        check(st == 400 and error_message(doc).startswith(field),
              f"POST /queue/cpu {raw!r}: {st} {doc} (expected 400 naming "
              f"{field})")
        check(isinstance(doc, dict) and doc["error"]["status"] == 400,
              f"the 400's JSON: {doc}")
    for path in ("/queue/nosuchpool", "/queue/", "/queue/cpu/x"):
        st, doc, _ = s.post(path, {"work": "sleep", "ms": 1})
        check(st == 404 and isinstance(doc, dict),
              f"POST {path}: {st} {doc}")
    check(r.xlen(STREAM) == before,
          f"refused requests added entries: XLEN {r.xlen(STREAM)}, was "
          f"{before}")
    st, doc, _ = s.get("/tasks/1-1")
    check(st == 404 and isinstance(doc, dict) and
          doc["error"]["status"] == 404, f"GET /tasks/1-1: {st} {doc}")
    for path in ("/queue/cpu", "/queue"):
        st, doc, hdrs = s.get(path)
        check(st == 405 and hdrs.get("Allow") == "POST",
              f"GET {path}: {st} {doc} (Allow: {hdrs.get('Allow')})")

    # /metrics: the 8 families, and promtool's opinion. (The counters are
    # updated as the record script's reply comes back, just after GET
    # /tasks can see the record.)
    wait_until("acked 3", lambda: s.redis_health()["acked"] == 3, 10)
    st, metrics, _ = s.get("/metrics")
    check(st == 200, f"/metrics: {st}")
    types = dict(re.findall(r"^# TYPE (tpool_redis_\S+) (\S+)$", metrics,
                            re.M))
    check(types == METRIC_FAMILIES,
          f"/metrics redis families: {types}, expected {METRIC_FAMILIES}")
    for name in METRIC_FAMILIES:
        check(re.search(rf"^{name} [0-9.e+]+$", metrics, re.M),
              f"/metrics: no sample of {name}")
    m = re.search(r"^tpool_redis_acked_total (\S+)$", metrics, re.M)
    check(float(m.group(1)) == 3,
          f"/metrics tpool_redis_acked_total {m.group(1)}, expected 3")
    check(s.redis_health()["acked"] == 3, "acked changed")
    promtool = shutil.which("promtool")
    if promtool:
        p = subprocess.run([promtool, "check", "metrics"], input=metrics,
                           capture_output=True, text=True, timeout=60)
        check(p.returncode == 0, f"promtool check metrics: {p.returncode}\n"
              f"{p.stdout}{p.stderr}")
        say("promtool check metrics: ok")
    else:
        say("promtool not installed: /metrics not checked by it")

    # Entries added by others, straight into the stream, that cannot run:
    # each gets a "failed" record saying why, and is acknowledged.
    task = '{"work":"sleep","ms":1}'
    cannot = [({"nottask": "x"}, "task: missing"),
              ({"task": "not json"}, "task: body: invalid JSON"),
              ({"task": task, "pool": "nosuch"}, 'no pool named "nosuch"'),
              ({"task": task, "pool": "db"}, 'no pool named "db"'),
              ({"task": task, "pool": ""}, "pool:"),
              ({"task": '{"work":"query","key":1}', "pool": "cpu"}, "work:"),
              ({"task": task}, "name:"),
              ({"task": '{"work":"sleep","ms":1,"name":"zzz"}'},
               'no route for task name "zzz"'),
              ({"task": '{"work":"sleep","ms":1,"count":3}', "pool": "cpu"},
               "count:"),
              ({"task": '{"work":"sleep","delay_s":5}', "pool": "cpu"},
               "delay_s: a queued entry runs when a replica reads it")]
    acked = s.redis_health()["acked"]
    ids = [r.xadd(STREAM, fields) for fields, _ in cannot]
    wait_until("records of the entries that cannot run",
               lambda: all(r.exists(PREFIX + i) for i in ids), 10)
    for eid, (fields, why) in zip(ids, cannot):
        rec = r.hgetall(PREFIX + eid)
        result = check_record(eid, rec, "failed", 0, ran=False)
        check(isinstance(result, dict) and list(result) == ["error"] and
              why in result["error"],
              f"the record of {fields}: {rec['result']} (expected an error "
              f"saying {why!r})")
    wait_until("acked to count them",
               lambda: s.redis_health()["acked"] == acked + len(ids), 10)
    check(idle_group(r), f"entries left: {group_info(r)}")

    # SIGHUP: a reload that leaves [redis] alone says nothing of it; one
    # that changes batch says it changes at restart only. The admin token,
    # applied live, shows when each reload is done.
    note = "[redis] changes at restart only"
    s.write_config(text({"admin_token": "token-one"}))
    s.signal(signal.SIGHUP)
    wait_until("the first reload (the admin token)",
               lambda: s.post("/queue/cpu", {"work": "sleep", "ms": 1})[0]
               == 401, 10)
    st, doc, hdrs = s.post("/queue", {"work": "sleep", "ms": 1,
                                      "name": "a.embed"})
    check(st == 401 and hdrs.get("WWW-Authenticate"),
          f"POST /queue without the token: {st} {doc}")
    st, doc, _ = s.post("/queue/cpu", {"work": "sleep", "ms": 1},
                        headers={"Authorization": "Bearer token-one"})
    check(st == 202, f"POST /queue/cpu with the token: {st} {doc}")
    check(note not in s.log_text(),
          f"a reload that did not change [redis] logged \"{note}\"")
    s.write_config(text({"admin_token": "token-two"}, batch=7))
    s.signal(signal.SIGHUP)
    wait_until(f"the second reload to log \"{note}\"",
               lambda: note in s.log_text(), 10)
    wait_until("the second reload's admin token",
               lambda: s.post("/queue/cpu", {"work": "sleep", "ms": 1},
                              headers={"Authorization": "Bearer token-one"}
                              )[0] == 401, 10)
    st, doc, _ = s.post("/queue/cpu", {"work": "sleep", "ms": 1},
                        headers={"Authorization": "Bearer token-two"})
    check(st == 202, f"POST /queue/cpu with the new token: {st} {doc}")
    h2 = s.redis_health()
    check(h2["connected"] and h2["consumer"] == h["consumer"],
          f"after the reloads: {h2}")
    say(f"SIGHUP: {[l for l in s.log_text().splitlines() if note in l]}")
    s.stop()

    # Bad [redis] values: --check-config and a start both refuse them,
    # naming file:line and the key.
    bad_values = [("url", "http://x"), ("url", "redis://127.0.0.1:0"),
                  ("url", "redis://127.0.0.1:6379/16"), ("batch", "0"),
                  ("batch", "10001"), ("max_deliveries", "0"),
                  ("reclaim_after", "abc"), ("reclaim_after", "0.01"),
                  ("result_ttl", "0"), ("stream", ""),
                  ("nosuchkey", "1")]
    good = config_text(0, rs.url, env.data, pools)
    for key, value in bad_values:
        path = os.path.join(env.work, "bad.ini")
        with open(path, "w") as f:
            f.write(good + f"{key} = {value}\n")
        line = (good + f"{key} = {value}\n").count("\n")
        want = f"{path}:{line}: [redis] {key}"
        p = subprocess.run([SERVER, "--check-config", path],
                           capture_output=True, text=True,
                           timeout=30 * SLOWER)
        check(p.returncode == 2 and want in p.stderr,
              f"--check-config with {key} = {value[:20]}: status "
              f"{p.returncode}, {p.stderr.strip()!r} (expected 2 and "
              f"{want!r})")
        try:
            p = subprocess.run([SERVER, "--config", path],
                               capture_output=True, text=True,
                               timeout=30 * SLOWER)
        except subprocess.TimeoutExpired:
            fail(f"--config with {key} = {value[:20]}: the server started "
                 "(still running after 30 s)")
        check(p.returncode != 0 and want in p.stderr,
              f"--config with {key} = {value[:20]}: status {p.returncode}, "
              f"{p.stderr.strip()!r}")
    say(f"{len(bad_values)} bad [redis] values refused, e.g. "
        f"{p.stderr.strip()!r}")
    with open(os.path.join(env.work, "good.ini"), "w") as f:
        f.write(good)
    p = subprocess.run([SERVER, "--check-config",
                        os.path.join(env.work, "good.ini")],
                       capture_output=True, text=True, timeout=30 * SLOWER)
    check(p.returncode == 0, f"--check-config of a good file: "
          f"{p.returncode} {p.stderr}")

    # A record that expired ([redis] result_ttl) is not "waiting": the 404
    # says "never added, or its result record expired".
    s = Server(env, "short-ttl", config_text(
        "@PORT@", rs.url, env.data, pools, {"result_ttl": 1})).start()
    st, doc, _ = s.post("/queue/cpu", {"work": "sleep", "ms": 1})
    check(st == 202, f"POST /queue/cpu: {st} {doc}")
    eid = doc["id"]
    done(eid)
    check(0 < r.ttl(PREFIX + eid) <= 1, f"TTL {r.ttl(PREFIX + eid)} with "
          "result_ttl = 1")
    wait_until("the record to expire", lambda: not r.exists(PREFIX + eid),
               10)
    st, doc, _ = s.get("/tasks/" + eid)
    check(st == 404, f"GET /tasks/{eid} after its record expired: {st} "
          f"{doc} (expected 404: \"never added, or its result record "
          "expired\")")
    s.stop()


CASES = {
    "redis_replicas": case_replicas,
    "redis_poison": case_poison,
    "redis_restart": case_restart,
    "redis_burst": case_burst,
    "redis_routes": case_routes,
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print(f"usage: test_redis.py {'|'.join(CASES)}", file=sys.stderr)
        return 2
    if not SERVER or not os.access(SERVER, os.X_OK):
        print(f"test_redis.py: TPOOL_SERVER={SERVER!r} is not an "
              "executable", file=sys.stderr)
        return 2
    case = sys.argv[1]
    say(f"{case}: {SERVER}, b_sanitize={SANITIZE}, redis-py "
        f"{redis.__version__}, counts / {SCALE}")
    env = Env(case)
    rc = 1
    try:
        CASES[case](env)
        env.check_sanitizers()
        rc = 0
    except Fail as e:
        print(f"{case}: FAILED: {e}", file=sys.stderr)
        env.dump_logs()
    except Exception:  # a bug of the test, or Redis refusing a command
        import traceback
        traceback.print_exc()
        env.dump_logs()
    finally:
        env.cleanup()
    say(f"{case}: {'ok' if rc == 0 else 'FAILED'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
