/*
** pg_drv.c - sb_pg_driver, the PostgreSQL backend's vtable (contract in
** sb_int.h).
**
** Owns: the driver state (sb_pg_drv), the pending list of requests waiting
** for a connection, pool scheduling (an idle READY connection, else a new
** one while the pool may grow, else the least busy, pipeline depth capped
** at SB_PG_DEPTH; with none idle, a step's reads packed a few to a
** connection), sessions (exclusive pinning, with a reservation so a
** waiting session is not starved by pooled traffic),
** cancel, the driver deadline (reconnect backoff, connect timeouts, queued
** requests giving up when no connection comes up), and teardown.
**
** Does not own: libpq I/O (pg_conn.c), values (pg_value.c).
*/
#include "pg_int.h"

#include <poll.h>
#include <stdio.h>
#include <string.h>

/* ----------------------------------------------------------------- ops */

void sb_pg_op_done(sb_pg_op *op, sb_result *res, sb_error *err)
{
    sb_req *r = op->r;
    op->r = NULL;
    if (!r) {
        sb__result_free(res);
        sb_error_free(err);
        return;
    }
    r->drv = NULL;
    sb__req_finish(r, res, err);
    sb__req_unref(r);  /* r may be gone now */
}

void sb_pg_op_free(sb_pg_op *op)
{
    sb__result_free(op->res);
    sb_error_free(op->err);
    sb__free(op);
}

static void pend_push(sb_pg_drv *d, sb_pg_op *op)
{
    op->pc = NULL;
    op->next = NULL;
    op->prev = d->pend_tail;
    if (d->pend_tail) d->pend_tail->next = op;
    else d->pend_head = op;
    d->pend_tail = op;
    if (op->sess) d->npend_sess++;
}

static void pend_unlink(sb_pg_drv *d, sb_pg_op *op)
{
    if (op->prev) op->prev->next = op->next;
    else d->pend_head = op->next;
    if (op->next) op->next->prev = op->prev;
    else d->pend_tail = op->prev;
    op->next = op->prev = NULL;
    if (op->sess) d->npend_sess--;
}

/* Take a pending op off the list and finish it with err. */
static void pend_fail(sb_pg_drv *d, sb_pg_op *op, sb_error *err)
{
    pend_unlink(d, op);
    sb_pg_op_done(op, NULL, err);
    sb_pg_op_free(op);
}

/* ----------------------------------------------------- bookkeeping */

void sb_pg_conn_became_ready(sb_pg_drv *d)
{
    d->nready++;
    d->down_since = 0;
    d->ever_ready = 1;
}

void sb_pg_conn_went_down(sb_pg_drv *d, sb_pg_conn *pc, int was_ready)
{
    (void)pc;
    if (was_ready && --d->nready == 0) d->down_since = sb__now_ms();
}

void sb_pg_set_lasterr(sb_pg_drv *d, const char *msg)
{
    snprintf(d->lasterr, sizeof d->lasterr, "%s", msg);
}

/* ------------------------------------------------------------ dispatch */

static int usable(const sb_pg_conn *pc)
{
    return pc->state == SB_PG_READY && !pc->cancelling;
}

/* May a read join the requests pc keeps for this step's write?  Only
** reads wait there, and fewer than SB_PG_READ_BATCH: a step's reads go
** out as a few deep batches instead of one per connection, so a backend
** wakes once for several (256 tasks listing agents: 1.0-1.2 server
** context switches per read spread, 0.35-0.37 packed; bench/README.md).
** Writes keep spreading: a backend commits one transaction at a time, and
** commits on many backends share the WAL flushes. */
static int joins_batch(const sb_pg_conn *pc)
{
    return pc->deferred_reads > 0 && pc->deferred_reads == pc->deferred &&
           pc->deferred < SB_PG_READ_BATCH;
}

