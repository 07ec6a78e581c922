/*
** req.c - sb_req: one submitted statement, and sb_session, the pin that
** keeps a run of requests on one connection.
**
** Owns: copying the SQL and parameters into one allocation at submit, the
** checks every backend shares (closed database, parameter count,
** placeholders), request deadlines, finishing (status, result or error,
** reap list), cancellation and the reference counts.  A request has one
** reference for its caller and one for the driver while the driver holds
** it; the memory goes when both are gone.
*/
#include "sb_int.h"

#include <string.h>

static void timed_unlink(sb_req *r)
{
    if (!r->on_timed) return;
    if (r->timed_prev) r->timed_prev->timed_next = r->timed_next;
    else r->conn->timed = r->timed_next;
    if (r->timed_next) r->timed_next->timed_prev = r->timed_prev;
    r->timed_prev = r->timed_next = NULL;
    r->on_timed = 0;
}

static void reap_unlink(sb_req *r)
{
    if (!r->on_reap) return;
    sb_conn *c = r->conn;
    if (r->reap_prev) r->reap_prev->reap_next = r->reap_next;
    else c->reap_head = r->reap_next;
    if (r->reap_next) r->reap_next->reap_prev = r->reap_prev;
    else c->reap_tail = r->reap_prev;
    r->reap_prev = r->reap_next = NULL;
    r->on_reap = 0;
}

/* One block: the struct, the SQL, the parameter array, the parameter bytes. */
static sb_req *req_alloc(const sb_query *q)
{
    size_t bytes = 0;
    for (int i = 0; i < q->nparams; i++) {
        sb_type t = q->params[i].type;
        if (t == SB_TEXT || t == SB_BLOB) bytes += q->params[i].u.s.len;
    }
    size_t sqlsz = q->sql_len + 1;
    size_t pad = (sizeof(sb_value) - (sizeof(sb_req) + sqlsz) % sizeof(sb_value)) % sizeof(sb_value);
    size_t psz = (size_t)q->nparams * sizeof(sb_value);
    sb_req *r = sb__malloc(sizeof *r + sqlsz + pad + psz + bytes);
    if (!r) return NULL;
    memset(r, 0, sizeof *r);
    r->sql = (char *)(r + 1);
    memcpy(r->sql, q->sql, q->sql_len);
    r->sql[q->sql_len] = '\0';
    r->sql_len = q->sql_len;
    r->nparams = q->nparams;
    if (q->nparams) {
        r->params = (sb_value *)(r->sql + sqlsz + pad);
        char *b = (char *)(r->params + q->nparams);
        for (int i = 0; i < q->nparams; i++) {
            r->params[i] = q->params[i];
            sb_type t = q->params[i].type;
            if (t == SB_TEXT || t == SB_BLOB) {
                size_t n = q->params[i].u.s.len;
                if (n) memcpy(b, q->params[i].u.s.p, n);
                r->params[i].u.s.p = b;
                b += n;
            }
        }
    }
    return r;
}

sb_req *sb_conn_submit(sb_conn *c, const sb_query *q)
{
    sb_req *r = req_alloc(q);
    if (!r) return NULL;
    r->conn = c;
    c->refs++;
    r->refs = 1;
    r->status = SB_PENDING;
    r->flags = q->flags;

    if (c->closed) {
        sb__req_fail(r, SB_E_CLOSED, "08003", SB_BACKEND_CORE, "the database is closed");
        return r;
    }
    if (q->session) {
        if (q->session->conn != c || q->session->closed) {
            sb__req_fail(r, SB_E_MISUSE, "08003", SB_BACKEND_CORE,
                         "the transaction is finished or belongs to another database");
            return r;
        }
        r->session = q->session;
        q->session->refs++;
        if (q->session->group == 2) {
            sb__req_fail(r, SB_E_MISUSE, "08003", SB_BACKEND_CORE, "this request group has ended");
            return r;
        }
        if (q->session->group && !(q->flags & SB_Q_CHAIN)) q->session->group = 2;
        if (q->session->skip_next) {
            q->session->skip_next = (q->flags & SB_Q_CHAIN) != 0;
            sb__req_fail(r, SB_E_OTHER, "XX000", SB_BACKEND_CORE, SB_MSG_CHAIN_SKIPPED);
            return r;
        }
    }
    int maxparam = 0;
    if (sb__sql_check(c, r->sql, r->sql_len, (c->drv->caps & SB_CAP_QMARK) != 0, &maxparam,
                      &r->sql_hash) != SB_OK) {
        sb__req_fail(r, SB_E_MISUSE, "42P02", SB_BACKEND_CORE,
                     "bad placeholder: use $1 .. $65535");
        sb__req_chain_broken(r);
        return r;
    }
    if (maxparam != q->nparams) {
        sb_error *e = sb__error_fmt(SB_E_MISUSE, "08P01", SB_BACKEND_CORE,
                                    "the statement uses %d parameter%s ($1 .. $n) but %d %s given",
                                    maxparam, maxparam == 1 ? "" : "s", q->nparams,
                                    q->nparams == 1 ? "was" : "were");
        sb__req_finish(r, NULL, e);
        sb__req_chain_broken(r);
        return r;
    }
    if (q->timeout_ms > 0) {
        r->deadline = sb__now_ms() + q->timeout_ms;
        r->timed_next = c->timed;
        if (c->timed) c->timed->timed_prev = r;
        c->timed = r;
        r->on_timed = 1;
    }
    r->refs++;  /* the driver's */
    c->drv->submit(c, r);
    return r;
}

