/*
** sqlite_drv.c - the SQLite backend: the sb_sqlite_driver vtable.
**
** Owns: opening the writer and reader connections (WAL, busy handler,
** synchronous, foreign keys, WAL size limit; checkpoints off the caller),
** routing requests (reader / writer / session pin / inline fast path),
** and the owner-side ends of cancel, session_close and close.
**
** Does not own: running a statement on a connection (sqlite_exec.c), the
** LRU maps (sqlite_lru.c), threads and queues (sqlite_worker.c), request
** objects (req.c), results and errors (result.c, error.c), the pollable fd
** (wake.c).
**
** Routing, in one place (drv_submit() and to_writer()):
**   - Requests of a session always run on the writer, in order.  The first
**     one PINS the writer to the session until sb_session_close; meanwhile
**     other writer requests wait in d->wait (never interleaving into the
**     session's transaction).  Closing rolls back an open transaction on
**     the writer before anything queued after it runs.
**   - Other requests look up their SQL text in d->ro, which remembers what
**     earlier runs learned: "read-only" (sqlite3_stmt_readonly and it
**     returns columns, so BEGIN/COMMIT/ATTACH, which SQLite calls
**     read-only, stay on the writer) or "write".  Known read-only SQL runs
**     on a free reader (the readers share one run queue), known writes on
**     the writer.  Unknown SQL
**     is PROBED on a reader: the reader prepares it and runs it only if it
**     is read-only; otherwise (or if it does not prepare there) it bounces
**     to the writer without having run.  So a first-time slow SELECT never
**     blocks the writer, and a query never waits behind someone else's
**     transaction just because it is new.  "Read-only" is only learned
**     from a reader (a temp table exists on the writer alone).
**   - Requests outside a session are not ordered with each other (as with
**     a PostgreSQL pool); a caller that needs order waits, or uses a session.
**   - SB_Q_INLINE without a deadline: if the chosen connection is idle the
**     statement runs right here on the caller's thread (see
**     sb_sqlite_pool_claim): no hand-off, no eventfd write, no malloc beyond
**     the result.  SB_Q_INLINE_WRITE does the same for the writer only
**     (a yielding caller's writes and transactions), without ever waiting
**     for a file lock on this thread: SQLITE_BUSY sends it to the worker.
**     SB_Q_INLINE_QUICK runs a known read here when no other request is in
**     flight and its recent runs took under SB_QUICK_US (quick_now()).
**   - Reads whose recent runs were quick queue for the first readers only,
**     one per core beyond the owner's (sqlite_int.h: the pool's lane).
*/
#include "sqlite_int.h"

#include <string.h>
#include <unistd.h>

#define MAX_READERS 64
#define RO_CAP 1024      /* SQL texts remembered by d->ro */
#define SPARE_JOBS 64    /* free jobs kept for reuse */

enum { INLINE_BLOCK = 1, INLINE_NOWAIT = 2 };  /* how a request may run inline */

/* ===================================================== owner-side jobs */

static sb_sqlite_job *job_new(sb_sqlite *d)
{
    sb_sqlite_job *j = d->spare;
    if (j) {
        d->spare = j->next;
        d->nspare--;
        memset(j, 0, sizeof *j);
    } else {
        j = sb__calloc(1, sizeof *j);
    }
    return j;
}

static void job_free(sb_sqlite *d, sb_sqlite_job *j)
{
    if (d->nspare >= SPARE_JOBS) {
        sb__free(j);
        return;
    }
    j->next = d->spare;
    d->spare = j;
    d->nspare++;
}

/* Make j (or a new job) carry r; NULL on OOM. */
static sb_sqlite_job *job_for(sb_sqlite *d, sb_sqlite_job *j, sb_req *r, uint64_t hash, int probe)
{
    if (!j && !(j = job_new(d))) return NULL;
    j->r = r;
    j->hash = hash;
    j->probe = probe;
    j->quick = 0;
    j->pool = NULL;
    j->slot = NULL;
    j->cancelled = j->bounced = 0;
    j->ro = -1;
    j->res = NULL;
    j->err = NULL;
    r->drv = j;
    return j;
}

