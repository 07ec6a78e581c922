/*
** pg_int.h - private to the PostgreSQL backend (core/pg_*.c).
**
** Owns: the backend's structs and the sb_pg_ functions its files share.
**   pg_drv.c    the sb_pg_driver vtable: the pending queue, pool scheduling,
**               sessions, cancel, deadlines, close.
**   pg_conn.c   one libpq connection: non-blocking connect, socket
**               registration, pipelined sends, matching results to the
**               in-flight FIFO, breaking and reconnect backoff, server-side
**               cancel.
**   pg_stmt.c   the per-connection prepared-statement cache (hash + LRU).
**   pg_value.c  parameters to libpq, PGresult to sb_result / sb_error,
**               message scrubbing, what a statement is by its first word.
**
** Object model.  A request becomes one sb_pg_op (r->drv points at it) that
** sits first in the driver's pending list, then in exactly one connection's
** in-flight FIFO.  Every op owns one pipeline "sync group": [Parse] Execute
** Sync, so an error in one request never aborts another.  Ops that nobody
** waits for (DEALLOCATE, ROLLBACK at session close, requests finished early
** by cancel) stay in the FIFO with r == NULL until their Sync arrives.
*/
#ifndef SB_PG_INT_H
#define SB_PG_INT_H

#include "sb_int.h"

#include <libpq-fe.h>

#define SB_PG_DEPTH 64           /* max requests in flight per connection */
#define SB_PG_READ_BATCH 16      /* reads one step packs onto one connection */
#define SB_PG_BACKOFF_MIN 50     /* reconnect backoff, ms (doubling) */
#define SB_PG_BACKOFF_MAX 2000
#define SB_PG_MAX_POOL 256

typedef struct sb_pg_drv sb_pg_drv;
typedef struct sb_pg_conn sb_pg_conn;
typedef struct sb_pg_op sb_pg_op;
typedef struct sb_pg_stmt sb_pg_stmt;

/* ------------------------------------------------------------------ ops */
enum { SB_PG_OP_REQ, SB_PG_OP_DISCARD };

struct sb_pg_op {
    sb_pg_op *prev, *next;  /* pending list, or the owning conn's FIFO */
    sb_req *r;              /* NULL: nobody waits (discard, or finished early) */
    sb_session *sess;       /* pinning session while pending (r holds a ref) */
    sb_pg_conn *pc;         /* NULL while pending */
    int64_t queued_at;      /* submit time (monotonic ms) */
    sb_pg_stmt *prep;       /* the statement this op's Parse creates, or NULL */
    sb_result *res;         /* what the Execute produced */
    sb_error *err;          /* the first error of the group */
    unsigned char kind;     /* SB_PG_OP_* */
    unsigned char ncmds;    /* commands before the Sync (1 or 2) */
    unsigned char cmd;      /* index of the command whose results arrive */
    unsigned char got;      /* the current command produced a result */
    unsigned is_commit : 1;     /* SQL is COMMIT/END: outcome unknown if lost */
    unsigned no_effect : 1;     /* BEGIN/ROLLBACK/...: losing it changes no data */
    unsigned reads : 1;         /* a plain read (SELECT ...): the pool packs it
                                   with the step's other reads (pg_drv.c) */
    unsigned in_tx : 1;         /* sent inside an open transaction block: a
                                   lost connection rolled it back */
    unsigned prep_ok : 1;       /* the Parse succeeded */
    unsigned cancel_wanted : 1; /* cancel on the server when it is executing */
    unsigned chained : 1;       /* SB_Q_CHAIN: no Sync of its own; finishes
                                   when its last command's results end */
};

/* Finish op->r (if any) with res/err and drop the driver's reference;
** frees res/err if nobody waits.  op->r is NULL afterwards. */
void sb_pg_op_done(sb_pg_op *op, sb_result *res, sb_error *err);
/* Free an op that is on no list; its r must be NULL (done). */
void sb_pg_op_free(sb_pg_op *op);

/* -------------------------------------------------------- stmt cache */
struct sb_pg_stmt {
    sb_pg_stmt *hnext;         /* hash chain */
    sb_pg_stmt *newer, *older; /* LRU list */
    uint32_t hash;
    unsigned id;               /* server name "sb_<id>" */
    int ready;                 /* Parse confirmed by the server */
    size_t sqllen, siglen;
    char key[];                /* sql, '\0', signature */
};

