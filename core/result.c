/*
** result.c - sb_result: the columns and rows of one finished request.
**
** Owns: the column names, a row-major array of sb_value, and an arena of
** chunks holding every text/blob byte and name (the PGresult idea: one
** object, freed at once); or, for values that point into a backend's own
** result (PostgreSQL text), that result, freed with it.  Backends fill it
** with the builder functions of sb_int.h, on any thread; after
** sb__req_finish it is read-only.
*/
#include "sb_int.h"

#include <string.h>

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    char data[];
} chunk;

struct sb_result {
    int ncols, nrows, cap_rows;
    int64_t affected;
    sb_value *values;    /* nrows * ncols */
    chunk *arena;        /* newest first */
    void *keep;          /* memory the values point into (a PGresult), */
    void (*keep_free)(void *);  /* and how to free it with the result */
    size_t next_chunk;   /* size of the next chunk to allocate */
    char *colnames[];    /* ncols, in the arena */
};

sb_result *sb__result_new(int ncols)
{
    sb_result *res = sb__malloc(sizeof *res + (size_t)ncols * sizeof(char *));
    if (!res) return NULL;
    res->ncols = ncols;
    res->nrows = res->cap_rows = 0;
    res->affected = 0;
    res->values = NULL;
    res->arena = NULL;
    res->keep = NULL;
    res->keep_free = NULL;
    res->next_chunk = 1024;
    for (int i = 0; i < ncols; i++) res->colnames[i] = NULL;
    return res;
}

void sb__result_free(sb_result *res)
{
    if (!res) return;
    chunk *k = res->arena;
    while (k) {
        chunk *next = k->next;
        sb__free(k);
        k = next;
    }
    sb__free(res->values);
    if (res->keep_free) res->keep_free(res->keep);
    sb__free(res);
}

void sb__result_keep(sb_result *res, void *mem, void (*mem_free)(void *))
{
    res->keep = mem;
    res->keep_free = mem_free;
}

/* n bytes of arena memory, or NULL. */
static char *arena_alloc(sb_result *res, size_t n)
{
    chunk *k = res->arena;
    if (!k || k->cap - k->used < n) {
        size_t cap = res->next_chunk;
        if (cap < n) cap = n;
        k = sb__malloc(sizeof *k + cap);
        if (!k) return NULL;
        k->used = 0;
        k->cap = cap;
        k->next = res->arena;
        res->arena = k;
        if (res->next_chunk < 65536) res->next_chunk *= 2;
    }
    char *p = k->data + k->used;
    k->used += n;
    return p;
}

int sb__result_colname(sb_result *res, int col, const char *name, size_t len)
{
    char *p = arena_alloc(res, len + 1);
    if (!p) return SB_ERR;
    memcpy(p, name, len);
    p[len] = '\0';
    res->colnames[col] = p;
    return SB_OK;
}

int sb__result_reserve(sb_result *res, int nrows)
{
    if (nrows <= res->cap_rows) return SB_OK;
    size_t cells = (size_t)nrows * (size_t)(res->ncols ? res->ncols : 1);
    sb_value *v = sb__realloc(res->values, cells * sizeof *v);
    if (!v) return SB_ERR;
    res->values = v;
    res->cap_rows = nrows;
    return SB_OK;
}

sb_value *sb__result_add_row(sb_result *res)
{
    if (res->nrows == res->cap_rows &&
        sb__result_reserve(res, res->cap_rows ? res->cap_rows * 2 : 8) != SB_OK)
        return NULL;
    sb_value *row = res->values + (size_t)res->nrows * (size_t)res->ncols;
    for (int i = 0; i < res->ncols; i++) row[i].type = SB_NULL;
    res->nrows++;
    return row;
}

int sb__result_bytes(sb_result *res, sb_value *v, sb_type t, const char *p, size_t n)
{
    char *d = arena_alloc(res, n + 1);
    if (!d) return SB_ERR;
    if (n) memcpy(d, p, n);
    d[n] = '\0';
    v->type = t;
    v->u.s.p = d;
    v->u.s.len = n;
    return SB_OK;
}

void sb__result_set_affected(sb_result *res, int64_t n) { res->affected = n; }

int sb_result_ncols(const sb_result *res) { return res->ncols; }
int sb_result_nrows(const sb_result *res) { return res->nrows; }
const char *sb_result_colname(const sb_result *res, int col) { return res->colnames[col]; }
int64_t sb_result_affected(const sb_result *res) { return res->affected; }

const sb_value *sb_result_row(const sb_result *res, int row)
{
    return res->values + (size_t)row * (size_t)res->ncols;
}