/* The driver lets go of r, finished with (res, err).  Owner thread. */
static void done(sb_sqlite *d, sb_sqlite_job *j, sb_req *r, sb_result *res, sb_error *err)
{
    if (j) job_free(d, j);
    r->drv = NULL;
    sb__req_finish(r, res, err);
    sb__req_unref(r);
}

static void fail(sb_req *r, sb_errclass cls, const char *closed_msg)
{
    if (cls == SB_E_TIMEOUT)
        sb__req_fail(r, cls, "57014", SB_BACKEND_CORE, "canceling statement due to statement timeout");
    else if (cls == SB_E_CLOSED)
        sb__req_fail(r, cls, "08003", SB_BACKEND_CORE, closed_msg ? closed_msg : "the database is closed");
    else
        sb__req_fail(r, cls, "57014", SB_BACKEND_CORE, "canceling statement due to user request");
}

/* Remember what a run learned about r's SQL (see the file comment). */
/* e (read-only SQL) ran on a reader in `us` microseconds: keep a moving
** average, a quarter of each new run, for SB_Q_INLINE_QUICK. */
static void timed(sb_sqlite_ent *e, uint32_t us)
{
    e->us = e->us == UINT32_MAX ? us : (uint32_t)(((uint64_t)e->us * 3 + us) / 4);
}

/* Remember what running r on slot s taught: ro (-1 unknown) and, for a
** read on a reader, how long it took.  e: r's d->ro entry if the caller
** has it (NULL: look it up). */
static void learn(sb_sqlite *d, const sb_req *r, uint64_t hash, int ro, const sb_sqlite_slot *s,
                  sb_sqlite_ent *e, uint32_t us)
{
    if (ro < 0 || (ro && s->idx == 0) || !d->rpool.nslots) return;
    if (!e) e = sb_sqlite_lru_get(&d->ro, hash, r->sql, r->sql_len);
    if (e) e->ro = ro;
    else e = sb_sqlite_lru_put(&d->ro, hash, r->sql, r->sql_len, NULL, ro);
    if (e && ro) timed(e, us);
}

/* ============================================================= routing */

/* Queue r (or its job j) on pool p.  probe: see sb_sqlite_exec().  e: r's
** d->ro entry or NULL; a read that recently ran quickly takes the lane. */
static void dispatch(sb_sqlite *d, sb_sqlite_pool *p, sb_req *r, uint64_t hash, int probe,
                     sb_sqlite_job *j, const sb_sqlite_ent *e)
{
    if (!(j = job_for(d, j, r, hash, probe))) {
        done(d, NULL, r, NULL, sb_sqlite_oom());
        return;
    }
    j->quick = e && e->ro && e->us <= SB_QUICK_US;
    sb_sqlite_pool_push(p, j);
}

/* Run r on the claimed slot s right now, on this (the owner's) thread.
** known: r's entry in d->ro, or NULL.  nowait (SB_Q_INLINE_WRITE): a
** locked database is not waited for here: SB_SQLITE_LOCKED, r untouched
** (SQLITE_BUSY means the statement did not run), for a worker to retry.
** Returns that, SB_SQLITE_BOUNCED (r untouched) or SB_SQLITE_RAN (r finished). */
static int run_inline(sb_sqlite *d, sb_sqlite_slot *s, sb_req *r, uint64_t hash, int probe,
                      sb_sqlite_ent *known, int nowait)
{
    sb_result *res = NULL;
    sb_error *err = NULL;
    int ro;
    s->nowait = nowait;
    int64_t t0 = sb__now_us();
    int out = sb_sqlite_exec(s, r, hash, probe, &res, &err, &ro);
    uint32_t us = sb_sqlite_elapsed_us(t0);
    s->nowait = 0;
    sb_sqlite_slot_release(s);
    learn(d, r, hash, ro, s, known, us);
    if (out == SB_SQLITE_RAN && nowait && err && sb_error_class(err) == SB_E_BUSY) {
        sb_error_free(err);
        return SB_SQLITE_LOCKED;
    }
    if (out == SB_SQLITE_RAN) done(d, NULL, r, res, err);
    return out;
}

