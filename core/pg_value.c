/*
** pg_value.c - values and errors between switchboard and libpq.
**
** Owns: encoding request parameters for PQsendQueryParams/Prepared (typed:
** int8/float8/bool/bytea in binary, text as "unknown" so the server infers
** the type), decoding text-format PGresults by column type OID into
** sb_result, turning error PGresults into sb_error, keeping secrets out of
** connection messages, and telling a statement's kind by its first word
** (COMMIT, BEGIN/ROLLBACK, a read).  Pure functions: no I/O, no driver
** state.
*/
#include "pg_int.h"

#include <ctype.h>
#include <endian.h>
#include <locale.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Type OIDs (pg_type.dat); stable across server versions. */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_OID 26
#define OID_FLOAT4 700
#define OID_FLOAT8 701

/* ----------------------------------------------------------- parameters */

const char *sb_pg_params_check(const sb_req *r)
{
    if (r->nparams > 65535) return "too many parameters (PostgreSQL allows 65535)";
    for (int i = 0; i < r->nparams; i++) {
        const sb_value *v = &r->params[i];
        if ((v->type == SB_TEXT || v->type == SB_BLOB) && v->u.s.len > 0x3fffffff)
            return "parameter too large (PostgreSQL allows 1 GB)";
        if (v->type == SB_TEXT && v->u.s.len && memchr(v->u.s.p, '\0', v->u.s.len))
            return "text parameter contains a NUL byte; use sb.blob";
    }
    return NULL;
}

int sb_pg_params_build(const sb_req *r, sb_pg_params *p)
{
    int n = r->nparams;
    memset(p, 0, sizeof *p);
    p->n = n;
    if (n == 0) return SB_OK;
    size_t payload = 0;
    for (int i = 0; i < n; i++) {
        const sb_value *v = &r->params[i];
        if (v->type == SB_INT || v->type == SB_FLOAT) payload += 8;
        else if (v->type == SB_BOOL) payload += 1;
        else if (v->type == SB_TEXT) payload += v->u.s.len + 1;
    }
    /* pointers first, then Oids/ints, then chars: every part stays aligned */
    size_t sz = (size_t)n * (sizeof(char *) + sizeof(Oid) + 2 * sizeof(int) + 1) + payload;
    char *b = sb__malloc(sz);
    if (!b) return SB_ERR;
    p->block = b;
    p->values = (const char **)b;
    p->types = (Oid *)(b + (size_t)n * sizeof(char *));
    p->lengths = (int *)(p->types + n);
    p->formats = p->lengths + n;
    p->sig = (char *)(p->formats + n);
    char *out = p->sig + n;
    for (int i = 0; i < n; i++) {
        const sb_value *v = &r->params[i];
        switch (v->type) {
        case SB_INT: {
            uint64_t be = htobe64((uint64_t)v->u.i);
            memcpy(out, &be, 8);
            p->values[i] = out; p->lengths[i] = 8; p->formats[i] = 1;
            p->types[i] = OID_INT8; p->sig[i] = '8';
            out += 8;
            break;
        }
        case SB_FLOAT: {
            uint64_t bits;
            memcpy(&bits, &v->u.f, 8);
            bits = htobe64(bits);
            memcpy(out, &bits, 8);
            p->values[i] = out; p->lengths[i] = 8; p->formats[i] = 1;
            p->types[i] = OID_FLOAT8; p->sig[i] = 'd';
            out += 8;
            break;
        }
        case SB_BOOL:
            *out = v->u.b ? 1 : 0;
            p->values[i] = out; p->lengths[i] = 1; p->formats[i] = 1;
            p->types[i] = OID_BOOL; p->sig[i] = 'b';
            out += 1;
            break;
        case SB_BLOB:
            /* non-NULL even when empty: a NULL pointer would mean SQL NULL */
            p->values[i] = v->u.s.len ? v->u.s.p : "";
            p->lengths[i] = (int)v->u.s.len; p->formats[i] = 1;
            p->types[i] = OID_BYTEA; p->sig[i] = 'y';
            break;
        case SB_TEXT:
            /* text format wants a C string; sb_pg_params_check ruled out NULs */
            if (v->u.s.len) memcpy(out, v->u.s.p, v->u.s.len);
            out[v->u.s.len] = '\0';
            p->values[i] = out; p->lengths[i] = 0; p->formats[i] = 0;
            p->types[i] = 0; p->sig[i] = 'u';
            out += v->u.s.len + 1;
            break;
        case SB_NULL:
        default:
            p->values[i] = NULL; p->lengths[i] = 0; p->formats[i] = 0;
            p->types[i] = 0; p->sig[i] = 'u';
            break;
        }
    }
    return SB_OK;
}

