/*
** raw_sqlite.c - the raw C SQLite baseline of `make bench`: the physical
** limit switchboard is measured against.
**
** Owns: one connection (the pragmas switchboard sets: WAL, synchronous
** NORMAL, foreign_keys ON, busy_timeout 5000), the operation's statements
** prepared once (SQL from bench/ops.lua on the command line, $N rewritten
** to ?N), and a single-threaded loop: bind, step, read every column of
** every row, reset.  BEGIN IMMEDIATE / COMMIT are prepared statements too.
** The routing op (run_route) is the same loop with data flowing between
** statements: the available-agents query, the policy as "take the first
** row's id", then callcenter's assign transaction, whose INSERT takes the
** values the DELETE .. RETURNING gave back.
** Prints one JSON line (raw_common.c).
** Does not own: the data (run.lua seeds and resets it between cells).
*/
#include "raw_common.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STMTS 8

typedef struct cell {
    sqlite3 *db;
    sqlite3_stmt *st[MAX_STMTS];
    int nst;
    char textbuf[256];  /* where text columns are copied, as a client would */
} cell;

static void die(sqlite3 *db, const char *what)
{
    fprintf(stderr, "raw_sqlite: %s: %s\n", what, db ? sqlite3_errmsg(db) : "?");
    exit(1);
}

/* "$12" -> "?12": the same text with SQLite's numbered placeholder. */
static char *to_qmarks(const char *sql)
{
    char *s = strdup(sql);
    if (!s) die(NULL, "out of memory");
    for (char *p = s; *p; p++)
        if (*p == '$' && p[1] >= '0' && p[1] <= '9') *p = '?';
    return s;
}

static void open_cell(cell *c, const bench_args *a)
{
    if (sqlite3_open_v2(a->db, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        die(c->db, "open");
    const char *pragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;";
    if (sqlite3_exec(c->db, pragmas, NULL, NULL, NULL) != SQLITE_OK) die(c->db, "pragmas");
    sqlite3_busy_timeout(c->db, 5000);
    c->nst = a->nsql;
    for (int i = 0; i < a->nsql; i++) {
        char *sql = to_qmarks(a->sql[i]);
        if (sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &c->st[i], NULL) != SQLITE_OK)
            die(c->db, sql);
        free(sql);
    }
}

/* Read one row's columns the way a client keeps them. */
static long read_row(cell *c, sqlite3_stmt *st)
{
    long first = 0;
    int n = sqlite3_column_count(st);
    for (int j = 0; j < n; j++) {
        switch (sqlite3_column_type(st, j)) {
        case SQLITE_INTEGER: {
            sqlite3_int64 v = sqlite3_column_int64(st, j);
            if (j == 0) first = (long)v;
            break;
        }
        case SQLITE_FLOAT: {
            volatile double d = sqlite3_column_double(st, j);
            (void)d;
            break;
        }
        case SQLITE_TEXT: {
            const unsigned char *t = sqlite3_column_text(st, j);
            int len = sqlite3_column_bytes(st, j);
            if (len > (int)sizeof c->textbuf - 1) len = (int)sizeof c->textbuf - 1;
            memcpy(c->textbuf, t, (size_t)len);
            c->textbuf[len] = 0;
            break;
        }
        default: break;
        }
    }
    return first;
}

/* Step st to the end; copy every column of every row (read_row).  Returns
** the rows seen, or -1 on error (message printed). */
static long step_all(cell *c, sqlite3_stmt *st)
{
    int rc;
    long rows = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        read_row(c, st);
        rows++;
    }
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "raw_sqlite: %s\n", sqlite3_errmsg(c->db));
        rows = -1;
    }
    sqlite3_reset(st);
    return rows;
}

/* A text column copied out (NULL: NULL). */
typedef struct tcol {
    int null;
    char s[128];
} tcol;

static void take_text(sqlite3_stmt *st, int j, tcol *t)
{
    t->null = sqlite3_column_type(st, j) == SQLITE_NULL;
    int len = t->null ? 0 : sqlite3_column_bytes(st, j);
    if (len > (int)sizeof t->s - 1) len = (int)sizeof t->s - 1;
    if (len) memcpy(t->s, sqlite3_column_text(st, j), (size_t)len);
    t->s[len] = 0;
}

static void bind_tcol(sqlite3_stmt *st, int i, const tcol *t)
{
    if (t->null) sqlite3_bind_null(st, i);
    else sqlite3_bind_text(st, i, t->s, -1, SQLITE_STATIC);
}

