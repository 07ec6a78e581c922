/*
** spec/c/test_pg.c - the core against a real PostgreSQL server, the one in
** SB_TEST_PG_URL (scripts/pg-test-env starts a throwaway one; `make test`
** does that).  Without SB_TEST_PG_URL the tests are skipped, except under
** CI=true, where that is a failure: CI must never pass by skipping.
**
** Owns: typed parameters, type mapping by OID, bytea, errors with native
** SQLSTATEs, sessions, pipelining on a pool (reads packed per step),
** timeouts, close, reconnect, prepare=0, and password redaction on a
** failed login.
*/
#include "harness.h"

static const char *pg_url(void)
{
    const char *u = getenv("SB_TEST_PG_URL");
    return u && *u ? u : NULL;
}

#define NEED_PG() \
    do { if (!pg_url()) { \
             REQUIREF(!h_ci(), "CI=true but SB_TEST_PG_URL is not set: PostgreSQL tests cannot run"); \
             SKIP("SB_TEST_PG_URL not set"); } } while (0)

static sb_conn *pg_open(int pool)
{
    sb_options o;
    sb_options_init(&o);
    if (pool > 0) o.pool = pool;
    return OPEN(pg_url(), &o);
}

/* The password of SB_TEST_PG_URL (static), or "" */
static const char *pg_password(void)
{
    static char pw[256];
    const char *u = pg_url(), *s, *at, *colon;
    pw[0] = '\0';
    if (!u || !(s = strstr(u, "://"))) return pw;
    s += 3;
    at = strchr(s, '@');
    colon = strchr(s, ':');
    if (at && colon && colon < at && (size_t)(at - colon - 1) < sizeof pw) {
        memcpy(pw, colon + 1, (size_t)(at - colon - 1));
        pw[at - colon - 1] = '\0';
    }
    return pw;
}

/* A table name unique to this process. */
static const char *tname(const char *base)
{
    static char buf[4][64];
    static int i;
    char *b = buf[i++ & 3];
    snprintf(b, sizeof buf[0], "sb_ctest_%s_%d", base, (int)getpid());
    return b;
}

static void execf(sb_conn *c, const char *fmt, const char *arg)
{
    char sql[512];
    snprintf(sql, sizeof sql, fmt, arg);
    EXEC(c, sql);
}

/* ---------------------------------------------------------------- basics */

TEST(pg_reachable)
{
    sb_conn *c;
    const char *shown, *pw;
    NEED_PG();
    c = pg_open(2);
    REQUIRE(c);
    CHECK_STR(sb_conn_backend(c), "postgresql");
    CHECK_INT(SCALAR(c, "SELECT 1"), ==, 1);
    shown = sb_conn_url(c);
    pw = pg_password();
    CHECK(shown != NULL);
    if (shown && *pw) {
        CHECKF(!strstr(shown, pw), "sb_conn_url shows the password: %s", shown);
        CHECK(strstr(shown, "***") != NULL);
    }
    h_note("connected to %s", shown ? shown : "?");
    sb_conn_close(c);
}

TEST(pg_typed_params)
{
    sb_conn *c;
    sb_value p[4];
    sb_req *r;
    const sb_value *v;
    NEED_PG();
    c = pg_open(2);
    REQUIRE(c);

    p[0] = vint(21);
    r = h_run(c, "SELECT $1 + $1", p, 1);
    v = h_cell(r, 0, 0);
    CHECKF(v && v->type == SB_INT && v->u.i == 42, "SELECT $1 + $1 (int 21): %s %s", h_errstr(r),
           v ? h_typename(v->type) : "");
    sb_req_free(r);

    p[0] = vfloat(1.25);
    r = h_run(c, "SELECT $1 * 2", p, 1);
    v = h_cell(r, 0, 0);
    CHECKF(v && v->type == SB_FLOAT && v->u.f == 2.5, "float param: %s", h_errstr(r));
    sb_req_free(r);

    p[0] = vbool(1);
    r = h_run(c, "SELECT NOT $1, $1", p, 1);
    REQUIRE_OK(r);
    v = sb_result_row(sb_req_result(r), 0);
    CHECK(v[0].type == SB_BOOL && v[0].u.b == 0);
    CHECK(v[1].type == SB_BOOL && v[1].u.b != 0);
    sb_req_free(r);

    p[0] = vtext("h\xc3\xa9llo");
    p[1] = vnull();
    r = h_run(c, "SELECT $1 || '!', $2::int IS NULL, length($1)", p, 2);
    REQUIRE_OK(r);
    v = sb_result_row(sb_req_result(r), 0);
    CHECK(v[0].type == SB_TEXT && strcmp(v[0].u.s.p, "h\xc3\xa9llo!") == 0);
    CHECK(v[1].type == SB_BOOL && v[1].u.b != 0);
    CHECK(v[2].type == SB_INT && v[2].u.i == 5);
    sb_req_free(r);

    /* the same SQL text with parameters of different types */
    p[0] = vint(5);
    r = h_run(c, "SELECT $1", p, 1);
    v = h_cell(r, 0, 0);
    CHECKF(v && v->type == SB_INT && v->u.i == 5, "SELECT $1 (int): %s", h_errstr(r));
    sb_req_free(r);
    p[0] = vtext("x");
    r = h_run(c, "SELECT $1", p, 1);
    v = h_cell(r, 0, 0);
    CHECKF(v && v->type == SB_TEXT && strcmp(v->u.s.p, "x") == 0, "SELECT $1 (text) after int: %s",
           h_errstr(r));
    sb_req_free(r);
    p[0] = vfloat(0.5);
    r = h_run(c, "SELECT $1", p, 1);
    v = h_cell(r, 0, 0);
    CHECKF(v && v->type == SB_FLOAT && v->u.f == 0.5, "SELECT $1 (float) after text: %s",
           h_errstr(r));
    sb_req_free(r);
    sb_conn_close(c);
}

