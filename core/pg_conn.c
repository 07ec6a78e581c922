/*
** pg_conn.c - one libpq connection of the pool: its state machine.
**
**   DOWN --(retry_at)--> CONNECTING --(PQconnectPoll OK)--> READY
**    ^                        |  (failed / connect timeout)    |
**    +------------------------+--------(break)-----------------+
**
** Owns: PQconnectStartParams/PQconnectPoll driven by socket readiness (the
** socket is re-registered with wake.c after every poll step, since libpq
** may replace it), pipeline mode, pipelined sends with one Sync per
** request, matching PGresults to the in-flight FIFO, the statement cache's
** Parse/DEALLOCATE traffic, flush/write interest, breaking a connection
** (failing what it carried) with exponential backoff, and server-side
** cancel on a helper thread.
**
** Does not own: which connection a request goes to (pg_drv.c), value
** conversion (pg_value.c).  Never blocks: libpq is in non-blocking mode,
** PQgetResult is only called when PQisBusy says it will not wait, and
** PQconnectPoll only when the socket is ready in the direction it asked.
** (Known limit: libpq resolves host names synchronously; use hostaddr= or
** IP addresses where that matters.)
*/
#include "pg_int.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void quiet_notice(void *arg, const char *msg)
{
    /* a library must not print to stderr (e.g. ROLLBACK outside a
    ** transaction warns); notices are dropped */
    (void)arg;
    (void)msg;
}

/* ---------------------------------------------------------------- fifo */

static void fifo_push(sb_pg_conn *pc, sb_pg_op *op)
{
    op->pc = pc;
    op->next = NULL;
    op->prev = pc->tail;
    if (pc->tail) pc->tail->next = op;
    else pc->head = op;
    pc->tail = op;
    pc->depth++;
}

static sb_pg_op *fifo_pop(sb_pg_conn *pc)
{
    sb_pg_op *op = pc->head;
    if (!op) return NULL;
    pc->head = op->next;
    if (pc->head) pc->head->prev = NULL;
    else pc->tail = NULL;
    op->next = op->prev = NULL;
    op->pc = NULL;
    pc->depth--;
    return op;
}

/* ------------------------------------------------------------- sockets */

/* Watch fd for ev.  `fresh`: libpq may have closed the old socket and got
** the same number back for a new one, whose epoll registration is gone:
** then MOD fails and ADD is right.  Returns SB_OK or SB_ERR. */
static int watch(sb_pg_conn *pc, int fd, unsigned ev, int fresh)
{
    sb_conn *c = pc->d->c;
    if (fd != pc->fd) {
        if (pc->fd >= 0) sb__wake_del(c, pc->fd);
        pc->fd = -1;
        if (fd < 0) return SB_OK;
        if (sb__wake_add(c, fd, ev) != SB_OK && sb__wake_mod(c, fd, ev) != SB_OK) return SB_ERR;
    } else if (fd >= 0 && (fresh || ev != pc->ev)) {
        if (sb__wake_mod(c, fd, ev) != SB_OK && sb__wake_add(c, fd, ev) != SB_OK) return SB_ERR;
    }
    pc->fd = fd;
    pc->ev = ev;
    return SB_OK;
}

static void unwatch(sb_pg_conn *pc)
{
    if (pc->fd >= 0) sb__wake_del(pc->d->c, pc->fd);
    pc->fd = -1;
    pc->ev = 0;
}

/* Readiness of one socket right now (poll with timeout 0). */
static short ready_now(int fd, short events)
{
    struct pollfd p = { fd, events, 0 };
    return fd >= 0 && poll(&p, 1, 0) > 0 ? p.revents : 0;
}

/* ---------------------------------------------------------- connecting */