/* The connection for a pooled request (a read, when `reads`), or NULL to
** keep it queued (dispatch then grows the pool):
**   - an idle usable one;
**   - with the pool at its size and all of it up, one whose batch the read
**     joins, while that leaves its pipeline under twice the shallowest
**     (reads pack when every connection has a queue, and spread while one
**     has little to do: slow reads keep running side by side);
**   - the least busy, unless some connections are still connecting: then
**     a request waits for one of them rather than queueing behind work on
**     a busy one (a fresh or growing pool would otherwise pipeline a burst
**     onto the one connection that came up first). */
static sb_pg_conn *pick(sb_pg_drv *d, int reads)
{
    sb_pg_conn *best = NULL, *batch = NULL;
    int connecting = 0;
    for (int i = 0; i < d->npool; i++) {
        sb_pg_conn *pc = &d->conns[i];
        if (pc->state == SB_PG_CONNECTING) connecting = 1;
        if (!usable(pc) || pc->pinned || pc->reserved || pc->depth >= SB_PG_DEPTH) continue;
        if (reads && joins_batch(pc) && (!batch || pc->depth < batch->depth)) batch = pc;
        if (!best || pc->depth < best->depth) best = pc;
        if (best->depth == 0) return best;
    }
    if (batch && !connecting && d->nstarted == d->npool && batch->depth < 2 * best->depth)
        return batch;
    return best && connecting ? NULL : best;
}

/* The pool grows on demand: `waiting` requests found no idle connection,
** so open unused slots until as many are connecting as requests wait (a
** burst opens several at once; a steady trickle never grows the pool). */
static void grow(sb_pg_drv *d, int waiting)
{
    int connecting = 0;
    for (int i = 0; i < d->npool; i++) connecting += d->conns[i].state == SB_PG_CONNECTING;
    int64_t now = sb__now_ms();
    for (int i = 0; i < d->npool && connecting < waiting; i++) {
        if (d->conns[i].state != SB_PG_UNUSED) continue;
        sb_pg_conn_start(&d->conns[i], now);
        d->nstarted++;
        connecting++;
    }
}

static void send_op(sb_pg_drv *d, sb_pg_conn *pc, sb_pg_op *op)
{
    pend_unlink(d, op);
    sb_pg_conn_send(pc, op);
}

/* A pending op of a session: run it on the session's connection, pin an
** idle one, or reserve one to drain.  A group (sb_group_open) pins the
** connection only while its requests go out. */
static void place_session_op(sb_pg_drv *d, sb_pg_op *op)
{
    sb_session *s = op->sess;
    if (s->broken) {
        pend_fail(d, op, sb_pg_conn_error("08003", "the connection of this transaction was lost; "
                                          "its work was rolled back", 0, 0));
        return;
    }
    sb_pg_conn *pc = s->drv;
    if (s->group) {  /* back to back on one connection, shared before and after */
        int ends = !(op->r->flags & SB_Q_CHAIN);
        if (!pc) {
            pc = pick(d, 0);  /* as a pooled write would be placed */
            if (!pc || (pc->depth && d->nstarted < d->npool)) return;
            pc->pinned = s;
            s->drv = pc;
        } else if (!usable(pc)) {
            return;
        }
        send_op(d, pc, op);  /* may free op */
        if (ends && s->drv == pc) {  /* the group is out: others may follow it */
            pc->pinned = NULL;
            s->drv = NULL;
        }
        return;
    }
    if (pc) {
        /* no depth limit on its own connection: a request chained to this
        ** one (SB_Q_CHAIN) gets no reply before this one's Sync is sent */
        if (usable(pc)) send_op(d, pc, op);
        return;
    }
    sb_pg_conn *idle = NULL, *mine = NULL;
    for (int i = 0; i < d->npool; i++) {
        sb_pg_conn *c = &d->conns[i];
        if (c->reserved == s) mine = c;
        if (!usable(c) || c->pinned || c->depth || (c->reserved && c->reserved != s)) continue;
        if (!idle || c->reserved == s) idle = c;
    }
    if (idle) {
        if (mine) mine->reserved = NULL;
        idle->reserved = NULL;
        idle->pinned = s;
        s->drv = idle;
        send_op(d, idle, op);
        return;
    }
    if (mine) return;
    /* reserve the least busy free connection: pooled requests stop going
    ** there, so it drains and this session gets it */
    sb_pg_conn *best = NULL;
    for (int i = 0; i < d->npool; i++) {
        sb_pg_conn *c = &d->conns[i];
        if (c->state != SB_PG_READY || c->pinned || c->reserved) continue;
        if (!best || c->depth < best->depth) best = c;
    }
    if (best) best->reserved = s;
}