void sb__req_chain_broken(const sb_req *r)
{
    if (r->session && (r->flags & SB_Q_CHAIN)) r->session->skip_next = 1;
}

void sb__req_finish(sb_req *r, sb_result *res, sb_error *err)
{
    if (r->status != SB_PENDING) {
        sb__result_free(res);
        sb_error_free(err);
        return;
    }
    if (!res && !err) err = sb__error_new(SB_E_OTHER, "53200", SB_BACKEND_CORE, "out of memory", NULL);
    if (err) {
        sb__result_free(res);
        r->error = err;
        r->status = SB_ERR;
    } else {
        r->result = res;
        r->status = SB_OK;
    }
    timed_unlink(r);
    sb_conn *c = r->conn;
    if (r->tag && !r->freed) {
        r->reap_prev = c->reap_tail;
        r->reap_next = NULL;
        if (c->reap_tail) c->reap_tail->reap_next = r;
        else c->reap_head = r;
        c->reap_tail = r;
        r->on_reap = 1;
    } else if (c->in_step && (r->flags & SB_Q_WAKE)) {
        c->wake_waiters = 1;
    }
}

void sb__req_fail(sb_req *r, sb_errclass cls, const char *sqlstate, const char *backend,
                  const char *msg)
{
    sb__req_finish(r, NULL, sb__error_new(cls, sqlstate, backend, msg, NULL));
}

void sb__req_unref(sb_req *r)
{
    if (--r->refs > 0) return;
    timed_unlink(r);
    reap_unlink(r);
    sb__result_free(r->result);
    sb_error_free(r->error);
    if (r->session) sb__session_unref(r->session);
    sb_conn *c = r->conn;
    sb__free(r);
    sb__conn_unref(c);
}

int sb_req_status(const sb_req *r) { return r->status; }
const sb_result *sb_req_result(const sb_req *r) { return r->result; }
const sb_error *sb_req_error(const sb_req *r) { return r->error; }
void sb_req_set_tag(sb_req *r, uintptr_t tag) { r->tag = tag; }

void sb_req_cancel(sb_req *r, sb_errclass cls)
{
    if (r->status != SB_PENDING) return;
    sb_conn *c = r->conn;
    if (c->closed) {  /* cannot happen: close finishes everything */
        sb__req_fail(r, SB_E_CLOSED, "08003", SB_BACKEND_CORE, "the database is closed");
        return;
    }
    c->drv->cancel(c, r, cls);
}

void sb_req_free(sb_req *r)
{
    if (!r) return;
    r->freed = 1;
    if (r->status == SB_PENDING) sb_req_cancel(r, SB_E_CLOSED);
    reap_unlink(r);
    sb__req_unref(r);
}

/* ------------------------------------------------------------ sessions */

sb_session *sb_session_open(sb_conn *c)
{
    sb_session *s = sb__calloc(1, sizeof *s);
    if (!s) return NULL;
    s->conn = c;
    s->refs = 1;
    c->refs++;
    return s;
}

sb_session *sb_group_open(sb_conn *c)
{
    sb_session *s = sb_session_open(c);
    if (s) s->group = 1;
    return s;
}

void sb__session_unref(sb_session *s)
{
    if (--s->refs > 0) return;
    sb_conn *c = s->conn;
    sb__free(s);
    sb__conn_unref(c);
}

void sb_session_close(sb_session *s)
{
    if (!s) return;
    s->closed = 1;
    if (!s->conn->closed) s->conn->drv->session_close(s->conn, s);
    sb__session_unref(s);
}

int sb_session_broken(const sb_session *s) { return s->broken; }