void sb_pg_params_free(sb_pg_params *p)
{
    sb__free(p->block);
    p->block = NULL;
}

/* -------------------------------------------------------------- results */

static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale;

static void c_locale_init(void) { c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0); }

/* The server prints floats in the C locale ("1.5", "NaN", "-Infinity");
** strtod would honour the host's LC_NUMERIC. */
static double parse_double(const char *s)
{
    pthread_once(&c_locale_once, c_locale_init);
    return c_locale ? strtod_l(s, NULL, c_locale) : strtod(s, NULL);
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

enum { K_TEXT, K_INT, K_FLOAT, K_BOOL, K_BYTEA };

static int kind_of(Oid t)
{
    switch (t) {
    case OID_INT2: case OID_INT4: case OID_INT8: case OID_OID: return K_INT;
    case OID_FLOAT4: case OID_FLOAT8: return K_FLOAT;
    case OID_BOOL: return K_BOOL;
    case OID_BYTEA: return K_BYTEA;
    default: return K_TEXT;
    }
}

/* Store a bytea value (hex "\x..." or the old escape format) as a blob. */
static int put_bytea(sb_result *out, sb_value *v, const char *s, size_t len,
                     unsigned char **tmp, size_t *tmpcap)
{
    if (len >= 2 && s[0] == '\\' && s[1] == 'x') {
        size_t n = (len - 2) / 2;
        if (n > *tmpcap) {
            unsigned char *t = sb__realloc(*tmp, n);
            if (!t) return SB_ERR;
            *tmp = t;
            *tmpcap = n;
        }
        for (size_t i = 0; i < n; i++) {
            int hi = hexval((unsigned char)s[2 + 2 * i]), lo = hexval((unsigned char)s[3 + 2 * i]);
            (*tmp)[i] = (unsigned char)((hi < 0 ? 0 : hi) << 4 | (lo < 0 ? 0 : lo));
        }
        return sb__result_bytes(out, v, SB_BLOB, (const char *)*tmp, n);
    }
    size_t n = 0;
    unsigned char *u = PQunescapeBytea((const unsigned char *)s, &n);
    if (!u) return SB_ERR;
    int rc = sb__result_bytes(out, v, SB_BLOB, (const char *)u, n);
    PQfreemem(u);
    return rc;
}

/* PostgreSQL prints integers canonically ([-]digits): no need for
** strtoll's locale, base and overflow work (it was a third of the cost of
** decoding a result of small integers). */
static int64_t parse_int(const char *s)
{
    int neg = *s == '-';
    uint64_t v = 0;
    for (s += neg; *s >= '0' && *s <= '9'; s++) v = v * 10 + (uint64_t)(*s - '0');
    return neg ? (int64_t)(0 - v) : (int64_t)v;
}

static void clear_result(void *res) { PQclear(res); }

sb_result *sb_pg_result(PGresult *res)
{
    int nc = PQnfields(res), nr = PQntuples(res);
    sb_result *out = sb__result_new(nc);
    unsigned char kinds_small[64], *kinds = kinds_small;
    unsigned char *tmp = NULL;
    size_t tmpcap = 0;
    if (!out) return NULL;
    if (nc > (int)sizeof kinds_small && !(kinds = sb__malloc((size_t)nc))) goto oom;
    for (int j = 0; j < nc; j++) {
        const char *name = PQfname(res, j);
        if (!name) name = "";
        if (sb__result_colname(out, j, name, strlen(name)) != SB_OK) goto oom;
        kinds[j] = (unsigned char)kind_of(PQftype(res, j));
    }
    if (nr && sb__result_reserve(out, nr) != SB_OK) goto oom;
    for (int i = 0; i < nr; i++) {
        /* the row stays valid until the next add_row: bytes go to the arena */
        sb_value *row = sb__result_add_row(out);
        if (!row) goto oom;
        for (int j = 0; j < nc; j++) {
            size_t len = (size_t)PQgetlength(res, i, j);
            /* only an empty value can be NULL */
            if (len == 0 && PQgetisnull(res, i, j)) continue;  /* add_row made it SB_NULL */
            const char *s = PQgetvalue(res, i, j);
            switch (kinds[j]) {
            case K_INT:
                row[j].type = SB_INT;
                row[j].u.i = parse_int(s);
                break;
            case K_FLOAT:
                row[j].type = SB_FLOAT;
                row[j].u.f = parse_double(s);
                break;
            case K_BOOL:
                row[j].type = SB_BOOL;
                row[j].u.b = s[0] == 't';
                break;
            case K_BYTEA:
                if (put_bytea(out, &row[j], s, len, &tmp, &tmpcap) != SB_OK) goto oom;
                break;
            default:  /* text: points into res (NUL-terminated), kept with out */
                row[j].type = SB_TEXT;
                row[j].u.s.p = s;
                row[j].u.s.len = len;
                break;
            }
        }
    }
    const char *ct = PQcmdTuples(res);
    sb__result_set_affected(out, ct && *ct ? parse_int(ct) : 0);
    sb__result_keep(out, res, clear_result);
    if (kinds != kinds_small) sb__free(kinds);
    sb__free(tmp);
    return out;
oom:
    if (kinds != kinds_small) sb__free(kinds);
    sb__free(tmp);
    sb__result_free(out);
    return NULL;
}

/* --------------------------------------------------------------- errors */

sb_error *sb_pg_error(const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
    if (!msg || !*msg) msg = PQresultErrorMessage(res);
    if (!msg || !*msg) msg = "unknown PostgreSQL error";
    sb_errclass cls = state ? sb__class_from_sqlstate(state) : SB_E_OTHER;
    return sb__error_new(cls, state, "postgresql", msg, detail);
}

int sb_pg_result_fatal(const PGresult *res)
{
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    return sev && (!strcmp(sev, "FATAL") || !strcmp(sev, "PANIC"));
}

sb_error *sb_pg_conn_error(const char *sqlstate, const char *msg, int retryable,
                           int unknown_outcome)
{
    sb_error *e = sb__error_new(SB_E_CONNECTION, sqlstate, "postgresql", msg, NULL);
    if (e->cls == SB_E_CONNECTION) {  /* not the shared static OOM error */
        e->retryable = retryable;
        e->unknown_outcome = unknown_outcome;
    }
    return e;
}

/* Is [p, p+n) a conninfo keyword of s: a word followed by optional blanks
** and '=' somewhere in s? */
static int is_keyword_of(const char *p, size_t n, const char *s)
{
    if (n == 0 || n > 64) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)p[i]) && p[i] != '_') return 0;
    for (const char *hit = s; (hit = memmem(hit, strlen(hit), p, n)) != NULL; hit++) {
        if (hit != s && (isalnum((unsigned char)hit[-1]) || hit[-1] == '_')) continue;
        const char *q = hit + n;
        while (*q == ' ' || *q == '\t') q++;
        if (*q == '=') return 1;
    }
    return 0;
}

