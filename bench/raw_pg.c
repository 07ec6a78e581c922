/*
** raw_pg.c - the raw C PostgreSQL baselines of `make bench` (libpq).
**
** Owns two configurations, chosen by --mode:
**   prepared  one connection, the statements PQprepare'd once, each op
**             PQexecPrepared statement by statement (BEGIN/COMMIT too):
**             what a careful blocking client does;
**   pipeline  --conns connections in pipeline mode, --depth operations in
**             flight on each (16 x 16 = 256 by default), one thread polling
**             them all; an operation is its statements sent back to back
**             plus PQpipelineSync, so a transaction costs one round trip.
** Parameters travel as text (the usual libpq way); every value of every row
** is copied out, as a client would.  SQL comes from bench/ops.lua on the
** command line; the server URL from $SB_TEST_PG_URL.  Prints one JSON line.
** Does not own: the data (run.lua seeds and resets it between cells).
*/
#include "raw_common.h"

#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STMTS 8
#define MAX_CONNS 256

static char textbuf[256];

static void die(PGconn *c, const char *what)
{
    fprintf(stderr, "raw_pg: %s: %s\n", what, c ? PQerrorMessage(c) : "?");
    exit(1);
}

static PGconn *connect_prepared(const bench_args *a, const char *url)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) die(c, "connect");
    for (int s = 0; s < a->nsql; s++) {
        char name[16];
        int idx[4];
        snprintf(name, sizeof name, "s%d", s);
        PGresult *r = PQprepare(c, name, a->sql[s], bench_stmt_params(a->op, s, idx), NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) die(c, a->sql[s]);
        PQclear(r);
    }
    return c;
}

/* Copy every value out of r; the sanity value of statement s goes to *check.
** Returns 0, or -1 when r failed or its affected count is not the expected. */
static int take_result(const bench_args *a, int s, PGresult *r, long *check)
{
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK) {
        int nr = PQntuples(r), nc = PQnfields(r);
        for (int i = 0; i < nr; i++)
            for (int j = 0; j < nc; j++) {
                int len = PQgetlength(r, i, j);
                if (len > (int)sizeof textbuf - 1) len = (int)sizeof textbuf - 1;
                memcpy(textbuf, PQgetvalue(r, i, j), (size_t)len);
                textbuf[len] = 0;
            }
        *check = a->op == OP_ANALYTICS && nr > 0 ? atol(PQgetvalue(r, 0, 0)) : nr;
    } else if (st != PGRES_COMMAND_OK) {
        if (st != PGRES_PIPELINE_ABORTED) fprintf(stderr, "raw_pg: %s", PQresultErrorMessage(r));
        return -1;
    }
    int want = bench_stmt_expect(a->op, s);
    if (want >= 0) {
        *check = atol(PQcmdTuples(r));
        if (*check != want) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ prepared */

static int run_prepared_op(PGconn *c, const bench_args *a, long k, long *check)
{
    bench_params p;
    bench_params_for(a->op, k, a->base, &p);
    int failed = 0;
    for (int s = 0; s < a->nsql; s++) {
        char name[16];
        int idx[4];
        const char *vals[4];
        int np = bench_stmt_params(a->op, s, idx);
        for (int j = 0; j < np; j++) vals[j] = p.p[idx[j]];
        snprintf(name, sizeof name, "s%d", s);
        PGresult *r = PQexecPrepared(c, name, np, vals, NULL, NULL, 0);
        if (take_result(a, s, r, check) != 0) failed = 1;
        PQclear(r);
        if (failed) {
            if (PQtransactionStatus(c) != PQTRANS_IDLE) PQclear(PQexec(c, "ROLLBACK"));
            return -1;
        }
    }
    return 0;
}

static long prepared_phase(PGconn *c, const bench_args *a, long *k, double secs,
                           bench_lat *lat, long *errors, long *check)
{
    double end = bench_now() + secs;
    long done = 0;
    while (*k < a->max_ops) {
        double t0 = bench_now();
        if (t0 >= end) break;
        if (run_prepared_op(c, a, (*k)++, check) != 0) (*errors)++;
        if (lat) bench_lat_add(lat, (bench_now() - t0) * 1e6);
        done++;
    }
    return done;
}

/* ------------------------------------------------------------ pipeline */

typedef struct flight {
    double t0;
    int next_stmt;  /* results seen so far for this op */
    int failed;
} flight;

typedef struct pconn {
    PGconn *c;
    flight *ring;   /* depth slots: ops in submission order */
    int head, n;
} pconn;

static void pipe_submit(pconn *pc, const bench_args *a, long k)
{
    bench_params p;
    bench_params_for(a->op, k, a->base, &p);
    for (int s = 0; s < a->nsql; s++) {
        char name[16];
        int idx[4];
        const char *vals[4];
        int np = bench_stmt_params(a->op, s, idx);
        for (int j = 0; j < np; j++) vals[j] = p.p[idx[j]];
        snprintf(name, sizeof name, "s%d", s);
        if (!PQsendQueryPrepared(pc->c, name, np, vals, NULL, NULL, 0)) die(pc->c, "send");
    }
    if (!PQpipelineSync(pc->c)) die(pc->c, "sync");
    flight *f = &pc->ring[(pc->head + pc->n) % a->depth];
    f->t0 = bench_now();
    f->next_stmt = 0;
    f->failed = 0;
    pc->n++;
}

/* Take every result that is already here; finished ops are counted. */
static void pipe_drain(pconn *pc, const bench_args *a, bench_lat *lat, long *done,
                       long *errors, long *check)
{
    if (!PQconsumeInput(pc->c)) die(pc->c, "read");
    while (pc->n > 0 && !PQisBusy(pc->c)) {
        PGresult *r = PQgetResult(pc->c);
        if (!r) continue;  /* the end of one statement's results */
        flight *f = &pc->ring[pc->head];
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            if (lat) bench_lat_add(lat, (bench_now() - f->t0) * 1e6);
            if (f->failed) (*errors)++;
            (*done)++;
            pc->head = (pc->head + 1) % a->depth;
            pc->n--;
        } else if (take_result(a, f->next_stmt++, r, check) != 0) {
            f->failed = 1;
        }
        PQclear(r);
    }
}

