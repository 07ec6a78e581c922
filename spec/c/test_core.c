/*
** spec/c/test_core.c - tests of the core that need no database server:
** options, error class names, URL parsing and redaction, NULL-safety of the
** close/free functions, and the allocator hook (leak count and injected
** allocation failures).
**
** Owns: nothing but these tests.  Uses sb.h only.
*/
#include "harness.h"

#include <stdatomic.h>

/* ------------------------------------------------------------ options */

TEST(options_defaults)
{
    sb_options o;
    memset(&o, 0x5a, sizeof o);
    sb_options_init(&o);
    CHECK_INT(o.pool, ==, 16);
    CHECK_INT(o.readers, ==, 2);
    CHECK_INT(o.busy_timeout_ms, ==, 5000);
    CHECK_INT(o.statement_cache, ==, 64);
    CHECK_INT(o.prepare, ==, 1);
    CHECK_INT(o.synchronous_full, ==, 0);
    CHECK_INT(o.connect_timeout_ms, ==, 10000);
}

TEST(errclass_names)
{
    CHECK_STR(sb_errclass_name(SB_E_NONE), "none");
    CHECK_STR(sb_errclass_name(SB_E_CONSTRAINT), "constraint");
    CHECK_STR(sb_errclass_name(SB_E_SYNTAX), "syntax");
    CHECK_STR(sb_errclass_name(SB_E_BUSY), "busy");
    CHECK_STR(sb_errclass_name(SB_E_TIMEOUT), "timeout");
    CHECK_STR(sb_errclass_name(SB_E_CONNECTION), "connection");
    CHECK_STR(sb_errclass_name(SB_E_SERIALIZATION), "serialization");
    CHECK_STR(sb_errclass_name(SB_E_CLOSED), "closed");
    CHECK_STR(sb_errclass_name(SB_E_MISUSE), "misuse");
    CHECK_STR(sb_errclass_name(SB_E_OTHER), "other");
    CHECK(strcmp(SB_VERSION, "") != 0);
}

TEST(null_is_noop)
{
    sb_conn_close(NULL);
    sb_req_free(NULL);
    sb_session_close(NULL);
    sb_error_free(NULL);
    CHECK(1);
}

/* ---------------------------------------------------------------- URLs */

static void check_bad_url(const char *url)
{
    sb_error *err = NULL;
    sb_conn *c = sb_conn_open(url, NULL, &err);
    CHECKF(c == NULL, "sb_conn_open(\"%s\") should fail", url);
    CHECKF(err != NULL, "sb_conn_open(\"%s\") failed without an error", url);
    if (err) {
        CHECKF(sb_error_class(err) == SB_E_MISUSE, "\"%s\": class %s, want misuse (%s)", url,
               sb_errclass_name(sb_error_class(err)), sb_error_message(err));
        CHECKF(sb_error_message(err) && *sb_error_message(err), "\"%s\": empty message", url);
        CHECK(sb_error_sqlstate(err) != NULL && strlen(sb_error_sqlstate(err)) == 5);
    }
    sb_error_free(err);
    sb_conn_close(c);
    /* err may be NULL */
    c = sb_conn_open(url, NULL, NULL);
    CHECK(c == NULL);
    sb_conn_close(c);
}

TEST(bad_urls)
{
    check_bad_url("");
    check_bad_url("mysql://localhost/db");
    check_bad_url("nonsense");
    check_bad_url("postgresql://[::1");
    check_bad_url("host='unterminated");
}

TEST(sqlite_url_forms)
{
    const char *p = h_path("forms.db");
    char u1[700], u2[700];
    sb_conn *c;
    snprintf(u1, sizeof u1, "sqlite:%s", p);
    snprintf(u2, sizeof u2, "sqlite://%s", p);

    c = OPEN("sqlite::memory:", NULL);
    REQUIRE(c);
    CHECK_STR(sb_conn_backend(c), "sqlite");
    CHECK(sb_conn_url(c) != NULL);
    CHECK_INT(SCALAR(c, "SELECT 40 + 2"), ==, 42);
    sb_conn_close(c);

    c = OPEN(u1, NULL);
    REQUIRE(c);
    CHECK_STR(sb_conn_backend(c), "sqlite");
    EXEC(c, "CREATE TABLE t(x)");
    EXEC(c, "INSERT INTO t VALUES (7)");
    sb_conn_close(c);
    CHECKF(access(p, F_OK) == 0, "%s was not created", p);

    /* the same file through sqlite:// */
    c = OPEN(u2, NULL);
    REQUIRE(c);
    CHECK_INT(SCALAR(c, "SELECT x FROM t"), ==, 7);
    sb_conn_close(c);
}

