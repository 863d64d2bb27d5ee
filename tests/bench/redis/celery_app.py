"""celery_app.py -- the Celery side of tests/bench/redis/run.sh.

One empty task, `noop`, on a Redis broker (db 1) and a Redis result
backend (db 2) of the bench's own redis-server, whose port is read from
BENCH_REDIS_PORT. Acknowledged late (after the task ran and its result is
stored), as tpool-server acknowledges a stream entry only with its result.
The prefetch multiplier comes from BENCH_CELERY_MULTIPLIER, and the worker's
--prefetch-multiplier overrides it.

Run with Debian's /usr/bin/python3 (python3-celery 5.2, python3-redis).
"""
import os

from celery import Celery

_port = int(os.environ.get("BENCH_REDIS_PORT", "6379"))

app = Celery(
    "celery_app",
    broker=f"redis://127.0.0.1:{_port}/1",
    backend=f"redis://127.0.0.1:{_port}/2",
)
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=int(
        os.environ.get("BENCH_CELERY_MULTIPLIER", "4")),
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue="celery",
    result_expires=3600,
)


@app.task(name="noop")
def noop():
    return None