static void copy_msg(sb_pg_drv *d, char *out, size_t outsz, const char *msg, const char *dflt)
{
    /* one line: libpq ends messages in "\n" and indents hints with "\n\t" */
    size_t n = 0;
    if (!msg || !*msg) msg = dflt;
    for (; *msg && n + 1 < outsz; msg++) {
        int space = *msg == ' ' || *msg == '\n' || *msg == '\t';
        if (space && (n == 0 || out[n - 1] == ' ')) continue;
        out[n++] = space ? ' ' : *msg;
    }
    while (n && out[n - 1] == ' ') n--;
    out[n] = '\0';
    sb_pg_scrub_secret(out, d->password);
}

/* Next attempt after the current backoff (+-25% jitter), then double it. */
static void schedule_retry(sb_pg_conn *pc, int64_t now)
{
    int b = pc->backoff < SB_PG_BACKOFF_MIN ? SB_PG_BACKOFF_MIN : pc->backoff;
    int delay = b - b / 4 + (int)(rand_r(&pc->d->seed) % (unsigned)(b / 2 + 1));
    pc->retry_at = now + delay;
    pc->backoff = b * 2 > SB_PG_BACKOFF_MAX ? SB_PG_BACKOFF_MAX : b * 2;
}

/* A connection attempt failed: drop it, remember why, retry later. */
static void attempt_failed(sb_pg_conn *pc, int64_t now, const char *why)
{
    char msg[256];
    copy_msg(pc->d, msg, sizeof msg, why, "could not connect to the server");
    sb_pg_set_lasterr(pc->d, msg);
    pc->d->failed_attempts++;
    unwatch(pc);
    if (pc->pg) PQfinish(pc->pg);
    pc->pg = NULL;
    pc->state = SB_PG_DOWN;
    schedule_retry(pc, now);
}

void sb_pg_conn_start(sb_pg_conn *pc, int64_t now)
{
    sb_pg_drv *d = pc->d;
    /* dbname is expanded (URI or key=value, multi-host, target_session_attrs
    ** all handled by libpq); settings in it override the fallback */
    static const char *const keys[] = { "fallback_application_name", "dbname", NULL };
    const char *vals[] = { "switchboard", d->conninfo, NULL };
    pc->pg = PQconnectStartParams(keys, vals, 1);
    if (!pc->pg) {
        attempt_failed(pc, now, "out of memory starting a connection");
        return;
    }
    PQsetNoticeProcessor(pc->pg, quiet_notice, NULL);
    if (PQstatus(pc->pg) == CONNECTION_BAD || PQsetnonblocking(pc->pg, 1) != 0) {
        attempt_failed(pc, now, PQerrorMessage(pc->pg));
        return;
    }
    pc->state = SB_PG_CONNECTING;
    pc->poll = PGRES_POLLING_WRITING;  /* what libpq asks for after a start */
    pc->deadline = now + d->connect_timeout;
    if (watch(pc, PQsocket(pc->pg), SB_EV_WRITE, 1) != SB_OK)
        attempt_failed(pc, now, "cannot watch the connection's socket");
}

static void connected(sb_pg_conn *pc, int64_t now)
{
    if (PQsetnonblocking(pc->pg, 1) != 0 || PQenterPipelineMode(pc->pg) != 1) {
        attempt_failed(pc, now, PQerrorMessage(pc->pg));
        return;
    }
    if (watch(pc, PQsocket(pc->pg), SB_EV_READ, 1) != SB_OK) {
        attempt_failed(pc, now, "cannot watch the connection's socket");
        return;
    }
    pc->state = SB_PG_READY;
    pc->want_write = 0;
    pc->deferred = pc->deferred_reads = 0;
    pc->up_at = now;
    sb_pg_cache_clear(&pc->cache);  /* a new server session knows no names */
    sb_pg_conn_became_ready(pc->d);
}