TEST(pg_type_mapping)
{
    sb_conn *c;
    sb_value p[2];
    sb_req *r;
    const sb_value *v;
    NEED_PG();
    c = pg_open(1);
    REQUIRE(c);

    r = h_run(c, "SELECT 9223372036854775807::int8, (-9223372036854775807 - 1)::int8, "
                 "32767::int2, 2147483647::int4, 1.5::float4, 0.1::float8, true, "
                 "1.50::numeric, 123456789012345678901234567890.5::numeric, "
                 "'2024-01-02'::date, NULL::int, 'x'::varchar, '\\x00ff'::bytea", NULL, 0);
    REQUIRE_OK(r);
    v = sb_result_row(sb_req_result(r), 0);
    CHECKF(v[0].type == SB_INT && v[0].u.i == INT64_MAX, "int8 max: %s", h_typename(v[0].type));
    CHECKF(v[1].type == SB_INT && v[1].u.i == INT64_MIN, "int8 min: %s", h_typename(v[1].type));
    CHECK(v[2].type == SB_INT && v[2].u.i == 32767);
    CHECK(v[3].type == SB_INT && v[3].u.i == 2147483647);
    CHECK(v[4].type == SB_FLOAT && v[4].u.f == 1.5);
    CHECK(v[5].type == SB_FLOAT && v[5].u.f == 0.1);
    CHECK(v[6].type == SB_BOOL && v[6].u.b != 0);
    CHECKF(v[7].type == SB_TEXT && strcmp(v[7].u.s.p, "1.50") == 0, "numeric 1.50: %s %s",
           h_typename(v[7].type), v[7].type == SB_TEXT ? v[7].u.s.p : "");
    CHECK(v[8].type == SB_TEXT && strcmp(v[8].u.s.p, "123456789012345678901234567890.5") == 0);
    CHECK(v[9].type == SB_TEXT && strcmp(v[9].u.s.p, "2024-01-02") == 0);
    CHECK(v[10].type == SB_NULL);
    CHECK(v[11].type == SB_TEXT && strcmp(v[11].u.s.p, "x") == 0);
    CHECKF(v[12].type == SB_BLOB && v[12].u.s.len == 2 &&
           memcmp(v[12].u.s.p, "\x00\xff", 2) == 0, "bytea: %s len %zu",
           h_typename(v[12].type), v[12].u.s.len);
    sb_req_free(r);

    /* int8 exactness through a parameter */
    p[0] = vint(INT64_MAX);
    p[1] = vint(INT64_MIN);
    r = h_run(c, "SELECT $1, $2, $1 - 1", p, 2);
    REQUIRE_OK(r);
    v = sb_result_row(sb_req_result(r), 0);
    CHECKF(v[0].type == SB_INT && v[0].u.i == INT64_MAX, "param INT64_MAX came back as %s %" PRId64,
           h_typename(v[0].type), v[0].u.i);
    CHECK(v[1].type == SB_INT && v[1].u.i == INT64_MIN);
    CHECK(v[2].type == SB_INT && v[2].u.i == INT64_MAX - 1);
    sb_req_free(r);
    sb_conn_close(c);
}

TEST(pg_bytea_roundtrip)
{
    unsigned char bytes[512];
    sb_conn *c;
    sb_value p[2];
    sb_req *r;
    const sb_value *v;
    int i;
    NEED_PG();
    for (i = 0; i < 512; i++) bytes[i] = (unsigned char)(i * 7);
    bytes[0] = 0;
    c = pg_open(1);
    REQUIRE(c);
    p[0] = vblob(bytes, sizeof bytes);
    p[1] = vblob("", 0);
    r = h_run(c, "SELECT $1, length($1), $2", p, 2);
    REQUIRE_OK(r);
    v = sb_result_row(sb_req_result(r), 0);
    CHECKF(v[0].type == SB_BLOB && v[0].u.s.len == sizeof bytes &&
           memcmp(v[0].u.s.p, bytes, sizeof bytes) == 0, "bytea: %s len %zu",
           h_typename(v[0].type), v[0].u.s.len);
    CHECK(v[1].type == SB_INT && v[1].u.i == (int64_t)sizeof bytes);
    CHECK(v[2].type == SB_BLOB && v[2].u.s.len == 0);
    sb_req_free(r);

    /* through a table */
    execf(c, "CREATE TABLE %s (b bytea)", tname("bytea"));
    {
        char sql[256];
        snprintf(sql, sizeof sql, "INSERT INTO %s VALUES ($1)", tname("bytea"));
        r = h_run(c, sql, p, 1);
        CHECK_OK(r);
        sb_req_free(r);
        snprintf(sql, sizeof sql, "SELECT b FROM %s", tname("bytea"));
        r = h_run(c, sql, NULL, 0);
        v = h_cell(r, 0, 0);
        CHECKF(v && v->type == SB_BLOB && v->u.s.len == sizeof bytes &&
               memcmp(v->u.s.p, bytes, sizeof bytes) == 0, "bytea from a table: %s", h_errstr(r));
        sb_req_free(r);
    }
    execf(c, "DROP TABLE %s", tname("bytea"));
    sb_conn_close(c);
}