typedef struct sb_pg_cache {
    sb_pg_stmt **tab;
    unsigned mask;
    int n, cap;
    sb_pg_stmt *newest, *oldest;
} sb_pg_cache;

/* cap <= 0 disables the cache (find returns NULL, insert fails). */
int sb_pg_cache_init(sb_pg_cache *k, int cap);
void sb_pg_cache_clear(sb_pg_cache *k);  /* forget all (reconnect), keep table */
void sb_pg_cache_fini(sb_pg_cache *k);
uint32_t sb_pg_cache_hash(const char *sql, size_t sqllen, const char *sig, size_t siglen);
sb_pg_stmt *sb_pg_cache_find(sb_pg_cache *k, uint32_t h, const char *sql, size_t sqllen,
                             const char *sig, size_t siglen);
/* New not-yet-ready entry, most recent; NULL on OOM or disabled cache. */
sb_pg_stmt *sb_pg_cache_insert(sb_pg_cache *k, uint32_t h, const char *sql, size_t sqllen,
                               const char *sig, size_t siglen, unsigned id);
void sb_pg_cache_touch(sb_pg_cache *k, sb_pg_stmt *st);
void sb_pg_cache_remove(sb_pg_cache *k, sb_pg_stmt *st);  /* unlinks and frees */
/* The least recently used READY entry while the cache is over capacity. */
sb_pg_stmt *sb_pg_cache_victim(sb_pg_cache *k);

/* --------------------------------------------------------- connections */
/* UNUSED: a slot of the pool not opened yet (the pool grows on demand). */
enum { SB_PG_DOWN, SB_PG_CONNECTING, SB_PG_READY, SB_PG_UNUSED };

struct sb_pg_conn {
    sb_pg_drv *d;
    int state;               /* SB_PG_* */
    PGconn *pg;              /* NULL while DOWN */
    int fd;                  /* socket registered with wake.c, or -1 */
    unsigned ev;             /* events registered for fd */
    PostgresPollingStatusType poll;  /* CONNECTING: what libpq waits for */
    int want_write;          /* READY: PQflush left output queued */
    int deferred;            /* READY: requests whose output waits for the next
                                step (SB_Q_DEFER) */
    int deferred_reads;      /* of them, plain reads */
    int64_t deadline;        /* CONNECTING: attempt gives up at */
    int64_t retry_at;        /* DOWN: next attempt at */
    int64_t up_at;           /* READY since */
    int backoff;             /* ms, next delay */
    sb_pg_op *head, *tail;   /* in-flight FIFO, oldest first */
    int depth;               /* ops in the FIFO */
    sb_session *pinned;      /* the session owning this conn, or NULL */
    sb_session *reserved;    /* a session waiting for this conn to drain */
    sb_pg_op *cancelling;    /* op a server cancel was sent for (or the
                                next one of its chained group) */
    sb_pg_cache cache;
    unsigned next_id;        /* statement names */
    short revents;           /* readiness seen by this step's poll() */
};

/* Begin a connection attempt (state DOWN -> CONNECTING, or DOWN again with
** a backoff when libpq fails at once). */
void sb_pg_conn_start(sb_pg_conn *pc, int64_t now);
/* Advance one connection with the readiness in pc->revents. */
void sb_pg_conn_step(sb_pg_conn *pc, int64_t now);
/* Pipeline op on a READY conn (appends it to the FIFO).  If the connection
** breaks meanwhile the op is failed with the rest of the FIFO. */
void sb_pg_conn_send(sb_pg_conn *pc, sb_pg_op *op);
/* Send what SB_Q_DEFER requests left in pc's output buffer. */
void sb_pg_conn_flush_deferred(sb_pg_conn *pc);
/* Pipeline a statement whose result nobody wants (ROLLBACK, DEALLOCATE).
** Returns SB_OK, or SB_ERR when it was not sent (out of memory, or the
** connection broke: then pc->state is no longer READY). */
int sb_pg_conn_discard(sb_pg_conn *pc, const char *sql);
/* Ask the server to cancel op (in pc's FIFO) once it executes. */
void sb_pg_conn_cancel(sb_pg_conn *pc, sb_pg_op *op);
/* Fail everything in flight (connection class), drop the socket, and
** schedule a reconnect.  `why` is a libpq/server message, never a URL. */
void sb_pg_conn_break(sb_pg_conn *pc, const char *why);
/* Teardown for sb_conn_close: in-flight requests finish with SB_E_CLOSED. */
void sb_pg_conn_close(sb_pg_conn *pc);
/* The conn's next own deadline, 0 for none. */
int64_t sb_pg_conn_deadline(const sb_pg_conn *pc);

