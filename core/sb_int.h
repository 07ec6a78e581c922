/*
** sb_int.h - private to core/: struct layouts, the driver vtable, and the
** helpers that conn.c, req.c, result.c, error.c, wake.c and sql.c offer to
** the backends.  Never included by bindings or users.
**
** The driver contract (every entry non-blocking):
**   open     start connecting / spawn workers; set c->drvdata.  Register
**            fds with sb__wake_add.  Return SB_OK or SB_ERR with *err.
**   submit   take one request.  The driver receives ONE reference to it
**            (it must call sb__req_unref exactly once when it no longer
**            touches r) and must call sb__req_finish exactly once, on the
**            owner thread (from submit, step, cancel, session_close or
**            close).  r->sql is already translated for the backend's
**            placeholder style and r->nparams checked against it.  With
**            SB_Q_INLINE in r->flags it may run r before returning.
**   step     do all work possible now; finish requests.  Never blocks.
**   deadline the driver's own next deadline (monotonic ms) or 0 for none
**            (reconnect backoff, connect timeout).
**   cancel   r is pending: finish it now with class `cls` and stop its
**            work (drop it if queued; interrupt it if running and discard
**            the late result).
**   session_close  give back the connection pinned by s (roll back an
**            open transaction first); cancel s's queued requests.
**   close    finish every pending request with SB_E_CLOSED, stop workers,
**            close sockets, free driver state.  Never waits for a server.
*/
#ifndef SB_INT_H
#define SB_INT_H

#include "sb.h"

#include <stdarg.h>
#include <stdatomic.h>

/* ------------------------------------------------------------ allocator */
void *sb__malloc(size_t n);
void *sb__calloc(size_t n, size_t size);
void *sb__realloc(void *p, size_t n);
void sb__free(void *p);
char *sb__strndup(const char *s, size_t n);
char *sb__strdup(const char *s);

/* Monotonic clock in milliseconds. */
int64_t sb__now_ms(void);
int64_t sb__now_us(void);  /* CLOCK_MONOTONIC */

/* -------------------------------------------------------------- drivers */
#define SB_CAP_QMARK 0x1u  /* placeholders $N are rewritten to ?N */
#define SB_CAP_WORKERS 0x2u /* worker threads write the wake eventfd */

typedef struct sb_driver {
    const char *name;  /* "sqlite", "postgresql" */
    unsigned caps;
    int (*open)(sb_conn *c, const char *target, sb_error **err);
    void (*submit)(sb_conn *c, sb_req *r);
    void (*step)(sb_conn *c);
    int64_t (*deadline)(sb_conn *c);
    void (*cancel)(sb_conn *c, sb_req *r, sb_errclass cls);
    void (*session_close)(sb_conn *c, sb_session *s);
    void (*close)(sb_conn *c);
} sb_driver;

extern const sb_driver sb_sqlite_driver;
extern const sb_driver sb_pg_driver;

/* ------------------------------------------------------------- objects */
struct sb_conn {
    const sb_driver *drv;
    void *drvdata;       /* the driver's state */
    sb_options opts;
    char *url;           /* redacted, for display */
    int epfd;            /* THE pollable fd: epoll over evfd, timerfd, sockets */
    int evfd;            /* eventfd: "step has something to do" */
    atomic_int signalled; /* set after each write to evfd, so that a step
                            reads it only when it may hold something */
    int timerfd;         /* armed at the earliest deadline */
    int64_t timer_at;    /* what timerfd is armed for (0 = disarmed) */
    int refs;            /* the user + every live request and session */
    int closed;
    int in_step;
    int wake_waiters;    /* an SB_Q_WAKE request finished during step */
    sb_req *reap_head, *reap_tail;  /* finished tagged requests */
    sb_req *timed;       /* pending requests with a deadline */
    struct sb_sqlmemo *sqlmemo;  /* sql.c: scanned statements */
};

struct sb_req {
    sb_conn *conn;       /* counted reference */
    int refs;            /* the caller's + the driver's while it holds r */
    int status;          /* SB_PENDING, SB_OK, SB_ERR */
    unsigned flags;      /* SB_Q_* */
    char *sql;           /* owned, NUL-terminated, backend placeholder style */
    size_t sql_len;
    uint64_t sql_hash;   /* sb__sql_hash of the SQL as submitted: a cache key */
    sb_value *params;    /* owned (with the bytes of text/blob values) */
    int nparams;
    sb_session *session; /* NULL, or the pinning session (not counted) */
    int64_t deadline;    /* monotonic ms, 0 = none */
    sb_result *result;   /* owned once finished OK */
    sb_error *error;     /* owned once finished with an error */
    uintptr_t tag;
    int freed;           /* the caller has let go */
    sb_req *reap_prev, *reap_next;  /* in c->reap list */
    int on_reap;
    sb_req *timed_prev, *timed_next;  /* in c->timed list */
    int on_timed;
    sb_req *next;        /* free for the driver's queues */
    void *drv;           /* free for the driver */
};