/* ---------------------------------------------------------------- errors */

TEST(pg_errors)
{
    sb_conn *c;
    sb_req *r;
    sb_value p[2];
    char sql[256];
    NEED_PG();
    c = pg_open(2);
    REQUIRE(c);

    r = h_run(c, "SELEKT 1", NULL, 0);
    CHECK_ERR(r, SB_E_SYNTAX);
    CHECK_STR(h_sqlstate(r), "42601");
    if (r && sb_req_status(r) == SB_ERR) CHECK_STR(sb_error_backend(sb_req_error(r)), "postgresql");
    h_note("%s", h_errstr(r));
    sb_req_free(r);

    r = h_run(c, "SELECT * FROM sb_no_such_table", NULL, 0);
    CHECK_ERR(r, SB_E_SYNTAX);
    CHECK_STR(h_sqlstate(r), "42P01");
    sb_req_free(r);

    r = h_run(c, "SELECT 1 / 0", NULL, 0);
    CHECK(r && sb_req_status(r) == SB_ERR);
    CHECK_STR(h_sqlstate(r), "22012");
    sb_req_free(r);

    execf(c, "CREATE TABLE %s (id int PRIMARY KEY, e text NOT NULL)", tname("uniq"));
    p[0] = vint(1);
    p[1] = vtext("a");
    snprintf(sql, sizeof sql, "INSERT INTO %s VALUES ($1, $2)", tname("uniq"));
    r = h_run(c, sql, p, 2);
    CHECK_OK(r);
    sb_req_free(r);
    r = h_run(c, sql, p, 2);
    CHECK_ERR(r, SB_E_CONSTRAINT);
    CHECK_STR(h_sqlstate(r), "23505");
    if (r && sb_req_status(r) == SB_ERR) {
        CHECK(!sb_error_retryable(sb_req_error(r)));
        CHECKF(sb_error_detail(sb_req_error(r)) != NULL, "a unique violation has no detail");
    }
    h_note("%s", h_errstr(r));
    sb_req_free(r);
    p[1] = vnull();
    p[0] = vint(2);
    r = h_run(c, sql, p, 2);
    CHECK_ERR(r, SB_E_CONSTRAINT);
    CHECK_STR(h_sqlstate(r), "23502");
    sb_req_free(r);

    /* misuse found at submit */
    r = h_run(c, sql, p, 1);
    CHECK_ERR(r, SB_E_MISUSE);
    sb_req_free(r);

    r = h_run(c, "SELECT 1; SELECT 2", NULL, 0);
    CHECKF(r && sb_req_status(r) == SB_ERR, "two statements: %s", h_errstr(r));
    h_note("two statements: %s", h_errstr(r));
    sb_req_free(r);

    /* errors do not poison the pipeline */
    CHECK_INT(SCALAR(c, "SELECT 3"), ==, 3);
    execf(c, "DROP TABLE %s", tname("uniq"));
    sb_conn_close(c);
}

/* An error in the middle of a pipeline fails only its own request. */
TEST(pg_error_mid_pipeline)
{
    enum { N = 30 };
    sb_conn *c;
    sb_req *rs[N];
    sb_value pv[N];
    int i;
    NEED_PG();
    c = pg_open(1);
    REQUIRE(c);
    for (i = 0; i < N; i++) {
        pv[i] = vint(i);
        rs[i] = h_submit(c, NULL, i % 7 == 3 ? "SELECT 1 / ($1 - $1)" : "SELECT $1", &pv[i], 1, 0, 0);
        REQUIRE(rs[i]);
    }
    CHECK_INT(h_poll_all(c, rs, N, H_MS(20000)), ==, 0);
    for (i = 0; i < N; i++) {
        if (i % 7 == 3) {
            CHECKF(sb_req_status(rs[i]) == SB_ERR && strcmp(h_sqlstate(rs[i]), "22012") == 0,
                   "request %d: %s", i, h_errstr(rs[i]));
        } else {
            const sb_value *v = h_cell(rs[i], 0, 0);
            CHECKF(v && v->type == SB_INT && v->u.i == i, "request %d: %s", i, h_errstr(rs[i]));
        }
        sb_req_free(rs[i]);
    }
    sb_conn_close(c);
}

/* -------------------------------------------------------------- sessions */

