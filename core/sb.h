/*
** sb.h - the public interface of libswitchboard, the C core of switchboard.
**
** Owns: the opaque handle types (sb_conn, sb_req, sb_session, sb_result,
** sb_error), the value type used for parameters and results, and one
** contract block per function (what it does, Returns, Ownership, Thread).
**
** Does not own: any event loop and any Lua.  The core never blocks inside
** sb_conn_submit or sb_conn_step; a host watches ONE file descriptor per
** open database (sb_conn_fd) for readability, calls sb_conn_step when it is
** readable or when sb_conn_timeout() milliseconds have passed, and then
** looks at its requests.  sb_conn_wait is the blocking helper for hosts
** without a loop.
**
** Threads: an sb_conn and everything made from it belong to the thread that
** opened it (like a hiredis context).  The SQLite backend runs worker
** threads internally; they never touch the caller's objects.
*/
#ifndef SB_H
#define SB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SB_VERSION "0.1.0"

/* Status codes returned by the core's functions. */
enum {
    SB_OK = 0,       /* done, successfully */
    SB_PENDING = 1,  /* not finished yet: step again later */
    SB_ERR = -1      /* failed: details in the matching sb_error */
};

/* Error classes: what a caller can do about an error (see sb_error_class). */
typedef enum sb_errclass {
    SB_E_NONE = 0,
    SB_E_CONSTRAINT,     /* unique/foreign key/not null/check violated */
    SB_E_SYNTAX,         /* bad SQL, unknown table or column */
    SB_E_BUSY,           /* database locked beyond busy_timeout (retryable) */
    SB_E_TIMEOUT,        /* the request's deadline passed; it was cancelled */
    SB_E_CONNECTION,     /* cannot connect, or the connection broke */
    SB_E_SERIALIZATION,  /* serialization failure or deadlock (retryable) */
    SB_E_CLOSED,         /* the database was closed under the request */
    SB_E_MISUSE,         /* API misuse: wrong parameter count, bad URL, ... */
    SB_E_OTHER           /* anything else, including out of memory */
} sb_errclass;

/* Value types, shared by parameters and results. */
typedef enum sb_type {
    SB_NULL = 0,
    SB_BOOL,
    SB_INT,    /* int64_t */
    SB_FLOAT,  /* double */
    SB_TEXT,   /* bytes, not necessarily NUL-terminated (but results are) */
    SB_BLOB    /* raw bytes */
} sb_type;

/*
** A value.  For SB_TEXT and SB_BLOB, `u.s.p` points at `u.s.len` bytes
** that the value does NOT own: in a parameter they belong to the caller
** (the core copies them at submit), in a result they belong to the result.
*/
typedef struct sb_value {
    sb_type type;
    union {
        int b;
        int64_t i;
        double f;
        struct { const char *p; size_t len; } s;
    } u;
} sb_value;

typedef struct sb_conn sb_conn;        /* an open database: one pool */
typedef struct sb_req sb_req;          /* one submitted statement */
typedef struct sb_session sb_session;  /* requests pinned to one connection */
typedef struct sb_result sb_result;    /* rows and columns of a finished req */
typedef struct sb_error sb_error;      /* a structured error */


/* ---------------------------------------------------------------- setup */

/*
** Options for sb_conn_open.  Call sb_options_init first, then change what
** you need.  Fields that a backend does not use are ignored by it.
*/
typedef struct sb_options {
    int pool;             /* PostgreSQL: most connections in the pool (16);
                             opened one by one as load needs them */
    int readers;          /* SQLite: reader connections/threads (2) */
    int busy_timeout_ms;  /* SQLite: busy_timeout (5000) */
    int statement_cache;  /* prepared statements kept per connection (64) */
    int prepare;          /* PostgreSQL: named prepared statements (1);
                             0 for pgbouncer transaction pooling */
    int synchronous_full; /* SQLite: synchronous=FULL instead of NORMAL (0) */
    int connect_timeout_ms; /* PostgreSQL: per connection attempt (10000) */
} sb_options;

void sb_options_init(sb_options *o);

/*
** Replace the allocator used by the core (and only the core).  Must be
** called before any other function, from one thread.  The functions must
** be thread-safe (SQLite workers allocate).  Passing NULLs restores malloc.
*/
void sb_set_allocator(void *(*xmalloc)(size_t), void *(*xrealloc)(void *, size_t),
                      void (*xfree)(void *));


/* ------------------------------------------------------------- database */

/*
** sb_conn_open: open a database by URL and start connecting.
**   "sqlite:PATH", "sqlite://PATH", "sqlite::memory:"   embedded SQLite
**   "postgresql://...", "postgres://...", or a libpq conninfo string
**   ("host=... dbname=..."), including multi-host lists and
**   target_session_attrs: PostgreSQL through libpq.
** Never blocks on the network: PostgreSQL connections are established by
** sb_conn_step; requests submitted before that wait for them.
** Returns: the connection, or NULL with *err set (caller frees it with
** sb_error_free).  err may be NULL.
** Ownership: the caller owns the connection and must sb_conn_close it.
*/
sb_conn *sb_conn_open(const char *url, const sb_options *opts, sb_error **err);