static void connecting_step(sb_pg_conn *pc, int64_t now)
{
    /* a few rounds per step: libpq often can go on at once */
    for (int round = 0; round < 8; round++) {
        short want = pc->poll == PGRES_POLLING_READING ? POLLIN : POLLOUT;
        if (!(pc->revents & (want | POLLERR | POLLHUP | POLLNVAL))) break;
        pc->poll = PQconnectPoll(pc->pg);
        if (pc->poll == PGRES_POLLING_FAILED) {
            attempt_failed(pc, now, PQerrorMessage(pc->pg));
            return;
        }
        if (pc->poll == PGRES_POLLING_OK) {
            connected(pc, now);
            return;
        }
        /* the socket may be another one now (next host, SSL retry) */
        int fd = PQsocket(pc->pg);
        int reading = pc->poll == PGRES_POLLING_READING;
        if (watch(pc, fd, reading ? SB_EV_READ : SB_EV_WRITE, 1) != SB_OK) {
            attempt_failed(pc, now, "cannot watch the connection's socket");
            return;
        }
        pc->revents = ready_now(fd, reading ? POLLIN : POLLOUT);
    }
    if (now >= pc->deadline)
        attempt_failed(pc, now, "timeout expired while connecting");
}

/* --------------------------------------------------------------- cancel */

/* PQcancel blocks (it opens a socket to the server), so it runs on a short
** detached thread that owns the PGcancel.  A library can be unloaded
** (Lua's dlclose at lua_close) while one runs: the destructor below waits
** for them, bounded. */
static atomic_int cancel_threads;

static void *cancel_main(void *arg)
{
    char buf[256];
    PGcancel *cn = arg;
    (void)PQcancel(cn, buf, sizeof buf);  /* best effort */
    PQfreeCancel(cn);
    atomic_fetch_sub(&cancel_threads, 1);
    return NULL;
}

__attribute__((destructor)) static void wait_cancel_threads(void)
{
    struct timespec ts = { 0, 10 * 1000000L };
    for (int i = 0; i < 300 && atomic_load(&cancel_threads) > 0; i++) nanosleep(&ts, NULL);
}

static void start_cancel(sb_pg_conn *pc, sb_pg_op *op)
{
    if (pc->cancelling) return;  /* it is the head: op comes after it */
    op->cancel_wanted = 0;
    PGcancel *cn = PQgetCancel(pc->pg);
    if (!cn) return;
    pthread_attr_t attr;
    pthread_t t;
    sigset_t all, old;
    int ok = pthread_attr_init(&attr) == 0;
    if (ok) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        sigfillset(&all);  /* the helper must never take the host's signals */
        pthread_sigmask(SIG_SETMASK, &all, &old);
        atomic_fetch_add(&cancel_threads, 1);
        ok = pthread_create(&t, &attr, cancel_main, cn) == 0;
        if (!ok) atomic_fetch_sub(&cancel_threads, 1);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
    }
    if (!ok) {
        PQfreeCancel(cn);
        return;
    }
    /* until op's Sync arrives nothing new goes to this connection, so a
    ** late cancel cannot hit a request sent after it */
    pc->cancelling = op;
}

void sb_pg_conn_cancel(sb_pg_conn *pc, sb_pg_op *op)
{
    op->cancel_wanted = 1;
    if (pc->head == op) start_cancel(pc, op);
}

/* ------------------------------------------------------------- sending */

static void flush(sb_pg_conn *pc)
{
    int rc = PQflush(pc->pg);
    if (rc < 0) {
        sb_pg_conn_break(pc, PQerrorMessage(pc->pg));
        return;
    }
    pc->want_write = rc == 1;
    if (watch(pc, pc->fd, SB_EV_READ | (pc->want_write ? SB_EV_WRITE : 0u), 0) != SB_OK)
        sb_pg_conn_break(pc, "cannot watch the connection's socket");
}

/* Flush now, or (SB_Q_DEFER) at the next step with whatever else the
** caller submits until then; the fd is made readable so that step comes. */
static void send_out(sb_pg_conn *pc, const sb_pg_op *op, int defer)
{
    if (!defer) {
        flush(pc);
        return;
    }
    pc->deferred++;
    pc->deferred_reads += op->reads;
    if (!pc->d->deferred) {
        pc->d->deferred = 1;
        sb__wake_signal(pc->d->c);
    }
}