/* Open a PostgreSQL URL whose server cannot be reached (port 1): open must
** not block, the URL must be redacted, and the request's error must be of
** class connection and never contain the password. */
static void check_pg_redaction(const char *url, const char *secret)
{
    sb_options o;
    sb_conn *c;
    sb_req *r;
    const char *shown;
    int64_t t0 = h_now_ms();

    sb_options_init(&o);
    o.pool = 1;
    o.connect_timeout_ms = 2000;
    c = OPEN(url, &o);
    if (!c) return;
    CHECKF(h_now_ms() - t0 < 1000, "sb_conn_open blocked for %lld ms",
           (long long)(h_now_ms() - t0));
    CHECK_STR(sb_conn_backend(c), "postgresql");
    shown = sb_conn_url(c);
    CHECK(shown != NULL);
    if (shown) {
        CHECKF(strstr(shown, secret) == NULL, "sb_conn_url shows the password: %s", shown);
        CHECKF(strstr(shown, "***") != NULL, "sb_conn_url has no *** in place of the password: %s",
               shown);
        h_note("%s -> %s", "url", shown);
    }
    r = h_submit(c, NULL, "SELECT 1", NULL, 0, 0, 0);
    REQUIRE(r);
    CHECK_INT(sb_conn_wait(c, r, H_MS(15000)), ==, SB_OK);
    CHECK_ERR(r, SB_E_CONNECTION);
    if (sb_req_status(r) == SB_ERR) {
        const sb_error *e = sb_req_error(r);
        CHECKF(!strstr(sb_error_message(e), secret), "message has the password: %s",
               sb_error_message(e));
        CHECKF(!sb_error_detail(e) || !strstr(sb_error_detail(e), secret),
               "detail has the password: %s", sb_error_detail(e));
        CHECK_STR(sb_error_backend(e), "postgresql");
        h_note("error: %s", h_errstr(r));
    }
    sb_req_free(r);
    sb_conn_close(c);
}

TEST(pg_url_redacted)
{
    check_pg_redaction("postgresql://alice:s3cr3t-PW-x1@127.0.0.1:1/db", "s3cr3t-PW-x1");
    check_pg_redaction("postgres://alice:s3cr3t-PW-x2@127.0.0.1:1/db?sslmode=disable",
                       "s3cr3t-PW-x2");
    check_pg_redaction("host=127.0.0.1 port=1 dbname=db user=alice password=s3cr3t-PW-x3",
                       "s3cr3t-PW-x3");
    check_pg_redaction("postgresql://127.0.0.1:1/db?user=alice&password=s3cr3t-PW-x4",
                       "s3cr3t-PW-x4");
    check_pg_redaction("postgresql://alice:p%40ss-PW-x5@127.0.0.1:1/db", "ss-PW-x5");
    check_pg_redaction("postgresql://alice:s3cr3t-PW-x6@127.0.0.1:1,127.0.0.1:2/db"
                       "?target_session_attrs=read-write", "s3cr3t-PW-x6");
}

/* Closing a PostgreSQL database that is still connecting must not block. */
TEST(pg_close_while_connecting)
{
    /* 192.0.2.1 (TEST-NET-1) never answers: the connect hangs. */
    sb_options o;
    sb_conn *c;
    sb_req *r;
    int64_t t0;
    sb_options_init(&o);
    o.pool = 2;
    c = OPEN("postgresql://u:pw@192.0.2.1:5432/db", &o);
    REQUIRE(c);
    r = h_submit(c, NULL, "SELECT 1", NULL, 0, 0, 0);
    REQUIRE(r);
    CHECK_INT(sb_conn_step(c), ==, SB_OK);
    t0 = h_now_ms();
    sb_conn_close(c);
    CHECKF(h_now_ms() - t0 < H_MS(1000), "close took %lld ms", (long long)(h_now_ms() - t0));
    /* Closed under it, unless the connect already failed (no route). */
    CHECKF(sb_req_status(r) == SB_ERR &&
           (h_class(r) == SB_E_CLOSED || h_class(r) == SB_E_CONNECTION),
           "want closed (or connection), got %s", h_errstr(r));
    sb_req_free(r);
}

/* ----------------------------------------------------------- allocator */

static atomic_long a_live, a_count, a_fail_at, a_failed;

static void *a_malloc(size_t n)
{
    long k = atomic_fetch_add(&a_count, 1) + 1;
    void *p;
    if (atomic_load(&a_fail_at) && k == atomic_load(&a_fail_at)) {
        atomic_fetch_add(&a_failed, 1);
        return NULL;
    }
    p = malloc(n);
    if (p) atomic_fetch_add(&a_live, 1);
    return p;
}

static void *a_realloc(void *p, size_t n)
{
    long k;
    if (!p) return a_malloc(n);
    k = atomic_fetch_add(&a_count, 1) + 1;
    if (atomic_load(&a_fail_at) && k == atomic_load(&a_fail_at)) {
        atomic_fetch_add(&a_failed, 1);
        return NULL;
    }
    return realloc(p, n);
}