/* May a request of session sess (NULL: none) use the writer now? */
static int writer_free(const sb_sqlite *d, const sb_session *sess)
{
    return !d->pin || (sess && d->pin == sess);
}

/* Send r to the writer: run it (inline if allowed and idle), queue it, or
** park it in d->wait while another session holds the writer.  j: r's
** existing job or NULL.  Invariant: d->wait is empty unless d->pin is set. */
static void to_writer(sb_sqlite *d, sb_req *r, uint64_t hash, sb_sqlite_job *j, int inl,
                      sb_sqlite_ent *known)
{
    sb_sqlite_slot *w;
    if (!writer_free(d, r->session)) {
        if (!(j = job_for(d, j, r, hash, 0))) {
            done(d, NULL, r, NULL, sb_sqlite_oom());
            return;
        }
        sb_sqlite_jq_push(&d->wait, j);  /* j->pool == NULL: waiting */
        return;
    }
    if (r->session && !d->pin) {
        if (!d->release && !(d->release = job_new(d))) {
            if (j) job_free(d, j);
            done(d, NULL, r, NULL, sb_sqlite_oom());
            return;
        }
        d->pin = r->session;
        r->session->drv = &d->slots[0];
    }
    if (inl && !j && (w = sb_sqlite_pool_claim(&d->wpool))) {
        if (run_inline(d, w, r, hash, 0, known, inl == INLINE_NOWAIT) != SB_SQLITE_LOCKED) return;
        j = NULL;  /* locked: a worker waits for it */
    }
    dispatch(d, &d->wpool, r, hash, 0, j, NULL);
}

/* The pin was released: let waiting requests go, in order; the first
** session among them takes the pin, and its later requests follow it. */
static void drain(sb_sqlite *d)
{
    sb_sqlite_job *j = d->wait.head;
    while (j) {
        sb_sqlite_job *next = j->next;
        if (writer_free(d, j->r->session)) {
            sb_sqlite_jq_remove(&d->wait, j);
            to_writer(d, j->r, j->hash, j, 0, NULL);
        }
        j = next;
    }
}

/* ============================================================== vtable */

/* SQLite stores a NaN double as NULL: refuse it rather than change the
** value silently (found by the fault suite's parameter fuzzing).  Returns
** the 1-based index of the first NaN parameter, or 0. */
static int nan_param(const sb_req *r)
{
    for (int i = 0; i < r->nparams; i++)
        if (r->params[i].type == SB_FLOAT && r->params[i].u.f != r->params[i].u.f) return i + 1;
    return 0;
}

/* SB_Q_INLINE_QUICK: may r, known read-only SQL (entry e), run right here?
** Only when nothing else is in flight (a loaded database keeps its reader
** threads busy in parallel instead) and its recent runs were quick (a slow
** report must not hold up the caller's loop). */
static int quick_now(const sb_sqlite *d, const sb_req *r, const sb_sqlite_ent *e)
{
    return (r->flags & SB_Q_INLINE_QUICK) && !r->deadline && e && e->us <= SB_QUICK_US &&
           d->rpool.jobs == 0 && d->wpool.jobs == 0;
}