void sb_pg_scrub_parse(const char *msg, const char *conninfo, char *out, size_t outsz)
{
    size_t at = 0;
    if (!outsz) return;
    while (*msg && at + 1 < outsz) {
        const char *close = *msg == '"' ? strchr(msg + 1, '"') : NULL;
        if (!close) {
            out[at++] = *msg++;
            continue;
        }
        const char *tok = msg + 1;
        size_t n = (size_t)(close - tok);
        int keep = (n == 1 && !isalnum((unsigned char)*tok)) || is_keyword_of(tok, n, conninfo);
        const char *rep = keep ? tok : "***";
        size_t rn = keep ? n : 3;
        if (at + rn + 3 >= outsz) break;
        out[at++] = '"';
        memcpy(out + at, rep, rn);
        at += rn;
        out[at++] = '"';
        msg = close + 1;
    }
    out[at] = '\0';
}

void sb_pg_scrub_secret(char *msg, const char *secret)
{
    size_t n = secret ? strlen(secret) : 0;
    if (n < 4) return;  /* shorter "secrets" would garble ordinary words */
    char *hit;
    while ((hit = strstr(msg, secret)) != NULL) {
        memcpy(hit, "***", 3);
        memmove(hit + 3, hit + n, strlen(hit + n) + 1);
    }
}

sb_pg_kind sb_pg_kind_of(const char *sql, size_t len)
{
    static const struct { const char *word; sb_pg_kind kind; } words[] = {
        { "commit", SB_PG_COMMIT },   { "end", SB_PG_COMMIT },
        { "begin", SB_PG_NO_EFFECT }, { "start", SB_PG_NO_EFFECT },
        { "rollback", SB_PG_NO_EFFECT }, { "abort", SB_PG_NO_EFFECT },
        { "select", SB_PG_READ },     { "values", SB_PG_READ },
        { "table", SB_PG_READ },      { "show", SB_PG_READ },
    };
    size_t i = 0;
    while (i < len && isspace((unsigned char)sql[i])) i++;
    for (size_t w = 0; w < sizeof words / sizeof words[0]; w++) {  /* as a whole word */
        size_t n = strlen(words[w].word);
        if (len - i >= n && strncasecmp(sql + i, words[w].word, n) == 0 &&
            (i + n == len || isspace((unsigned char)sql[i + n]) || sql[i + n] == ';'))
            return words[w].kind;
    }
    return SB_PG_OTHER;
}
