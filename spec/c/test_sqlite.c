/*
** spec/c/test_sqlite.c - the core against embedded SQLite (sqlite::memory:
** and files in a temp dir), through the public sb.h only.
**
** Owns: value round trips, placeholders, structured errors, the fd/step
** contract driven by a plain poll(2) loop, reaping, sessions, SB_Q_INLINE,
** timeouts and cancel, close with requests in flight, busy, and reads
** running beside a write.
*/
#include "harness.h"

/* ~0.5 s of CPU in SQLite; and one that runs for minutes. */
#define SLOW_SQL "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c " \
                 "WHERE x < 2000000) SELECT count(*) FROM c"
#define ENDLESS_SQL "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c " \
                    "WHERE x < 1000000000) SELECT count(*) FROM c"

static sb_conn *open_file(const char *name)
{
    return OPEN(h_sqlite_url(name), NULL);
}

/* -------------------------------------------------------------- basics */

TEST(open_memory_and_file)
{
    sb_conn *c = OPEN("sqlite::memory:", NULL);
    sb_req *r;
    REQUIRE(c);
    CHECK_STR(sb_conn_backend(c), "sqlite");
    r = h_run(c, "SELECT 1 AS one, 'two' AS two", NULL, 0);
    REQUIRE_OK(r);
    CHECK_INT(sb_result_ncols(sb_req_result(r)), ==, 2);
    CHECK_INT(sb_result_nrows(sb_req_result(r)), ==, 1);
    CHECK_STR(sb_result_colname(sb_req_result(r), 0), "one");
    CHECK_STR(sb_result_colname(sb_req_result(r), 1), "two");
    sb_req_free(r);
    sb_conn_close(c);

    c = open_file("basic.db");
    REQUIRE(c);
    CHECK_INT(SCALAR(c, "SELECT 6 * 7"), ==, 42);
    sb_conn_close(c);
}

/* The readers of sqlite::memory: must see what the writer wrote. */
TEST(memory_db_is_one_db)
{
    sb_conn *c = OPEN("sqlite::memory:", NULL);
    sb_req *rs[8];
    int i;
    REQUIRE(c);
    EXEC(c, "CREATE TABLE m(x INTEGER)");
    EXEC(c, "INSERT INTO m VALUES (1), (2), (3)");
    /* several at once, so that reader connections are used */
    for (i = 0; i < 8; i++) rs[i] = h_submit(c, NULL, "SELECT sum(x) FROM m", NULL, 0, 0, 0);
    CHECK_INT(h_poll_all(c, rs, 8, H_MS(10000)), ==, 0);
    for (i = 0; i < 8; i++) {
        const sb_value *v = h_cell(rs[i], 0, 0);
        CHECKF(v && v->type == SB_INT && v->u.i == 6, "read %d: %s", i, h_errstr(rs[i]));
        sb_req_free(rs[i]);
    }
    /* and a second memory database is a different one */
    {
        sb_conn *c2 = OPEN("sqlite::memory:", NULL);
        sb_req *r;
        REQUIRE(c2);
        r = h_run(c2, "SELECT count(*) FROM m", NULL, 0);
        CHECK_ERR(r, SB_E_SYNTAX);
        sb_req_free(r);
        sb_conn_close(c2);
    }
    sb_conn_close(c);
}

/* ------------------------------------------------------------ values */

static unsigned char all_bytes[256];

static void check_roundtrip(sb_conn *c, const char *sql)
{
    static const char nul_text[] = { 'a', '\0', 'b' };
    sb_value p[11];
    sb_req *r;
    const sb_value *row;
    int i;
    for (i = 0; i < 256; i++) all_bytes[i] = (unsigned char)i;
    p[0] = vnull();
    p[1] = vbool(1);
    p[2] = vbool(0);
    p[3] = vint(INT64_MIN);
    p[4] = vint(INT64_MAX);
    p[5] = vfloat(3.25);
    p[6] = vfloat(-1e300);
    p[7] = vtextn(nul_text, 3);
    p[8] = vblob(all_bytes, 256);
    p[9] = vtext("");
    p[10] = vtext("h\xc3\xa9llo");
    r = h_run(c, sql, p, 11);
    REQUIRE_OK(r);
    REQUIRE(sb_result_nrows(sb_req_result(r)) == 1);
    REQUIRE(sb_result_ncols(sb_req_result(r)) == 11);
    row = sb_result_row(sb_req_result(r), 0);
    CHECKF(row[0].type == SB_NULL, "NULL came back as %s", h_typename(row[0].type));
    CHECKF(row[1].type == SB_INT && row[1].u.i == 1, "true: %s", h_typename(row[1].type));
    CHECKF(row[2].type == SB_INT && row[2].u.i == 0, "false: %s", h_typename(row[2].type));
    CHECKF(row[3].type == SB_INT && row[3].u.i == INT64_MIN, "INT64_MIN: %s %" PRId64,
           h_typename(row[3].type), row[3].u.i);
    CHECKF(row[4].type == SB_INT && row[4].u.i == INT64_MAX, "INT64_MAX: %s %" PRId64,
           h_typename(row[4].type), row[4].u.i);
    CHECKF(row[5].type == SB_FLOAT && row[5].u.f == 3.25, "3.25: %s", h_typename(row[5].type));
    CHECKF(row[6].type == SB_FLOAT && row[6].u.f == -1e300, "-1e300: %s", h_typename(row[6].type));
    CHECKF(row[7].type == SB_TEXT && row[7].u.s.len == 3 && memcmp(row[7].u.s.p, nul_text, 3) == 0,
           "text with NUL: %s len %zu", h_typename(row[7].type), row[7].u.s.len);
    if (row[7].type == SB_TEXT) CHECKF(row[7].u.s.p[row[7].u.s.len] == '\0', "text not NUL-terminated");
    CHECKF(row[8].type == SB_BLOB && row[8].u.s.len == 256 &&
           memcmp(row[8].u.s.p, all_bytes, 256) == 0,
           "blob: %s len %zu", h_typename(row[8].type), row[8].u.s.len);
    CHECKF(row[9].type == SB_TEXT && row[9].u.s.len == 0, "empty text: %s len %zu",
           h_typename(row[9].type), row[9].u.s.len);
    CHECKF(row[10].type == SB_TEXT && row[10].u.s.len == 6 &&
           memcmp(row[10].u.s.p, "h\xc3\xa9llo", 6) == 0, "utf-8 text");
    sb_req_free(r);
}