static void submit(sb_sqlite *d, sb_req *r)
{
    int nan = nan_param(r);
    if (nan) {
        sb__req_finish(r, NULL, sb__error_fmt(SB_E_MISUSE, "22023", "sqlite",
                                              "parameter $%d is NaN, which SQLite cannot store "
                                              "(it would become NULL)", nan));
        sb__req_chain_broken(r);
        sb__req_unref(r);
        return;
    }
    uint64_t hash = r->sql_hash;  /* computed once by the core (sql.c) */
    /* a deadline needs a worker; SB_Q_INLINE_WRITE only concerns the writer */
    int inl = r->deadline ? 0 : (r->flags & SB_Q_INLINE) ? INLINE_BLOCK : 0;
    int inl_writer = inl ? inl : (r->flags & SB_Q_INLINE_WRITE) && !r->deadline ? INLINE_NOWAIT : 0;

    sb_sqlite_ent *e = NULL;
    if (d->rpool.nslots && !r->session) {
        e = sb_sqlite_lru_get(&d->ro, hash, r->sql, r->sql_len);
        if (!e || e->ro) {
            int probe = !e;
            sb_sqlite_slot *s;
            if (!(inl || quick_now(d, r, e)) || !(s = sb_sqlite_pool_claim(&d->rpool))) {
                dispatch(d, &d->rpool, r, hash, probe, NULL, e);
                return;
            }
            if (run_inline(d, s, r, hash, probe, e, 0) == SB_SQLITE_RAN) return;
            e = NULL;
            /* bounced: a write, on to the writer */
        }
    }
    to_writer(d, r, hash, NULL, inl_writer, e);
}

/*
** Checkpoints off the caller's thread.  SQLite's automatic checkpoint runs
** inside the COMMIT that pushes the WAL past 1000 pages, on whichever
** thread commits - the owner's, for a write run inline - and takes
** milliseconds (it writes and syncs the database file): every routing
** decision queued behind it waits.  With reader threads, the writer's WAL
** hook only raises d->ckpt_wanted and wakes the readers; one of them runs
** a PASSIVE checkpoint (sb_sqlite_checkpoint: it never blocks readers or
** the writer) before its next job.  A checkpoint that runs beside writes
** may never copy the last frames, and the WAL restarts from its start only
** once all are copied: under writes without pause it would grow without
** bound, so past CKPT_HARD pages the committing thread checkpoints itself,
** as SQLite would have (measured: 3000 back-to-back 4 KB commits leave a
** WAL of ~1,000 frames with SQLite's hook, ~9,100 with readers alone).
** A checkpoint walks the whole WAL, so past CKPT_PAGES one is asked for
** every CKPT_STEP new pages, not after every commit: a one-row UPDATE cost
** 127k instructions (all threads, callgrind) with a checkpoint asked after
** each commit, 75k with one per 250 pages (100: 80k); the WAL stays
** bounded the same (~4,000 frames after 3,000 back-to-back 4 KB commits).
*/
#define CKPT_PAGES 1000      /* SQLite's default auto-checkpoint threshold */
#define CKPT_STEP 250
#define CKPT_HARD (4 * CKPT_PAGES)