void sb_pg_conn_flush_deferred(sb_pg_conn *pc)
{
    pc->deferred = pc->deferred_reads = 0;
    if (pc->state == SB_PG_READY) flush(pc);
}

/* A request that never reached the pipeline fails now. */
static void send_failed(sb_pg_conn *pc, sb_pg_op *op)
{
    int bad = PQstatus(pc->pg) == CONNECTION_BAD;
    char msg[256];
    copy_msg(pc->d, msg, sizeof msg, PQerrorMessage(pc->pg), "could not send the statement");
    sb_pg_op_done(op, NULL, bad ? sb_pg_conn_error("08006", msg, 1, 0)
                                : sb__error_new(SB_E_OTHER, "XX000", "postgresql", msg, NULL));
    sb_pg_op_free(op);
    if (bad) sb_pg_conn_break(pc, msg);
}

void sb_pg_conn_send(sb_pg_conn *pc, sb_pg_op *op)
{
    sb_pg_drv *d = pc->d;
    PGconn *pg = pc->pg;
    sb_req *r = op->r;
    sb_pg_params p;
    char name[24];
    sb_pg_stmt *st = NULL, *fresh = NULL;
    int named = 0, ncmds = 0, ok = 1;

    op->sess = NULL;  /* only the pending list needs it */
    /* Inside an open transaction block a lost connection rolls the
    ** statement back; outside one (autocommit) it may have committed.
    ** Pipelined behind unfinished work the status says ACTIVE: then we do
    ** not know, and say so if the connection breaks. */
    if (r->session) {
        PGTransactionStatusType ts = PQtransactionStatus(pg);
        op->in_tx = ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR;
    }
    if (sb_pg_params_build(r, &p) != SB_OK) {
        sb_pg_op_done(op, NULL, NULL);  /* out of memory */
        sb_pg_op_free(op);
        return;
    }
    if (d->prepare && pc->cache.cap > 0) {
        uint32_t h = sb_pg_cache_hash(r->sql, r->sql_len, p.sig, (size_t)p.n);
        st = sb_pg_cache_find(&pc->cache, h, r->sql, r->sql_len, p.sig, (size_t)p.n);
        if (st && st->ready) {
            sb_pg_cache_touch(&pc->cache, st);
            named = 1;
        } else if (!st) {
            /* on OOM just run it unnamed */
            st = fresh = sb_pg_cache_insert(&pc->cache, h, r->sql, r->sql_len, p.sig,
                                            (size_t)p.n, pc->next_id++);
            named = fresh != NULL;
        }
        /* else its Parse is still in flight (it may yet fail): go unnamed,
        ** so this request never depends on another one's outcome */
        if (named) snprintf(name, sizeof name, "sb_%u", st->id);
    }
    if (fresh) {
        if (PQsendPrepare(pg, name, r->sql, p.n, p.types)) {
            ncmds++;
            op->prep = fresh;
        } else {
            sb_pg_cache_remove(&pc->cache, fresh);
            ok = 0;
        }
    }
    if (ok) {
        ok = named ? PQsendQueryPrepared(pg, name, p.n, p.values, p.lengths, p.formats, 0)
                   : PQsendQueryParams(pg, r->sql, p.n, p.types, p.values, p.lengths, p.formats, 0);
        if (ok) ncmds++;
    }
    sb_pg_params_free(&p);
    if (!ok && ncmds == 0) {
        send_failed(pc, op);
        return;
    }
    if (!ok) {  /* the Parse is queued: finish the group, report the error */
        char msg[256];
        copy_msg(d, msg, sizeof msg, PQerrorMessage(pg), "could not send the statement");
        op->err = sb__error_new(SB_E_OTHER, "XX000", "postgresql", msg, NULL);
    }
    op->ncmds = (unsigned char)ncmds;
    op->cmd = op->got = 0;
    op->chained = (r->flags & SB_Q_CHAIN) && r->session;
    int defer = (r->flags & SB_Q_DEFER) != 0;
    fifo_push(pc, op);
    if (op->chained) {
        /* no Sync: the session's next request closes the group, and
        ** nothing else (not even a DEALLOCATE) may come in between */
        send_out(pc, op, defer);
        return;
    }
    if (!PQpipelineSync(pg)) {
        sb_pg_conn_break(pc, PQerrorMessage(pg));
        return;
    }
    /* over capacity: forget the least recently used ready statement */
    sb_pg_stmt *v;
    while (pc->state == SB_PG_READY && (v = sb_pg_cache_victim(&pc->cache)) != NULL) {
        char sql[40];
        snprintf(sql, sizeof sql, "DEALLOCATE sb_%u", v->id);
        sb_pg_cache_remove(&pc->cache, v);
        if (sb_pg_conn_discard(pc, sql) != SB_OK) break;  /* leaves it on the server */
    }
    if (pc->state == SB_PG_READY) send_out(pc, op, defer);
}

