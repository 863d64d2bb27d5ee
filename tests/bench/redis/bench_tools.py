"""bench_tools.py -- the helpers of tests/bench/redis/run.sh.

    bench_tools.py freeport
    bench_tools.py config --src config.ini --dst FILE --port P --dir DIR [--redis KEY=VALUE]...
    bench_tools.py preload --port P --n N [--stream S] [--group G]
    bench_tools.py poll-stream --port P --n N --out FILE --ready FILE [--timeout S]
    bench_tools.py latency --port P --rate R --seconds S --out FILE
    bench_tools.py celery-preload --port P --n N
    bench_tools.py poll-celery --port P --n N --setting TEXT --out FILE --ready FILE
    bench_tools.py report FILE

Measuring commands append tab-separated rows to FILE (kind, implementation,
setting, n, seconds, rate, note); `report` prints them as one table. A
poller makes its --ready file once it polls: run.sh starts the server or
the worker only then.

Run with Debian's /usr/bin/python3 (python3-redis 4.3, python3-celery 5.2).
"""
import argparse
import json
import math
import os
import re
import socket
import sys
import time

import redis

STREAM = "tpool:tasks"
GROUP = "tpool"
RESULT_PREFIX = "tpool:result:"
TASK_FIELDS = {"task": json.dumps({"work": "sleep", "ms": 0}), "pool": "cpu"}
POLL_S = 0.05
CHUNK = 1000


def row(out, kind, impl, setting, n, seconds, rate, note=""):
    with open(out, "a") as f:
        f.write("\t".join(str(x) for x in
                          (kind, impl, setting, n, f"{seconds:.3f}",
                           f"{rate:.1f}", note)) + "\n")


def client(port, db=0):
    return redis.Redis(host="127.0.0.1", port=port, db=db,
                       decode_responses=True)


# ---------------------------------------------------------------- setup


def cmd_freeport(_a):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


def cmd_config(a):
    """The repo's config.ini, with: HTTP on 127.0.0.1, any port; verbose
    off and warnings only, logged to DIR/server.log; the demo data in DIR;
    and a [redis] section for the bench's redis-server."""
    overrides = {
        "general": {"verbose": "false", "log_level": "warn",
                    "log": os.path.join(a.dir, "server.log")},
        "http": {"listen": "127.0.0.1:0"},
        "demo": {"data_dir": os.path.join(a.dir, "data")},
    }
    redis_keys = {"url": f"redis://127.0.0.1:{a.port}"}
    for kv in a.redis or []:
        k, _, v = kv.partition("=")
        redis_keys[k.strip()] = v.strip()
    section, out = None, []
    for line in open(a.src):
        m = re.match(r"\s*\[([^\]]+)\]", line)
        if m:
            section = m.group(1)
        else:
            m = re.match(r"\s*([A-Za-z0-9_]+)\s*=", line)
            if m and m.group(1) in overrides.get(section, {}):
                line = f"{m.group(1)} = {overrides[section][m.group(1)]}\n"
        out.append(line)
    out.append("\n[redis]\n")
    out.extend(f"{k} = {v}\n" for k, v in redis_keys.items())
    with open(a.dst, "w") as f:
        f.writelines(out)


