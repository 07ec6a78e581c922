/*
** sqlite_worker.c - the SQLite backend's threads: one worker per slot
** (SQLite connection), its run queue, the completion queue back to the
** owner thread, the inline claim, and the busy handler that makes lock
** waits interruptible.
**
** Owns: thread start/stop/join, queue manipulation under the slot mutex,
** and the eventfd signal for completions.  Does not own: what a job does
** (sb_sqlite_run in sqlite_drv.c) or finishing requests (owner thread).
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
    if (atomic_load(&s->intr)) return 0;
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

/* ---------------------------------------------------------------- worker */

/* Runs jobs from s->q until told to stop; posts each finished job. */
static void *worker(void *arg)
{
    sb_sqlite_slot *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && !s->q.head) pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop) break;
        sb_sqlite_job *j = s->q.head;
        sb_sqlite_jq_remove(&s->q, j);
        j->state = SB_SQLITE_J_RUN;
        s->running = j;
        s->busy = 1;
        atomic_store(&s->intr, 0);
        pthread_mutex_unlock(&s->mu);

        sb_sqlite_run(s, j);

        pthread_mutex_lock(&s->mu);
        j->state = SB_SQLITE_J_DONE;
        s->running = NULL;
        s->busy = 0;
        pthread_mutex_unlock(&s->mu);
        sb_sqlite_post(s->db, j);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int sb_sqlite_slot_start(sb_sqlite_slot *s, sb_error **err)
{
    if (pthread_mutex_init(&s->mu, NULL) != 0) goto fail;
    if (pthread_cond_init(&s->cv, NULL) != 0) {
        pthread_mutex_destroy(&s->mu);
        goto fail;
    }
    s->sync_init = 1;
    /* workers take no signals: the host's handlers run on its own threads */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&s->th, NULL, worker, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) goto fail;
    s->started = 1;
    char name[16];
    snprintf(name, sizeof name, s->idx ? "sb-sqlite-r%d" : "sb-sqlite-w", s->idx);
    pthread_setname_np(s->th, name);
    return SB_OK;
fail:
    *err = sb__error_new(SB_E_OTHER, "53000", "sqlite", "cannot start a SQLite worker thread", NULL);
    return SB_ERR;
}

void sb_sqlite_slot_stop(sb_sqlite_slot *s)
{
    if (!s->sync_init) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    if (s->running) {
        atomic_store(&s->intr, 1);
        sqlite3_interrupt(s->h);
    }
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void sb_sqlite_slot_join(sb_sqlite_slot *s)
{
    if (s->started) pthread_join(s->th, NULL);
    s->started = 0;
    if (s->sync_init) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
    }
    s->sync_init = 0;
}

/* ------------------------------------------------------ owner-side calls */

void sb_sqlite_slot_push(sb_sqlite_slot *s, sb_sqlite_job *j)
{
    j->slot = s;
    s->load++;
    pthread_mutex_lock(&s->mu);
    j->state = SB_SQLITE_J_QUEUED;
    sb_sqlite_jq_push(&s->q, j);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int sb_sqlite_slot_cancel(sb_sqlite_slot *s, sb_sqlite_job *j)
{
    int removed = 0;
    pthread_mutex_lock(&s->mu);
    if (j->state == SB_SQLITE_J_QUEUED) {
        sb_sqlite_jq_remove(&s->q, j);
        removed = 1;
    } else if (s->running == j) {
        /* only while j is the one running: never interrupt its successor */
        atomic_store(&s->intr, 1);
        sqlite3_interrupt(s->h);
    }
    pthread_mutex_unlock(&s->mu);
    if (removed) s->load--;
    return removed;
}

sb_sqlite_jq sb_sqlite_slot_take(sb_sqlite_slot *s, sb_session *sess)
{
    sb_sqlite_jq out = { NULL, NULL };
    pthread_mutex_lock(&s->mu);
    sb_sqlite_job *j = s->q.head;
    while (j) {
        sb_sqlite_job *next = j->next;
        if (j->r && j->r->session == sess) {
            sb_sqlite_jq_remove(&s->q, j);
            sb_sqlite_jq_push(&out, j);
            s->load--;
        }
        j = next;
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}

int sb_sqlite_slot_claim(sb_sqlite_slot *s)
{
    int ok = 0;
    pthread_mutex_lock(&s->mu);
    if (!s->busy && !s->q.head && !s->stop) {
        s->busy = 1;
        ok = 1;
    }
    pthread_mutex_unlock(&s->mu);
    if (ok) atomic_store_explicit(&s->intr, 0, memory_order_relaxed);
    return ok;
}

void sb_sqlite_slot_release(sb_sqlite_slot *s)
{
    pthread_mutex_lock(&s->mu);
    s->busy = 0;
    pthread_mutex_unlock(&s->mu);
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