static int wal_hook(void *arg, sqlite3 *h, const char *dbname, int pages)
{
    sb_sqlite *d = arg;
    if (pages < d->ckpt_asked_at) d->ckpt_asked_at = 0;  /* the WAL restarted */
    if (pages >= CKPT_HARD) {
        (void)sqlite3_wal_checkpoint_v2(h, dbname, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        return SQLITE_OK;
    }
    if (pages >= CKPT_PAGES && pages >= d->ckpt_asked_at + CKPT_STEP &&
        !atomic_exchange(&d->ckpt_wanted, 1)) {
        d->ckpt_asked_at = pages;
        sb_sqlite_pool_wake_checkpointer(&d->rpool);
    }
    return SQLITE_OK;
}

static void drv_submit(sb_conn *c, sb_req *r)
{
    submit(c->drvdata, r);
}

/* One job came back from a worker (owner thread). */
static void complete(sb_sqlite *d, sb_sqlite_job *j)
{
    sb_sqlite_slot *s = j->slot;
    sb_req *r = j->r;
    j->pool->jobs--;
    if (!r) {  /* release job */
        job_free(d, j);
        return;
    }
    learn(d, r, j->hash, j->ro, s, NULL, j->us);
    if (j->cancelled) {  /* r finished already: drop the late outcome */
        sb__result_free(j->res);
        sb_error_free(j->err);
        job_free(d, j);
        r->drv = NULL;
        sb__req_unref(r);
        return;
    }
    if (j->bounced) {
        to_writer(d, r, j->hash, j, 0, NULL);
        return;
    }
    done(d, j, r, j->res, j->err);
}

static void drv_step(sb_conn *c)
{
    sb_sqlite *d = c->drvdata;
    sb_sqlite_job *j = sb_sqlite_take(d);
    while (j) {
        sb_sqlite_job *next = j->next;
        complete(d, j);
        j = next;
    }
}

static int64_t drv_deadline(sb_conn *c)
{
    (void)c;
    return 0;
}

static void drv_cancel(sb_conn *c, sb_req *r, sb_errclass cls)
{
    sb_sqlite *d = c->drvdata;
    sb_sqlite_job *j = r->drv;
    if (!j) {  /* not held by a job: nothing runs it */
        fail(r, cls, NULL);
        return;
    }
    if (!j->pool) {  /* waiting for the pin */
        sb_sqlite_jq_remove(&d->wait, j);
    } else if (!sb_sqlite_pool_cancel(j->pool, j)) {
        /* running (now interrupted) or on its way back: finish now, the
        ** driver keeps its reference until the job returns */
        j->cancelled = 1;
        fail(r, cls, NULL);
        return;
    }
    job_free(d, j);
    r->drv = NULL;
    fail(r, cls, NULL);
    sb__req_unref(r);
}

static void drv_session_close(sb_conn *c, sb_session *sess)
{
    sb_sqlite *d = c->drvdata;
    static const char msg[] = "the transaction was closed";

    /* its requests still waiting for the pin */
    sb_sqlite_job *j = d->wait.head;
    while (j) {
        sb_sqlite_job *next = j->next;
        if (j->r->session == sess) {
            sb_sqlite_jq_remove(&d->wait, j);
            sb_req *r = j->r;
            job_free(d, j);
            r->drv = NULL;
            fail(r, SB_E_CLOSED, msg);
            sb__req_unref(r);
        }
        j = next;
    }
    if (d->pin != sess) return;

    sb_sqlite_jq q = sb_sqlite_pool_take(&d->wpool, sess);
    while ((j = q.head)) {
        sb_sqlite_jq_remove(&q, j);
        sb_req *r = j->r;
        job_free(d, j);
        r->drv = NULL;
        fail(r, SB_E_CLOSED, msg);
        sb__req_unref(r);
    }
    /* Roll back before anyone else uses the writer: here if it is idle,
    ** else as a job behind what runs now (everything queued after it waits
    ** its turn, so nothing can slip in between). */
    sb_sqlite_slot *w = sb_sqlite_pool_claim(&d->wpool);
    if (w) {
        sb_sqlite_rollback_open(w);
        sb_sqlite_slot_release(w);
    } else {
        j = d->release;  /* allocated when the pin was taken */
        d->release = NULL;
        memset(j, 0, sizeof *j);
        sb_sqlite_pool_push(&d->wpool, j);  /* j->r == NULL: release job */
    }
    d->pin = NULL;
    sess->drv = NULL;
    drain(d);
}

/* Finish j's request with SB_E_CLOSED (if not finished) and let go. */
static void close_job(sb_sqlite_job *j)
{
    sb_req *r = j->r;
    if (r) {
        if (!j->cancelled) fail(r, SB_E_CLOSED, NULL);
        sb__result_free(j->res);
        sb_error_free(j->err);
        r->drv = NULL;
        sb__req_unref(r);
    }
    sb__free(j);
}

static void close_queue(sb_sqlite_jq *q)
{
    sb_sqlite_job *j;
    while ((j = q->head)) {
        sb_sqlite_jq_remove(q, j);
        close_job(j);
    }
}

/* Stop and join every started worker, close every connection, free d.
** Works on a half-opened d too (fields zeroed by calloc). */
static void teardown(sb_sqlite *d)
{
    sb_sqlite_pool_stop(&d->wpool);
    sb_sqlite_pool_stop(&d->rpool);
    sb_sqlite_pool_join(&d->wpool);
    sb_sqlite_pool_join(&d->rpool);
    /* single-threaded from here */
    close_queue(&d->wait);
    close_queue(&d->wpool.q);
    close_queue(&d->rpool.q);
    close_queue(&d->done);
    /* readers first: the writer, closing last, checkpoints and removes the WAL */
    sqlite3_close_v2(d->ckpt);
    for (int i = d->nslots - 1; i >= 0; i--) {
        sb_sqlite_lru_free(&d->slots[i].cache);
        sqlite3_close_v2(d->slots[i].h);
    }
    sb__free(d->slots);
    sb_sqlite_lru_free(&d->ro);
    sb__free(d->release);
    while (d->spare) {
        sb_sqlite_job *j = d->spare;
        d->spare = j->next;
        sb__free(j);
    }
    if (d->cmu_init) pthread_mutex_destroy(&d->cmu);
    sb__free(d);
}

static void drv_close(sb_conn *c)
{
    sb_sqlite *d = c->drvdata;
    if (!d) return;
    c->drvdata = NULL;
    teardown(d);
}

/* ================================================================ open */

/* A database that other connections cannot share: no readers. */
static int is_private(const char *t)
{
    return !*t || strcmp(t, ":memory:") == 0 || strncmp(t, "file::memory:", 13) == 0 ||
           (strncmp(t, "file:", 5) == 0 && strstr(t, "mode=memory"));
}

static sb_error *open_error(sqlite3 *h, int rc)
{
    const char *msg = h ? sqlite3_errmsg(h) : sqlite3_errstr(rc);
    if (rc == SQLITE_NOMEM) return sb_sqlite_oom();
    return sb__error_fmt(SB_E_CONNECTION, "08006", "sqlite", "cannot open database: %s", msg);
}

static int slot_open(sb_sqlite *d, int idx, const char *target, int flags, sb_error **err)
{
    sb_sqlite_slot *s = &d->slots[idx];
    s->db = d;
    s->idx = idx;
    s->busy_ms = d->c->opts.busy_timeout_ms > 0 ? d->c->opts.busy_timeout_ms : 0;
    atomic_init(&s->intr, 0);
    if (sb_sqlite_lru_init(&s->cache, d->c->opts.statement_cache) != SB_OK) {
        *err = sb_sqlite_oom();
        return SB_ERR;
    }
    if (strncmp(target, "file:", 5) == 0) flags |= SQLITE_OPEN_URI;
    int rc = sqlite3_open_v2(target, &s->h, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        *err = open_error(s->h, rc);
        return SB_ERR;
    }
    sqlite3_extended_result_codes(s->h, 1);
    sqlite3_busy_handler(s->h, sb_sqlite_busy, s);
    sqlite3_progress_handler(s->h, 1000, sb_sqlite_progress, s);
    return SB_OK;
}

/* Writer settings.  *wal: whether the database is in WAL mode (readers
** need it to read while the writer writes). */
static int writer_setup(sb_sqlite *d, int *wal, sb_error **err)
{
    sqlite3 *h = d->slots[0].h;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(h, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    *wal = rc == SQLITE_ROW && sqlite3_column_text(st, 0) &&
           strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    if (rc == SQLITE_ROW) rc = SQLITE_OK;
    sqlite3_finalize(st);
    /* a read-only file cannot switch to WAL: still open, without readers */
    if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_READONLY) goto fail;
    rc = sqlite3_exec(h, d->c->opts.synchronous_full ? "PRAGMA synchronous=FULL"
                                                     : "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_exec(h, "PRAGMA foreign_keys=ON", NULL, NULL, NULL);
    /* the WAL file keeps the size a burst grew it to unless told: cut it
    ** back when the WAL starts over (twice the ~16 MiB of CKPT_HARD) */
    if (rc == SQLITE_OK) rc = sqlite3_exec(h, "PRAGMA journal_size_limit=33554432", NULL, NULL, NULL);
    if (rc == SQLITE_OK) return SB_OK;
fail:
    *err = open_error(h, rc);
    return SB_ERR;
}

static int drv_open(sb_conn *c, const char *target, sb_error **err)
{
    if (!sqlite3_threadsafe()) {
        *err = sb__error_new(SB_E_OTHER, "58000", "sqlite", "SQLite was built without thread support", NULL);
        return SB_ERR;
    }
    int readers = c->opts.readers < 0 ? 0 : c->opts.readers > MAX_READERS ? MAX_READERS : c->opts.readers;
    /* In-memory (and "" = temporary) databases are private to one
    ** connection: everything runs on the writer. */
    if (is_private(target)) readers = 0;

    sb_sqlite *d = sb__calloc(1, sizeof *d);
    if (!d) {
        *err = sb_sqlite_oom();
        return SB_ERR;
    }
    d->c = c;
    if (pthread_mutex_init(&d->cmu, NULL) != 0) {
        sb__free(d);
        *err = sb__error_new(SB_E_OTHER, "53000", "sqlite", "cannot create a mutex", NULL);
        return SB_ERR;
    }
    d->cmu_init = 1;
    atomic_init(&d->ckpt_wanted, 0);
    if (sb_sqlite_lru_init(&d->ro, RO_CAP) != SB_OK || !(d->slots = sb__calloc((size_t)readers + 1, sizeof *d->slots))) {
        *err = sb_sqlite_oom();
        goto fail;
    }
    d->nslots = 1;
    int wal = 0;
    if (slot_open(d, 0, target, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, err) != SB_OK ||
        writer_setup(d, &wal, err) != SB_OK)
        goto fail;
    if (!wal) readers = 0;
    for (int i = 1; i <= readers; i++) {
        d->nslots = i + 1;
        if (slot_open(d, i, target, SQLITE_OPEN_READONLY, err) != SB_OK) goto fail;
        /* so that "PRAGMA foreign_keys" reads the same everywhere */
        int rc = sqlite3_exec(d->slots[i].h, "PRAGMA foreign_keys=ON", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            *err = open_error(d->slots[i].h, rc);
            goto fail;
        }
    }
    /* checkpoints on a reader thread (wal_hook); without the extra
    ** connection SQLite's automatic checkpoint stays */
    if (readers > 0) {
        int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | (strncmp(target, "file:", 5) ? 0 : SQLITE_OPEN_URI);
        /* (the first statement makes the connection see the WAL) */
        if (sqlite3_open_v2(target, &d->ckpt, flags, NULL) == SQLITE_OK &&
            sqlite3_exec(d->ckpt, "PRAGMA journal_mode", NULL, NULL, NULL) == SQLITE_OK)
            sqlite3_wal_hook(d->slots[0].h, wal_hook, d);  /* replaces the automatic one */
        else {
            sqlite3_close_v2(d->ckpt);
            d->ckpt = NULL;
        }
    }
    if (sb_sqlite_pool_init(&d->wpool, d->slots, 1) != SB_OK ||
        sb_sqlite_pool_init(&d->rpool, d->slots + 1, readers) != SB_OK) {
        *err = sb__error_new(SB_E_OTHER, "53000", "sqlite", "cannot create a mutex", NULL);
        goto fail;
    }
    /* quick reads: one reader per core the owner thread leaves (at least one) */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores - 1 < d->rpool.lane) d->rpool.lane = cores > 2 ? (int)cores - 1 : 1;
    for (int i = 0; i < d->nslots; i++)
        if (sb_sqlite_slot_start(&d->slots[i], err) != SB_OK) goto fail;
    c->drvdata = d;
    return SB_OK;
fail:
    teardown(d);
    return SB_ERR;
}

const sb_driver sb_sqlite_driver = {
    "sqlite",
    SB_CAP_QMARK | SB_CAP_WORKERS,
    drv_open,
    drv_submit,
    drv_step,
    drv_deadline,
    drv_cancel,
    drv_session_close,
    drv_close,
};