TEST(values_roundtrip)
{
    sb_conn *c = OPEN("sqlite::memory:", NULL);
    REQUIRE(c);
    check_roundtrip(c, "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11");
    /* and through a table */
    EXEC(c, "CREATE TABLE v(a, b, c, d, e, f, g, h, i, j, k)");
    {
        sb_conn *cc = c;
        static const char nul_text[] = { 'a', '\0', 'b' };
        sb_value p[11];
        sb_req *r;
        int i;
        for (i = 0; i < 256; i++) all_bytes[i] = (unsigned char)i;
        p[0] = vnull(); p[1] = vbool(1); p[2] = vbool(0); p[3] = vint(INT64_MIN);
        p[4] = vint(INT64_MAX); p[5] = vfloat(3.25); p[6] = vfloat(-1e300);
        p[7] = vtextn(nul_text, 3); p[8] = vblob(all_bytes, 256); p[9] = vtext("");
        p[10] = vtext("h\xc3\xa9llo");
        r = h_run(cc, "INSERT INTO v VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)", p, 11);
        CHECK_OK(r);
        if (sb_req_status(r) == SB_OK) CHECK_INT(sb_result_affected(sb_req_result(r)), ==, 1);
        sb_req_free(r);
    }
    check_roundtrip(c, "SELECT a, b, c, d, e, f, g, h, i, j, k FROM v WHERE $1 IS NULL OR "
                       "($2 + $3 + $4 + $5 + $6 + $7 + length($8) + length($9) + "
                       "length($10) + length($11)) IS NOT NULL");
    {
        sb_req *r = h_run(c, "SELECT typeof(a), typeof(b), typeof(h), typeof(i) FROM v", NULL, 0);
        const sb_value *row;
        REQUIRE_OK(r);
        row = sb_result_row(sb_req_result(r), 0);
        CHECK(row[0].type == SB_TEXT && strcmp(row[0].u.s.p, "null") == 0);
        CHECK(row[1].type == SB_TEXT && strcmp(row[1].u.s.p, "integer") == 0);
        CHECK(row[2].type == SB_TEXT && strcmp(row[2].u.s.p, "text") == 0);
        CHECK(row[3].type == SB_TEXT && strcmp(row[3].u.s.p, "blob") == 0);
        sb_req_free(r);
    }
    /* empty blob stays a blob */
    {
        sb_value p = vblob("", 0);
        sb_req *r = h_run(c, "SELECT $1, typeof($1)", &p, 1);
        const sb_value *v = h_cell(r, 0, 0);
        REQUIRE_OK(r);
        CHECKF(v && v->type == SB_BLOB && v->u.s.len == 0, "empty blob: %s",
               v ? h_typename(v->type) : "?");
        sb_req_free(r);
    }
    sb_conn_close(c);
}

/* -------------------------------------------------------- placeholders */

TEST(placeholders)
{
    sb_conn *c = OPEN("sqlite::memory:", NULL);
    sb_value p[10];
    sb_req *r;
    const sb_value *v;
    int i;
    REQUIRE(c);

    p[0] = vint(21);
    r = h_run(c, "SELECT $1 + $1", p, 1);
    v = h_cell(r, 0, 0);
    CHECKF(v && v->type == SB_INT && v->u.i == 42, "$1 + $1: %s", h_errstr(r));
    sb_req_free(r);

    p[0] = vtext("a");
    p[1] = vtext("b");
    r = h_run(c, "SELECT $2 || $1 || $2", p, 2);
    v = h_cell(r, 0, 0);
    CHECKF(v && v->type == SB_TEXT && strcmp(v->u.s.p, "bab") == 0, "$2 || $1 || $2: %s",
           h_errstr(r));
    sb_req_free(r);

    /* $10 is not $1 followed by 0 */
    for (i = 0; i < 10; i++) p[i] = vint(i + 1);
    r = h_run(c, "SELECT $10, $1, $10 * $2", p, 10);
    REQUIRE_OK(r);
    v = sb_result_row(sb_req_result(r), 0);
    CHECK(v[0].type == SB_INT && v[0].u.i == 10);
    CHECK(v[1].type == SB_INT && v[1].u.i == 1);
    CHECK(v[2].type == SB_INT && v[2].u.i == 20);
    sb_req_free(r);

    /* $1 inside a string literal, a quoted identifier and a comment is text */
    p[0] = vint(5);
    r = h_run(c, "SELECT '$1', $1 AS \"$2\" -- and $3\n", p, 1);
    REQUIRE_OK(r);
    v = sb_result_row(sb_req_result(r), 0);
    CHECK(v[0].type == SB_TEXT && strcmp(v[0].u.s.p, "$1") == 0);
    CHECK(v[1].type == SB_INT && v[1].u.i == 5);
    CHECK_STR(sb_result_colname(sb_req_result(r), 1), "$2");
    sb_req_free(r);
    sb_conn_close(c);
}