/* --------------------------------------------------------------- driver */
struct sb_pg_drv {
    sb_conn *c;
    char *conninfo;          /* the target as given: secret, never shown */
    char *password;          /* password= of the conninfo (for scrubbing) */
    int npool, prepare, cache_cap, connect_timeout;
    int nstarted;            /* slots opened so far (the rest UNUSED) */
    sb_pg_conn *conns;
    sb_pg_op *pend_head, *pend_tail;  /* waiting for a connection, in order */
    int npend_sess;          /* of them, pinned to a session */
    int nready;              /* conns in state READY */
    int64_t down_since;      /* no READY conn since (0 while one is up) */
    int ever_ready;          /* some connection has been READY since open */
    int failed_attempts;     /* connect attempts that failed */
    unsigned seed;           /* backoff jitter */
    unsigned breaks;         /* connections broken so far (dispatch restarts) */
    int deferred;            /* some conn has deferred output: flush at the step */
    char lasterr[256];       /* last connect failure, scrubbed */
    void *pfds;              /* struct pollfd[npool] */
};

/* Bookkeeping called by pg_conn.c. */
void sb_pg_conn_became_ready(sb_pg_drv *d);
void sb_pg_conn_went_down(sb_pg_drv *d, sb_pg_conn *pc, int was_ready);
void sb_pg_set_lasterr(sb_pg_drv *d, const char *msg);

/* ---------------------------------------------------------------- values */
/* Parameters as libpq wants them; one allocation (sb_pg_params_free). */
typedef struct sb_pg_params {
    int n;
    Oid *types;
    const char **values;
    int *lengths;
    int *formats;
    char *sig;               /* one char per parameter (cache key) */
    void *block;
} sb_pg_params;

/* NULL, or why the request's parameters cannot be sent (class misuse). */
const char *sb_pg_params_check(const sb_req *r);
int sb_pg_params_build(const sb_req *r, sb_pg_params *p);  /* SB_OK / SB_ERR (OOM) */
void sb_pg_params_free(sb_pg_params *p);

/* A TUPLES_OK/COMMAND_OK/EMPTY_QUERY result as sb_result, which takes res
** over (its text values point into it: no second copy); NULL on OOM, and
** then res is still the caller's. */
sb_result *sb_pg_result(PGresult *res);
/* An error result as sb_error (SQLSTATE, primary message, detail). */
sb_error *sb_pg_error(const PGresult *res);
/* Whether a FATAL/PANIC result means the session is gone. */
int sb_pg_result_fatal(const PGresult *res);
/* A connection-class error with retryable/unknown_outcome set. */
sb_error *sb_pg_conn_error(const char *sqlstate, const char *msg, int retryable,
                           int unknown_outcome);
/* Copy a conninfo parse error to out, with every quoted token that is not
** a keyword of the conninfo (one that is followed by '=') replaced by "***":
** libpq quotes pieces of the string it failed on, which may be a password. */
void sb_pg_scrub_parse(const char *msg, const char *conninfo, char *out, size_t outsz);
/* Replace every occurrence of secret in msg by "***" (in place). */
void sb_pg_scrub_secret(char *msg, const char *secret);
/* What a statement is, by its first word (after blanks). */
typedef enum {
    SB_PG_OTHER,
    SB_PG_COMMIT,     /* COMMIT / END [WORK|TRANSACTION|...] */
    SB_PG_NO_EFFECT,  /* BEGIN / START / ROLLBACK / ABORT: its loss changes no data */
    SB_PG_READ        /* SELECT / VALUES / TABLE / SHOW: a read, as far as
                         scheduling goes (a SELECT may call a function that
                         writes: it is then only packed like one) */
} sb_pg_kind;
sb_pg_kind sb_pg_kind_of(const char *sql, size_t len);

#endif /* SB_PG_INT_H */
