/*
 * queue.h — tpool-server's durable queue ([redis]): a consumer of the
 * Redis stream on loop 0, whose entries run as the tasks POST /tasks would
 * run; POST /queue[/{pool}], which adds an entry; GET /tasks/{entry id},
 * which answers from the entry's result record on any replica; and the
 * "redis" part of the health routes and metrics. Built when libtpool_redis
 * is (TPOOL_SERVER_REDIS).
 */
#ifndef TPOOL_SERVER_QUEUE_H
#define TPOOL_SERVER_QUEUE_H

#include "tasks.h"
#include "tpool_redis.h"

/*
 * The consumer's task function (tpool_redis_task_fn), `user` being loop
 * 0's task_route_t: reads the entry's "task" field as POST /tasks reads a
 * body (task_parse_json()) and its optional "pool" field; without "pool"
 * the task's name picks the pool through [routes]. Exposed for the fuzz
 * target.
 */
int queue_entry_task(void *user, const tpool_redis_entry_t *e,
                     tpool_redis_task_t *t);

/* The consumer's result function: the JSON a POST /tasks reply carries,
   and frees the task. */
char *queue_entry_result(void *user, void *arg, int status,
                         const tpool_task_info_t *info,
                         const tpool_redis_entry_t *e);

/*
 * Serves POST /queue, POST /queue/{pool} and GET /tasks/{entry id} on a
 * loop whose task routes have a Redis client (d->queue). Returns true if
 * it took the request (answered now or later), false to leave it to the
 * other routes.
 * Thread: the loop of d.
 */
bool queue_handle(task_route_t *d, struct evhttp_request *req,
                  const char *path);

/* The health routes' "redis" source, for a loop's tpool_http_t. */
tpool_http_source_t queue_http_source(tpool_redis_consumer_t *c);

#endif /* TPOOL_SERVER_QUEUE_H */