static long pipeline_phase(pconn *pcs, const bench_args *a, long *k, double secs,
                           bench_lat *lat, long *errors, long *check)
{
    double end = bench_now() + secs;
    long done = 0;
    struct pollfd pfd[MAX_CONNS];
    for (;;) {
        int inflight = 0, more = *k < a->max_ops && bench_now() < end;
        for (int i = 0; i < a->conns; i++) {
            pconn *pc = &pcs[i];
            while (more && pc->n < a->depth && *k < a->max_ops) pipe_submit(pc, a, (*k)++);
            inflight += pc->n;
            pfd[i].fd = PQsocket(pc->c);
            pfd[i].events = POLLIN;
            int fl = PQflush(pc->c);
            if (fl < 0) die(pc->c, "flush");
            if (fl > 0) pfd[i].events |= POLLOUT;
        }
        if (inflight == 0 && !more) break;
        int ms = 1000;
        if (more) {
            double left = (end - bench_now()) * 1000.0;
            ms = left < 1 ? 1 : (int)left + 1;
        }
        if (poll(pfd, (nfds_t)a->conns, ms) < 0) die(NULL, "poll");
        for (int i = 0; i < a->conns; i++)
            if (pfd[i].revents) pipe_drain(&pcs[i], a, lat, &done, errors, check);
    }
    return done;
}

static pconn *open_pipeline(const bench_args *a, const char *url)
{
    if (a->conns > MAX_CONNS) die(NULL, "too many connections");
    pconn *pcs = calloc((size_t)a->conns, sizeof *pcs);
    if (!pcs) die(NULL, "out of memory");
    for (int i = 0; i < a->conns; i++) {
        pcs[i].c = connect_prepared(a, url);
        pcs[i].ring = calloc((size_t)a->depth, sizeof *pcs[i].ring);
        if (!pcs[i].ring) die(NULL, "out of memory");
        if (PQsetnonblocking(pcs[i].c, 1) != 0 || !PQenterPipelineMode(pcs[i].c))
            die(pcs[i].c, "pipeline mode");
    }
    return pcs;
}

int main(int argc, char **argv)
{
    bench_args a;
    bench_parse(argc, argv, &a);
    if (a.check_args) {
        bench_print_args(&a);
        return 0;
    }
    const char *url = getenv("SB_TEST_PG_URL");
    if (!url || !*url) {
        fprintf(stderr, "raw_pg: SB_TEST_PG_URL is not set\n");
        return 2;
    }
    int pipeline = !strcmp(a.mode, "pipeline");
    long k = 0, errors = 0, check = 0, ops;
    bench_lat lat;
    bench_lat_init(&lat, 1 << 16);
    double t0, secs;
    if (pipeline) {
        pconn *pcs = open_pipeline(&a, url);
        pipeline_phase(pcs, &a, &k, a.warm_secs, NULL, &errors, &check);
        errors = 0;
        t0 = bench_now();
        ops = pipeline_phase(pcs, &a, &k, a.secs, &lat, &errors, &check);
        secs = bench_now() - t0;
        for (int i = 0; i < a.conns; i++) {
            PQfinish(pcs[i].c);
            free(pcs[i].ring);
        }
        free(pcs);
    } else {
        PGconn *c = connect_prepared(&a, url);
        prepared_phase(c, &a, &k, a.warm_secs, NULL, &errors, &check);
        errors = 0;
        t0 = bench_now();
        ops = prepared_phase(c, &a, &k, a.secs, &lat, &errors, &check);
        secs = bench_now() - t0;
        PQfinish(c);
    }
    char impl[64];
    if (pipeline) snprintf(impl, sizeof impl, "raw_pipeline_%dx%d", a.conns, a.depth);
    else snprintf(impl, sizeof impl, "raw_prepared");
    bench_emit(impl, &a, ops, secs, &lat, errors, check);
    return 0;
}
