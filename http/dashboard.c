/*
 * dashboard.c — GET /dashboard: one self-contained page (inline CSS and
 * JavaScript, nothing fetched from anywhere but this server) that polls
 * /health/thread-pools every second and draws, per pool, the workers
 * (busy / current / max), the queue against its limit, completed, failed
 * and rejected per second (from the counters' differences), run-time and
 * queue-wait p50 and p99, the circuit breaker, the running tasks with
 * how long each has run (stuck ones marked), and a chart of throughput
 * and queue depth over the last five minutes. A button writes the status
 * table to the log (POST /health/thread-pools/log-status), asking for the
 * admin token when the server wants one. When the server stops
 * answering the page says so, and goes on polling until it is back.
 *
 * The page is a constant: the server sends it as is (no template, no
 * state), and every number on it comes from the JSON route.
 */
#include "http_internal.h"

#include <string.h>

/* The page in pieces, each under the 4095 bytes C11 promises a string
   literal may hold. */
static const char *const page[] = {
    "<!doctype html>\n"
    "<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
    "<title>tpool dashboard</title>\n"
    "<style>\n"
    "body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;"
    "color:#1d2330}\n"
    "header{display:flex;gap:1em;align-items:center;padding:.6em 1em;"
    "background:#1d2330;color:#fff}\n"
    "header h1{font-size:1.1em;margin:0}\n"
    "#state{margin-left:auto}\n"
    "#banner{display:none;padding:.6em 1em;background:#b3261e;color:#fff}\n"
    "#banner.on{display:block}\n"
    "main{display:grid;grid-template-columns:repeat(auto-fill,minmax("
    "340px,1fr));gap:1em;padding:1em}\n"
    ".pool{background:#fff;border-radius:6px;padding:.8em 1em;"
    "box-shadow:0 1px 2px #0002}\n"
    ".pool h2{font-size:1em;margin:0 0 .5em;display:flex;gap:.5em}\n"
    ".pool h2 .cb{margin-left:auto;font-weight:normal;font-size:.85em;"
    "padding:0 .4em;border-radius:3px;background:#e6f4ea}\n"
    ".cb.open{background:#fce8e6}.cb.half_open{background:#fef7e0}\n"
    ".bar{position:relative;height:14px;background:#e8eaed;border-radius:3px;"
    "margin:.2em 0 .5em;overflow:hidden}\n"
    ".bar i{position:absolute;top:0;bottom:0;left:0}\n"
    ".bar .cur{background:#aecbfa}.bar .busy{background:#1a73e8}"
    ".bar .q{background:#f9ab00}\n"
    "table{border-collapse:collapse;width:100%;font-size:.9em}\n"
    "td{padding:1px 4px}td.n{text-align:right;font-variant-numeric:"
    "tabular-nums}\n"
    ".tasks{font-size:.85em;max-height:7em;overflow:auto;margin:.3em 0}\n"
    ".stuck{color:#b3261e;font-weight:bold}\n"
    "canvas{width:100%;height:70px;display:block}\n"
    "button{font:inherit;padding:.2em .8em}\n"
    "</style></head><body>\n"
    "<header><h1>tpool</h1><span id=\"summary\"></span>"
    "<button id=\"log\">Write status to log</button>"
    "<span id=\"state\">connecting...</span></header>\n"
    "<div id=\"banner\" role=\"alert\"></div>\n"
    "<main id=\"pools\"></main>\n"
    "<script>\n"
    "'use strict';\n"
    "const HISTORY = 300; /* samples: five minutes at one per second */\n"
    "const last = {}, series = {};\n"
    "let token = null, down = 0;\n"
    "const $ = (id) => document.getElementById(id);\n"
    "function el(tag, cls, text) {\n"
    "  const e = document.createElement(tag);\n"
    "  if (cls) e.className = cls;\n"
    "  if (text !== undefined) e.textContent = text;\n"
    "  return e;\n"
    "}\n"
    "function ms(s) { return s >= 1 ? s.toFixed(2) + ' s' :"
    " (s * 1000).toFixed(s < 0.01 ? 3 : 1) + ' ms'; }\n"
    "function bar(parts) {\n"
    "  const b = el('div', 'bar');\n"
    "  for (const [cls, frac, title] of parts) {\n"
    "    const i = el('i', cls);\n"
    "    i.style.width = Math.max(0, Math.min(1, frac)) * 100 + '%';\n"
    "    i.title = title;\n"
    "    b.appendChild(i);\n"
    "  }\n"
    "  return b;\n"
    "}\n"
    "function row(t, label, value) {\n"
    "  const tr = el('tr');\n"
    "  tr.appendChild(el('td', '', label));\n"
    "  tr.appendChild(el('td', 'n', value));\n"
    "  t.appendChild(tr);\n"
    "}\n"
    "function chart(canvas, s) {\n"
    "  const w = canvas.width = canvas.clientWidth * devicePixelRatio;\n"
    "  const h = canvas.height = canvas.clientHeight * devicePixelRatio;\n"
    "  const g = canvas.getContext('2d');\n"
    "  g.clearRect(0, 0, w, h);\n"
    "  const lines = [['rate', '#1a73e8'], ['queued', '#f9ab00']];\n"
    "  for (const [key, color] of lines) {\n"
    "    const v = s.map((p) => p[key]);\n"
    "    const top = Math.max(1, ...v);\n"
    "    g.strokeStyle = color;\n"
    "    g.lineWidth = 1.5 * devicePixelRatio;\n"
    "    g.beginPath();\n"
    "    v.forEach((y, i) => {\n"
    "      const x = w - (v.length - 1 - i) * w / (HISTORY - 1);\n"
    "      const py = h - 2 - y / top * (h - 4);\n"
    "      i ? g.lineTo(x, py) : g.moveTo(x, py);\n"
    "    });\n"
    "    g.stroke();\n"
    "  }\n"
    "}\n"
    "function draw(data, now) {\n"
    "  const sm = data.summary;\n"
    "  $('summary').textContent = sm.pool_count + ' pools, ' +\n"
    "    sm.total_active + '/' + sm.total_workers + ' busy, ' +\n",
    "    sm.total_queued + ' queued, up ' + Math.round(sm.uptime_s) + ' s' +\n"
    "    (sm.shutting_down ? ', draining' : '');\n"
    "  const root = $('pools');\n"
    "  const seen = new Set();\n"
    "  for (const [name, p] of Object.entries(data.pools)) {\n"
    "    seen.add(name);\n"
    "    const prev = last[name];\n"
    "    const dt = prev ? (now - prev.at) / 1000 : 0;\n"
    "    const rate = (k) => prev && dt > 0 ?"
    " Math.max(0, (p[k] - prev.p[k]) / dt) : 0;\n"
    "    const r = {completed: rate('completed'), failed: rate('failed'),\n"
    "               rejected: rate('rejected')};\n"
    "    last[name] = {p, at: now};\n"
    "    const s = series[name] || (series[name] = []);\n"
    "    s.push({rate: r.completed + r.failed, queued: p.queued_tasks});\n"
    "    if (s.length > HISTORY) s.shift();\n"
    "    let card = document.getElementById('pool-' + name);\n"
    "    if (!card) {\n"
    "      card = el('section', 'pool');\n"
    "      card.id = 'pool-' + name;\n"
    "      card.dataset.pool = name;\n"
    "      root.appendChild(card);\n"
    "    }\n"
    "    card.replaceChildren();\n"
    "    const h2 = el('h2', '', name);\n"
    "    const cb = p.circuit_breaker;\n"
    "    if (cb && cb.enabled)\n"
    "      h2.appendChild(el('span', 'cb ' + cb.state, 'breaker ' +"
    " cb.state));\n"
    "    card.appendChild(h2);\n"
    "    card.appendChild(el('div', '', 'workers ' + p.active_threads +"
    " ' busy / ' + p.current_workers + ' / ' + p.max_workers + ' max'));\n"
    "    card.appendChild(bar([\n"
    "      ['cur', p.current_workers / p.max_workers, 'current'],\n"
    "      ['busy', p.active_threads / p.max_workers, 'busy']]));\n"
    "    card.appendChild(el('div', '', 'queue ' + p.queued_tasks + ' / ' +"
    " p.queue_limit));\n"
    "    card.appendChild(bar([['q', p.queued_tasks / p.queue_limit,"
    " 'queued']]));\n"
    "    const t = el('table');\n"
    "    row(t, 'completed /s', r.completed.toFixed(1));\n"
    "    row(t, 'failed /s', r.failed.toFixed(1));\n"
    "    row(t, 'rejected /s', r.rejected.toFixed(1));\n"
    "    row(t, 'run p50 / p99', ms(p.run_time_s.p50) + ' / ' +"
    " ms(p.run_time_s.p99));\n"
    "    row(t, 'queue wait p50 / p99', ms(p.queue_wait_s.p50) + ' / ' +"
    " ms(p.queue_wait_s.p99));\n"
    "    row(t, 'totals', p.completed + ' ok, ' + p.failed + ' failed, ' +"
    " p.rejected + ' rejected');\n"
    "    card.appendChild(t);\n"
    "    const tasks = el('div', 'tasks');\n"
    "    for (const a of p.active_tasks) {\n"
    "      tasks.appendChild(el('div', a.stuck ? 'stuck' : 'task',\n"
    "        '#' + a.id + ' ' + a.name + ' running ' +"
    " a.running_for_s.toFixed(1) + ' s' + (a.stuck ? ' (stuck)' : '')));\n"
    "    }\n"
    "    if (!p.active_tasks.length) tasks.textContent = 'no task running';\n"
    "    card.appendChild(tasks);\n"
    "    const c = el('canvas');\n"
    "    c.title = 'tasks/s (blue) and queued (orange), last 5 minutes';\n"
    "    card.appendChild(c);\n"
    "    chart(c, s);\n"
    "  }\n"
    "  for (const card of [...root.children])\n"
    "    if (!seen.has(card.dataset.pool)) card.remove();\n"
    "}\n"
    "function setDown(msg) {\n"
    "  $('banner').textContent = msg;\n"
    "  $('banner').classList.toggle('on', !!msg);\n"
    "}\n"
    "async function poll() {\n"
    "  try {\n"
    "    const r = await fetch('/health/thread-pools', {cache: 'no-store'});\n"
    "    if (!r.ok) throw new Error('HTTP ' + r.status);\n"
    "    draw(await r.json(), Date.now());\n"
    "    down = 0;\n"
    "    setDown('');\n"
    "    $('state').textContent = 'live ' + new Date().toLocaleTimeString();\n"
    "  } catch (e) {\n"
    "    down++;\n"
    "    setDown('The server is not answering (' + e.message + '); '"
    " + 'retrying every second (' + down + ' tries).');\n"
    "    $('state').textContent = 'offline';\n"
    "  }\n"
    "}\n"
    "$('log').addEventListener('click', async () => {\n"
    "  for (let tries = 0; tries < 2; tries++) {\n"
    "    const headers = token ? {Authorization: 'Bearer ' + token} : {};\n"
    "    const r = await fetch('/health/thread-pools/log-status',\n",
    "                          {method: 'POST', headers});\n"
    "    if (r.status === 401) {\n"
    "      token = prompt('Admin token for this server:');\n"
    "      if (token === null) return;\n"
    "      continue;\n"
    "    }\n"
    "    $('state').textContent = r.ok ? 'status written to the log' :\n"
    "      'log-status failed: HTTP ' + r.status;\n"
    "    return;\n"
    "  }\n"
    "});\n"
    "poll();\n"
    "setInterval(poll, 1000);\n"
    "</script></body></html>\n",
};

void tpool__route_dashboard(tpool_http_t *h, struct evhttp_request *req,
                            const char *pool) {
  (void)h;
  (void)pool;
  struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(headers, "Content-Type", "text/html; charset=utf-8");
  evhttp_add_header(headers, "Cache-Control", "no-store");
  /* Nothing on the page comes from elsewhere, nor may it. */
  evhttp_add_header(headers, "Content-Security-Policy",
                    "default-src 'self'; script-src 'unsafe-inline'; "
                    "style-src 'unsafe-inline'");
  struct evbuffer *out = evhttp_request_get_output_buffer(req);
  for (size_t i = 0; i < sizeof(page) / sizeof(page[0]); i++) {
    if (evbuffer_add_reference(out, page[i], strlen(page[i]), NULL, NULL) !=
        0) {
      evbuffer_drain(out, evbuffer_get_length(out));
      tpool_http_reply_error(req, 500, "out of memory");
      return;
    }
  }
  evhttp_send_reply(req, 200, "OK", NULL);
}
