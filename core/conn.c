/*
** conn.c - sb_conn: an open database.
**
** Owns: picking the driver from the URL, the pollable fd (through wake.c),
** the step loop (drain, driver step, request deadlines, timer), the blocking
** wait helper, the list of finished tagged requests (reap), and the
** reference count that keeps the object alive while requests and sessions
** still point at it after sb_conn_close.  Knows nothing of SQL.
*/
#include "sb_int.h"

#include <errno.h>
#include <poll.h>

void sb_options_init(sb_options *o)
{
    o->pool = 16;
    o->readers = 2;
    o->busy_timeout_ms = 5000;
    o->statement_cache = 64;
    o->prepare = 1;
    o->synchronous_full = 0;
    o->connect_timeout_ms = 10000;
}

static void set_err(sb_error **err, sb_error *e)
{
    if (err) *err = e;
    else sb_error_free(e);
}

sb_conn *sb_conn_open(const char *url, const sb_options *opts, sb_error **err)
{
    const char *target = NULL;
    if (err) *err = NULL;
    const sb_driver *drv = url ? sb__url_driver(url, &target) : NULL;
    if (!drv) {
        set_err(err, sb__error_new(SB_E_MISUSE, "08001", SB_BACKEND_CORE,
                                   "unknown database URL: expected sqlite:PATH, sqlite::memory:, "
                                   "postgresql://... or a libpq conninfo", NULL));
        return NULL;
    }
    sb_conn *c = sb__calloc(1, sizeof *c);
    if (!c) {
        set_err(err, sb__error_new(SB_E_OTHER, "53200", SB_BACKEND_CORE, "out of memory", NULL));
        return NULL;
    }
    c->drv = drv;
    c->refs = 1;
    c->epfd = c->evfd = c->timerfd = -1;
    if (opts) c->opts = *opts;
    else sb_options_init(&c->opts);
    c->url = sb__url_redact(url);
    if (!c->url || sb__wake_init(c) != SB_OK) {
        set_err(err, c->url ? sb__error_fmt(SB_E_OTHER, "58000", SB_BACKEND_CORE,
                                            "cannot create the pollable fd (errno %d)", errno)
                            : sb__error_new(SB_E_OTHER, "53200", SB_BACKEND_CORE, "out of memory", NULL));
        sb__free(c->url);
        sb__free(c);
        return NULL;
    }
    sb_error *e = NULL;
    if (drv->open(c, target, &e) != SB_OK) {
        set_err(err, e ? e : sb__error_new(SB_E_CONNECTION, "08001", drv->name, "cannot open database", NULL));
        sb__wake_fini(c);
        sb__free(c->url);
        sb__free(c);
        return NULL;
    }
    return c;
}

void sb__conn_unref(sb_conn *c)
{
    if (--c->refs > 0) return;
    sb__sql_memo_free(c);
    sb__free(c->url);
    sb__free(c);
}

void sb_conn_close(sb_conn *c)
{
    if (!c || c->closed) return;
    c->closed = 1;
    c->drv->close(c);  /* finishes every pending request with SB_E_CLOSED */
    c->drvdata = NULL;
    sb__wake_fini(c);
    sb__conn_unref(c);
}

int sb_conn_fd(const sb_conn *c) { return c->epfd; }
const char *sb_conn_backend(const sb_conn *c) { return c->drv->name; }
const char *sb_conn_url(const sb_conn *c) { return c->url; }

/* The earliest deadline of the requests and the driver, 0 for none. */
static int64_t next_deadline(sb_conn *c)
{
    int64_t at = c->closed ? 0 : c->drv->deadline(c);
    for (sb_req *r = c->timed; r; r = r->timed_next)
        if (!at || r->deadline < at) at = r->deadline;
    return at;
}

int sb_conn_timeout(const sb_conn *c)
{
    int64_t at = next_deadline((sb_conn *)c);
    if (!at) return -1;
    int64_t left = at - sb__now_ms();
    return left <= 0 ? 0 : left > 0x7fffffff ? 0x7fffffff : (int)left;
}

int sb_conn_step(sb_conn *c)
{
    if (c->closed || c->in_step) return SB_ERR;
    c->in_step = 1;
    c->wake_waiters = 0;
    sb__wake_drain(c);
    c->drv->step(c);
    if (c->timed) {
        int64_t now = sb__now_ms();
        sb_req *r = c->timed;
        while (r) {
            sb_req *next = r->timed_next;  /* cancel unlinks r */
            if (r->deadline <= now) sb_req_cancel(r, SB_E_TIMEOUT);
            r = next;
        }
    }
    sb__wake_arm(c, next_deadline(c));
    c->in_step = 0;
    /* a poller (under cqueues, say) may be waiting for what finished */
    if (c->wake_waiters) sb__wake_signal(c);
    return SB_OK;
}

int sb_conn_wait(sb_conn *c, sb_req *r, int timeout_ms)
{
    int64_t until = timeout_ms >= 0 ? sb__now_ms() + timeout_ms : 0;
    /* wait first: a request just submitted is rarely done yet, and a step
    ** before it would only cost a poll of every socket */
    for (;;) {
        if (r->status != SB_PENDING) return SB_OK;
        int t = sb_conn_timeout(c);
        int64_t left = until ? until - sb__now_ms() : 0;
        if (until && (t < 0 || t > left)) t = left > 0 ? (int)left : 0;
        struct pollfd p = { c->epfd, POLLIN, 0 };
        if (poll(&p, 1, t) < 0 && errno != EINTR) return SB_ERR;
        if (sb_conn_step(c) != SB_OK) return r->status != SB_PENDING ? SB_OK : SB_ERR;
        if (r->status == SB_PENDING && until && sb__now_ms() >= until) return SB_PENDING;
    }
}

size_t sb_conn_reap(sb_conn *c, uintptr_t *tags, size_t max)
{
    size_t n = 0;
    while (n < max && c->reap_head) {
        sb_req *r = c->reap_head;
        c->reap_head = r->reap_next;
        if (c->reap_head) c->reap_head->reap_prev = NULL;
        else c->reap_tail = NULL;
        r->on_reap = 0;
        r->reap_next = r->reap_prev = NULL;
        tags[n++] = r->tag;
    }
    return n;
}
