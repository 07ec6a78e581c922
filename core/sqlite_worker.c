/*
** sqlite_worker.c - the SQLite backend's threads: one worker per slot
** (SQLite connection), the shared run queue of each pool (writer,
** readers), the completion queue back to the owner thread, the inline
** claim, and the busy handler that makes lock waits interruptible.
**
** Owns: thread start/stop/join, queue manipulation under the pool mutex,
** and the eventfd signal for completions.  Does not own: what a job does
** (sb_sqlite_run in sqlite_exec.c) or finishing requests (owner thread).
** See sqlite_int.h for the locking rules.
*/
#include "sqlite_int.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------ job queues */

void sb_sqlite_jq_push(sb_sqlite_jq *q, sb_sqlite_job *j)
{
    j->next = NULL;
    j->prev = q->tail;
    if (q->tail) q->tail->next = j;
    else q->head = j;
    q->tail = j;
}

void sb_sqlite_jq_remove(sb_sqlite_jq *q, sb_sqlite_job *j)
{
    if (j->prev) j->prev->next = j->next;
    else q->head = j->next;
    if (j->next) j->next->prev = j->prev;
    else q->tail = j->prev;
    j->prev = j->next = NULL;
}

/* --------------------------------------------------------- busy handler */

/*
** Like SQLite's default busy handler (sleeps 1, 2, 5, ... ms up to the
** busy timeout), but gives up at once when the slot is interrupted, so a
** cancel or close never waits behind a file lock, and never sleeps more
** than 25 ms at a time.
*/
int sb_sqlite_busy(void *arg, int count)
{
    static const int delays[] = { 1, 2, 5, 10, 15, 20, 25 };
    enum { NDELAY = sizeof delays / sizeof *delays };
    sb_sqlite_slot *s = arg;
    if (s->nowait || atomic_load(&s->intr)) return 0;
    int prior = 0, delay;
    if (count < NDELAY) {
        delay = delays[count];
        for (int i = 0; i < count; i++) prior += delays[i];
    } else {
        delay = delays[NDELAY - 1];
        prior = 78 + delay * (count - NDELAY);  /* 78 = sum of delays */
    }
    if (prior >= s->busy_ms) return 0;
    if (prior + delay > s->busy_ms) delay = s->busy_ms - prior;
    struct timespec ts = { 0, (long)delay * 1000000L };
    nanosleep(&ts, NULL);
    return !atomic_load(&s->intr);
}

/* Every 1000 VM instructions: stop if the slot was interrupted. */
int sb_sqlite_progress(void *arg)
{
    sb_sqlite_slot *s = arg;
    return atomic_load_explicit(&s->intr, memory_order_relaxed);
}

/* ---------------------------------------------------------------- worker */

/* A reader is asked for a checkpoint (sqlite_drv.c: wal_hook).  Not the
** quick-read lane while readers beyond it exist: a checkpoint writes and
** syncs for milliseconds, and the quick reads queued behind it waited
** (routing decisions' p99 in task mode, 0.14 -> 1.5 ms). */
static int ckpt_due(const sb_sqlite_slot *s, int in_lane)
{
    const sb_sqlite_pool *p = s->pool;
    return s->idx > 0 && s->db->ckpt && (!in_lane || p->lane == p->nslots) &&
           atomic_load(&s->db->ckpt_wanted);
}

void sb_sqlite_pool_wake_checkpointer(sb_sqlite_pool *p)
{
    pthread_mutex_lock(&p->mu);
    if (p->lane == p->nslots) {
        pthread_cond_signal(&p->cv);
    } else if (p->idle_more > p->woken_more) {
        p->woken_more++;
        pthread_cond_signal(&p->cv_more);
    }  /* else a reader beyond the lane is busy, or already on its way */
    pthread_mutex_unlock(&p->mu);
}

/* The next job slot s may run (under p->mu): a lane slot prefers quick
** jobs, the others never take them. */
static sb_sqlite_job *next_job(sb_sqlite_pool *p, int in_lane)
{
    if (in_lane && p->quick.head) return p->quick.head;
    return p->q.head;
}