def cmd_preload(a):
    """N entries into the stream, pipelined (no transaction) by chunks,
    then the group, created at the stream's start as tpool-server would
    (so polling can start before the server has connected)."""
    r = client(a.port)
    left = a.n
    while left:
        k = min(CHUNK, left)
        p = r.pipeline(transaction=False)
        for _ in range(k):
            p.xadd(a.stream, TASK_FIELDS)
        p.execute()
        left -= k
    try:
        r.xgroup_create(a.stream, a.group, id="0", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise
    print(f"preloaded {a.n} entries into {a.stream}", file=sys.stderr)


# ---------------------------------------------------------------- tpool


def group_info(r, stream, group):
    try:
        for g in r.xinfo_groups(stream):
            if g["name"] == group:
                return g
    except redis.ResponseError:  # no stream yet
        pass
    return None


def group_drained(r, stream, g):
    if g["pending"] != 0:
        return False
    if g.get("lag") is not None:
        return g["lag"] == 0
    # lag is null when Redis cannot tell (deleted entries): compare ids
    last = r.xinfo_stream(stream)["last-generated-id"]
    return g["last-delivered-id"] == last


def result_records(r, keys_or_ids, fields, prefix=RESULT_PREFIX):
    """HMGET `fields` of each record, pipelined by chunks: a list of lists."""
    out = []
    for i in range(0, len(keys_or_ids), CHUNK):
        p = r.pipeline(transaction=False)
        for k in keys_or_ids[i:i + CHUNK]:
            p.hmget(prefix + k, fields)
        out.extend(p.execute())
    return out


def stalled(a, now, t_first, done):
    """Why a run is given up, or "": it has gone on for a.timeout seconds,
    or, past a.check seconds, its rate so far would need more than that."""
    el = now - (t_first or a.t_start)
    if el > a.timeout:
        return f"STALLED: {done} of {a.n} done in {el:.0f} s"
    if el > a.check and (done <= 0 or a.n / (done / el) > a.timeout):
        need = f"{math.ceil(a.n / (done / el))} s" if done > 0 else "forever"
        return (f"STALLED: {done} of {a.n} done in {el:.0f} s; at that rate "
                f"all would take {need}, more than the {a.timeout:.0f} s bound")
    return ""


def ready(a, r):
    """Tells run.sh (by making the file a.ready) that the poller is up and
    polling, so that it starts the server or worker only now: the window's
    start must not be missed while Python starts. Sets a.t_start."""
    r.ping()
    a.t_start = time.time()
    with open(a.ready, "w") as f:
        f.write(f"{a.t_start}\n")


def cmd_poll_stream(a):
    """Waits, polling XINFO GROUPS every 50 ms, for the group to have read
    every entry and to have nothing pending. The measured window starts at
    the first poll that sees entries-read > 0 (or something pending) and
    ends at the first poll that sees lag == 0 and pending == 0. Then counts
    the result records with SCAN: they must be N, every one "ok"."""
    r = client(a.port)
    t_first = None
    ready(a, r)
    while True:
        now = time.time()
        g = group_info(r, a.stream, a.group)
        if g is not None:
            if t_first is None and ((g.get("entries-read") or 0) > 0
                                    or g["pending"] > 0):
                t_first = now
            if t_first is not None and group_drained(r, a.stream, g):
                break
        done = 0
        if g is not None:
            done = (g.get("entries-read") or 0) - g["pending"]
        why = stalled(a, now, t_first, done)
        if why:
            el = now - (t_first or a.t_start)
            row(a.out, "run", "tpool-server", a.setting, a.n, el,
                done / el if el > 0 else 0, why)
            print(f"tpool: {why}", file=sys.stderr)
            return 1
        time.sleep(POLL_S)
    t_end = now
    keys = [k[len(RESULT_PREFIX):]
            for k in r.scan_iter(match=RESULT_PREFIX + "*", count=CHUNK)]
    recs = result_records(r, keys, ["status", "finished_at"])
    bad = sum(1 for s, _ in recs if s != "ok")
    fin = [float(f) for _, f in recs if f]
    span = max(fin) - min(fin) if fin else 0.0
    el = t_end - t_first
    note = (f"results {len(keys)}/{a.n}, not ok {bad}; "
            f"from server start {t_end - a.t_start:.2f} s; "
            f"finished_at span {span:.3f} s "
            f"= {(len(fin) - 1) / span if span > 0 else 0:.0f}/s")
    row(a.out, "run", "tpool-server", a.setting, a.n, el, a.n / el, note)
    print(f"tpool: {a.n} in {el:.3f} s = {a.n / el:.0f}/s; {note}",
          file=sys.stderr)
    return 0 if len(keys) == a.n and bad == 0 else 1


def pct(sorted_vals, p):
    """Nearest-rank percentile of a sorted list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1,
                   int(-(-p * len(sorted_vals) // 100)) - 1))
    return sorted_vals[k]


def cmd_latency(a):
    """Adds entries at `rate` per second for `seconds` (paced each
    millisecond: whatever is due is sent as one pipeline), then waits for
    all their result records. Latency = finished_at (the server's clock,
    Unix seconds with ms) - the entry id's ms part (Redis's clock at the
    XADD): enqueue to result, both at 1 ms resolution."""
    r = client(a.port)
    total = int(a.rate * a.seconds)
    ids = []
    t0 = time.perf_counter()
    while len(ids) < total:
        el = time.perf_counter() - t0
        due = min(total, int(el * a.rate) + 1)
        k = min(due - len(ids), CHUNK)
        if k <= 0:
            time.sleep(max(0.0, len(ids) / a.rate - el))
            continue
        p = r.pipeline(transaction=False)
        for _ in range(k):
            p.xadd(a.stream, TASK_FIELDS)
        ids.extend(p.execute())
    send_s = time.perf_counter() - t0
    deadline = time.time() + a.timeout
    fin = {}
    missing = ids
    while missing and time.time() < deadline:
        recs = result_records(r, missing, ["finished_at"])
        for i, (f,) in zip(missing, recs):
            if f:
                fin[i] = float(f)
        missing = [i for i in missing if i not in fin]
        if missing:
            time.sleep(POLL_S)
    lat = sorted(fin[i] * 1000.0 - int(i.split("-")[0]) for i in fin)
    note = (f"offered {a.rate:.0f}/s for {a.seconds:.0f} s, sent {total} "
            f"at {total / send_s:.0f}/s; p50 {pct(lat, 50):.0f} ms, "
            f"p99 {pct(lat, 99):.0f} ms, max {lat[-1] if lat else 0:.0f} ms"
            f" (1 ms resolution); {len(missing)} without a result")
    row(a.out, "latency", "tpool-server", a.label, total,
        send_s, total / send_s, note)
    print(f"tpool latency: {note}", file=sys.stderr)
    return 0 if not missing else 1


# ---------------------------------------------------------------- celery


def cmd_celery_preload(a):
    """N `noop` tasks into Celery's queue, through one producer."""
    os.environ["BENCH_REDIS_PORT"] = str(a.port)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from celery_app import app, noop
    t0 = time.time()
    with app.producer_or_acquire() as p:
        for _ in range(a.n):
            noop.apply_async(producer=p)
    print(f"celery: preloaded {a.n} tasks in {time.time() - t0:.1f} s",
          file=sys.stderr)


