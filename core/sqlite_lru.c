/*
** sqlite_lru.c - the SQLite backend's LRU map from SQL text to a prepared
** statement: each connection's statement cache, and (statement-less) the
** driver's memory of which SQL is read-only.
**
** Owns: the buckets, the recency list, eviction (finalizing the evicted
** statement).  Does not own: what goes in (sqlite_exec.c, sqlite_drv.c).
*/
#include "sqlite_int.h"

#include <string.h>

#define MAX_CACHE 65536

/* cap <= 0: a map that holds nothing.  SB_ERR on OOM. */
int sb_sqlite_lru_init(sb_sqlite_lru *m, int cap)
{
    memset(m, 0, sizeof *m);
    if (cap <= 0) return SB_OK;
    if (cap > MAX_CACHE) cap = MAX_CACHE;
    size_t nb = 8;
    while (nb < (size_t)cap * 2) nb <<= 1;
    m->b = sb__calloc(nb, sizeof *m->b);
    if (!m->b) return SB_ERR;
    m->nb = nb;
    m->cap = cap;
    return SB_OK;
}

static void list_unlink(sb_sqlite_lru *m, sb_sqlite_ent *e)
{
    if (e->prev) e->prev->next = e->next;
    else m->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else m->tail = e->prev;
}

static void list_front(sb_sqlite_lru *m, sb_sqlite_ent *e)
{
    e->prev = NULL;
    e->next = m->head;
    if (m->head) m->head->prev = e;
    else m->tail = e;
    m->head = e;
}

/* The entry for key, made most recent; NULL if absent. */
sb_sqlite_ent *sb_sqlite_lru_get(sb_sqlite_lru *m, uint64_t hash, const char *key, size_t len)
{
    if (!m->b) return NULL;
    for (sb_sqlite_ent *e = m->b[hash & (m->nb - 1)]; e; e = e->hnext) {
        if (e->hash == hash && e->len == len && memcmp(e->key, key, len) == 0) {
            if (m->head != e) {
                list_unlink(m, e);
                list_front(m, e);
            }
            return e;
        }
    }
    return NULL;
}

/* Drop e, finalizing its statement. */
static void lru_evict(sb_sqlite_lru *m, sb_sqlite_ent *e)
{
    sb_sqlite_ent **pp = &m->b[e->hash & (m->nb - 1)];
    while (*pp != e) pp = &(*pp)->hnext;
    *pp = e->hnext;
    list_unlink(m, e);
    m->n--;
    sqlite3_finalize(e->st);
    sb__free(e);
}

/* Add key (absent) as the most recent entry, evicting the least recent
** beyond cap.  NULL when the map holds nothing or on OOM (the caller then
** just does not cache). */
sb_sqlite_ent *sb_sqlite_lru_put(sb_sqlite_lru *m, uint64_t hash, const char *key, size_t len,
                              sqlite3_stmt *st, int ro)
{
    if (!m->b) return NULL;
    sb_sqlite_ent *e = sb__malloc(sizeof *e + len + 1);
    if (!e) return NULL;
    e->hash = hash;
    e->st = st;
    e->ro = ro;
    e->us = UINT32_MAX;
    e->len = len;
    memcpy(e->key, key, len);
    e->key[len] = '\0';
    sb_sqlite_ent **b = &m->b[hash & (m->nb - 1)];
    e->hnext = *b;
    *b = e;
    list_front(m, e);
    if (++m->n > m->cap) lru_evict(m, m->tail);
    return e;
}

void sb_sqlite_lru_free(sb_sqlite_lru *m)
{
    sb_sqlite_ent *e = m->head;
    while (e) {
        sb_sqlite_ent *next = e->next;
        sqlite3_finalize(e->st);
        sb__free(e);
        e = next;
    }
    sb__free(m->b);
    memset(m, 0, sizeof *m);
}
