/*
** spec/fault/oom.c - fault 6 of issue #6: out of memory, the Nth
** allocation fails.
**
** Owns: a counting allocator installed as BOTH the core's hook
** (sb_set_allocator) and SQLite's (sqlite3_config(SQLITE_CONFIG_MALLOC)),
** for this test program only; the library's normal path never does this.
** For each backend and each operation (open, query, transaction, close) it
** runs the operation with allocation number N failing (one shot), for
** N = 1, 2, ... until a run in which the Nth allocation never came (the
** operation then ran with no failure and must have succeeded).  Every run
** must end in success or a clean error (a class, a SQLSTATE, a message),
** without a crash; afterwards the same database must still answer
** (SELECT 1), and once everything is closed, the number of live blocks of
** both hooks must be what it was before the run (no leak).  libpq
** allocates with plain malloc (no hook): on PostgreSQL only the core's
** allocations fail; valgrind/ASan cover libpq's side.
**
** Usage: build/fault/oom [sqlite|pg]...   (PostgreSQL: SB_TEST_PG_URL)
** Writes its row for scripts/fault-run to $SB_FAULT_ROWS/f6_oom.
*/
#include "sb.h"

#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_N 20000   /* bound on N per operation */
#define WAIT_MS 20000 /* bound on any one request */

/* ------------------------------------------------------------ allocator */

static atomic_long nalloc;      /* allocation attempts since arm() */
static atomic_long fail_at;     /* the attempt that fails; 0: none */
static atomic_int fired;        /* the failure happened */
static atomic_long live_core, live_sqlite;

static int should_fail(void)
{
    long at = atomic_load(&fail_at);
    if (!at) return 0;
    if (atomic_fetch_add(&nalloc, 1) + 1 != at) return 0;
    atomic_store(&fired, 1);
    return 1;
}

static void arm(long n)
{
    atomic_store(&nalloc, 0);
    atomic_store(&fired, 0);
    atomic_store(&fail_at, n);
}

static void disarm(void) { atomic_store(&fail_at, 0); }

static void *core_malloc(size_t n)
{
    if (should_fail()) return NULL;
    void *p = malloc(n);
    if (p) atomic_fetch_add(&live_core, 1);
    return p;
}

static void *core_realloc(void *p, size_t n)
{
    if (should_fail()) return NULL;
    void *q = realloc(p, n);
    if (q && !p) atomic_fetch_add(&live_core, 1);
    return q;
}

static void core_free(void *p)
{
    if (!p) return;
    atomic_fetch_sub(&live_core, 1);
    free(p);
}

/* SQLite wants xSize: keep the size in a 16-byte header. */
#define HDR 16
static void *sq_malloc(int n)
{
    if (should_fail()) return NULL;
    char *b = malloc((size_t)n + HDR);
    if (!b) return NULL;
    memcpy(b, &n, sizeof n);
    atomic_fetch_add(&live_sqlite, 1);
    return b + HDR;
}

static void sq_free(void *p)
{
    if (!p) return;
    atomic_fetch_sub(&live_sqlite, 1);
    free((char *)p - HDR);
}

static void *sq_realloc(void *p, int n)
{
    if (should_fail()) return NULL;
    char *b = realloc((char *)p - HDR, (size_t)n + HDR);
    if (!b) return NULL;
    memcpy(b, &n, sizeof n);
    return b + HDR;
}

static int sq_size(void *p)
{
    int n;
    memcpy(&n, (char *)p - HDR, sizeof n);
    return n;
}

static int sq_roundup(int n) { return (n + 7) & ~7; }
static int sq_init(void *x) { (void)x; return SQLITE_OK; }
static void sq_shutdown(void *x) { (void)x; }

static const sqlite3_mem_methods sq_methods = {
    sq_malloc, sq_free, sq_realloc, sq_size, sq_roundup, sq_init, sq_shutdown, NULL
};

/* --------------------------------------------------------------- checks */