TEST(pg_session_isolation)
{
    sb_conn *c;
    sb_session *s;
    sb_req *r;
    char sql[256];
    NEED_PG();
    c = pg_open(3);
    REQUIRE(c);
    execf(c, "CREATE TABLE %s (x int)", tname("sess"));
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", tname("sess"));
    s = sb_session_open(c);
    REQUIRE(s);
    r = h_run_s(c, s, "BEGIN", NULL, 0); CHECK_OK(r); sb_req_free(r);
    {
        char ins[256];
        snprintf(ins, sizeof ins, "INSERT INTO %s VALUES (1)", tname("sess"));
        r = h_run_s(c, s, ins, NULL, 0); CHECK_OK(r); sb_req_free(r);
    }
    CHECK_INT(SCALAR_S(c, s, sql), ==, 1);
    CHECK_INT(SCALAR(c, sql), ==, 0);
    r = h_run_s(c, s, "ROLLBACK", NULL, 0); CHECK_OK(r); sb_req_free(r);
    CHECK_INT(SCALAR_S(c, s, sql), ==, 0);
    CHECK(!sb_session_broken(s));
    sb_session_close(s);

    /* closing a session inside a transaction rolls it back */
    s = sb_session_open(c);
    REQUIRE(s);
    r = h_run_s(c, s, "BEGIN", NULL, 0); CHECK_OK(r); sb_req_free(r);
    {
        char ins[256];
        snprintf(ins, sizeof ins, "INSERT INTO %s VALUES (2)", tname("sess"));
        r = h_run_s(c, s, ins, NULL, 0); CHECK_OK(r); sb_req_free(r);
    }
    sb_session_close(s);
    {
        /* every pool connection sees nothing and is not in a transaction */
        sb_req *rs[6];
        int i;
        for (i = 0; i < 6; i++) rs[i] = h_submit(c, NULL, sql, NULL, 0, 0, 0);
        CHECK_INT(h_poll_all(c, rs, 6, H_MS(10000)), ==, 0);
        for (i = 0; i < 6; i++) {
            const sb_value *v = h_cell(rs[i], 0, 0);
            CHECKF(v && v->type == SB_INT && v->u.i == 0, "after close: %s", h_errstr(rs[i]));
            sb_req_free(rs[i]);
        }
    }
    execf(c, "DROP TABLE %s", tname("sess"));
    sb_conn_close(c);
}

/* SB_Q_CHAIN: a chained request goes out with the session's next one (one
** Sync for both); if it fails, the next one is skipped, never run alone. */
TEST(pg_chain)
{
    sb_conn *c;
    sb_session *s;
    sb_req *a, *b;
    char ins[256], cnt[256];
    NEED_PG();
    c = pg_open(2);
    REQUIRE(c);
    execf(c, "CREATE TABLE %s (x int)", tname("chain"));
    snprintf(ins, sizeof ins, "INSERT INTO %s VALUES (1)", tname("chain"));
    snprintf(cnt, sizeof cnt, "SELECT count(*) FROM %s", tname("chain"));

    /* a chained BEGIN and a statement: both succeed, in one transaction */
    s = sb_session_open(c);
    REQUIRE(s);
    a = h_submit(c, s, "BEGIN", NULL, 0, SB_Q_CHAIN, 0);
    b = h_submit(c, s, ins, NULL, 0, 0, 0);
    CHECK_INT(h_wait(c, b), ==, SB_OK);
    CHECK_OK(b);
    CHECKF(sb_req_status(a) == SB_OK, "the chained BEGIN finished with its successor: %s", h_errstr(a));
    sb_req_free(a);
    sb_req_free(b);
    b = h_run_s(c, s, "ROLLBACK", NULL, 0); CHECK_OK(b); sb_req_free(b);
    CHECK_INT(SCALAR(c, cnt), ==, 0);  /* the insert was inside it */
    sb_session_close(s);

    /* a chained statement that fails: the next one is skipped */
    s = sb_session_open(c);
    REQUIRE(s);
    a = h_submit(c, s, "SELECT 1/0", NULL, 0, SB_Q_CHAIN, 0);
    b = h_submit(c, s, ins, NULL, 0, 0, 0);
    CHECK_INT(h_wait(c, b), ==, SB_OK);
    CHECKF(sb_req_status(a) == SB_ERR && !strcmp(sb_error_sqlstate(sb_req_error(a)), "22012"),
           "chained: %s", h_errstr(a));
    CHECKF(sb_req_status(b) == SB_ERR, "the statement after a failed chained one ran: %s", h_errstr(b));
    sb_req_free(a);
    sb_req_free(b);
    b = h_run_s(c, s, "SELECT 1", NULL, 0); CHECK_OK(b); sb_req_free(b);  /* usable again */
    sb_session_close(s);
    CHECK_INT(SCALAR(c, cnt), ==, 0);

    execf(c, "DROP TABLE %s", tname("chain"));
    sb_conn_close(c);
}

/* INSERT x into the pg_group test's table, as part of group g */
static sb_req *group_insert(sb_conn *c, sb_session *g, int x, unsigned flags)
{
    char sql[256];
    snprintf(sql, sizeof sql, "INSERT INTO %s VALUES (%d)", tname("grp"), x);
    return h_submit(c, g, sql, NULL, 0, flags, 0);
}

