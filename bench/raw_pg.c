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
**             plus PQpipelineSync, so a transaction costs one round trip
**             (and no BEGIN / COMMIT: see pipe_stmts).
** Parameters travel as text (the usual libpq way); every value of every row
** is copied out, as a client would.  The routing op (route_*) is two steps,
** the second depending on the first: the available-agents query, the policy
** as "take the first row's id", then callcenter's one-statement assign; in
** pipeline mode an op's assign is sent when its query's result is in, so
** each connection carries a mix of both steps of many ops.  --pgdb NAME
** connects to database NAME of that server instead of the URL's.  SQL comes from bench/ops.lua on the
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
    /* the first dbname is expanded as a URL; a later one overrides its database */
    const char *keys[] = { "dbname", a->pgdb ? "dbname" : NULL, NULL };
    const char *vals[] = { url, a->pgdb, NULL };
    PGconn *c = PQconnectdbParams(keys, vals, 1);
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

/* Copy every value out of r (what a client reading the rows does). */
static void read_rows(PGresult *r)
{
    int nr = PQntuples(r), nc = PQnfields(r);
    for (int i = 0; i < nr; i++)
        for (int j = 0; j < nc; j++) {
            int len = PQgetlength(r, i, j);
            if (len > (int)sizeof textbuf - 1) len = (int)sizeof textbuf - 1;
            memcpy(textbuf, PQgetvalue(r, i, j), (size_t)len);
            textbuf[len] = 0;
        }
}

/* Copy every value out of r; the sanity value of statement s goes to *check.
** Returns 0, or -1 when r failed or its affected count is not the expected. */
static int take_result(const bench_args *a, int s, PGresult *r, long *check)
{
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK) {
        int nr = PQntuples(r);
        read_rows(r);
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

/* ------------------------------------------------------------ routing */

/* The parameters of a route's two statements (s0 available_queue: now,
** skills, limit, queue; s1 assign: session, agent, now, policy, version). */
typedef struct route_params {
    bench_params p;
    char now[24];
    const char *v[5];
} route_params;

static const char **route_query_params(route_params *rp, const bench_args *a, long k)
{
    bench_params_for(OP_ROUTING, k, a->base, &rp->p);
    snprintf(rp->now, sizeof rp->now, "%lld", (long long)bench_wall_ms());
    rp->v[0] = rp->now;
    rp->v[1] = rp->p.p[2];
    rp->v[2] = "1";
    rp->v[3] = rp->p.p[1];
    return rp->v;
}

static const char **route_assign_params(route_params *rp, const bench_args *a, long k, const char *agent)
{
    bench_params_for(OP_ROUTING, k, a->base, &rp->p);
    snprintf(rp->now, sizeof rp->now, "%lld", (long long)bench_wall_ms());
    rp->v[0] = rp->p.p[0];
    rp->v[1] = agent;
    rp->v[2] = rp->now;
    rp->v[3] = a->policy_name;
    rp->v[4] = a->policy_version;
    return rp->v;
}

/* The result of step `step` (0 query, 1 assign): every value copied out;
** the query's first id to agent (size 64).  Returns 0, or -1 when it failed
** or refused (no agent free, or the assign returned no row). */
static int route_result(PGresult *r, int step, char *agent)
{
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK) {
        if (st != PGRES_PIPELINE_ABORTED) fprintf(stderr, "raw_pg: %s", PQresultErrorMessage(r));
        return -1;
    }
    read_rows(r);
    if (PQntuples(r) != 1) return -1;
    if (step == 0) snprintf(agent, 64, "%s", PQgetvalue(r, 0, 0));
    return 0;
}

static int route_prepared_op(PGconn *c, const bench_args *a, long k, long *check)
{
    route_params rp;
    char agent[64];
    PGresult *r = PQexecPrepared(c, "s0", 4, route_query_params(&rp, a, k), NULL, NULL, 0);
    int rc = route_result(r, 0, agent);
    PQclear(r);
    if (rc != 0) return -1;
    r = PQexecPrepared(c, "s1", 5, route_assign_params(&rp, a, k, agent), NULL, NULL, 0);
    rc = route_result(r, 1, agent);
    PQclear(r);
    if (rc == 0) *check = 1;
    return rc;
}

/* ------------------------------------------------------------ prepared */