static int failures;
static long total_runs, clean_errors, leaked;

#define FAILF(...) do { failures++; printf("FAIL: " __VA_ARGS__); printf("\n"); fflush(stdout); } while (0)

/* A clean error: a class other than "none", a 5-char SQLSTATE, a message. */
static int clean(const sb_error *e)
{
    return e && sb_error_class(e) != SB_E_NONE && strlen(sb_error_sqlstate(e)) == 5 &&
           sb_error_message(e) && sb_error_message(e)[0];
}

/* Run sql (params: none) on c, optionally in session s; SB_OK/SB_ERR;
** *clean_out tells whether a failure was a clean error. */
static int run(sb_conn *c, sb_session *s, const char *sql, int *clean_out)
{
    sb_query q = { sql, strlen(sql), NULL, 0, s, 0, 0 };
    sb_req *r = sb_conn_submit(c, &q);
    *clean_out = 1;
    if (!r) return SB_ERR;  /* OOM reported by NULL: clean per sb.h */
    if (sb_conn_wait(c, r, WAIT_MS) != SB_OK) {
        FAILF("request hung: %s", sql);
        sb_req_free(r);
        return SB_ERR;
    }
    int st = sb_req_status(r);
    if (st == SB_ERR) *clean_out = clean(sb_req_error(r));
    if (st == SB_OK && !sb_req_result(r)) *clean_out = 0;
    sb_req_free(r);
    return st == SB_OK ? SB_OK : SB_ERR;
}

static sb_conn *open_db(const char *url, sb_error **err)
{
    sb_options o;
    sb_options_init(&o);
    o.pool = 1;
    o.readers = 1;
    return sb_conn_open(url, &o, err);
}

/* ----------------------------------------------------------- operations */

static const char *QUERY =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 40) "
    "SELECT x, 'row ' || x AS s, x * 1.5 AS f FROM c";

enum { OP_OPEN, OP_QUERY, OP_TX, OP_CLOSE };
static const char *const OPNAME[] = { "open", "query", "transaction", "close" };

/* One run of op with allocation n failing (0: none).  Returns 1 if the
** operation succeeded. */
static int one_run(const char *url, int op, long n, int *was_clean)
{
    sb_error *err = NULL;
    sb_conn *c = NULL;
    int ok = 0, cl = 1;
    *was_clean = 1;
    if (op == OP_OPEN) {
        arm(n);
        c = open_db(url, &err);
        if (c) ok = run(c, NULL, "SELECT 1", &cl) == SB_OK;
        else cl = clean(err);
        disarm();
        sb_error_free(err);
        *was_clean = cl;
        if (c) {
            int cl2;
            if (run(c, NULL, "SELECT 1", &cl2) != SB_OK) FAILF("open N=%ld: db does not answer afterwards", n);
        }
        sb_conn_close(c);
        return ok;
    }
    c = open_db(url, &err);
    if (!c) {
        FAILF("setup open failed: %s", err ? sb_error_message(err) : "?");
        sb_error_free(err);
        return 1;
    }
    if (run(c, NULL, "CREATE TABLE IF NOT EXISTS oom_t (id INTEGER, s TEXT)", &cl) != SB_OK)
        FAILF("setup: create table failed");
    if (op == OP_QUERY) {
        arm(n);
        ok = run(c, NULL, QUERY, &cl) == SB_OK;
        disarm();
    } else if (op == OP_TX) {
        arm(n);
        sb_session *s = sb_session_open(c);
        if (s) {
            int c1 = 1, c2 = 1, c3 = 1;
            ok = run(c, s, "BEGIN", &c1) == SB_OK &&
                 run(c, s, "INSERT INTO oom_t VALUES (1, 'one')", &c2) == SB_OK &&
                 run(c, s, "COMMIT", &c3) == SB_OK;
            cl = c1 && c2 && c3;
            sb_session_close(s);
        }
        disarm();
    } else {  /* OP_CLOSE */
        if (run(c, NULL, QUERY, &cl) != SB_OK) FAILF("setup query failed");
        arm(n);
        sb_conn_close(c);
        disarm();
        return 1;
    }
    *was_clean = cl;
    int cl2;
    if (run(c, NULL, "SELECT 1", &cl2) != SB_OK) FAILF("%s N=%ld: db does not answer afterwards", OPNAME[op], n);
    sb_conn_close(c);
    return ok;
}