/* sb_group_open: chained requests and the one that ends them go out back
** to back on a pooled connection that is not taken exclusively (pool 1: a
** request queued before the group and one after it share the connection),
** run as one implicit transaction, and the group refuses more requests. */
TEST(pg_group)
{
    sb_conn *c;
    sb_session *g;
    sb_req *before, *after, *r[3], *late;
    char cnt[256];
    int i;
    NEED_PG();
    c = pg_open(1);
    REQUIRE(c);
    execf(c, "CREATE TABLE %s (x int PRIMARY KEY)", tname("grp"));
    snprintf(cnt, sizeof cnt, "SELECT count(*) FROM %s", tname("grp"));

    before = h_submit(c, NULL, "SELECT pg_sleep(0.2)", NULL, 0, 0, 0);
    g = sb_group_open(c);
    REQUIRE(g);
    r[0] = group_insert(c, g, 1, SB_Q_CHAIN);
    r[1] = group_insert(c, g, 2, SB_Q_CHAIN);
    r[2] = h_submit(c, g, cnt, NULL, 0, 0, 0);
    after = h_submit(c, NULL, "SELECT 1", NULL, 0, 0, 0);
    late = h_submit(c, g, "SELECT 2", NULL, 0, 0, 0);
    CHECK_ERR(late, SB_E_MISUSE);  /* the group ended with r[2] */
    sb_req_free(late);
    CHECK_INT(h_wait(c, after), ==, SB_OK);
    CHECK_OK(after);
    CHECK_OK(before);  /* FIFO on the one connection: it finished first */
    for (i = 0; i < 3; i++) CHECK_OK(r[i]);
    CHECK_INT(sb_result_row(sb_req_result(r[2]), 0)[0].u.i, ==, 2);  /* saw its own inserts */
    for (i = 0; i < 3; i++) sb_req_free(r[i]);
    sb_req_free(before);
    sb_req_free(after);
    sb_session_close(g);
    CHECK_INT(SCALAR(c, cnt), ==, 2);

    /* a failure in the middle: the rest is skipped and the first rolled back */
    g = sb_group_open(c);
    REQUIRE(g);
    r[0] = group_insert(c, g, 3, SB_Q_CHAIN);
    r[1] = group_insert(c, g, 1, SB_Q_CHAIN);
    r[2] = group_insert(c, g, 4, 0);
    CHECK_INT(h_wait(c, r[2]), ==, SB_OK);
    CHECK_ERR(r[1], SB_E_CONSTRAINT);
    CHECKF(sb_req_status(r[2]) == SB_ERR, "the request after a failed one in its group ran");
    for (i = 0; i < 3; i++) sb_req_free(r[i]);
    sb_session_close(g);
    CHECK_INT(SCALAR(c, cnt), ==, 2);

    /* refused at submit in the middle: the group is left open on the
    ** connection, and closing it rolls back the part that went out */
    g = sb_group_open(c);
    REQUIRE(g);
    r[0] = group_insert(c, g, 5, SB_Q_CHAIN);
    r[1] = h_submit(c, g, "SELECT $1", NULL, 0, SB_Q_CHAIN, 0);
    r[2] = h_submit(c, g, "SELECT 3", NULL, 0, 0, 0);
    CHECK_ERR(r[1], SB_E_MISUSE);
    CHECKF(sb_req_status(r[2]) == SB_ERR, "the request after a refused one in its group ran");
    sb_req_free(r[2]);
    sb_req_free(r[1]);
    sb_session_close(g);
    h_wait(c, r[0]);
    sb_req_free(r[0]);
    CHECK_INT(SCALAR(c, cnt), ==, 2);  /* and the one connection serves again */

    execf(c, "DROP TABLE %s", tname("grp"));
    sb_conn_close(c);
}

/* --------------------------------------------------------- concurrency */

/* 200 x pg_sleep(0.05) = 10 s one after another; pool 8 should need about
** 1.25 s.  Measured twice: from a cold pool (one connection up, seven still
** to connect) and from a warm one. */
static int64_t sleep_batch(sb_conn *c, int n)
{
    static sb_req *rs[200];
    int i, ok = 0;
    int64_t t0 = h_now_ms(), ms;
    for (i = 0; i < n; i++) {
        rs[i] = h_submit(c, NULL, "SELECT pg_sleep(0.05)", NULL, 0, 0, 0);
        if (!rs[i]) { h_fail(__FILE__, __LINE__, "submit returned NULL"); return -1; }
    }
    CHECK_INT(h_poll_all(c, rs, n, H_MS(30000)), ==, 0);
    ms = h_now_ms() - t0;
    for (i = 0; i < n; i++) {
        if (sb_req_status(rs[i]) == SB_OK) ok++;
        else if (ok == i) h_fail(__FILE__, __LINE__, "request %d: %s", i, h_errstr(rs[i]));
        sb_req_free(rs[i]);
    }
    CHECK_INT(ok, ==, n);
    return ms;
}

TEST(pg_pipelining_pool8)
{
    sb_conn *c;
    int64_t cold, warm;
    NEED_PG();
    c = pg_open(8);
    REQUIRE(c);
    CHECK_INT(SCALAR(c, "SELECT 1"), ==, 1);
    cold = sleep_batch(c, 200);
    warm = sleep_batch(c, 200);
    printf("    pipelining: 200 x SELECT pg_sleep(0.05) on pool 8: %lld ms from a cold pool, "
           "%lld ms warm (one after another: 10000 ms)\n", (long long)cold, (long long)warm);
    CHECKF(cold < H_MS(5000), "cold: took %lld ms", (long long)cold);
    CHECKF(warm < H_MS(2500), "warm: took %lld ms", (long long)warm);
    sb_conn_close(c);
}

