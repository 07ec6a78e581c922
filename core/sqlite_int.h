/*
** sqlite_int.h - private to the SQLite backend (sqlite_drv.c and
** sqlite_worker.c): the driver state, one "slot" per SQLite connection
** with its worker thread, the jobs that travel between the owner thread
** and the workers, and the small LRU map used both as statement cache and
** as the owner's "is this SQL read-only?" memory.
**
** Threads and locks (the whole story):
**   - The OWNER thread (the one that opened the sb_conn) is the only one
**     that touches sb_req, sb_session, sb_conn, the wait queue, the ro map,
**     job->cancelled and the job free list; it alone calls
**     sb__req_finish / sb__req_unref.
**   - A slot's connection (h, its statement cache, busy handler state) is
**     used by exactly one RUNNER at a time: its worker thread, or the owner
**     thread on the inline fast path.  slot->busy (under pool->mu) says
**     which; workers only take jobs from their pool's queue, which only
**     the owner fills, and a claim needs that queue empty.
**   - pool->mu guards the pool's run queue and stop flag, its slots'
**     running and busy, and job->state / job->slot of jobs queued on it.
**     sb_sqlite.cmu guards the completion queue.  The two are never held
**     together.
**   - A worker reads r->sql and r->params of the request it runs.  That
**     memory lives until the last sb__req_unref, and the driver keeps its
**     reference until the job has come back through the completion queue
**     (or the worker was joined), so a cancelled request's bytes stay
**     valid while SQLite may still read them.
*/
#ifndef SB_SQLITE_INT_H
#define SB_SQLITE_INT_H

#include "sb_int.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>

/* ---------------------------------------------------------------- LRU map */
typedef struct sb_sqlite_ent {
    struct sb_sqlite_ent *hnext;        /* bucket chain */
    struct sb_sqlite_ent *prev, *next;  /* recency list, newest first */
    uint64_t hash;
    sqlite3_stmt *st;  /* statement cache: the statement; ro map: NULL */
    int ro;            /* 1: runs on a reader; 0: must run on the writer */
    uint32_t us;       /* ro map, read-only SQL: its recent run time in
                          microseconds (moving average), UINT32_MAX unknown */
    size_t len;
    char key[];        /* len bytes of SQL text + NUL */
} sb_sqlite_ent;

typedef struct sb_sqlite_lru {
    sb_sqlite_ent **b;  /* nb buckets (a power of two), or NULL when cap 0 */
    size_t nb;
    sb_sqlite_ent *head, *tail;
    int n, cap;
} sb_sqlite_lru;

/* ------------------------------------------------------------------ jobs */
enum {
    SB_SQLITE_J_WAIT,    /* in the driver's wait queue (owner only) */
    SB_SQLITE_J_QUEUED,  /* in pool->q */
    SB_SQLITE_J_RUN,     /* slot->running */
    SB_SQLITE_J_DONE     /* on its way to / in the completion queue */
};

/* Outcome of running a job. */
enum { SB_SQLITE_RAN = 0, SB_SQLITE_BOUNCED = 1, SB_SQLITE_LOCKED = 2 };

struct sb_sqlite_pool;
struct sb_sqlite_slot;

typedef struct sb_sqlite_job {
    struct sb_sqlite_job *prev, *next;  /* in at most one queue */
    sb_req *r;            /* the driver's reference; NULL: a release job
                             (roll back the writer if a session left a
                             transaction open) */
    struct sb_sqlite_pool *pool;  /* NULL while in d->wait (owner only) */
    struct sb_sqlite_slot *slot;  /* the runner, set when a worker takes it */
    uint64_t hash;        /* of r->sql */
    int state;            /* SB_SQLITE_J_*, under pool->mu once queued */
    int probe;            /* unknown SQL tried on a reader: bounce writes */
    int quick;            /* owner: recent runs were quick; in pool->quick */
    int cancelled;        /* owner only: r already finished; drop outcome */
    /* outcome, written by the runner, read by the owner after completion */
    int bounced;
    int ro;               /* -1 unknown, 0 write, 1 read-only */
    uint32_t us;          /* how long running it took, in microseconds */
    sb_result *res;
    sb_error *err;
} sb_sqlite_job;

typedef struct sb_sqlite_jq {
    sb_sqlite_job *head, *tail;
} sb_sqlite_jq;