static long max_n_seen;

static void run_op(const char *backend, const char *url, int op)
{
    long n;
    for (n = 1; n <= MAX_N; n++) {
        long before_core = atomic_load(&live_core), before_sq = atomic_load(&live_sqlite);
        int was_clean;
        int ok = one_run(url, op, n, &was_clean);
        int hit = atomic_load(&fired);
        total_runs++;
        if (!was_clean) FAILF("%s %s N=%ld: failed without a clean error", backend, OPNAME[op], n);
        else if (!ok) clean_errors++;
        long dc = atomic_load(&live_core) - before_core, ds = atomic_load(&live_sqlite) - before_sq;
        leaked += labs(dc) + labs(ds);
        if (dc || ds) FAILF("%s %s N=%ld: leaked %ld core and %ld SQLite blocks", backend, OPNAME[op], n, dc, ds);
        if (!hit) {
            if (!ok) FAILF("%s %s: failed with no allocation failing", backend, OPNAME[op]);
            break;
        }
        if (failures > 20) break;
    }
    if (n > MAX_N) FAILF("%s %s: still failing at N=%d", backend, OPNAME[op], MAX_N);
    if (n > max_n_seen) max_n_seen = n;
    printf("%s %-11s: %ld runs (allocations 1..%ld failed in turn), ok\n", backend, OPNAME[op], n, n - 1);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &sq_methods) != SQLITE_OK) {
        printf("FAIL: sqlite3_config(SQLITE_CONFIG_MALLOC) refused\n");
        return 1;
    }
    sqlite3_initialize();
    sb_set_allocator(core_malloc, core_realloc, core_free);

    const char *tmp = getenv("SB_TEST_TMP");
    char path[512];
    snprintf(path, sizeof path, "sqlite:%s/oom-%ld.db", tmp && *tmp ? tmp : "/tmp", (long)getpid());
    const char *pg = getenv("SB_TEST_PG_URL");
    int want_sqlite = argc < 2, want_pg = argc < 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "sqlite")) want_sqlite = 1;
        if (!strcmp(argv[i], "pg")) want_pg = 1;
    }
    int ops = 0;
    for (int op = OP_OPEN; op <= OP_CLOSE; op++) {
        if (want_sqlite) { run_op("sqlite", path, op); ops++; }
        if (want_pg) {
            if (!pg || !*pg) { FAILF("SB_TEST_PG_URL is not set"); break; }
            run_op("postgresql", pg, op);
            ops++;
        }
    }
    remove(path + 7);
    char aux[600];
    snprintf(aux, sizeof aux, "%s-wal", path + 7); remove(aux);
    snprintf(aux, sizeof aux, "%s-shm", path + 7); remove(aux);

    const char *rows = getenv("SB_FAULT_ROWS");
    if (rows) {
        char file[600];
        snprintf(file, sizeof file, "%s/f6_oom", rows);
        FILE *f = fopen(file, "w");
        if (f) {
            fprintf(f, "6 OOM fail-at-N (both)\t%ld\t%d\t-\t-\t-\t%s\tN=1..%ld per op, %ld clean errors, "
                       "%ld blocks leaked\n",
                    total_runs, ops, failures ? "FAIL" : "ok", max_n_seen - 1, clean_errors, leaked);
            fclose(f);
        }
    }
    printf("oom: %ld runs, %ld clean errors, %d failures\n", total_runs, clean_errors, failures);
    return failures ? 1 : 0;
}