/* Submit n requests of sql with flags on c, each one giving its backend's
** pid; wait for them (after `busy`, which keep the pool busy meanwhile)
** and return how many distinct pids served them. */
static int pids_serving(sb_conn *c, sb_req **busy, int nbusy, const char *sql, unsigned flags, int n)
{
    sb_req *rs[8];
    int64_t pids[8];
    int i, j, distinct = 0;
    for (i = 0; i < n; i++) {
        rs[i] = h_submit(c, NULL, sql, NULL, 0, flags, 0);
        if (!rs[i]) { h_fail(__FILE__, __LINE__, "submit returned NULL"); return -1; }
    }
    CHECK_INT(h_poll_all(c, rs, n, H_MS(20000)), ==, 0);
    CHECK_INT(h_poll_all(c, busy, nbusy, H_MS(20000)), ==, 0);
    for (i = 0; i < nbusy; i++) sb_req_free(busy[i]);
    for (i = 0; i < n; i++) {
        const sb_value *v = h_cell(rs[i], 0, 0);
        CHECKF(v && v->type == SB_INT, "request %d: %s", i, h_errstr(rs[i]));
        pids[i] = v ? v->u.i : -1;
        for (j = 0; j < i && pids[j] != pids[i]; j++) continue;
        distinct += j == i;
        sb_req_free(rs[i]);
    }
    return distinct;
}

/* With every connection of a full pool busy, the reads one scheduler
** step submits (SB_Q_DEFER) go out packed on one connection, so its
** backend wakes once for them; writes, and reads sent at once, still
** spread over the least busy connections. */
TEST(pg_reads_packed)
{
    enum { NBUSY = 16 };
    static const struct { int write; unsigned flags; int pids; } rounds[] = {
        { 0, SB_Q_DEFER, 1 },  /* a step's reads: one batch */
        { 1, SB_Q_DEFER, 2 },  /* a step's writes: spread */
        { 0, 0, 2 },           /* reads sent at once: spread */
    };
    sb_conn *c;
    sb_req *busy[NBUSY];
    char ins[128];
    int i, round, up = 0;
    NEED_PG();
    c = pg_open(2);
    REQUIRE(c);
    execf(c, "CREATE TABLE %s (x serial PRIMARY KEY)", tname("pack"));
    /* both connections up: two slow reads at once ran on two backends (a
    ** connect under valgrind may outlast the first tries) */
    for (i = 0; i < 20 && up < 2; i++)
        up = pids_serving(c, NULL, 0, "SELECT pg_backend_pid() FROM pg_sleep(0.2)", 0, 2);
    CHECK_INT(up, ==, 2);
    snprintf(ins, sizeof ins, "INSERT INTO %s DEFAULT VALUES RETURNING pg_backend_pid()", tname("pack"));
    for (round = 0; round < (int)H_COUNT(rounds); round++) {
        /* 8 in flight on each connection */
        for (i = 0; i < NBUSY; i++) busy[i] = h_submit(c, NULL, "SELECT pg_sleep(0.02)", NULL, 0, 0, 0);
        CHECKF(pids_serving(c, busy, NBUSY, rounds[round].write ? ins : "SELECT pg_backend_pid()",
                            rounds[round].flags, 8) == rounds[round].pids,
               "round %d: 8 requests not served by %d backend(s)", round, rounds[round].pids);
    }
    execf(c, "DROP TABLE %s", tname("pack"));
    sb_conn_close(c);
}

TEST(pg_poll_loop_fd_stable)
{
    enum { N = 40 };
    sb_conn *c;
    sb_req *rs[N];
    sb_value pv[N];
    int i, fd;
    uintptr_t tags[N];
    size_t nt = 0, k;
    NEED_PG();
    c = pg_open(3);
    REQUIRE(c);
    fd = sb_conn_fd(c);     /* before any connection is up */
    CHECK(fd >= 0);
    for (i = 0; i < N; i++) {
        pv[i] = vint(i);
        rs[i] = h_submit(c, NULL, "SELECT $1::int8 * 3", &pv[i], 1, 0, 0);
        REQUIRE(rs[i]);
        sb_req_set_tag(rs[i], (uintptr_t)(i + 1));
    }
    CHECK_INT(h_poll_all(c, rs, N, H_MS(20000)), ==, 0);
    CHECK_INT(sb_conn_fd(c), ==, fd);
    for (i = 0; i < N; i++) {
        const sb_value *v = h_cell(rs[i], 0, 0);
        CHECKF(v && v->type == SB_INT && v->u.i == 3 * i, "request %d: %s", i, h_errstr(rs[i]));
    }
    while ((k = sb_conn_reap(c, tags + nt, N - nt)) > 0 && nt < N) nt += k;
    CHECK_INT(nt, ==, N);
    for (i = 0; i < N; i++) sb_req_free(rs[i]);
    /* idle: once the rest of the pool has connected, the fd goes quiet
    ** after a step (a loop does not spin on it) */
    {
        int64_t end = h_now_ms() + H_MS(5000);
        int quiet = 0;
        while (!quiet && h_now_ms() < end) {
            struct pollfd p = { fd, POLLIN, 0 };
            sb_conn_step(c);
            quiet = poll(&p, 1, 50) == 0;
        }
        CHECKF(quiet, "the fd of an idle pool stays readable: a loop would spin");
        CHECK_INT(sb_conn_timeout(c), ==, -1);
    }
    sb_conn_close(c);
}

