/*
** pg_stmt.c - the prepared-statement cache of one PostgreSQL connection.
**
** Owns: a hash table plus an LRU list of sb_pg_stmt, keyed by (SQL text,
** parameter type signature).  It only keeps books: pg_conn.c sends the
** Parse / DEALLOCATE messages and decides when an entry is ready.  An entry
** that is not ready (its Parse is still in flight) is never a victim, so
** the cache may briefly hold more than `cap` entries.
*/
#include "pg_int.h"

#include <string.h>

int sb_pg_cache_init(sb_pg_cache *k, int cap)
{
    memset(k, 0, sizeof *k);
    if (cap <= 0) return SB_OK;
    unsigned size = 16;
    while (size < (unsigned)cap * 2u && size < (1u << 20)) size <<= 1;
    k->tab = sb__calloc(size, sizeof *k->tab);
    if (!k->tab) return SB_ERR;
    k->mask = size - 1;
    k->cap = cap;
    return SB_OK;
}

void sb_pg_cache_clear(sb_pg_cache *k)
{
    sb_pg_stmt *st = k->newest;
    while (st) {
        sb_pg_stmt *next = st->older;
        sb__free(st);
        st = next;
    }
    if (k->tab) memset(k->tab, 0, ((size_t)k->mask + 1) * sizeof *k->tab);
    k->n = 0;
    k->newest = k->oldest = NULL;
}

void sb_pg_cache_fini(sb_pg_cache *k)
{
    sb_pg_cache_clear(k);
    sb__free(k->tab);
    k->tab = NULL;
    k->cap = 0;
}

/* FNV-1a over sql, a 0 byte, sig. */
uint32_t sb_pg_cache_hash(const char *sql, size_t sqllen, const char *sig, size_t siglen)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < sqllen; i++) h = (h ^ (unsigned char)sql[i]) * 16777619u;
    h = (h ^ 0u) * 16777619u;
    for (size_t i = 0; i < siglen; i++) h = (h ^ (unsigned char)sig[i]) * 16777619u;
    return h;
}

sb_pg_stmt *sb_pg_cache_find(sb_pg_cache *k, uint32_t h, const char *sql, size_t sqllen,
                             const char *sig, size_t siglen)
{
    if (!k->tab) return NULL;
    for (sb_pg_stmt *st = k->tab[h & k->mask]; st; st = st->hnext)
        if (st->hash == h && st->sqllen == sqllen && st->siglen == siglen &&
            memcmp(st->key, sql, sqllen) == 0 &&
            (siglen == 0 || memcmp(st->key + sqllen + 1, sig, siglen) == 0))
            return st;
    return NULL;
}

static void lru_unlink(sb_pg_cache *k, sb_pg_stmt *st)
{
    if (st->newer) st->newer->older = st->older;
    else k->newest = st->older;
    if (st->older) st->older->newer = st->newer;
    else k->oldest = st->newer;
    st->newer = st->older = NULL;
}

static void lru_push(sb_pg_cache *k, sb_pg_stmt *st)
{
    st->newer = NULL;
    st->older = k->newest;
    if (k->newest) k->newest->newer = st;
    else k->oldest = st;
    k->newest = st;
}

sb_pg_stmt *sb_pg_cache_insert(sb_pg_cache *k, uint32_t h, const char *sql, size_t sqllen,
                               const char *sig, size_t siglen, unsigned id)
{
    if (!k->tab) return NULL;
    sb_pg_stmt *st = sb__malloc(sizeof *st + sqllen + 1 + siglen);
    if (!st) return NULL;
    st->hash = h;
    st->id = id;
    st->ready = 0;
    st->sqllen = sqllen;
    st->siglen = siglen;
    memcpy(st->key, sql, sqllen);
    st->key[sqllen] = '\0';
    if (siglen) memcpy(st->key + sqllen + 1, sig, siglen);
    st->hnext = k->tab[h & k->mask];
    k->tab[h & k->mask] = st;
    lru_push(k, st);
    k->n++;
    return st;
}

void sb_pg_cache_touch(sb_pg_cache *k, sb_pg_stmt *st)
{
    if (k->newest == st) return;
    lru_unlink(k, st);
    lru_push(k, st);
}

void sb_pg_cache_remove(sb_pg_cache *k, sb_pg_stmt *st)
{
    sb_pg_stmt **pp = &k->tab[st->hash & k->mask];
    while (*pp && *pp != st) pp = &(*pp)->hnext;
    if (*pp) *pp = st->hnext;
    lru_unlink(k, st);
    k->n--;
    sb__free(st);
}

sb_pg_stmt *sb_pg_cache_victim(sb_pg_cache *k)
{
    if (k->n <= k->cap) return NULL;
    for (sb_pg_stmt *st = k->oldest; st; st = st->newer)
        if (st->ready) return st;
    return NULL;
}