int sb_pg_conn_discard(sb_pg_conn *pc, const char *sql)
{
    sb_pg_op *op = sb__calloc(1, sizeof *op);
    if (!op) return SB_ERR;
    op->kind = SB_PG_OP_DISCARD;
    op->queued_at = sb__now_ms();
    if (!PQsendQueryParams(pc->pg, sql, 0, NULL, NULL, NULL, NULL, 0)) {
        sb_pg_op_free(op);
        if (PQstatus(pc->pg) == CONNECTION_BAD) sb_pg_conn_break(pc, PQerrorMessage(pc->pg));
        return SB_ERR;
    }
    op->ncmds = 1;
    fifo_push(pc, op);
    if (!PQpipelineSync(pc->pg)) {
        sb_pg_conn_break(pc, PQerrorMessage(pc->pg));
        return SB_ERR;
    }
    flush(pc);
    return pc->state == SB_PG_READY ? SB_OK : SB_ERR;
}

/* ------------------------------------------------------------- results */

/* op's Sync arrived: settle the statement cache, finish the request. */
static void complete(sb_pg_conn *pc, sb_pg_op *op)
{
    /* one cancel stops a whole group (the server skips the rest up to its
    ** Sync): the guard passes to the group's next op, and no second cancel
    ** goes out that could hit a statement sent after the group */
    if (pc->cancelling == op) pc->cancelling = op->chained ? pc->head : NULL;
    if (op->prep) {
        if (op->prep_ok) op->prep->ready = 1;
        else sb_pg_cache_remove(&pc->cache, op->prep);  /* never cache a failed name */
        op->prep = NULL;
    }
    sb_result *res = op->res;
    sb_error *err = op->err;
    op->res = NULL;
    op->err = NULL;
    if (!err && !res && op->r)
        err = sb__error_new(SB_E_OTHER, "XX000", "postgresql", "the server sent no result", NULL);
    if (err) {
        sb__result_free(res);
        res = NULL;
    }
    sb_pg_op_done(op, res, err);
    sb_pg_op_free(op);
    if (pc->head && pc->head->cancel_wanted) start_cancel(pc, pc->head);
}