/* Statement s of the op: its prepared name ("s<s>", name[16]) and its
** parameter values from p into vals[4]; returns how many. */
static int stmt_values(const bench_args *a, int s, const bench_params *p, char *name, const char **vals)
{
    int idx[4];
    int np = bench_stmt_params(a->op, s, idx);
    for (int j = 0; j < np; j++) vals[j] = p->p[idx[j]];
    snprintf(name, 16, "s%d", s);
    return np;
}

static int run_prepared_op(PGconn *c, const bench_args *a, long k, long *check)
{
    bench_params p;
    bench_params_for(a->op, k, a->base, &p);
    int failed = 0;
    for (int s = 0; s < a->nsql; s++) {
        char name[16];
        const char *vals[4];
        int np = stmt_values(a, s, &p, name, vals);
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
    double due = bench_now(), end = due + secs;
    long done = 0;
    while (*k < a->max_ops) {
        double t0 = bench_start(a, &due);
        if (t0 >= end) break;
        int rc = a->op == OP_ROUTING ? route_prepared_op(c, a, (*k)++, check)
                                     : run_prepared_op(c, a, (*k)++, check);
        if (rc != 0) (*errors)++;
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
    /* routing: an op has two syncs in turn; `syncs` is the FIFO (2 x depth
    ** slots) of the syncs sent and not yet read: which op, which step */
    struct rsync { int slot, step; } *syncs;
    int shead, sn;
    struct rop { double t0; long k; int failed, got; char agent[64]; } *rops;  /* depth slots */
    int *free_slots, nfree;
} pconn;

/* The statements an op sends in pipeline mode, [*first, end): a
** transaction needs no BEGIN / COMMIT there, since what runs between two
** Syncs is one implicit transaction, committed by the Sync or rolled back
** by it when a statement failed (what switchboard's db:batch sends). */
static int pipe_stmts(const bench_args *a, int *first)
{
    int tx = a->op == OP_ASSIGN;
    *first = tx;
    return tx ? a->nsql - 1 : a->nsql;
}

static void pipe_submit(pconn *pc, const bench_args *a, long k)
{
    bench_params p;
    bench_params_for(a->op, k, a->base, &p);
    int first, end = pipe_stmts(a, &first);
    for (int s = first; s < end; s++) {
        char name[16];
        const char *vals[4];
        int np = stmt_values(a, s, &p, name, vals);
        if (!PQsendQueryPrepared(pc->c, name, np, vals, NULL, NULL, 0)) die(pc->c, "send");
    }
    if (!PQpipelineSync(pc->c)) die(pc->c, "sync");
    flight *f = &pc->ring[(pc->head + pc->n) % a->depth];
    f->t0 = bench_now();
    f->next_stmt = first;
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

/* Routing in pipeline mode: send step `step` of the op in `slot`. */
static void route_send(pconn *pc, const bench_args *a, int slot, int step)
{
    struct rop *o = &pc->rops[slot];
    route_params rp;
    int ok = step == 0
        ? PQsendQueryPrepared(pc->c, "s0", 4, route_query_params(&rp, a, o->k), NULL, NULL, 0)
        : PQsendQueryPrepared(pc->c, "s1", 5, route_assign_params(&rp, a, o->k, o->agent), NULL, NULL, 0);
    if (!ok) die(pc->c, "send");
    if (!PQpipelineSync(pc->c)) die(pc->c, "sync");
    int cap = 2 * a->depth;
    pc->syncs[(pc->shead + pc->sn) % cap] = (struct rsync){ slot, step };
    pc->sn++;
    o->got = 0;
}

static void route_submit(pconn *pc, const bench_args *a, long k)
{
    int slot = pc->free_slots[--pc->nfree];
    struct rop *o = &pc->rops[slot];
    o->t0 = bench_now();
    o->k = k;
    o->failed = 0;
    route_send(pc, a, slot, 0);
    pc->n++;
}

/* Take every routing result that is here: a query's sync sends the op's
** assign (unless the query failed); an assign's sync ends the op. */
static void route_drain(pconn *pc, const bench_args *a, bench_lat *lat, long *done,
                        long *errors, long *check)
{
    if (!PQconsumeInput(pc->c)) die(pc->c, "read");
    int cap = 2 * a->depth;
    while (pc->sn > 0 && !PQisBusy(pc->c)) {
        PGresult *r = PQgetResult(pc->c);
        if (!r) continue;  /* the end of one statement's results */
        struct rsync *s = &pc->syncs[pc->shead];
        struct rop *o = &pc->rops[s->slot];
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            int slot = s->slot, step = s->step;
            pc->shead = (pc->shead + 1) % cap;
            pc->sn--;
            if (!o->got) o->failed = 1;
            if (step == 0 && !o->failed) {
                route_send(pc, a, slot, 1);
            } else {
                if (lat) bench_lat_add(lat, (bench_now() - o->t0) * 1e6);
                if (o->failed) (*errors)++;
                else *check = 1;
                (*done)++;
                pc->free_slots[pc->nfree++] = slot;
                pc->n--;
            }
        } else {
            if (route_result(r, s->step, o->agent) != 0) o->failed = 1;
            o->got = 1;
        }
        PQclear(r);
    }
}

static long pipeline_phase(pconn *pcs, const bench_args *a, long *k, double secs,
                           bench_lat *lat, long *errors, long *check)
{
    int routing = a->op == OP_ROUTING;
    double end = bench_now() + secs;
    long done = 0;
    struct pollfd pfd[MAX_CONNS];
    for (;;) {
        int inflight = 0, more = *k < a->max_ops && bench_now() < end;
        for (int i = 0; i < a->conns; i++) {
            pconn *pc = &pcs[i];
            while (more && pc->n < a->depth && *k < a->max_ops) {
                if (routing) route_submit(pc, a, (*k)++);
                else pipe_submit(pc, a, (*k)++);
            }
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
        for (int i = 0; i < a->conns; i++) {
            if (!pfd[i].revents) continue;
            if (routing) route_drain(&pcs[i], a, lat, &done, errors, check);
            else pipe_drain(&pcs[i], a, lat, &done, errors, check);
        }
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
        pcs[i].syncs = calloc((size_t)a->depth * 2, sizeof *pcs[i].syncs);
        pcs[i].rops = calloc((size_t)a->depth, sizeof *pcs[i].rops);
        pcs[i].free_slots = calloc((size_t)a->depth, sizeof *pcs[i].free_slots);
        if (!pcs[i].ring || !pcs[i].syncs || !pcs[i].rops || !pcs[i].free_slots) die(NULL, "out of memory");
        for (int j = 0; j < a->depth; j++) pcs[i].free_slots[pcs[i].nfree++] = j;
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
    if (a.op == OP_ROUTING && a.nsql != 2) {
        fprintf(stderr, "raw_pg: op routing takes 2 statements, got %d\n", a.nsql);
        return 2;
    }
    int pipeline = !strcmp(a.mode, "pipeline");
    long k = 0, errors = 0, check = 0, ops;
    bench_lat lat;
    bench_lat_init(&lat, 1 << 16);
    double t0, cpu0, secs, cpu;
    if (pipeline) {
        pconn *pcs = open_pipeline(&a, url);
        pipeline_phase(pcs, &a, &k, a.warm_secs, NULL, &errors, &check);
        errors = 0;
        t0 = bench_now(), cpu0 = bench_cpu();
        ops = pipeline_phase(pcs, &a, &k, a.secs, &lat, &errors, &check);
        secs = bench_now() - t0, cpu = bench_cpu() - cpu0;
        for (int i = 0; i < a.conns; i++) {
            PQfinish(pcs[i].c);
            free(pcs[i].ring);
            free(pcs[i].syncs);
            free(pcs[i].rops);
            free(pcs[i].free_slots);
        }
        free(pcs);
    } else {
        PGconn *c = connect_prepared(&a, url);
        prepared_phase(c, &a, &k, a.warm_secs, NULL, &errors, &check);
        errors = 0;
        t0 = bench_now(), cpu0 = bench_cpu();
        ops = prepared_phase(c, &a, &k, a.secs, &lat, &errors, &check);
        secs = bench_now() - t0, cpu = bench_cpu() - cpu0;
        PQfinish(c);
    }
    char impl[64];
    if (pipeline) snprintf(impl, sizeof impl, "raw_pipeline_%dx%d", a.conns, a.depth);
    else snprintf(impl, sizeof impl, "raw_prepared");
    bench_emit(impl, &a, ops, k, secs, cpu, &lat, errors, check);
    return 0;
}