/* Move what can run from the pending list to connections, in order. */
static void dispatch(sb_pg_drv *d)
{
again:;
    unsigned breaks = d->breaks;
    int pool_full = 0, waiting = 0;
    /* every ready connection pinned: a session without one can neither
    ** take nor reserve one now (skipping it keeps a crowd of waiting
    ** transactions from costing pool x pending steps per dispatch) */
    int all_pinned = 1;
    for (int i = 0; i < d->npool && all_pinned; i++)
        all_pinned = d->conns[i].state != SB_PG_READY || d->conns[i].pinned;
    sb_pg_op *op = d->pend_head;
    while (op) {
        sb_pg_op *next = op->next;  /* sending never touches the pending list */
        sb_session *sess = op->sess;
        if (sess) {
            if (sess->drv || sess->broken || !all_pinned) place_session_op(d, op);  /* may free op */
            waiting += !sess->drv && !sess->broken;
        } else if (!pool_full) {
            /* no idle connection while the pool may grow: rather a
            ** connection of its own than a place in a pipeline */
            sb_pg_conn *pc = pick(d, op->reads);
            if (pc && (pc->depth == 0 || d->nstarted == d->npool)) {
                send_op(d, pc, op);
            } else {
                pool_full = 1;
                waiting++;
            }
        } else {
            waiting++;
        }
        /* enough seen: the rest waits too (and counting it changes nothing) */
        if (pool_full && d->npend_sess == 0 && (d->nstarted == d->npool || waiting >= d->npool)) break;
        op = next;
    }
    if (waiting && d->nstarted < d->npool) grow(d, waiting);
    /* a connection broke while sending: its session's queued ops fail now */
    if (d->breaks != breaks && d->npend_sess) goto again;
}

/* With no live connection, requests give up after connect_timeout_ms; a
** database that never connected since open fails them at the first failed
** attempt (a wrong password or a server that is not there is reported at
** once, by sb.open's first round trip). */
static int64_t pend_expiry(const sb_pg_drv *d)
{
    if (d->nready > 0 || !d->pend_head) return 0;
    if (!d->ever_ready && d->failed_attempts > 0) return 1;
    const sb_pg_op *op = d->pend_head;
    int64_t from = op->queued_at > d->down_since ? op->queued_at : d->down_since;
    return from + d->connect_timeout;
}

static void expire_pending(sb_pg_drv *d, int64_t now)
{
    int64_t at;
    while ((at = pend_expiry(d)) != 0 && at <= now) {
        char msg[400];
        if (d->ever_ready)
            snprintf(msg, sizeof msg, "could not connect to the server within %d ms: %s",
                     d->connect_timeout, d->lasterr[0] ? d->lasterr : "no connection");
        else
            snprintf(msg, sizeof msg, "could not connect to the server: %s",
                     d->lasterr[0] ? d->lasterr : "no connection");
        pend_fail(d, d->pend_head, sb_pg_conn_error("08001", msg, 1, 0));
    }
}

/* ---------------------------------------------------------------- vtable */

static void drv_free(sb_pg_drv *d)
{
    if (d->conns)
        for (int i = 0; i < d->npool; i++) sb_pg_cache_fini(&d->conns[i].cache);
    sb__free(d->conns);
    sb__free(d->pfds);
    if (d->conninfo) {
        explicit_bzero(d->conninfo, strlen(d->conninfo));
        sb__free(d->conninfo);
    }
    if (d->password) {
        explicit_bzero(d->password, strlen(d->password));
        sb__free(d->password);
    }
    sb__free(d);
}

/* libpq's messages for settings it refuses before any connect attempt
** ("invalid sslmode value: ...", "could not match 2 host names to 1
** hostaddr values"), as opposed to a server that cannot be reached. */
static int rejected_settings(const char *msg)
{
    return !strncmp(msg, "invalid ", 8) || !strncmp(msg, "could not match ", 16);
}

