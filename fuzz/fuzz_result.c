/*
** fuzz/fuzz_result.c - libFuzzer target: result decoding of the PostgreSQL
** backend (core/pg_value.c: sb_pg_result) and the result builder it uses
** (core/result.c).
**
** The input describes a PGresult: column count, a type OID per column
** (bool, bytea, int2/4/8, oid, float4/8, text, numeric), then cells (NULL
** or bytes) until the data runs out.  libpq builds it (PQmakeEmptyPGresult,
** PQsetResultAttrs, PQsetvalue), sb_pg_result decodes it.  Properties: no
** crash or sanitizer report; the shape matches; NULL stays NULL; text
** (and numeric) cells come back byte-exact and NUL-terminated; bytea in
** hex form decodes to half its hex digits.
*/
#include "pg_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const Oid TYPES[] = { 16, 17, 20, 21, 23, 26, 700, 701, 25, 1700 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    int ncols = data[0] % 8 + 1;
    size_t at = 1;
    PGresAttDesc att[8];
    char names[8][8];
    for (int j = 0; j < ncols; j++) {
        Oid t = TYPES[(at < size ? data[at++] : 0) % (sizeof TYPES / sizeof *TYPES)];
        snprintf(names[j], sizeof names[j], "c%d", j);
        memset(&att[j], 0, sizeof att[j]);
        att[j].name = names[j];
        att[j].typid = t;
        att[j].typlen = -1;
        att[j].atttypmod = -1;
    }
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    if (!res) return 0;
    if (!PQsetResultAttrs(res, ncols, att)) { PQclear(res); return 0; }
    int row = 0, col = 0;
    while (at < size && row < 64) {
        uint8_t len = data[at++];
        if (len == 255) {
            PQsetvalue(res, row, col, NULL, -1);  /* NULL */
        } else {
            size_t n = len > size - at ? size - at : len;
            PQsetvalue(res, row, col, (char *)(data + at), (int)n);
            at += n;
        }
        if (++col == ncols) { col = 0; row++; }
    }
    int nrows = PQntuples(res);
    sb_result *out = sb_pg_result(res);
    if (out) {
        if (sb_result_ncols(out) != ncols || sb_result_nrows(out) != nrows) abort();
        for (int i = 0; i < nrows; i++) {
            const sb_value *v = sb_result_row(out, i);
            for (int j = 0; j < ncols; j++) {
                int isnull = PQgetisnull(res, i, j);
                if (isnull != (v[j].type == SB_NULL)) abort();
                if (isnull) continue;
                const char *s = PQgetvalue(res, i, j);
                size_t n = (size_t)PQgetlength(res, i, j);
                Oid t = PQftype(res, j);
                if (t == 25 || t == 1700) {
                    if (v[j].type != SB_TEXT || v[j].u.s.len != n || memcmp(v[j].u.s.p, s, n) != 0 ||
                        v[j].u.s.p[n] != '\0')
                        abort();
                } else if (t == 17) {
                    if (v[j].type != SB_BLOB) abort();
                    if (n >= 2 && s[0] == '\\' && s[1] == 'x' && v[j].u.s.len != (n - 2) / 2) abort();
                }
            }
        }
        sb__result_free(out);  /* it owned res (its text values point into it) */
    } else {
        PQclear(res);  /* on failure res is still ours */
    }
    return 0;
}
