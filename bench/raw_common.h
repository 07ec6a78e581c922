/*
** raw_common.h - what the raw C baselines (raw_sqlite.c, raw_pg.c) share.
**
** Owns: the command line of a raw cell, the clock, latency samples and
** their percentiles, the one JSON line a cell prints, and the parameters
** of the k-th operation (twins of bench/ops.lua's *_args functions; run.lua
** compares both with --check-args before it measures anything).
** Does not own: the SQL (it arrives on the command line from bench/ops.lua)
** or any database access.
*/
#ifndef BENCH_RAW_COMMON_H
#define BENCH_RAW_COMMON_H

#include <stdint.h>

/* The operations, as named in bench/ops.lua. */
typedef enum { OP_UPDATE, OP_AVAILABLE, OP_ASSIGN, OP_ASSIGN1, OP_ANALYTICS, OP_ROUTING } bench_op;

/* The routing op (bench/ops.lua M.ROUTE): every call waits in this queue and
** requires these skills, as callcenter.lua encodes them. */
#define ROUTE_QUEUE "sales"
#define ROUTE_SKILLS "{\"english\":1}"

typedef struct bench_args {
    const char *op_name;
    bench_op op;
    const char *db;     /* raw_sqlite: the database file */
    const char *mode;   /* raw_pg: "prepared" or "pipeline" */
    double secs;        /* time box of the measured phase */
    double warm_secs;   /* time box of the warm-up phase (not recorded) */
    double rate;        /* > 0: open loop, one op at a time at Poisson
                           arrivals, this many a second; latency from each
                           arrival (prepared / raw_sqlite only) */
    long max_ops;       /* also stop after this many ops (warm-up included) */
    long base;          /* first waiting call id (assign ops) */
    int conns, depth;   /* raw_pg pipeline: connections, ops in flight each */
    int check_args;     /* --check-args N: print N parameter lines and exit */
    const char *pgdb;   /* raw_pg: database instead of the URL's (routing) */
    const char *policy_name, *policy_version;  /* routing: what assign records */
    int nsql;
    char **sql;         /* the statements of one operation, in order */
} bench_args;

/* Parse argv (see the usage text in raw_common.c); exits on error. */
void bench_parse(int argc, char **argv, bench_args *a);

double bench_now(void);  /* monotonic seconds */
/* When the next op starts: now (closed loop), or the next Poisson arrival
** after *due at a->rate a second, slept until (open loop; *due moves on). */
double bench_start(const bench_args *a, double *due);
double bench_cpu(void);  /* CPU seconds of the whole process (all threads) */
int64_t bench_wall_ms(void);  /* wall clock, ms since the epoch (callcenter's now) */

/* The parameters of op k, as text (what libpq sends, what sqlite binds).
** p[i] points into buf; returns the number of parameters.  For the assign
** ops: call id, agent id, caller, started_at (assign1 uses 1, 2, 4).
** routing: the call's session id, queue, required skills (JSON); the
** rest of a route's parameters come from the clock and earlier results. */
typedef struct bench_params {
    int n;
    const char *p[4];
    int64_t i[4];       /* the integer ones, for sqlite3_bind_int64 */
    int is_int[4];
    char buf[4][32];
} bench_params;
void bench_params_for(bench_op op, long k, long base, bench_params *out);

/* Which of op's parameters statement `stmt` (0-based, BEGIN and COMMIT
** included) takes: writes their indexes to idx[], returns how many. */
int bench_stmt_params(bench_op op, int stmt, int idx[4]);

/* The affected count statement `stmt` must report, or -1 (not checked). */
int bench_stmt_expect(bench_op op, int stmt);

/* --check-args: print "k a1 a2 ..." for k < n, as ops.lua's args_line. */
void bench_print_args(const bench_args *a);

/* Latency samples in microseconds. */
typedef struct bench_lat {
    double *us;
    long n, cap;
} bench_lat;
void bench_lat_init(bench_lat *l, long cap);
void bench_lat_add(bench_lat *l, double us);

/* Print the cell's JSON line: ops, secs and CPU seconds (bench_cpu) of the
** measured phase, ops_all (warm-up included), p50/p99, errors, and `check`: rows the last op returned
** (available), its COUNT (analytics) or its last affected count (writes),
** a sanity check. */
void bench_emit(const char *impl, const bench_args *a, long ops, long ops_all, double secs,
                double cpu, bench_lat *l, long errors, long check);

#endif