struct sb_session {
    sb_conn *conn;       /* counted reference */
    int refs;            /* the caller's + one per live request using it */
    void *drv;           /* the driver's pin (connection) or NULL */
    int broken;
    int closed;
    int group;           /* sb_group_open: 1, and 2 once its last request
                            (the first without SB_Q_CHAIN) was submitted */
    int skip_next;       /* a request chained to the next (SB_Q_CHAIN)
                            failed before it reached the backend: the
                            next one fails too, unsent (owner thread) */
};

struct sb_error {
    sb_errclass cls;
    char sqlstate[6];
    int retryable;
    int unknown_outcome;
    const char *backend;  /* static string */
    char *message;        /* in the same allocation as the struct */
    char *detail;         /* or NULL */
};

/* ----------------------------------------------------- request helpers */
/* Finish r with a result or an error (ownership of res/err moves to r, or
** they are freed if r already finished).  Owner thread only. */
void sb__req_finish(sb_req *r, sb_result *res, sb_error *err);
/* Finish r with a new error of class cls. */
void sb__req_fail(sb_req *r, sb_errclass cls, const char *sqlstate,
                  const char *backend, const char *msg);
/* r failed before its backend ran it: if it was chained to its session's
** next request (SB_Q_CHAIN), that one is skipped with an error. */
void sb__req_chain_broken(const sb_req *r);
/* The error message of a request skipped that way (core or backend). */
#define SB_MSG_CHAIN_SKIPPED "statement skipped: an earlier statement it was chained to failed"

/* Drop a reference; frees r at zero. */
void sb__req_unref(sb_req *r);
void sb__conn_unref(sb_conn *c);
void sb__session_unref(sb_session *s);

/* ------------------------------------------------------- result builder */
sb_result *sb__result_new(int ncols);
void sb__result_free(sb_result *res);
int sb__result_colname(sb_result *res, int col, const char *name, size_t len);
int sb__result_reserve(sb_result *res, int nrows);
/* Append a row; returns its ncols values (all SB_NULL) or NULL (OOM). */
sb_value *sb__result_add_row(sb_result *res);
/* Store bytes into v (copied into the result, NUL-terminated); SB_ERR on OOM. */
int sb__result_bytes(sb_result *res, sb_value *v, sb_type t, const char *p, size_t n);
void sb__result_set_affected(sb_result *res, int64_t n);
/* Values point into mem (NUL-terminated bytes that live as long as it):
** the result frees it with mem_free when it is freed itself. */
void sb__result_keep(sb_result *res, void *mem, void (*mem_free)(void *));

/* --------------------------------------------------------------- errors */
/* Never returns NULL: on OOM it returns a static "out of memory" error that
** sb_error_free ignores. */
sb_error *sb__error_new(sb_errclass cls, const char *sqlstate, const char *backend,
                        const char *message, const char *detail);
sb_error *sb__error_fmt(sb_errclass cls, const char *sqlstate, const char *backend,
                        const char *fmt, ...);
/* The class of a SQLSTATE ("23505" -> SB_E_CONSTRAINT, ...). */
sb_errclass sb__class_from_sqlstate(const char *sqlstate);
/* Whether errors of this class/SQLSTATE are retryable. */
int sb__retryable(sb_errclass cls, const char *sqlstate);
extern const char *const SB_BACKEND_CORE;  /* "switchboard" */

/* ----------------------------------------------------------------- wake */
#define SB_EV_READ 0x1u
#define SB_EV_WRITE 0x2u
int sb__wake_add(sb_conn *c, int fd, unsigned events);
int sb__wake_mod(sb_conn *c, int fd, unsigned events);
void sb__wake_del(sb_conn *c, int fd);
/* Make the pollable fd readable (any thread). */
void sb__wake_signal(sb_conn *c);
/* conn.c only: create/destroy the set, drain evfd and timerfd at the start
** of a step, arm the timerfd at a monotonic ms time (0 disarms). */
int sb__wake_init(sb_conn *c);
void sb__wake_fini(sb_conn *c);
void sb__wake_drain(sb_conn *c);
void sb__wake_arm(sb_conn *c, int64_t at_ms);

/* ------------------------------------------------------------------ sql */
/*
** Scan one SQL text: find placeholders $N outside literals, quoted
** identifiers, comments and dollar-quoted strings.  *maxparam gets the
** highest N (0 if none).  If `qmark` is set the '$' of every placeholder
** is rewritten to '?' in place (same length).  Returns SB_OK, or SB_ERR
** for a placeholder number that is 0 or too large.
*/
int sb__sql_scan(char *sql, size_t len, int qmark, int *maxparam);
/* sb__sql_scan through the connection's memo of recent statements (an
** allocation failure only skips the memo). */
int sb__sql_check(sb_conn *c, char *sql, size_t len, int qmark, int *maxparam, uint64_t *hash);
/* A fast in-process hash of SQL text (keys are always compared in full). */
uint64_t sb__sql_hash(const char *p, size_t n);
void sb__sql_memo_free(sb_conn *c);

/* ------------------------------------------------------------------ url */
/* The driver a URL names (NULL if none) and the part it gets as target. */
const sb_driver *sb__url_driver(const char *url, const char **target);
/* Copy of url with the password (user:PASS@ or password=...) as "***". */
char *sb__url_redact(const char *url);

#endif /* SB_INT_H */