TEST(wrong_param_count)
{
    sb_conn *c = OPEN("sqlite::memory:", NULL);
    sb_value p[2];
    sb_req *r;
    REQUIRE(c);
    p[0] = vint(1);
    p[1] = vint(2);

    r = h_submit(c, NULL, "SELECT $1", NULL, 0, 0, 0);
    REQUIRE(r);
    CHECKF(sb_req_status(r) == SB_ERR, "too few params: not finished at submit (%s)", h_errstr(r));
    CHECK_ERR(r, SB_E_MISUSE);
    h_note("too few: %s", h_errstr(r));
    sb_req_free(r);

    r = h_submit(c, NULL, "SELECT $1", p, 2, 0, 0);
    REQUIRE(r);
    CHECKF(sb_req_status(r) == SB_ERR, "too many params: not finished at submit");
    CHECK_ERR(r, SB_E_MISUSE);
    sb_req_free(r);

    r = h_submit(c, NULL, "SELECT 1", p, 1, 0, 0);
    REQUIRE(r);
    h_wait(c, r);
    CHECK_ERR(r, SB_E_MISUSE);
    sb_req_free(r);

    /* the connection is still fine */
    CHECK_INT(SCALAR(c, "SELECT 1"), ==, 1);
    sb_conn_close(c);
}

TEST(multi_statement_rejected)
{
    sb_conn *c = OPEN("sqlite::memory:", NULL);
    sb_req *r;
    REQUIRE(c);
    r = h_run(c, "SELECT 1; SELECT 2", NULL, 0);
    CHECKF(r && sb_req_status(r) == SB_ERR &&
           (h_class(r) == SB_E_MISUSE || h_class(r) == SB_E_SYNTAX),
           "two statements: %s", h_errstr(r));
    h_note("two statements: %s", h_errstr(r));
    sb_req_free(r);

    /* rejected before anything ran */
    r = h_run(c, "CREATE TABLE x(a); INSERT INTO x VALUES (1)", NULL, 0);
    CHECKF(r && sb_req_status(r) == SB_ERR, "CREATE; INSERT: %s", h_errstr(r));
    sb_req_free(r);
    CHECK_INT(SCALAR(c, "SELECT count(*) FROM sqlite_master WHERE name = 'x'"), ==, 0);

    /* a trailing semicolon, blanks and comments are not a second statement */
    CHECK_INT(SCALAR(c, "SELECT 1;"), ==, 1);
    CHECK_INT(SCALAR(c, "SELECT 2 ;  \n"), ==, 2);
    CHECK_INT(SCALAR(c, "SELECT 3; -- done\n"), ==, 3);
    CHECK_INT(SCALAR(c, "SELECT 4; /* done */"), ==, 4);
    sb_conn_close(c);
}

/* -------------------------------------------------------------- errors */

TEST(syntax_errors)
{
    sb_conn *c = OPEN("sqlite::memory:", NULL);
    sb_req *r;
    REQUIRE(c);
    r = h_run(c, "SELEKT 1", NULL, 0);
    CHECK_ERR(r, SB_E_SYNTAX);
    CHECK_STR(h_sqlstate(r), "42601");
    if (r && sb_req_status(r) == SB_ERR) {
        const sb_error *e = sb_req_error(r);
        CHECK_STR(sb_error_backend(e), "sqlite");
        CHECK(sb_error_message(e) && *sb_error_message(e));
        CHECK(!sb_error_retryable(e));
        h_note("%s", h_errstr(r));
    }
    sb_req_free(r);

    r = h_run(c, "SELECT * FROM no_such_table", NULL, 0);
    CHECK_ERR(r, SB_E_SYNTAX);
    h_note("unknown table: %s", h_errstr(r));
    sb_req_free(r);

    EXEC(c, "CREATE TABLE t(a)");
    r = h_run(c, "SELECT no_such_column FROM t", NULL, 0);
    CHECK_ERR(r, SB_E_SYNTAX);
    sb_req_free(r);
    sb_conn_close(c);
}

TEST(constraint_errors)
{
    sb_conn *c = open_file("constraint.db");
    sb_req *r;
    REQUIRE(c);
    EXEC(c, "CREATE TABLE u(id INTEGER PRIMARY KEY, e TEXT UNIQUE NOT NULL, "
            "n INTEGER CHECK (n < 10))");
    EXEC(c, "INSERT INTO u VALUES (1, 'a', 1)");

    r = h_run(c, "INSERT INTO u VALUES (2, 'a', 1)", NULL, 0);
    CHECK_ERR(r, SB_E_CONSTRAINT);
    CHECK_STR(h_sqlstate(r), "23505");
    if (r && sb_req_status(r) == SB_ERR) CHECK(!sb_error_retryable(sb_req_error(r)));
    h_note("unique: %s", h_errstr(r));
    sb_req_free(r);

    r = h_run(c, "INSERT INTO u VALUES (1, 'b', 1)", NULL, 0);
    CHECK_ERR(r, SB_E_CONSTRAINT);
    CHECK_STR(h_sqlstate(r), "23505");
    sb_req_free(r);

    r = h_run(c, "INSERT INTO u VALUES (3, NULL, 1)", NULL, 0);
    CHECK_ERR(r, SB_E_CONSTRAINT);
    CHECK_STR(h_sqlstate(r), "23502");
    sb_req_free(r);

    r = h_run(c, "INSERT INTO u VALUES (4, 'd', 99)", NULL, 0);
    CHECK_ERR(r, SB_E_CONSTRAINT);
    CHECK_STR(h_sqlstate(r), "23514");
    sb_req_free(r);

    /* nothing of the failed statements stuck, and the writer still works */
    CHECK_INT(SCALAR(c, "SELECT count(*) FROM u"), ==, 1);
    EXEC(c, "INSERT INTO u VALUES (5, 'e', 5)");
    CHECK_INT(SCALAR(c, "SELECT count(*) FROM u"), ==, 2);
    sb_conn_close(c);
}

/* ------------------------------------------------------ results, counts */