static void a_free(void *p)
{
    if (p) {
        atomic_fetch_sub(&a_live, 1);
        free(p);
    }
}

/* One small workload: open, a write, a parameterized read, close. */
static int workload(const char *url, int strict)
{
    sb_error *err = NULL;
    sb_conn *c = sb_conn_open(url, NULL, &err);
    sb_value p[2];
    sb_req *r1, *r2;
    int ok = 1;
    if (!c) {
        if (strict) h_fail(__FILE__, __LINE__, "open: %s", err ? sb_error_message(err) : "?");
        sb_error_free(err);
        return 0;
    }
    p[0] = vint(5);
    p[1] = vtext("five");
    r1 = h_submit(c, NULL, "CREATE TABLE IF NOT EXISTS w(a, b)", NULL, 0, 0, 0);
    r2 = h_submit(c, NULL, "SELECT $1 * 2, $2, $1", p, 2, 0, 0);
    if (r1) h_wait(c, r1);
    if (r2) h_wait(c, r2);
    if (!r1 || sb_req_status(r1) != SB_OK) ok = 0;
    if (!r2 || sb_req_status(r2) != SB_OK) ok = 0;
    if (strict) {
        CHECK_OK(r1);
        CHECK_OK(r2);
        if (r2 && sb_req_status(r2) == SB_OK) {
            const sb_value *v = h_cell(r2, 0, 0);
            CHECK(v && v->type == SB_INT && v->u.i == 10);
        }
    } else {
        /* under injected failures a request fails or succeeds, never hangs */
        if (r1) CHECK(sb_req_status(r1) != SB_PENDING);
        if (r2) CHECK(sb_req_status(r2) != SB_PENDING);
        if (r2 && sb_req_status(r2) == SB_ERR) CHECK(sb_req_error(r2) != NULL);
    }
    sb_req_free(r1);
    sb_req_free(r2);
    sb_conn_close(c);
    return ok;
}

TEST(allocator_no_leaks)
{
    sb_options o;
    sb_conn *c;
    sb_req *r;
    if (!h_forked) SKIP("sb_set_allocator must come first: needs a fresh (forked) process");
    sb_set_allocator(a_malloc, a_realloc, a_free);
    CHECK(workload("sqlite::memory:", 1));
    CHECK(workload(h_sqlite_url("alloc.db"), 1));
    CHECKF(atomic_load(&a_count) > 0, "the core made no allocation through the hook");
    CHECKF(atomic_load(&a_live) == 0, "%ld core allocations still live after close (leak)",
           atomic_load(&a_live));

    /* PostgreSQL side: open, a failing request, close. */
    sb_options_init(&o);
    o.connect_timeout_ms = 1000;
    c = OPEN("postgresql://u:pw@127.0.0.1:1/db", &o);
    if (c) {
        r = h_submit(c, NULL, "SELECT $1", NULL, 0, 0, 0);
        h_wait(c, r);
        sb_req_free(r);
        sb_conn_close(c);
    }
    CHECKF(atomic_load(&a_live) == 0, "%ld core allocations live after a PostgreSQL open/close",
           atomic_load(&a_live));
    sb_set_allocator(NULL, NULL, NULL);
}

TEST(allocator_failures)
{
    long n, nok = 0, max = 400;
    if (!h_forked) SKIP("sb_set_allocator must come first: needs a fresh (forked) process");
    sb_set_allocator(a_malloc, a_realloc, a_free);
    /* How many allocations does one workload make? */
    atomic_store(&a_count, 0);
    workload("sqlite::memory:", 1);
    if (atomic_load(&a_count) + 10 < max) max = atomic_load(&a_count) + 10;
    h_note("one workload makes %ld core allocations; failing each of 1..%ld in turn",
           atomic_load(&a_count), max);
    for (n = 1; n <= max; n++) {
        atomic_store(&a_count, 0);
        atomic_store(&a_fail_at, n);
        nok += workload("sqlite::memory:", 0);
        atomic_store(&a_fail_at, 0);
        CHECKF(atomic_load(&a_live) == 0, "failing allocation #%ld leaks %ld allocations", n,
               atomic_load(&a_live));
        if (atomic_load(&a_live) != 0) break;
    }
    h_note("%ld of %ld runs still succeeded; %ld allocations failed", nok, max,
           atomic_load(&a_failed));
    sb_set_allocator(NULL, NULL, NULL);
}

static const h_test tests[] = {
    T(options_defaults),
    T(errclass_names),
    T(null_is_noop),
    T(bad_urls),
    T(sqlite_url_forms),
    T(pg_url_redacted),
    T(pg_close_while_connecting),
    T(allocator_no_leaks),
    T(allocator_failures),
};

int main(int argc, char **argv)
{
    return h_main(argc, argv, tests, H_COUNT(tests));
}