/* Runs jobs from its pool's queues until told to stop; posts each one; a
** reader runs a requested checkpoint first. */
static void *worker(void *arg)
{
    sb_sqlite_slot *s = arg;
    sb_sqlite_pool *p = s->pool;
    int in_lane = s - p->slots < p->lane;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && !next_job(p, in_lane) && !ckpt_due(s, in_lane)) {
            if (in_lane) {
                pthread_cond_wait(&p->cv, &p->mu);
            } else {
                p->idle_more++;
                pthread_cond_wait(&p->cv_more, &p->mu);
                p->idle_more--;
                if (p->woken_more) p->woken_more--;
            }
        }
        if (p->stop) break;
        if (ckpt_due(s, in_lane) && atomic_exchange(&s->db->ckpt_wanted, 0)) {
            p->lane_slow += in_lane;  /* milliseconds: quick reads go round it */
            pthread_mutex_unlock(&p->mu);
            sb_sqlite_checkpoint(s->db);
            pthread_mutex_lock(&p->mu);
            p->lane_slow -= in_lane;
            continue;
        }
        sb_sqlite_job *j = next_job(p, in_lane);
        int slow = in_lane && !j->quick;
        sb_sqlite_jq_remove(j->quick ? &p->quick : &p->q, j);
        p->lane_slow += slow;
        j->state = SB_SQLITE_J_RUN;
        j->slot = s;
        s->running = j;
        s->busy = 1;
        atomic_store(&s->intr, 0);
        pthread_mutex_unlock(&p->mu);

        sb_sqlite_run(s, j);

        pthread_mutex_lock(&p->mu);
        p->lane_slow -= slow;
        j->state = SB_SQLITE_J_DONE;
        s->running = NULL;
        s->busy = 0;
        pthread_mutex_unlock(&p->mu);
        sb_sqlite_post(s->db, j);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int sb_sqlite_pool_init(sb_sqlite_pool *p, sb_sqlite_slot *slots, int n)
{
    p->slots = slots;
    p->nslots = p->lane = n;
    for (int i = 0; i < n; i++) slots[i].pool = p;
    if (pthread_mutex_init(&p->mu, NULL) != 0) return SB_ERR;
    if (pthread_cond_init(&p->cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        return SB_ERR;
    }
    if (pthread_cond_init(&p->cv_more, NULL) != 0) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        return SB_ERR;
    }
    p->sync_init = 1;
    return SB_OK;
}

int sb_sqlite_slot_start(sb_sqlite_slot *s, sb_error **err)
{
    /* workers take no signals: the host's handlers run on its own threads */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&s->th, NULL, worker, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        *err = sb__error_new(SB_E_OTHER, "53000", "sqlite", "cannot start a SQLite worker thread", NULL);
        return SB_ERR;
    }
    s->started = 1;
    char name[16];
    snprintf(name, sizeof name, s->idx ? "sb-sqlite-r%d" : "sb-sqlite-w", s->idx);
    pthread_setname_np(s->th, name);
    return SB_OK;
}

/* Interrupt what s runs now.  Caller holds s->pool->mu, so the job
** running cannot change meanwhile. */
static void interrupt(sb_sqlite_slot *s)
{
    atomic_store(&s->intr, 1);
    sqlite3_interrupt(s->h);
}

void sb_sqlite_pool_stop(sb_sqlite_pool *p)
{
    if (!p->sync_init) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    for (int i = 0; i < p->nslots; i++)
        if (p->slots[i].running) interrupt(&p->slots[i]);
    pthread_cond_broadcast(&p->cv);
    pthread_cond_broadcast(&p->cv_more);
    pthread_mutex_unlock(&p->mu);
}

void sb_sqlite_pool_join(sb_sqlite_pool *p)
{
    for (int i = 0; i < p->nslots; i++) {
        if (p->slots[i].started) pthread_join(p->slots[i].th, NULL);
        p->slots[i].started = 0;
    }
    if (p->sync_init) {
        pthread_cond_destroy(&p->cv_more);
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
    }
    p->sync_init = 0;
}

/* ------------------------------------------------------ owner-side calls */