static int pg_open(sb_conn *c, const char *target, sb_error **err)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(target, &perr);
    if (!opts) {
        if (!perr) {
            *err = sb__error_new(SB_E_OTHER, "53200", SB_BACKEND_CORE, "out of memory", NULL);
            return SB_ERR;
        }
        char clean[300];
        sb_pg_scrub_parse(perr, target, clean, sizeof clean);
        PQfreemem(perr);
        size_t n = strlen(clean);
        while (n && (clean[n - 1] == '\n' || clean[n - 1] == ' ')) clean[--n] = '\0';
        *err = sb__error_fmt(SB_E_MISUSE, "08001", "postgresql",
                             "invalid PostgreSQL connection string: %s", clean);
        return SB_ERR;
    }
    const char *pw = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (!strcmp(o->keyword, "password") && o->val && *o->val) pw = o->val;

    int64_t now = sb__now_ms();
    sb_pg_drv *d = sb__calloc(1, sizeof *d);
    if (!d) goto oom;
    d->c = c;
    d->npool = c->opts.pool > 0 ? c->opts.pool : 16;
    if (d->npool > SB_PG_MAX_POOL) d->npool = SB_PG_MAX_POOL;
    d->prepare = c->opts.prepare != 0;
    d->cache_cap = c->opts.statement_cache > 0 ? c->opts.statement_cache : 0;
    d->connect_timeout = c->opts.connect_timeout_ms > 0 ? c->opts.connect_timeout_ms : 10000;
    d->down_since = now;
    d->seed = (unsigned)now ^ (unsigned)(uintptr_t)d;
    d->conninfo = sb__strdup(target);
    d->password = pw ? sb__strdup(pw) : NULL;
    d->conns = sb__calloc((size_t)d->npool, sizeof *d->conns);
    d->pfds = sb__calloc((size_t)d->npool, sizeof(struct pollfd));
    if (!d->conninfo || (pw && !d->password) || !d->conns || !d->pfds) goto oom;
    for (int i = 0; i < d->npool; i++) {
        sb_pg_conn *pc = &d->conns[i];
        pc->d = d;
        pc->fd = -1;
        pc->state = SB_PG_UNUSED;
        pc->backoff = SB_PG_BACKOFF_MIN;
        if (sb_pg_cache_init(&pc->cache, d->prepare ? d->cache_cap : 0) != SB_OK) goto oom;
    }
    PQconninfoFree(opts);
    opts = NULL;
    c->drvdata = d;
    /* one connection opens now (the pool grows as load needs: grow());
    ** requests submitted meanwhile wait for it.  A server that is down is no reason to fail here, but settings libpq
    ** rejects before connecting (sslmode=bogus, ...) are: the first attempt
    ** tells which. */
    sb_pg_conn_start(&d->conns[0], now);
    d->nstarted = 1;
    if (d->conns[0].state == SB_PG_DOWN && rejected_settings(d->lasterr)) {
        char clean[300];
        sb_pg_scrub_parse(d->lasterr, target, clean, sizeof clean);
        *err = sb__error_fmt(SB_E_MISUSE, "08001", "postgresql",
                             "invalid PostgreSQL connection settings: %s", clean);
        c->drvdata = NULL;
        drv_free(d);
        return SB_ERR;
    }
    return SB_OK;
oom:
    if (opts) PQconninfoFree(opts);
    if (d) drv_free(d);
    *err = sb__error_new(SB_E_OTHER, "53200", SB_BACKEND_CORE, "out of memory", NULL);
    return SB_ERR;
}

static void pg_submit(sb_conn *c, sb_req *r)
{
    sb_pg_drv *d = c->drvdata;
    const char *why = sb_pg_params_check(r);
    if (why) {
        sb__req_fail(r, SB_E_MISUSE, "22023", "postgresql", why);
        sb__req_unref(r);
        return;
    }
    sb_pg_op *op = sb__calloc(1, sizeof *op);
    if (!op) {
        sb__req_fail(r, SB_E_OTHER, "53200", SB_BACKEND_CORE, "out of memory");
        sb__req_unref(r);
        return;
    }
    op->kind = SB_PG_OP_REQ;
    op->r = r;
    op->sess = r->session;
    op->queued_at = sb__now_ms();
    sb_pg_kind kind = sb_pg_kind_of(r->sql, r->sql_len);
    op->is_commit = kind == SB_PG_COMMIT;
    op->no_effect = kind == SB_PG_NO_EFFECT;
    op->reads = kind == SB_PG_READ && !r->session;
    r->drv = op;
    pend_push(d, op);
    dispatch(d);  /* sends (and flushes) at once when a connection is free */
}