/* ----------------------------------------------- timeouts, close, cancel */

TEST(pg_request_timeout)
{
    sb_conn *c;
    sb_req *r;
    int64_t t0;
    NEED_PG();
    c = pg_open(1);
    REQUIRE(c);
    CHECK_INT(SCALAR(c, "SELECT 1"), ==, 1);
    t0 = h_now_ms();
    r = h_submit(c, NULL, "SELECT pg_sleep(10)", NULL, 0, 0, 300);
    REQUIRE(r);
    CHECK_INT(h_poll_all(c, &r, 1, H_MS(8000)), ==, 0);
    CHECK_ERR(r, SB_E_TIMEOUT);
    CHECKF(h_now_ms() - t0 < H_MS(3000), "timeout after %lld ms", (long long)(h_now_ms() - t0));
    h_note("timed out after %lld ms: %s", (long long)(h_now_ms() - t0), h_errstr(r));
    sb_req_free(r);
    /* the pool (of one) is usable again soon */
    t0 = h_now_ms();
    CHECK_INT(SCALAR(c, "SELECT 2"), ==, 2);
    CHECKF(h_now_ms() - t0 < H_MS(3000), "next query took %lld ms", (long long)(h_now_ms() - t0));
    sb_conn_close(c);
}

TEST(pg_close_in_flight)
{
    sb_conn *c;
    sb_req *rs[5];
    int i;
    int64_t t0;
    NEED_PG();
    c = pg_open(2);
    REQUIRE(c);
    CHECK_INT(SCALAR(c, "SELECT 1"), ==, 1);
    for (i = 0; i < 5; i++) {
        rs[i] = h_submit(c, NULL, "SELECT pg_sleep(10)", NULL, 0, 0, 0);
        REQUIRE(rs[i]);
    }
    t0 = h_now_ms();
    while (h_now_ms() - t0 < 200) {
        struct pollfd p = { sb_conn_fd(c), POLLIN, 0 };
        poll(&p, 1, 20);
        sb_conn_step(c);
    }
    t0 = h_now_ms();
    sb_conn_close(c);
    CHECKF(h_now_ms() - t0 < H_MS(1000), "close took %lld ms", (long long)(h_now_ms() - t0));
    for (i = 0; i < 5; i++) {
        CHECK_ERR(rs[i], SB_E_CLOSED);
        sb_req_free(rs[i]);
    }
}

TEST(pg_cancel)
{
    sb_conn *c;
    sb_req *r;
    int64_t t0;
    NEED_PG();
    c = pg_open(1);
    REQUIRE(c);
    CHECK_INT(SCALAR(c, "SELECT 1"), ==, 1);
    r = h_submit(c, NULL, "SELECT pg_sleep(10)", NULL, 0, 0, 0);
    REQUIRE(r);
    sb_conn_wait(c, r, 200);
    t0 = h_now_ms();
    sb_req_cancel(r, SB_E_TIMEOUT);
    CHECK_INT(sb_conn_wait(c, r, H_MS(3000)), ==, SB_OK);
    CHECK_ERR(r, SB_E_TIMEOUT);
    sb_req_free(r);
    CHECK_INT(SCALAR(c, "SELECT 4"), ==, 4);
    CHECKF(h_now_ms() - t0 < H_MS(3000), "cancel + next query took %lld ms",
           (long long)(h_now_ms() - t0));
    /* free an unfinished request, then the connection is still fine */
    r = h_submit(c, NULL, "SELECT pg_sleep(10)", NULL, 0, 0, 0);
    sb_conn_wait(c, r, 100);
    sb_req_free(r);
    t0 = h_now_ms();
    CHECK_INT(SCALAR(c, "SELECT 5"), ==, 5);
    CHECKF(h_now_ms() - t0 < H_MS(3000), "query after a freed request took %lld ms",
           (long long)(h_now_ms() - t0));
    sb_conn_close(c);
}

/* ---------------------------------------------------- connections, auth */

TEST(pg_wrong_password)
{
    const char *u, *pw, *at;
    char bad[1024];
    const char *wrong = "sb-wrong-PW-91ac";
    sb_conn *c;
    sb_options o;
    sb_req *r;
    int64_t t0;
    NEED_PG();
    u = pg_url();
    pw = pg_password();
    REQUIREF(*pw, "SB_TEST_PG_URL has no password to replace");
    at = strstr(u, pw);
    REQUIRE(at);
    snprintf(bad, sizeof bad, "%.*s%s%s", (int)(at - u), u, wrong, at + strlen(pw));
    sb_options_init(&o);
    o.pool = 2;
    c = OPEN(bad, &o);
    REQUIRE(c);
    CHECKF(!strstr(sb_conn_url(c), wrong), "sb_conn_url shows the password: %s", sb_conn_url(c));
    r = h_submit(c, NULL, "SELECT 1", NULL, 0, 0, 0);
    REQUIRE(r);
    t0 = h_now_ms();
    CHECK_INT(sb_conn_wait(c, r, H_MS(15000)), ==, SB_OK);
    CHECK_ERR(r, SB_E_CONNECTION);
    h_note("failed after %lld ms", (long long)(h_now_ms() - t0));
    if (sb_req_status(r) == SB_ERR) {
        const sb_error *e = sb_req_error(r);
        const char *m = sb_error_message(e), *d = sb_error_detail(e);
        CHECKF(!strstr(m, wrong) && !strstr(m, pw), "the message has the password: %s", m);
        CHECKF(!d || (!strstr(d, wrong) && !strstr(d, pw)), "the detail has the password: %s", d);
        CHECKF(!strstr(m, "password=") && !strstr(m, "postgresql://"),
               "the message has the conninfo: %s", m);
        h_note("%s", h_errstr(r));
    }
    sb_req_free(r);
    sb_conn_close(c);
}