void sb_sqlite_pool_push(sb_sqlite_pool *p, sb_sqlite_job *j)
{
    j->pool = p;
    j->slot = NULL;
    if (p->lane == p->nslots) j->quick = 0;  /* no split: one queue */
    p->jobs++;
    pthread_mutex_lock(&p->mu);
    if (p->lane_slow == p->lane) j->quick = 0;  /* the lane is stuck on slow work */
    j->state = SB_SQLITE_J_QUEUED;
    sb_sqlite_jq_push(j->quick ? &p->quick : &p->q, j);
    /* a slow job wakes a slot beyond the lane if one waits and no job is
    ** on its way to it yet, else the lane */
    if (!j->quick && p->idle_more > p->woken_more) {
        p->woken_more++;
        pthread_cond_signal(&p->cv_more);
    } else {
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
}

int sb_sqlite_pool_cancel(sb_sqlite_pool *p, sb_sqlite_job *j)
{
    int removed = 0;
    pthread_mutex_lock(&p->mu);
    if (j->state == SB_SQLITE_J_QUEUED) {
        sb_sqlite_jq_remove(j->quick ? &p->quick : &p->q, j);
        removed = 1;
    } else if (j->state == SB_SQLITE_J_RUN && j->slot->running == j) {
        interrupt(j->slot);  /* only while j runs: never its successor */
    }
    pthread_mutex_unlock(&p->mu);
    p->jobs -= removed;
    return removed;
}

sb_sqlite_jq sb_sqlite_pool_take(sb_sqlite_pool *p, sb_session *sess)
{
    sb_sqlite_jq out = { NULL, NULL };
    pthread_mutex_lock(&p->mu);
    sb_sqlite_job *j = p->q.head;
    while (j) {
        sb_sqlite_job *next = j->next;
        if (j->r && j->r->session == sess) {
            sb_sqlite_jq_remove(&p->q, j);
            sb_sqlite_jq_push(&out, j);
            p->jobs--;
        }
        j = next;
    }
    pthread_mutex_unlock(&p->mu);
    return out;
}

sb_sqlite_slot *sb_sqlite_pool_claim(sb_sqlite_pool *p)
{
    sb_sqlite_slot *s = NULL;
    if (!p->nslots) return NULL;
    if (!p->jobs) {
        s = &p->slots[0];
        s->claim = 1;
        atomic_store_explicit(&s->intr, 0, memory_order_relaxed);
        return s;
    }
    pthread_mutex_lock(&p->mu);
    if (!p->q.head && !p->quick.head && !p->stop) {
        for (int i = 0; i < p->nslots; i++) {
            if (!p->slots[i].busy) {
                s = &p->slots[i];
                s->busy = 1;
                s->claim = 2;
                break;
            }
        }
    }
    pthread_mutex_unlock(&p->mu);
    if (s) atomic_store_explicit(&s->intr, 0, memory_order_relaxed);
    return s;
}

void sb_sqlite_slot_release(sb_sqlite_slot *s)
{
    if (s->claim == 2) {
        pthread_mutex_lock(&s->pool->mu);
        s->busy = 0;
        pthread_mutex_unlock(&s->pool->mu);
    }
    s->claim = 0;
}

/* ------------------------------------------------------------ completions */

/* Signal the eventfd only when the queue goes from empty to non-empty:
** conn.c drains the eventfd before the driver takes the queue, so nothing
** posted after a take can go unnoticed. */
void sb_sqlite_post(sb_sqlite *d, sb_sqlite_job *j)
{
    pthread_mutex_lock(&d->cmu);
    int was_empty = d->done.head == NULL;
    sb_sqlite_jq_push(&d->done, j);
    pthread_mutex_unlock(&d->cmu);
    if (was_empty) sb__wake_signal(d->c);
}

sb_sqlite_job *sb_sqlite_take(sb_sqlite *d)
{
    pthread_mutex_lock(&d->cmu);
    sb_sqlite_job *j = d->done.head;
    d->done.head = d->done.tail = NULL;
    pthread_mutex_unlock(&d->cmu);
    return j;
}