/* The routing op: statements 0 available_queue, 1 BEGIN IMMEDIATE,
** 2 take_call (DELETE .. RETURNING), 3 take_agent (UPDATE), 4 insert_active
** (INSERT .. RETURNING), 5 COMMIT, bound as callcenter.lua binds them.  A
** refusal (no agent, call gone, agent full) rolls back and counts as an
** error.  *check: 1 after an assignment. */
static int run_route(cell *c, const bench_args *a, long k, long *check)
{
    bench_params p;
    bench_params_for(OP_ROUTING, k, a->base, &p);
    const char *session = p.p[0];
    sqlite3_int64 now = bench_wall_ms();
    tcol agent = { 1, "" }, queue, skills, caller;
    sqlite3_int64 priority, enqueued_at;

    /* the policy: available_agents{queue, skills, limit = 1}, first row */
    sqlite3_stmt *st = c->st[0];
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_text(st, 2, p.p[2], -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, 1);
    sqlite3_bind_text(st, 4, p.p[1], -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        read_row(c, st);
        take_text(st, 0, &agent);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) read_row(c, st);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "raw_sqlite: %s\n", sqlite3_errmsg(c->db));
        return -1;
    }
    if (agent.null) return -1;  /* nobody free: the policy would queue */

    /* cc:assign: one BEGIN IMMEDIATE transaction */
    if (step_all(c, c->st[1]) < 0) return -1;
    st = c->st[2];
    sqlite3_bind_text(st, 1, session, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) goto refused;
    read_row(c, st);
    take_text(st, 1, &queue);
    priority = sqlite3_column_int64(st, 2);
    take_text(st, 3, &skills);
    take_text(st, 4, &caller);
    enqueued_at = sqlite3_column_int64(st, 5);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) read_row(c, st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) goto refused;

    st = c->st[3];
    sqlite3_bind_text(st, 1, agent.s, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    if (step_all(c, st) < 0 || sqlite3_changes(c->db) != 1) goto refused;

    st = c->st[4];
    sqlite3_bind_text(st, 1, session, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, agent.s, -1, SQLITE_STATIC);
    bind_tcol(st, 3, &queue);
    sqlite3_bind_int64(st, 4, priority);
    bind_tcol(st, 5, &skills);
    bind_tcol(st, 6, &caller);
    sqlite3_bind_int64(st, 7, enqueued_at);
    sqlite3_bind_int64(st, 8, now);
    sqlite3_bind_text(st, 9, a->policy_name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, a->policy_version, -1, SQLITE_STATIC);
    if (step_all(c, st) != 1) goto refused;

    if (step_all(c, c->st[5]) < 0) goto refused;
    *check = 1;
    return 0;

refused:
    sqlite3_reset(st);
    if (!sqlite3_get_autocommit(c->db)) sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

/* One operation: every statement in order.  Returns 0, or -1 on error.
** *check: rows returned, COUNT, or the last affected count. */
static int run_op(cell *c, const bench_args *a, long k, long *check)
{
    if (a->op == OP_ROUTING) return run_route(c, a, k, check);
    bench_params p;
    bench_params_for(a->op, k, a->base, &p);
    for (int s = 0; s < c->nst; s++) {
        sqlite3_stmt *st = c->st[s];
        int idx[4];
        int np = bench_stmt_params(a->op, s, idx);
        for (int j = 0; j < np; j++) {
            int q = idx[j];
            if (p.is_int[q]) sqlite3_bind_int64(st, j + 1, p.i[q]);
            else sqlite3_bind_text(st, j + 1, p.p[q], -1, SQLITE_STATIC);
        }
        int rc;
        long rows = 0, first = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            long v = read_row(c, st);
            if (rows++ == 0) first = v;
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            fprintf(stderr, "raw_sqlite: %s\n", sqlite3_errmsg(c->db));
            if (!sqlite3_get_autocommit(c->db)) sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        int want = bench_stmt_expect(a->op, s);
        if (want >= 0) {
            *check = sqlite3_changes(c->db);
            if (*check != want) {
                if (!sqlite3_get_autocommit(c->db)) sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
                return -1;
            }
        } else if (sqlite3_column_count(st) > 0) {
            *check = a->op == OP_ANALYTICS ? first : rows;
        }
    }
    return 0;
}

/* Run ops until `secs` passed or max_ops were started; k continues. */
static long phase(cell *c, const bench_args *a, long *k, double secs, bench_lat *lat,
                  long *errors, long *check)
{
    double due = bench_now(), end = due + secs;
    long done = 0;
    while (*k < a->max_ops) {
        double t0 = bench_start(a, &due);
        if (t0 >= end) break;
        if (run_op(c, a, (*k)++, check) != 0) (*errors)++;
        double t1 = bench_now();
        if (lat) bench_lat_add(lat, (t1 - t0) * 1e6);
        done++;
    }
    return done;
}

int main(int argc, char **argv)
{
    bench_args a;
    bench_parse(argc, argv, &a);
    if (a.check_args) {
        bench_print_args(&a);
        return 0;
    }
    if (!a.db) {
        fprintf(stderr, "raw_sqlite: --db FILE is required\n");
        return 2;
    }
    if (a.op == OP_ROUTING && a.nsql != 6) {
        fprintf(stderr, "raw_sqlite: op routing takes 6 statements, got %d\n", a.nsql);
        return 2;
    }
    cell c;
    memset(&c, 0, sizeof c);
    open_cell(&c, &a);
    long k = 0, errors = 0, check = 0;
    phase(&c, &a, &k, a.warm_secs, NULL, &errors, &check);
    errors = 0;
    bench_lat lat;
    bench_lat_init(&lat, 1 << 16);
    double t0 = bench_now(), cpu0 = bench_cpu();
    long ops = phase(&c, &a, &k, a.secs, &lat, &errors, &check);
    double secs = bench_now() - t0, cpu = bench_cpu() - cpu0;
    bench_emit("raw", &a, ops, k, secs, cpu, &lat, errors, check);
    for (int i = 0; i < c.nst; i++) sqlite3_finalize(c.st[i]);
    sqlite3_close(c.db);
    return 0;
}