/*
** sb_conn_close: close the database.  Every request that has not finished
** finishes now with an error of class SB_E_CLOSED; PostgreSQL sockets are
** closed without waiting for the server; SQLite workers are interrupted and
** joined (they stop within milliseconds).  Requests and sessions stay valid
** objects until freed (they keep the memory alive), but `c` itself must not
** be used after this call.  NULL is a no-op.
** Thread: owner thread; must not be called from inside sb_conn_step.
*/
void sb_conn_close(sb_conn *c);

/*
** sb_conn_fd: the one pollable fd of this database.  It is the same for the
** connection's whole life, level-triggered, and readable whenever
** sb_conn_step has work to do (I/O ready, a worker finished, a deadline
** passed, or a step finished an SB_Q_WAKE request that its waiter has not
** seen yet).
*/
int sb_conn_fd(const sb_conn *c);

/*
** sb_conn_timeout: milliseconds until sb_conn_step must be called even if
** the fd is not readable (a request deadline, a reconnect backoff), 0 if
** now, -1 if there is no deadline.
*/
int sb_conn_timeout(const sb_conn *c);

/*
** sb_conn_step: do all the work possible now without blocking: I/O,
** connection state machines, worker completions, deadlines.  Finished
** requests change status.  Safe to call spuriously.
** Returns: SB_OK; SB_ERR if called re-entrantly or after close (misuse).
*/
int sb_conn_step(sb_conn *c);

/*
** sb_conn_wait: block (poll(2) on sb_conn_fd, stepping) until `r` has
** finished or timeout_ms passed (-1: no limit).  The no-loop helper.
** Returns: SB_OK when r finished (look at sb_req_status), SB_PENDING on
** timeout.
*/
int sb_conn_wait(sb_conn *c, sb_req *r, int timeout_ms);

/*
** sb_conn_reap: take up to `max` tags of tagged requests (sb_req_set_tag)
** that finished since the last reap, oldest first.  A scheduler uses this
** to learn which waiters to resume without looking at every request.
** Returns: the number of tags written.
*/
size_t sb_conn_reap(sb_conn *c, uintptr_t *tags, size_t max);

/* "sqlite" or "postgresql". */
const char *sb_conn_backend(const sb_conn *c);

/* The URL with any password replaced by "***"; owned by the connection. */
const char *sb_conn_url(const sb_conn *c);


/* ------------------------------------------------------------- requests */

/* sb_query.flags */
#define SB_Q_INLINE 0x1u  /* the caller will block anyway: a backend may run
                             the statement on the caller's thread right now
                             when its connection is idle (no hand-off) */
#define SB_Q_WAKE 0x4u   /* the caller waits by polling sb_conn_fd (under a
                             foreign loop, say): when this request finishes
                             inside someone else's sb_conn_step, the fd is
                             made readable again so the caller wakes up */
#define SB_Q_INLINE_WRITE 0x2u /* the caller must not block, but a write may
                             run on the caller's thread when SQLite's writer
                             is idle (writes serialize there anyway); it
                             never waits for a file lock inline: when the
                             database is locked it goes to the worker */
#define SB_Q_INLINE_QUICK 0x8u /* the caller must not block long, but a read
                             may run on the caller's thread when SQLite has
                             no other request in flight and the same SQL
                             recently ran in under SB_QUICK_US microseconds:
                             a lone quick read then costs no thread
                             hand-off (two wake-ups) */
#define SB_QUICK_US 200
#define SB_Q_CHAIN 0x10u  /* a session's request that goes out with the
                             session's next one in one round trip (one
                             pipeline sync on PostgreSQL) and finishes with
                             it; if it fails, the next one is skipped with an
                             error rather than run without it (a deferred
                             BEGIN; a batch).  On PostgreSQL requests chained
                             without a BEGIN run in one implicit transaction
                             that the last one's Sync commits, or rolls back
                             if any failed.  SQLite runs each as usual, on
                             the writer in order, skipping after a failure.
                             Ignored outside a session */

#define SB_Q_DEFER 0x20u  /* the caller steps soon (a scheduler that resumes
                             many tasks, then steps): PostgreSQL may keep the
                             request in the output buffer until the next
                             sb_conn_step, to go out with the others in one
                             write (one server wake-up, not one each); the fd
                             is made readable meanwhile, so a host that polls
                             steps soon */