def cmd_poll_celery(a):
    """As poll-stream, for Celery: the window starts at the first poll that
    sees the queue (list `celery`, db 1) shorter than N and ends at the
    first that sees N result keys in db 2 (holding nothing else, so
    DBSIZE), the queue empty and nothing unacknowledged (kombu's hash
    `unacked`, db 1)."""
    b, res = client(a.port, 1), client(a.port, 2)
    t_first = None
    ready(a, b)
    while True:
        now = time.time()
        p = b.pipeline(transaction=False)
        p.llen("celery")
        p.hlen("unacked")
        queued, unacked = p.execute()
        done = res.dbsize()
        if t_first is None and (queued < a.n or done > 0):
            t_first = now
        if t_first is not None and done >= a.n and queued == 0 \
                and unacked == 0:
            break
        why = stalled(a, now, t_first, done)
        if why:
            el = now - (t_first or a.t_start)
            row(a.out, "run", "celery", a.setting, a.n, el,
                done / el if el > 0 else 0, why)
            print(f"celery {a.setting}: {why}", file=sys.stderr)
            return 1
        time.sleep(POLL_S)
    el = now - t_first
    note = f"from worker start {now - a.t_start:.2f} s"
    row(a.out, "run", "celery", a.setting, a.n, el, a.n / el, note)
    print(f"celery {a.setting}: {a.n} in {el:.3f} s = {a.n / el:.0f}/s; "
          f"{note}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- report


def cmd_report(a):
    rows = []
    for line in open(a.file):
        kind, impl, setting, n, sec, rate, note = \
            line.rstrip("\n").split("\t")
        rows.append(dict(kind=kind, impl=impl, setting=setting, n=int(n),
                         sec=float(sec), rate=float(rate), note=note))
    runs = [x for x in rows if x["kind"] == "run"]
    w = max([len(x["setting"]) for x in runs] + [7])
    print(f"| {'implementation':<14} | {'setting':<{w}} | {'N':>7} "
          f"| {'seconds':>8} | {'tasks/s':>8} |")
    print(f"|{'-' * 16}|{'-' * (w + 2)}|{'-' * 9}|{'-' * 10}|{'-' * 10}|")
    for x in runs:
        stalled = (" (stalled)" if x["note"].startswith("STALLED") else
                   " (not run)" if x["note"] == "NOT RUN" else "")
        prec = 1 if x["rate"] < 100 else 0
        print(f"| {x['impl']:<14} | {x['setting']:<{w}} | {x['n']:>7} "
              f"| {x['sec']:>8.3f} | {x['rate']:>8.{prec}f} |{stalled}")
    print()
    for x in runs:
        if x["note"] and x["note"] != "NOT RUN":
            print(f"  {x['impl']} {x['setting']}: {x['note']}")
    for x in rows:
        if x["kind"] == "ceiling":
            print(f"Redis ceiling, redis-benchmark XADD {x['setting']}: "
                  f"{x['rate']:.0f} requests/s")
    for x in rows:
        if x["kind"] == "latency":
            print(f"tpool-server latency, {x['setting']}: {x['note']}")
    ok = [x for x in runs
          if not x["note"].startswith("STALLED") and x["note"] != "NOT RUN"]
    tp = [x for x in ok if x["impl"] == "tpool-server"]
    ce = [x for x in ok if x["impl"] == "celery"]
    if ce:
        best = max(ce, key=lambda x: x["rate"])
        print(f"Celery at its best setting: {best['setting']}, "
              f"{best['rate']:.0f} tasks/s")
        if tp:
            rates = sorted(x["rate"] for x in tp)
            med = rates[(len(rates) - 1) // 2]
            what = f"median of {len(rates)} runs" if len(rates) > 1 else "run"
            print(f"tpool-server ({what}, {med:.0f} tasks/s) / best Celery: "
                  f"{med / best['rate']:.1f}x")


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def sp(name, fn, port=True):
        s = sub.add_parser(name)
        s.set_defaults(fn=fn)
        if port:
            s.add_argument("--port", type=int, required=True)
        return s

    sp("freeport", cmd_freeport, port=False)
    s = sp("config", cmd_config)
    s.add_argument("--src", required=True)
    s.add_argument("--dst", required=True)
    s.add_argument("--dir", required=True)
    s.add_argument("--redis", action="append", metavar="KEY=VALUE")
    for name, fn in (("preload", cmd_preload), ("poll-stream", cmd_poll_stream),
                     ("latency", cmd_latency)):
        s = sp(name, fn)
        s.add_argument("--stream", default=STREAM)
        s.add_argument("--group", default=GROUP)
        if name != "latency":
            s.add_argument("--n", type=int, required=True)
        if name != "preload":
            s.add_argument("--out", required=True)
            s.add_argument("--timeout", type=float, default=120.0)
    s = sub.choices["poll-stream"]
    s.add_argument("--ready", required=True, metavar="FILE")
    s.add_argument("--check", type=float, default=15.0)
    s.add_argument("--setting", default="shipped config.ini")
    s = sub.choices["latency"]
    s.add_argument("--rate", type=float, required=True)
    s.add_argument("--seconds", type=float, default=10.0)
    s.add_argument("--label", default="enqueue to result")
    s = sp("celery-preload", cmd_celery_preload)
    s.add_argument("--n", type=int, required=True)
    s = sp("poll-celery", cmd_poll_celery)
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--setting", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--ready", required=True, metavar="FILE")
    s.add_argument("--timeout", type=float, default=120.0)
    s.add_argument("--check", type=float, default=15.0)
    s = sp("report", cmd_report, port=False)
    s.add_argument("file")
    a = ap.parse_args()
    sys.exit(a.fn(a) or 0)


if __name__ == "__main__":
    main()