/* Match everything libpq has parsed to the FIFO.  In pipeline mode a
** command yields its result(s) then NULL; a Sync yields one
** PGRES_PIPELINE_SYNC.  Two NULLs in a row with nothing to close means
** libpq has nothing more.  Returns SB_ERR if the connection broke. */
static int read_results(sb_pg_conn *pc)
{
    PGconn *pg = pc->pg;
    int idle = 0;
    while (pc->head && !PQisBusy(pg)) {
        sb_pg_op *op = pc->head;
        PGresult *res = PQgetResult(pg);
        if (!res) {
            if (op->got) {  /* end of the current command's results */
                op->cmd++;
                op->got = 0;
                idle = 0;
                if (op->chained && op->cmd >= op->ncmds) {  /* no Sync to wait for */
                    fifo_pop(pc);
                    complete(pc, op);
                }
            } else if (++idle >= 2) {
                break;
            }
            continue;
        }
        idle = 0;
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            fifo_pop(pc);
            complete(pc, op);
            continue;
        }
        if (st == PGRES_FATAL_ERROR && (PQstatus(pg) == CONNECTION_BAD || sb_pg_result_fatal(res))) {
            /* the server ended the session (terminated, shut down, crashed) */
            char msg[256];
            const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
            copy_msg(pc->d, msg, sizeof msg, m ? m : PQresultErrorMessage(res), "connection lost");
            PQclear(res);
            sb_pg_conn_break(pc, msg);
            return SB_ERR;
        }
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            /* the protocol state cannot be recovered inside a pipeline */
            PQclear(res);
            sb_pg_op_done(op, NULL, sb__error_new(SB_E_MISUSE, "0A000", "postgresql",
                                                  "COPY FROM STDIN / TO STDOUT is not supported",
                                                  NULL));
            sb_pg_conn_break(pc, "COPY is not supported; the connection was reset");
            return SB_ERR;
        }
        if (op->cmd >= op->ncmds) {
            PQclear(res);
            sb_pg_conn_break(pc, "protocol out of sync; the connection was reset");
            return SB_ERR;
        }
        if (op->prep && op->cmd == 0) {  /* the Parse */
            if (st == PGRES_COMMAND_OK) op->prep_ok = 1;
            else if (!op->err) op->err = sb_pg_error(res);
        } else {
            switch (st) {
            case PGRES_TUPLES_OK:
            case PGRES_COMMAND_OK:
            case PGRES_EMPTY_QUERY:
                if (op->r && !op->err && !op->res) {
                    op->res = sb_pg_result(res);
                    if (op->res)
                        res = NULL;  /* op->res owns it now */
                    else
                        op->err = sb__error_new(SB_E_OTHER, "53200", SB_BACKEND_CORE,
                                                "out of memory", NULL);
                }
                break;
            case PGRES_PIPELINE_ABORTED:  /* only after an error in this group */
                if (!op->err)
                    op->err = sb__error_new(SB_E_OTHER, "XX000", "postgresql",
                                            "statement skipped: the pipeline was aborted", NULL);
                break;
            default:
                if (!op->err) op->err = sb_pg_error(res);
                break;
            }
        }
        op->got = 1;
        PQclear(res);  /* NULL-safe */
    }
    return SB_OK;
}

static void ready_step(sb_pg_conn *pc)
{
    PGconn *pg = pc->pg;
    int consume = (pc->revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL)) != 0;
    /* Defensive: over SSL, OpenSSL could hold decrypted bytes the socket no
    ** longer shows (a record larger than what libpq asked for), and epoll
    ** would not wake us for them: while a result is incomplete, read again
    ** a few times (each extra read is one EAGAIN at worst).  Plain sockets
    ** need one read. */
    int rounds = consume && PQsslInUse(pg) ? 4 : 1;
    for (int round = 0; round < rounds; round++) {
        if (consume) {
            if (!PQconsumeInput(pg)) {
                sb_pg_conn_break(pc, PQerrorMessage(pg));
                return;
            }
            PGnotify *n;  /* not used yet: do not let them pile up */
            while ((n = PQnotifies(pg)) != NULL) PQfreemem(n);
        }
        if (read_results(pc) != SB_OK) return;
        if (!pc->head || !PQisBusy(pg)) break;
    }
    if (PQstatus(pg) == CONNECTION_BAD) {
        sb_pg_conn_break(pc, PQerrorMessage(pg));
        return;
    }
    if (pc->want_write) flush(pc);
}