/* What to run: the arguments of sb_conn_submit. */
typedef struct sb_query {
    const char *sql;         /* one statement; placeholders $1 .. $n */
    size_t sql_len;
    const sb_value *params;  /* nparams values; copied at submit */
    int nparams;
    sb_session *session;     /* NULL: any connection; else pinned */
    int timeout_ms;          /* > 0: fail with SB_E_TIMEOUT and cancel the
                                statement after this long */
    unsigned flags;          /* SB_Q_* */
} sb_query;

/*
** sb_conn_submit: queue one statement.  Never blocks (except that with
** SB_Q_INLINE the statement itself may run before it returns).  Errors
** found at once (closed database, wrong parameter count, multiple
** statements) are recorded in the request, which is then already finished.
** Returns: the request, or NULL only when out of memory.
** Ownership: the caller owns the request and frees it with sb_req_free,
** finished or not (an unfinished request is cancelled, best effort).
*/
sb_req *sb_conn_submit(sb_conn *c, const sb_query *q);

/* SB_PENDING while running, SB_OK when it succeeded, SB_ERR when it failed. */
int sb_req_status(const sb_req *r);

/* The rows of a finished, successful request (never NULL then); owned by r. */
const sb_result *sb_req_result(const sb_req *r);

/* The error of a failed request (never NULL then); owned by r. */
const sb_error *sb_req_error(const sb_req *r);

/* Attach a non-zero tag: when r finishes, the tag is queued for sb_conn_reap. */
void sb_req_set_tag(sb_req *r, uintptr_t tag);

/*
** sb_req_cancel: best effort.  A queued request finishes at once with
** `cls` (SB_E_TIMEOUT or SB_E_CLOSED, say); a running one is interrupted
** and finishes with that class, its late results discarded.
*/
void sb_req_cancel(sb_req *r, sb_errclass cls);

/* Free a request; cancels it first if unfinished.  NULL is a no-op. */
void sb_req_free(sb_req *r);


/* ------------------------------------------------------------- sessions */

/*
** sb_session_open: a handle that pins requests to one connection, in
** submission order (what a transaction needs).  The connection is taken
** when the first request runs and is exclusive until sb_session_close:
** other requests never run on it meanwhile.  SQLite sessions use the
** writer connection.
** Returns: NULL when out of memory.
*/
sb_session *sb_session_open(sb_conn *c);

/*
** sb_group_open: a session for ONE group of requests: chained ones
** (SB_Q_CHAIN) and the first one without, which ends the group (later
** requests of it are refused).  They go out back to back on one
** connection, which is NOT taken exclusively: PostgreSQL pipelines the
** group with other requests before and after it, so a busy pool still
** sends it in one round trip.  Without a BEGIN its statements run as one
** implicit transaction (see SB_Q_CHAIN); a group that opens a transaction
** block must use sb_session_open, which rolls back what is left open.
** SQLite treats it as sb_session_open.
** Returns: NULL when out of memory.  Close it with sb_session_close.
*/
sb_session *sb_group_open(sb_conn *c);

/*
** sb_session_close: give the connection back.  If a transaction is still
** open on it, the backend rolls it back before anyone else uses it.
** Requests of the session that are still queued are cancelled.
** Safe after sb_conn_close.  NULL is a no-op.
*/
void sb_session_close(sb_session *s);

/* True when the session's last finished request broke its connection. */
int sb_session_broken(const sb_session *s);


/* -------------------------------------------------------------- results */

int sb_result_ncols(const sb_result *res);
int sb_result_nrows(const sb_result *res);
/* Column name, NUL-terminated; owned by the result. */
const char *sb_result_colname(const sb_result *res, int col);
/* Values of row `row` (ncols of them); owned by the result. */
const sb_value *sb_result_row(const sb_result *res, int row);
/* Rows changed by INSERT/UPDATE/DELETE, or rows returned by a query. */
int64_t sb_result_affected(const sb_result *res);


/* --------------------------------------------------------------- errors */

sb_errclass sb_error_class(const sb_error *e);
/* "constraint", "syntax", ... ; "none" for SB_E_NONE. */
const char *sb_errclass_name(sb_errclass cls);
/* Five-character SQLSTATE (native on PostgreSQL, mapped on SQLite). */
const char *sb_error_sqlstate(const sb_error *e);
const char *sb_error_message(const sb_error *e);
/* Detail text or NULL. */
const char *sb_error_detail(const sb_error *e);
/* "sqlite", "postgresql", or "switchboard" for errors of the core. */
const char *sb_error_backend(const sb_error *e);
/* True when running the same thing again may succeed (busy, serialization,
** deadlock, a lost connection before the statement was sent). */
int sb_error_retryable(const sb_error *e);
/* True when the connection broke after COMMIT, or after a statement outside
** a transaction block (autocommit), was sent: it may have taken effect. */
int sb_error_unknown_outcome(const sb_error *e);
/* Free an error returned by sb_conn_open.  NULL is a no-op. */
void sb_error_free(sb_error *e);

#ifdef __cplusplus
}
#endif
#endif /* SB_H */