static void pg_step(sb_conn *c)
{
    sb_pg_drv *d = c->drvdata;
    struct pollfd *pf = d->pfds;
    int64_t now = sb__now_ms();
    int any = 0;

    if (d->deferred) {  /* what SB_Q_DEFER requests left: out in one write per conn */
        d->deferred = 0;
        for (int i = 0; i < d->npool; i++)
            if (d->conns[i].deferred) sb_pg_conn_flush_deferred(&d->conns[i]);
    }

    /* one poll(2) tells which sockets are ready; the host's epoll only said
    ** that something is */
    for (int i = 0; i < d->npool; i++) {
        sb_pg_conn *pc = &d->conns[i];
        pc->revents = 0;
        pf[i].fd = pc->state != SB_PG_DOWN ? pc->fd : -1;
        pf[i].revents = 0;
        if (pc->state == SB_PG_CONNECTING)
            pf[i].events = pc->poll == PGRES_POLLING_READING ? POLLIN : POLLOUT;
        else
            pf[i].events = (short)(POLLIN | (pc->want_write ? POLLOUT : 0));
        any |= pf[i].fd >= 0;
    }
    if (any && poll(pf, (nfds_t)d->npool, 0) > 0)
        for (int i = 0; i < d->npool; i++) d->conns[i].revents = pf[i].revents;
    for (int i = 0; i < d->npool; i++) sb_pg_conn_step(&d->conns[i], now);
    dispatch(d);
    expire_pending(d, sb__now_ms());
}

static int64_t pg_deadline(sb_conn *c)
{
    sb_pg_drv *d = c->drvdata;
    int64_t at = pend_expiry(d);
    for (int i = 0; i < d->npool; i++) {
        int64_t t = sb_pg_conn_deadline(&d->conns[i]);
        if (t && (!at || t < at)) at = t;
    }
    return at;
}

static void pg_cancel(sb_conn *c, sb_req *r, sb_errclass cls)
{
    sb_pg_drv *d = c->drvdata;
    sb_pg_op *op = r->drv;
    sb_error *e = sb__error_new(cls, "57014", SB_BACKEND_CORE,
                                cls == SB_E_TIMEOUT ? "the request timed out and was cancelled"
                                                    : "the request was cancelled", NULL);
    if (!op) {  /* cannot happen: every pending request has an op */
        sb__req_finish(r, NULL, e);
        return;
    }
    if (!op->pc) {
        pend_fail(d, op, e);
        return;
    }
    /* in flight: finish now; the op stays in the FIFO to absorb the late
    ** result, and the server is asked to stop once it runs the statement */
    sb_pg_conn *pc = op->pc;
    sb_pg_op_done(op, NULL, e);
    sb_pg_conn_cancel(pc, op);
}

static void pg_session_close(sb_conn *c, sb_session *s)
{
    sb_pg_drv *d = c->drvdata;
    sb_pg_op *op = d->pend_head;
    while (op) {
        sb_pg_op *next = op->next;
        if (op->sess == s)
            pend_fail(d, op, sb__error_new(SB_E_CLOSED, "08003", SB_BACKEND_CORE,
                                           "the transaction was closed before this statement ran",
                                           NULL));
        op = next;
    }
    for (int i = 0; i < d->npool; i++)
        if (d->conns[i].reserved == s) d->conns[i].reserved = NULL;
    sb_pg_conn *pc = s->drv;
    if (pc) {
        s->drv = NULL;
        pc->pinned = NULL;
        /* statements of s may still be in flight: the ROLLBACK queues behind
        ** them, and anything sent to pc later queues behind the ROLLBACK */
        if (pc->state == SB_PG_READY &&
            (pc->head || PQtransactionStatus(pc->pg) != PQTRANS_IDLE) &&
            sb_pg_conn_discard(pc, "ROLLBACK") != SB_OK && pc->state == SB_PG_READY)
            sb_pg_conn_break(pc, "could not send ROLLBACK at the end of a transaction");
    }
    dispatch(d);
}

static void pg_close(sb_conn *c)
{
    sb_pg_drv *d = c->drvdata;
    if (!d) return;
    while (d->pend_head)
        pend_fail(d, d->pend_head, sb__error_new(SB_E_CLOSED, "08003", SB_BACKEND_CORE,
                                                 "the database was closed", NULL));
    for (int i = 0; i < d->npool; i++) sb_pg_conn_close(&d->conns[i]);
    c->drvdata = NULL;
    drv_free(d);
}

const sb_driver sb_pg_driver = {
    "postgresql",
    0,
    pg_open,
    pg_submit,
    pg_step,
    pg_deadline,
    pg_cancel,
    pg_session_close,
    pg_close,
};