void sb_pg_conn_step(sb_pg_conn *pc, int64_t now)
{
    switch (pc->state) {
    case SB_PG_DOWN:
        if (now >= pc->retry_at) sb_pg_conn_start(pc, now);
        break;
    case SB_PG_CONNECTING:
        connecting_step(pc, now);
        break;
    case SB_PG_READY:
        ready_step(pc);
        break;
    default:  /* UNUSED: nothing to do until the pool grows into it */
        break;
    }
}

int64_t sb_pg_conn_deadline(const sb_pg_conn *pc)
{
    if (pc->state == SB_PG_DOWN) return pc->retry_at;
    if (pc->state == SB_PG_CONNECTING) return pc->deadline;
    return 0;
}

/* ------------------------------------------------------- break / close */

void sb_pg_conn_break(sb_pg_conn *pc, const char *why)
{
    sb_pg_drv *d = pc->d;
    int64_t now = sb__now_ms();
    int was_ready = pc->state == SB_PG_READY;
    char msg[256], m[400];
    copy_msg(d, msg, sizeof msg, why, "connection lost");  /* why may live in pc->pg */

    /* the session learns first, so its failed requests already see it */
    if (pc->pinned) {
        pc->pinned->broken = 1;
        pc->pinned->drv = NULL;
        pc->pinned = NULL;
    }
    pc->reserved = NULL;
    pc->cancelling = NULL;
    sb_pg_op *op;
    while ((op = fifo_pop(pc)) != NULL) {
        op->prep = NULL;  /* the cache goes below */
        sb__result_free(op->res);
        sb_error_free(op->err);
        op->res = NULL;
        op->err = NULL;
        if (op->r) {
            /* It was sent: running it again might do it twice.  COMMIT, and
            ** any statement that ran as its own transaction (autocommit),
            ** may have committed before the link went: outcome unknown.
            ** Inside a transaction block the server rolls back. */
            int unknown = op->is_commit || (!op->in_tx && !op->no_effect);
            if (op->is_commit)
                snprintf(m, sizeof m, "connection to the server was lost after COMMIT was sent; "
                                      "the outcome of the transaction is unknown: %s", msg);
            else if (unknown)
                snprintf(m, sizeof m, "connection to the server was lost after the statement was "
                                      "sent outside a transaction; whether it took effect is "
                                      "unknown: %s", msg);
            else
                snprintf(m, sizeof m, "connection to the server was lost: %s", msg);
            sb_pg_op_done(op, NULL, sb_pg_conn_error("08006", m, 0, unknown));
        }
        sb_pg_op_free(op);
    }
    sb_pg_cache_clear(&pc->cache);
    unwatch(pc);
    if (pc->pg) PQfinish(pc->pg);  /* no waiting: the socket is just closed */
    pc->pg = NULL;
    pc->state = SB_PG_DOWN;
    pc->want_write = 0;
    pc->deferred = pc->deferred_reads = 0;
    if (was_ready && now - pc->up_at >= 1000) pc->backoff = SB_PG_BACKOFF_MIN;
    schedule_retry(pc, now);
    sb_pg_set_lasterr(d, msg);
    d->breaks++;
    if (was_ready) sb_pg_conn_went_down(d, pc, 1);
}

void sb_pg_conn_close(sb_pg_conn *pc)
{
    if (pc->pinned) pc->pinned->drv = NULL;
    pc->pinned = pc->reserved = NULL;
    sb_pg_op *op;
    while ((op = fifo_pop(pc)) != NULL) {
        op->prep = NULL;
        sb__result_free(op->res);
        sb_error_free(op->err);
        op->res = NULL;
        op->err = NULL;
        if (op->r)
            sb_pg_op_done(op, NULL, sb__error_new(SB_E_CLOSED, "08003", SB_BACKEND_CORE,
                                                  "the database was closed", NULL));
        sb_pg_op_free(op);
    }
    sb_pg_cache_fini(&pc->cache);
    unwatch(pc);
    if (pc->pg) PQfinish(pc->pg);
    pc->pg = NULL;
    pc->state = SB_PG_DOWN;
}