/* ----------------------------------------------------------------- slots */
typedef struct sb_sqlite_slot {
    struct sb_sqlite *db;
    struct sb_sqlite_pool *pool;
    int idx;              /* 0 writer, 1.. readers */
    sqlite3 *h;
    /* runner only */
    sb_sqlite_lru cache;
    int busy_ms;
    int nowait;           /* SB_Q_INLINE_WRITE run: give up on locks at once */
    int chain_failed;     /* a session's SB_Q_CHAIN request failed: its next
                             one is skipped (cleared when the pin is let go) */
    /* any thread: "stop waiting for locks" (cancel, close) */
    atomic_int intr;
    /* owner only: how the inline runner claimed h (0 not, 1 lock-free, 2 busy) */
    int claim;
    /* under pool->mu */
    sb_sqlite_job *running;
    int busy;             /* a worker, or the owner through a locked claim, uses h */
    /* thread */
    pthread_t th;
    int started;          /* th is running and must be joined */
} sb_sqlite_slot;

/* The writer pool (one slot) or the reader pool (N slots): one shared run
** queue, so a quick read never waits behind a slow one while another
** reader is free.  Quick reads (SB_QUICK_US) go to a second queue that
** only the first `lane` slots serve: on a machine with fewer cores than
** readers + 1, more threads would only take turns on the cores with the
** owner thread, which builds every result's rows; slow reads use all. */
typedef struct sb_sqlite_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* slots [0, lane) wait here */
    pthread_cond_t cv_more;  /* slots [lane, nslots) wait here */
    int sync_init;        /* mu and the condvars initialised */
    sb_sqlite_slot *slots;
    int nslots;
    int lane;             /* slots that run quick jobs (nslots: no split) */
    int jobs;             /* owner only: pushed and not yet back (or removed) */
    /* under mu */
    sb_sqlite_jq q;       /* any slot */
    sb_sqlite_jq quick;   /* slots [0, lane) only */
    int idle_more;        /* slots beyond the lane waiting for q ... */
    int woken_more;       /* ... of which this many were signalled already */
    int lane_slow;        /* lane slots running a job from q: when all do,
                             quick jobs go to q (no wait behind a report) */
    int stop;
} sb_sqlite_pool;

typedef struct sb_sqlite {
    sb_conn *c;
    int nslots;              /* 1 + readers */
    sb_sqlite_slot *slots;   /* [0] is the writer */
    sb_sqlite_pool wpool, rpool;  /* rpool.nslots == 0: no readers */
    /* owner only */
    sb_sqlite_lru ro;        /* SQL text -> known read-only / known write */
    /* checkpoints (sqlite_drv.c: wal_hook): a read-write connection a
    ** reader thread checkpoints through (serialized mode), or NULL; and
    ** "the WAL passed its threshold", set by the writer's hook on any
    ** thread, taken by the reader thread that runs the checkpoint */
    sqlite3 *ckpt;
    atomic_int ckpt_wanted;
    int ckpt_asked_at;       /* WAL pages when one was last asked for; only
                                the writer's runner (the WAL hook) uses it */
    sb_session *pin;         /* the session holding the writer, or NULL */
    sb_sqlite_job *release;  /* allocated before a pin is taken, so that
                                giving the pin back never needs memory */
    sb_sqlite_jq wait;       /* writer requests waiting for the pin */
    sb_sqlite_job *spare;    /* free jobs (singly linked through next) */
    int nspare;
    /* completions, under cmu */
    pthread_mutex_t cmu;
    int cmu_init;
    sb_sqlite_jq done;
} sb_sqlite;

/* -------------------------------------------------- sqlite_lru.c */
/* cap <= 0: a map that holds nothing.  SB_ERR on OOM. */
int sb_sqlite_lru_init(sb_sqlite_lru *m, int cap);
/* The entry for key, made most recent; NULL if absent. */
sb_sqlite_ent *sb_sqlite_lru_get(sb_sqlite_lru *m, uint64_t hash, const char *key, size_t len);
/* Add key (absent) as the most recent entry, evicting the least recent
** beyond cap.  NULL when the map holds nothing or on OOM (the caller then
** just does not cache). */
sb_sqlite_ent *sb_sqlite_lru_put(sb_sqlite_lru *m, uint64_t hash, const char *key, size_t len,
                                 sqlite3_stmt *st, int ro);