TEST(results_and_affected)
{
    sb_conn *c = open_file("results.db");
    sb_req *r;
    REQUIRE(c);
    EXEC(c, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
    EXEC(c, "INSERT INTO t(v) VALUES ('a'), ('b'), ('c')");

    r = h_run(c, "UPDATE t SET v = v || '!' WHERE id >= 2", NULL, 0);
    REQUIRE_OK(r);
    CHECK_INT(sb_result_affected(sb_req_result(r)), ==, 2);
    CHECK_INT(sb_result_nrows(sb_req_result(r)), ==, 0);
    sb_req_free(r);

    r = h_run(c, "DELETE FROM t WHERE id = 1", NULL, 0);
    REQUIRE_OK(r);
    CHECK_INT(sb_result_affected(sb_req_result(r)), ==, 1);
    sb_req_free(r);

    /* an empty result keeps its columns */
    r = h_run(c, "SELECT id, v FROM t WHERE id > 100", NULL, 0);
    REQUIRE_OK(r);
    CHECK_INT(sb_result_nrows(sb_req_result(r)), ==, 0);
    CHECK_INT(sb_result_ncols(sb_req_result(r)), ==, 2);
    CHECK_STR(sb_result_colname(sb_req_result(r), 1), "v");
    sb_req_free(r);

    /* RETURNING */
    r = h_run(c, "INSERT INTO t(v) VALUES ('z') RETURNING id, v", NULL, 0);
    REQUIRE_OK(r);
    CHECK_INT(sb_result_nrows(sb_req_result(r)), ==, 1);
    if (sb_result_nrows(sb_req_result(r)) == 1) {
        const sb_value *row = sb_result_row(sb_req_result(r), 0);
        CHECK(row[0].type == SB_INT && row[0].u.i == 4);
        CHECK(row[1].type == SB_TEXT && strcmp(row[1].u.s.p, "z") == 0);
    }
    sb_req_free(r);

    /* a big result */
    r = h_run(c, "WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s "
                 "WHERE x < 20000) SELECT x, 'row ' || x FROM s", NULL, 0);
    REQUIRE_OK(r);
    CHECK_INT(sb_result_nrows(sb_req_result(r)), ==, 20000);
    if (sb_result_nrows(sb_req_result(r)) == 20000) {
        const sb_value *row = sb_result_row(sb_req_result(r), 19999);
        CHECK(row[0].type == SB_INT && row[0].u.i == 20000);
        CHECK(row[1].type == SB_TEXT && strcmp(row[1].u.s.p, "row 20000") == 0);
    }
    sb_req_free(r);
    sb_conn_close(c);
}

/* The statement cache must follow schema changes. */
TEST(statement_cache)
{
    sb_conn *c = open_file("cache.db");
    sb_value p;
    int i, bad = 0;
    REQUIRE(c);
    EXEC(c, "CREATE TABLE t(a)");
    for (i = 0; i < 300; i++) {
        sb_req *r;
        const sb_value *v;
        p = vint(i);
        r = h_run(c, "SELECT $1 * 3", &p, 1);
        v = h_cell(r, 0, 0);
        if (!v || v->type != SB_INT || v->u.i != i * 3) bad++;
        sb_req_free(r);
    }
    CHECK_INT(bad, ==, 0);
    {
        sb_req *r = h_run(c, "SELECT * FROM t", NULL, 0);
        REQUIRE_OK(r);
        CHECK_INT(sb_result_ncols(sb_req_result(r)), ==, 1);
        sb_req_free(r);
        EXEC(c, "ALTER TABLE t ADD COLUMN b");
        /* the cached statement is re-prepared by sqlite3_step: its columns
        ** must be read after that, not from the stale statement */
        r = h_run(c, "SELECT * FROM t", NULL, 0);
        REQUIRE_OK(r);
        CHECKF(sb_result_ncols(sb_req_result(r)) == 2,
               "first SELECT * after ALTER TABLE ADD COLUMN: %d columns, want 2",
               sb_result_ncols(sb_req_result(r)));
        sb_req_free(r);
    }
    sb_conn_close(c);
}

/* --------------------------------------------------------- fd and step */

TEST(poll_loop)
{
    enum { N = 64 };
    sb_conn *c = open_file("poll.db");
    sb_req *rs[N];
    sb_value pv[N];
    int i, fd, inserts = 0;
    REQUIRE(c);
    fd = sb_conn_fd(c);
    CHECK(fd >= 0);
    CHECK_INT(sb_conn_timeout(c), ==, -1);
    EXEC(c, "CREATE TABLE t(x INTEGER)");
    for (i = 0; i < N; i++) {
        pv[i] = vint(i);
        if (i % 4 == 0) {
            rs[i] = h_submit(c, NULL, "INSERT INTO t VALUES ($1)", &pv[i], 1, 0, 0);
            inserts++;
        } else {
            rs[i] = h_submit(c, NULL, "SELECT $1 * 2", &pv[i], 1, 0, 0);
        }
        REQUIRE(rs[i]);
    }
    CHECK_INT(h_poll_all(c, rs, N, H_MS(20000)), ==, 0);
    for (i = 0; i < N; i++) {
        if (i % 4 == 0) {
            CHECKF(sb_req_status(rs[i]) == SB_OK, "insert %d: %s", i, h_errstr(rs[i]));
        } else {
            const sb_value *v = h_cell(rs[i], 0, 0);
            CHECKF(v && v->type == SB_INT && v->u.i == 2 * i, "select %d: %s", i, h_errstr(rs[i]));
        }
        sb_req_free(rs[i]);
    }
    CHECK_INT(SCALAR(c, "SELECT count(*) FROM t"), ==, inserts);
    CHECK_INT(sb_conn_fd(c), ==, fd);

    /* idle: no deadline, and after a step the fd is not readable (no spin) */
    CHECK_INT(sb_conn_step(c), ==, SB_OK);
    CHECK_INT(sb_conn_timeout(c), ==, -1);
    {
        struct pollfd p = { fd, POLLIN, 0 };
        int n = poll(&p, 1, 50);
        CHECKF(n == 0, "idle fd is readable (poll = %d, revents %#x): a loop would spin", n,
               (unsigned)p.revents);
    }
    sb_conn_close(c);
}

TEST(reap_tags)
{
    enum { N = 20, U = 5 };
    sb_conn *c = open_file("reap.db");
    sb_req *rs[N + U];
    int seen[N + 1], i, got = 0, dup = 0, bogus = 0;
    int64_t end;
    REQUIRE(c);
    memset(seen, 0, sizeof seen);
    EXEC(c, "CREATE TABLE t(x)");
    for (i = 0; i < N + U; i++) {
        rs[i] = h_submit(c, NULL, i % 3 ? "SELECT 1" : "INSERT INTO t VALUES (1)", NULL, 0, 0, 0);
        REQUIRE(rs[i]);
        if (i < N) sb_req_set_tag(rs[i], (uintptr_t)(i + 1));
    }
    end = h_now_ms() + H_MS(20000);
    while (got < N && h_now_ms() < end) {
        uintptr_t tags[7];
        size_t k, n;
        struct pollfd p = { sb_conn_fd(c), POLLIN, 0 };
        int t = sb_conn_timeout(c);
        poll(&p, 1, t < 0 || t > 100 ? 100 : t);
        sb_conn_step(c);
        while ((n = sb_conn_reap(c, tags, 7)) > 0) {
            for (k = 0; k < n; k++) {
                if (tags[k] < 1 || tags[k] > N) { bogus++; continue; }
                if (seen[tags[k]]++) dup++;
                else got++;
                CHECKF(sb_req_status(rs[tags[k] - 1]) != SB_PENDING, "reaped tag %u still pending",
                       (unsigned)tags[k]);
            }
        }
    }
    CHECK_INT(got, ==, N);
    CHECK_INT(dup, ==, 0);
    CHECK_INT(bogus, ==, 0);
    CHECK_INT(h_poll_all(c, rs, N + U, H_MS(10000)), ==, 0);
    {
        uintptr_t tags[4];
        CHECK_INT(sb_conn_reap(c, tags, 4), ==, 0);
    }
    for (i = 0; i < N + U; i++) {
        CHECK_OK(rs[i]);
        sb_req_free(rs[i]);
    }
    sb_conn_close(c);
}

/* ------------------------------------------------------------ sessions */

TEST(session_rollback_isolated)
{
    sb_conn *c = open_file("session.db");
    sb_session *s;
    sb_req *r;
    REQUIRE(c);
    EXEC(c, "CREATE TABLE t(x)");
    s = sb_session_open(c);
    REQUIRE(s);
    r = h_run_s(c, s, "BEGIN", NULL, 0);
    CHECK_OK(r);
    sb_req_free(r);
    r = h_run_s(c, s, "INSERT INTO t VALUES (1)", NULL, 0);
    CHECK_OK(r);
    sb_req_free(r);
    CHECK_INT(SCALAR_S(c, s, "SELECT count(*) FROM t"), ==, 1);
    /* other requests do not see uncommitted data (and are not stuck) */
    CHECK_INT(SCALAR(c, "SELECT count(*) FROM t"), ==, 0);
    r = h_run_s(c, s, "ROLLBACK", NULL, 0);
    CHECK_OK(r);
    sb_req_free(r);
    CHECK_INT(SCALAR_S(c, s, "SELECT count(*) FROM t"), ==, 0);
    sb_session_close(s);
    CHECK_INT(SCALAR(c, "SELECT count(*) FROM t"), ==, 0);
    sb_conn_close(c);
}

TEST(session_commit)
{
    sb_conn *c = open_file("commit.db");
    sb_session *s;
    sb_req *r;
    REQUIRE(c);
    EXEC(c, "CREATE TABLE t(x)");
    s = sb_session_open(c);
    REQUIRE(s);
    r = h_run_s(c, s, "BEGIN", NULL, 0); CHECK_OK(r); sb_req_free(r);
    r = h_run_s(c, s, "INSERT INTO t VALUES (1), (2)", NULL, 0); CHECK_OK(r); sb_req_free(r);
    r = h_run_s(c, s, "COMMIT", NULL, 0); CHECK_OK(r); sb_req_free(r);
    CHECK(!sb_session_broken(s));
    sb_session_close(s);
    CHECK_INT(SCALAR(c, "SELECT count(*) FROM t"), ==, 2);
    sb_conn_close(c);
}

/* A session pins the writer: a write from outside waits until it is closed,
** and closing it with an open transaction rolls that back. */
TEST(session_close_rolls_back)
{
    sb_conn *c = open_file("pin.db");
    sb_session *s;
    sb_req *r, *w;
    int64_t end;
    REQUIRE(c);
    EXEC(c, "CREATE TABLE t(x)");
    s = sb_session_open(c);
    REQUIRE(s);
    r = h_run_s(c, s, "BEGIN", NULL, 0); CHECK_OK(r); sb_req_free(r);
    r = h_run_s(c, s, "INSERT INTO t VALUES (1)", NULL, 0); CHECK_OK(r); sb_req_free(r);

    w = h_submit(c, NULL, "INSERT INTO t VALUES (2)", NULL, 0, 0, 0);
    REQUIRE(w);
    end = h_now_ms() + 300;
    while (h_now_ms() < end) {
        struct pollfd p = { sb_conn_fd(c), POLLIN, 0 };
        poll(&p, 1, 20);
        sb_conn_step(c);
    }
    CHECKF(sb_req_status(w) == SB_PENDING,
           "an outside write ran while a session held the writer: %s", h_errstr(w));

    sb_session_close(s);      /* no COMMIT: rolled back */
    h_wait(c, w);
    CHECK_OK(w);
    sb_req_free(w);
    CHECK_INT(SCALAR(c, "SELECT count(*) FROM t"), ==, 1);
    CHECK_INT(SCALAR(c, "SELECT x FROM t"), ==, 2);
    /* the writer is free again */
    EXEC(c, "INSERT INTO t VALUES (3)");
    CHECK_INT(SCALAR(c, "SELECT count(*) FROM t"), ==, 2);
    sb_conn_close(c);
}

/* BEGIN IMMEDIATE, a and b chained (SB_Q_CHAIN) and COMMIT on a new
** session of c; waits for the COMMIT.  The caller frees r[] and closes *s. */
static void chain_tx(sb_conn *c, sb_session **s, const char *a, const char *b, sb_req *r[4])
{
    *s = sb_session_open(c);
    r[0] = h_submit(c, *s, "BEGIN IMMEDIATE", NULL, 0, SB_Q_CHAIN, 0);
    r[1] = h_submit(c, *s, a, NULL, 0, SB_Q_CHAIN, 0);
    r[2] = h_submit(c, *s, b, NULL, 0, SB_Q_CHAIN, 0);
    r[3] = h_submit(c, *s, "COMMIT", NULL, 0, 0, 0);
    CHECK_INT(h_wait(c, r[3]), ==, SB_OK);
}

static void chain_done(sb_session *s, sb_req *r[4])
{
    for (int i = 0; i < 4; i++) sb_req_free(r[i]);
    sb_session_close(s);
}

/* SB_Q_CHAIN on SQLite: after a chained request fails, the session's next
** one is skipped (the COMMIT of a batch never commits half of it), whether
** the failure came from the database or from submit's own checks. */
TEST(session_chain_skips_after_failure)
{
    sb_conn *c = open_file("chain.db");
    sb_session *s;
    sb_req *r[4];
    REQUIRE(c);
    EXEC(c, "CREATE TABLE t(x INTEGER PRIMARY KEY)");
    EXEC(c, "INSERT INTO t VALUES (1)");

    /* a constraint violation in the middle: the rest is skipped, rolled back */
    chain_tx(c, &s, "INSERT INTO t VALUES (2)", "INSERT INTO t VALUES (1)", r);
    CHECK_OK(r[0]);
    CHECK_OK(r[1]);
    CHECK_ERR(r[2], SB_E_CONSTRAINT);
    CHECKF(sb_req_status(r[3]) == SB_ERR && strstr(h_errstr(r[3]), "skipped"),
           "the COMMIT after a failed chained statement: %s", h_errstr(r[3]));
    chain_done(s, r);
    CHECK_INT(SCALAR(c, "SELECT count(*) FROM t"), ==, 1);

    /* refused at submit (wrong parameter count): the same */
    chain_tx(c, &s, "INSERT INTO t VALUES (3)", "INSERT INTO t VALUES ($1)", r);
    CHECK_ERR(r[2], SB_E_MISUSE);
    CHECKF(sb_req_status(r[3]) == SB_ERR, "the COMMIT after a refused chained statement ran");
    chain_done(s, r);
    CHECK_INT(SCALAR(c, "SELECT count(*) FROM t"), ==, 1);

    /* and a chain that succeeds commits, with the writer free afterwards */
    chain_tx(c, &s, "INSERT INTO t VALUES (4)", "INSERT INTO t VALUES (5)", r);
    for (int i = 0; i < 4; i++) CHECK_OK(r[i]);
    chain_done(s, r);
    EXEC(c, "INSERT INTO t VALUES (6)");
    CHECK_INT(SCALAR(c, "SELECT count(*) FROM t"), ==, 4);
    sb_conn_close(c);
}

/* ------------------------------------------------------------- inline */

TEST(inline_requests)
{
    sb_conn *c = open_file("inline.db");
    sb_value p = vint(20);
    sb_req *r;
    int i, inline_done = 0;
    REQUIRE(c);
    EXEC(c, "CREATE TABLE t(x)");
    for (i = 0; i < 50; i++) {
        const sb_value *v;
        r = h_submit(c, NULL, "SELECT $1 + 1", &p, 1, SB_Q_INLINE, 0);
        REQUIRE(r);
        if (sb_req_status(r) != SB_PENDING) inline_done++;
        h_wait(c, r);
        v = h_cell(r, 0, 0);
        CHECKF(v && v->type == SB_INT && v->u.i == 21, "inline select: %s", h_errstr(r));
        sb_req_free(r);
        r = h_submit(c, NULL, "INSERT INTO t VALUES ($1)", &p, 1, SB_Q_INLINE, 0);
        REQUIRE(r);
        h_wait(c, r);
        CHECK_OK(r);
        sb_req_free(r);
    }
    h_note("%d of 50 idle SB_Q_INLINE selects had finished when submit returned", inline_done);
    CHECK_INT(SCALAR(c, "SELECT count(*) FROM t"), ==, 50);

    /* INLINE while the connection is busy still gives the right answer */
    {
        sb_req *slow = h_submit(c, NULL, SLOW_SQL, NULL, 0, 0, 0);
        sb_req *w;
        REQUIRE(slow);
        w = h_submit(c, NULL, "INSERT INTO t VALUES (99)", NULL, 0, SB_Q_INLINE, 0);
        r = h_submit(c, NULL, "SELECT count(*) FROM t", NULL, 0, SB_Q_INLINE, 0);
        h_wait(c, w);
        h_wait(c, r);
        h_wait(c, slow);
        CHECK_OK(w);
        CHECK_OK(r);
        CHECK_OK(slow);
        sb_req_free(w);
        sb_req_free(r);
        sb_req_free(slow);
    }
    CHECK_INT(SCALAR(c, "SELECT count(*) FROM t"), ==, 51);
    sb_conn_close(c);
}

/* ------------------------------------------- timeouts, cancel and close */

TEST(request_timeout)
{
    sb_conn *c = open_file("timeout.db");
    sb_req *r;
    int64_t t0;
    int t;
    REQUIRE(c);
    t0 = h_now_ms();
    r = h_submit(c, NULL, ENDLESS_SQL, NULL, 0, 0, 200);
    REQUIRE(r);
    t = sb_conn_timeout(c);
    CHECKF(t >= 0 && t <= 200, "sb_conn_timeout with a 200 ms request = %d", t);
    CHECK_INT(h_poll_all(c, &r, 1, H_MS(5000)), ==, 0);
    CHECK_ERR(r, SB_E_TIMEOUT);
    CHECKF(h_now_ms() - t0 < H_MS(2000), "timeout after %lld ms", (long long)(h_now_ms() - t0));
    h_note("timed out after %lld ms: %s", (long long)(h_now_ms() - t0), h_errstr(r));
    sb_req_free(r);

    /* a deadline that does not fire */
    r = h_submit(c, NULL, "SELECT 5", NULL, 0, 0, 5000);
    h_wait(c, r);
    CHECK_OK(r);
    sb_req_free(r);

    /* still usable, reads and writes */
    EXEC(c, "CREATE TABLE t(x)");
    EXEC(c, "INSERT INTO t VALUES (1)");
    CHECK_INT(SCALAR(c, "SELECT count(*) FROM t"), ==, 1);

    /* a write that times out leaves the writer usable */
    r = h_submit(c, NULL, "INSERT INTO t SELECT count(*) FROM (" ENDLESS_SQL ")", NULL, 0, 0, 200);
    REQUIRE(r);
    CHECK_INT(h_poll_all(c, &r, 1, H_MS(5000)), ==, 0);
    CHECK_ERR(r, SB_E_TIMEOUT);
    sb_req_free(r);
    EXEC(c, "INSERT INTO t VALUES (2)");
    CHECK_INT(SCALAR(c, "SELECT count(*) FROM t"), ==, 2);
    CHECK_INT(sb_conn_timeout(c), ==, -1);
    sb_conn_close(c);
}

TEST(wait_times_out)
{
    sb_conn *c = open_file("wait.db");
    sb_req *r;
    int64_t t0;
    REQUIRE(c);
    r = h_submit(c, NULL, ENDLESS_SQL, NULL, 0, 0, 0);
    REQUIRE(r);
    t0 = h_now_ms();
    CHECK_INT(sb_conn_wait(c, r, 100), ==, SB_PENDING);
    CHECKF(h_now_ms() - t0 >= 90 && h_now_ms() - t0 < H_MS(1000), "wait(100) took %lld ms",
           (long long)(h_now_ms() - t0));
    CHECK_INT(sb_req_status(r), ==, SB_PENDING);
    sb_req_cancel(r, SB_E_TIMEOUT);
    CHECK_INT(sb_conn_wait(c, r, H_MS(2000)), ==, SB_OK);
    CHECK_ERR(r, SB_E_TIMEOUT);
    sb_req_free(r);
    CHECK_INT(SCALAR(c, "SELECT 1"), ==, 1);
    sb_conn_close(c);
}

TEST(cancel_and_free_pending)
{
    sb_conn *c = open_file("cancel.db");
    sb_req *rs[6];
    int i;
    int64_t t0;
    REQUIRE(c);
    /* more slow requests than workers: some run, some are queued */
    for (i = 0; i < 6; i++) {
        rs[i] = h_submit(c, NULL, ENDLESS_SQL, NULL, 0, 0, 0);
        REQUIRE(rs[i]);
    }
    sb_conn_step(c);
    t0 = h_now_ms();
    for (i = 0; i < 6; i += 2) sb_req_cancel(rs[i], SB_E_CLOSED);
    CHECK_INT(h_poll_all(c, (sb_req *[]){ rs[0], rs[2], rs[4] }, 3, H_MS(3000)), ==, 0);
    for (i = 0; i < 6; i += 2) CHECK_ERR(rs[i], SB_E_CLOSED);
    h_note("3 cancels took %lld ms", (long long)(h_now_ms() - t0));
    /* freeing unfinished requests cancels them */
    for (i = 0; i < 6; i++) sb_req_free(rs[i]);
    t0 = h_now_ms();
    CHECK_INT(SCALAR(c, "SELECT 7"), ==, 7);
    EXEC(c, "CREATE TABLE t(x)");
    CHECKF(h_now_ms() - t0 < H_MS(3000), "the db stayed busy %lld ms after the frees",
           (long long)(h_now_ms() - t0));
    sb_conn_close(c);
}

TEST(close_with_requests_in_flight)
{
    sb_conn *c = open_file("close.db");
    sb_req *rs[6];
    int i;
    int64_t t0;
    REQUIRE(c);
    EXEC(c, "CREATE TABLE t(x)");
    for (i = 0; i < 5; i++) {
        rs[i] = h_submit(c, NULL, ENDLESS_SQL, NULL, 0, 0, 0);
        REQUIRE(rs[i]);
    }
    rs[5] = h_submit(c, NULL, "INSERT INTO t VALUES (1)", NULL, 0, 0, 0);
    REQUIRE(rs[5]);
    sb_conn_step(c);
    usleep(50 * 1000);
    sb_conn_step(c);
    t0 = h_now_ms();
    sb_conn_close(c);
    CHECKF(h_now_ms() - t0 < H_MS(1000), "close took %lld ms", (long long)(h_now_ms() - t0));
    for (i = 0; i < 5; i++) {
        CHECK_ERR(rs[i], SB_E_CLOSED);
        sb_req_free(rs[i]);
    }
    /* the insert either ran before the close or was closed */
    CHECKF(sb_req_status(rs[5]) == SB_OK || h_class(rs[5]) == SB_E_CLOSED, "insert: %s",
           h_errstr(rs[5]));
    sb_req_free(rs[5]);
}

/* Sessions and requests outlive the close as objects. */
TEST(close_with_open_session)
{
    sb_conn *c = open_file("close2.db");
    sb_session *s;
    sb_req *r, *q;
    REQUIRE(c);
    s = sb_session_open(c);
    REQUIRE(s);
    r = h_run_s(c, s, "BEGIN", NULL, 0);
    CHECK_OK(r);
    q = h_submit(c, s, ENDLESS_SQL, NULL, 0, 0, 0);
    sb_conn_step(c);
    sb_conn_close(c);
    CHECK_ERR(q, SB_E_CLOSED);
    sb_session_close(s);
    sb_req_free(q);
    sb_req_free(r);
}

/* -------------------------------------------------------- busy, parallel */

TEST(busy_is_retryable)
{
    const char *url = h_sqlite_url("busy.db");
    sb_options o;
    sb_conn *a, *b;
    sb_session *s;
    sb_req *r;
    int64_t t0;
    a = OPEN(url, NULL);
    REQUIRE(a);
    EXEC(a, "CREATE TABLE t(x)");
    sb_options_init(&o);
    o.busy_timeout_ms = 100;
    b = OPEN(url, &o);
    REQUIRE(b);
    s = sb_session_open(a);
    REQUIRE(s);
    r = h_run_s(a, s, "BEGIN IMMEDIATE", NULL, 0); CHECK_OK(r); sb_req_free(r);
    r = h_run_s(a, s, "INSERT INTO t VALUES (1)", NULL, 0); CHECK_OK(r); sb_req_free(r);

    t0 = h_now_ms();
    r = h_run(b, "INSERT INTO t VALUES (2)", NULL, 0);
    CHECK_ERR(r, SB_E_BUSY);
    if (r && sb_req_status(r) == SB_ERR) CHECK(sb_error_retryable(sb_req_error(r)));
    CHECKF(h_now_ms() - t0 < H_MS(3000), "busy after %lld ms", (long long)(h_now_ms() - t0));
    h_note("busy after %lld ms: %s", (long long)(h_now_ms() - t0), h_errstr(r));
    sb_req_free(r);

    r = h_run_s(a, s, "COMMIT", NULL, 0); CHECK_OK(r); sb_req_free(r);
    sb_session_close(s);
    EXEC(b, "INSERT INTO t VALUES (2)");
    CHECK_INT(SCALAR(b, "SELECT count(*) FROM t"), ==, 2);
    sb_conn_close(b);
    sb_conn_close(a);
}

/* While a slow read runs, a quick write and a quick read both finish. */
TEST(reads_beside_a_write)
{
    sb_conn *c = open_file("parallel.db");
    sb_req *rs[3];
    int64_t t0, done[3] = { 0, 0, 0 };
    int i;
    REQUIRE(c);
    EXEC(c, "CREATE TABLE t(x)");
    t0 = h_now_ms();
    rs[0] = h_submit(c, NULL, SLOW_SQL, NULL, 0, 0, 0);
    rs[1] = h_submit(c, NULL, "INSERT INTO t VALUES (1)", NULL, 0, 0, 0);
    rs[2] = h_submit(c, NULL, "SELECT 1", NULL, 0, 0, 0);
    for (i = 0; i < 3; i++) REQUIRE(rs[i]);
    while (h_now_ms() - t0 < H_MS(10000) && (!done[0] || !done[1] || !done[2])) {
        struct pollfd p = { sb_conn_fd(c), POLLIN, 0 };
        poll(&p, 1, 50);
        sb_conn_step(c);
        for (i = 0; i < 3; i++)
            if (!done[i] && sb_req_status(rs[i]) != SB_PENDING) done[i] = h_now_ms() - t0 + 1;
    }
    for (i = 0; i < 3; i++) CHECK_OK(rs[i]);
    h_note("slow read %lld ms, write %lld ms, quick read %lld ms", (long long)done[0] - 1,
           (long long)done[1] - 1, (long long)done[2] - 1);
    CHECKF(done[1] && done[1] < done[0], "the write waited for the slow read");
    CHECKF(done[2] && done[2] < done[0], "the quick read waited for the slow read");
    for (i = 0; i < 3; i++) sb_req_free(rs[i]);
    sb_conn_close(c);
}

TEST(thousand_interleaved)
{
    enum { N = 1000 };
    sb_conn *c = open_file("many.db");
    static sb_req *rs[N];
    static sb_value pv[N];
    int i, bad = 0;
    REQUIRE(c);
    EXEC(c, "CREATE TABLE t(k INTEGER PRIMARY KEY, v INTEGER)");
    for (i = 0; i < N; i++) {
        pv[i] = vint(i);
        rs[i] = h_submit(c, NULL, i % 2 ? "SELECT $1 * 10" : "INSERT INTO t VALUES ($1, $1 * 3)",
                         &pv[i], 1, 0, 0);
        REQUIRE(rs[i]);
    }
    CHECK_INT(h_poll_all(c, rs, N, H_MS(30000)), ==, 0);
    for (i = 0; i < N; i++) {
        if (i % 2) {
            const sb_value *v = h_cell(rs[i], 0, 0);
            if (!v || v->type != SB_INT || v->u.i != i * 10) bad++;
        } else if (sb_req_status(rs[i]) != SB_OK) {
            bad++;
        }
        sb_req_free(rs[i]);
    }
    CHECK_INT(bad, ==, 0);
    CHECK_INT(SCALAR(c, "SELECT count(*) FROM t"), ==, N / 2);
    CHECK_INT(SCALAR(c, "SELECT sum(v) FROM t"), ==, 3 * (N / 2) * (N - 2) / 2);
    sb_conn_close(c);
}

static const h_test tests[] = {
    T(open_memory_and_file),
    T(memory_db_is_one_db),
    T(values_roundtrip),
    T(placeholders),
    T(wrong_param_count),
    T(multi_statement_rejected),
    T(syntax_errors),
    T(constraint_errors),
    T(results_and_affected),
    T(statement_cache),
    T(poll_loop),
    T(reap_tags),
    T(session_rollback_isolated),
    T(session_commit),
    T(session_close_rolls_back),
    T(session_chain_skips_after_failure),
    T(inline_requests),
    T(request_timeout),
    T(wait_times_out),
    T(cancel_and_free_pending),
    T(close_with_requests_in_flight),
    T(close_with_open_session),
    T(busy_is_retryable),
    T(reads_beside_a_write),
    T(thousand_interleaved),
};

int main(int argc, char **argv)
{
    return h_main(argc, argv, tests, H_COUNT(tests));
}
