/*
 * entry.c — entries copied out of hiredis replies, so that they outlive
 * the reply, and the few text helpers the records need. The JSON written
 * here is a string or two: hand-written, so that libtpool_redis needs
 * hiredis and libtpool only.
 */
#include "redis_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *tpool_redis_entry_get(const tpool_redis_entry_t *e,
                                  const char *name, size_t *len) {
  size_t n = strlen(name);
  for (size_t i = 0; e && i < e->nfields; i++) {
    const tpool_redis_field_t *f = &e->fields[i];
    if (f->name_len == n && memcmp(f->name, name, n) == 0) {
      if (len)
        *len = f->value_len;
      return f->value;
    }
  }
  return NULL;
}

/* True for 1..20 digits at s[0..n) whose value fits 64 bits. */
static bool is_u64(const char *s, size_t n) {
  static const char max[] = "18446744073709551615";
  if (n == 0 || n > sizeof(max) - 1)
    return false;
  return n < sizeof(max) - 1 || memcmp(s, max, n) <= 0;
}

bool tpool_redis_is_entry_id(const char *s) {
  if (!s)
    return false;
  size_t a = strspn(s, "0123456789");
  if (s[a] != '-' || !is_u64(s, a))
    return false;
  size_t b = strspn(s + a + 1, "0123456789");
  return s[a + 1 + b] == '\0' && is_u64(s + a + 1, b);
}

static bool is_string(const redisReply *r) {
  return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

int tpool__redis_copy_entry(const redisReply *r, tpool__redis_copy_t *out) {
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
      !is_string(r->element[0]) || !tpool_redis_is_entry_id(r->element[0]->str))
    return -EINVAL;
  const redisReply *f = r->element[1];
  if (f->type == REDIS_REPLY_NIL)
    return -ENOENT; /* deleted from the stream while pending */
  if (f->type != REDIS_REPLY_ARRAY || f->elements % 2 != 0)
    return -EINVAL;
  size_t n = f->elements / 2;
  size_t bytes = r->element[0]->len + 1;
  for (size_t i = 0; i < f->elements; i++) {
    if (!is_string(f->element[i]))
      return -EINVAL;
    bytes += f->element[i]->len + 1;
  }
  size_t head = n * sizeof(tpool_redis_field_t);
  char *mem = malloc(head + bytes);
  if (!mem)
    return -ENOMEM;
  tpool_redis_field_t *fields = (tpool_redis_field_t *)(void *)mem;
  char *p = mem + head;
  memcpy(p, r->element[0]->str, r->element[0]->len + 1);
  out->entry.id = p;
  p += r->element[0]->len + 1;
  for (size_t i = 0; i < n; i++) {
    const redisReply *k = f->element[2 * i], *v = f->element[2 * i + 1];
    memcpy(p, k->str, k->len);
    p[k->len] = '\0';
    fields[i].name = p;
    fields[i].name_len = k->len;
    p += k->len + 1;
    memcpy(p, v->str, v->len);
    p[v->len] = '\0';
    fields[i].value = p;
    fields[i].value_len = v->len;
    p += v->len + 1;
  }
  out->entry.fields = fields;
  out->entry.nfields = n;
  out->entry.deliveries = 1;
  out->mem = mem;
  return 0;
}

void tpool__redis_buf_add(tpool__redis_buf_t *b, const char *s, size_t n) {
  if (b->failed)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *grown = realloc(b->s, cap);
    if (!grown) {
      b->failed = true;
      return;
    }
    b->s = grown;
    b->cap = cap;
  }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = '\0';
}

void tpool__redis_buf_json(tpool__redis_buf_t *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  tpool__redis_buf_add(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    char esc[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
    if (ch == '"' || ch == '\\') {
      char two[2] = {'\\', (char)ch};
      tpool__redis_buf_add(b, two, 2);
    } else if (ch < 0x20 || ch == 0x7f) {
      tpool__redis_buf_add(b, esc, 6);
    } else if (ch >= 0x80) {
      /* Bytes above ASCII pass through when they are UTF-8 Redis gave
         us; a stray byte is written as U+FFFD so the JSON stays valid. */
      size_t len = ch >= 0xf0 ? 4 : ch >= 0xe0 ? 3 : ch >= 0xc0 ? 2 : 0;
      bool ok = len > 0 && i + len <= n;
      for (size_t k = 1; ok && k < len; k++)
        ok = ((unsigned char)s[i + k] & 0xc0) == 0x80;
      if (ok) {
        tpool__redis_buf_add(b, s + i, len);
        i += len - 1;
      } else {
        tpool__redis_buf_add(b, "\\ufffd", 6);
      }
    } else {
      tpool__redis_buf_add(b, s + i, 1);
    }
  }
  tpool__redis_buf_add(b, "\"", 1);
}