void sb_sqlite_lru_free(sb_sqlite_lru *m);

/* -------------------------------------------------- sqlite_exec.c */
sb_error *sb_sqlite_oom(void);
/* Microseconds since `since` (sb__now_us), clamped below UINT32_MAX. */
uint32_t sb_sqlite_elapsed_us(int64_t since);
/* Run r on slot s (the caller is s's runner).  *ro gets what the
** statement is (-1 if it did not prepare).  With `probe` (s is a reader
** trying unknown SQL) a statement that is not read-only, or does not
** prepare, is not run: SB_SQLITE_BOUNCED, nothing in *res / *err;
** otherwise SB_SQLITE_RAN with a result or an error. */
int sb_sqlite_exec(sb_sqlite_slot *s, const sb_req *r, uint64_t hash, int probe,
                   sb_result **res, sb_error **err, int *ro);
/* Give the writer back clean: roll back what a session left open. */
void sb_sqlite_rollback_open(sb_sqlite_slot *s);
/* A passive checkpoint through d->ckpt (a reader thread, when asked). */
void sb_sqlite_checkpoint(struct sb_sqlite *d);
/* Run job j's request on slot s (the caller is s's runner).  Fills
** j->res / j->err / j->ro / j->bounced.  A release job (r == NULL) rolls
** back an open transaction.  Never touches owner-only state. */
void sb_sqlite_run(sb_sqlite_slot *s, sb_sqlite_job *j);

/* -------------------------------------------------- sqlite_worker.c */
/* Initialise a pool over slots[0..n) (mutex, condvars), every slot in the
** quick lane.  SB_ERR on failure. */
int sb_sqlite_pool_init(sb_sqlite_pool *p, sb_sqlite_slot *slots, int n);
/* Start s's worker thread.  SB_OK, or SB_ERR with *err set. */
int sb_sqlite_slot_start(sb_sqlite_slot *s, sb_error **err);
/* Tell p's workers to stop, interrupting what they run. */
void sb_sqlite_pool_stop(sb_sqlite_pool *p);
/* Join p's workers (after sb_sqlite_pool_stop) and destroy mu/cv. */
void sb_sqlite_pool_join(sb_sqlite_pool *p);

/* Queue j on p (j->quick: on the lane's queue) and wake one worker (owner). */
void sb_sqlite_pool_push(sb_sqlite_pool *p, sb_sqlite_job *j);
/* A checkpoint is wanted (any thread): wake the reader that runs it, one
** beyond the quick-read lane when there is one. */
void sb_sqlite_pool_wake_checkpointer(sb_sqlite_pool *p);
/* Remove j from p's queue if it is still queued (owner): returns 1.  Else,
** if j runs now, interrupt it, and return 0. */
int sb_sqlite_pool_cancel(sb_sqlite_pool *p, sb_sqlite_job *j);
/* Take p's queued jobs whose request belongs to session `sess` (owner). */
sb_sqlite_jq sb_sqlite_pool_take(sb_sqlite_pool *p, sb_session *sess);
/* Inline fast path: an idle slot of p, or NULL.  When none of p's jobs
** is out (p->jobs == 0) no worker touches any slot and none can start
** one until the owner pushes, so slot 0 is taken without a lock (the
** completion queue's mutex ordered the workers' last use before it);
** else an idle slot is marked busy under p->mu.  Release after running on
** the caller's thread (owner). */
sb_sqlite_slot *sb_sqlite_pool_claim(sb_sqlite_pool *p);
void sb_sqlite_slot_release(sb_sqlite_slot *s);

/* Completion queue: post (worker), take everything (owner). */
void sb_sqlite_post(sb_sqlite *d, sb_sqlite_job *j);
sb_sqlite_job *sb_sqlite_take(sb_sqlite *d);

/* Intrusive job queues. */
void sb_sqlite_jq_push(sb_sqlite_jq *q, sb_sqlite_job *j);
void sb_sqlite_jq_remove(sb_sqlite_jq *q, sb_sqlite_job *j);

/* Busy and progress handlers installed on every connection (arg: the
** slot).  sqlite3_interrupt() alone is lost when it lands before the
** statement's first step (SQLite clears the flag when a statement starts
** on an idle connection); slot->intr is not. */
int sb_sqlite_busy(void *arg, int count);
int sb_sqlite_progress(void *arg);

#endif /* SB_SQLITE_INT_H */