/* Broken connections are replaced: kill the pool's backends, and queries
** work again (the first ones may fail with class connection). */
TEST(pg_reconnect)
{
    char url[1024], killsql[512], app[64];
    sb_conn *c, *admin;
    int i, ok = 0, conn_err = 0, other = 0;
    NEED_PG();
    snprintf(app, sizeof app, "sbctest_%d", (int)getpid());
    snprintf(url, sizeof url, "%s%sapplication_name=%s", pg_url(),
             strchr(pg_url(), '?') ? "&" : "?", app);
    {
        sb_options o;
        sb_options_init(&o);
        o.pool = 2;
        c = OPEN(url, &o);
    }
    REQUIRE(c);
    admin = pg_open(1);
    REQUIRE(admin);
    CHECK_INT(SCALAR(c, "SELECT 1"), ==, 1);
    snprintf(killsql, sizeof killsql,
             "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
             "WHERE application_name = '%s'", app);
    {
        int64_t n = SCALAR(admin, killsql);
        CHECKF(n >= 1, "no backend of the pool to terminate (%lld)", (long long)n);
    }
    usleep(100 * 1000);
    for (i = 0; i < 10; i++) {
        sb_req *r = h_run(c, "SELECT 6", NULL, 0);
        if (sb_req_status(r) == SB_OK) ok++;
        else if (h_class(r) == SB_E_CONNECTION) conn_err++;
        else { other++; h_note("unexpected: %s", h_errstr(r)); }
        sb_req_free(r);
        if (ok >= 3) break;
        usleep(100 * 1000);
    }
    h_note("after killing the backends: %d ok, %d connection errors, %d others", ok, conn_err, other);
    CHECK_INT(ok, >=, 3);
    CHECK_INT(other, ==, 0);
    sb_conn_close(admin);
    sb_conn_close(c);
}

/* prepare = 0 (pgbouncer transaction pooling): unnamed statements only. */
TEST(pg_no_prepare)
{
    sb_options o;
    sb_conn *c;
    sb_value p = vint(4);
    int i;
    NEED_PG();
    sb_options_init(&o);
    o.prepare = 0;
    o.pool = 2;
    c = OPEN(pg_url(), &o);
    REQUIRE(c);
    for (i = 0; i < 20; i++) {
        sb_req *r = h_run(c, "SELECT $1 * $1", &p, 1);
        const sb_value *v = h_cell(r, 0, 0);
        CHECKF(v && v->type == SB_INT && v->u.i == 16, "run %d: %s", i, h_errstr(r));
        sb_req_free(r);
    }
    CHECK_INT(SCALAR(c, "SELECT count(*) FROM pg_prepared_statements"), ==, 0);
    sb_conn_close(c);
}

/* With prepare on, statements are prepared once per connection. */
TEST(pg_prepared_statements)
{
    sb_conn *c;
    sb_session *s;
    sb_value p;
    int i;
    NEED_PG();
    c = pg_open(1);
    REQUIRE(c);
    s = sb_session_open(c);
    REQUIRE(s);
    for (i = 0; i < 20; i++) {
        sb_req *r;
        const sb_value *v;
        p = vint(i);
        r = h_run_s(c, s, "SELECT $1 + 100", &p, 1);
        v = h_cell(r, 0, 0);
        CHECKF(v && v->type == SB_INT && v->u.i == i + 100, "run %d: %s", i, h_errstr(r));
        sb_req_free(r);
    }
    {
        int64_t n = SCALAR_S(c, s, "SELECT count(*) FROM pg_prepared_statements "
                                   "WHERE statement = 'SELECT $1 + 100'");
        CHECKF(n == 1, "SELECT $1 + 100 is prepared %lld times on its connection", (long long)n);
    }
    sb_session_close(s);
    sb_conn_close(c);
}

static const h_test tests[] = {
    T(pg_reachable),
    T(pg_typed_params),
    T(pg_type_mapping),
    T(pg_bytea_roundtrip),
    T(pg_errors),
    T(pg_error_mid_pipeline),
    T(pg_session_isolation),
    T(pg_chain),
    T(pg_group),
    T(pg_pipelining_pool8),
    T(pg_reads_packed),
    T(pg_poll_loop_fd_stable),
    T(pg_request_timeout),
    T(pg_close_in_flight),
    T(pg_cancel),
    T(pg_wrong_password),
    T(pg_reconnect),
    T(pg_no_prepare),
    T(pg_prepared_statements),
};

int main(int argc, char **argv)
{
    return h_main(argc, argv, tests, H_COUNT(tests));
}
