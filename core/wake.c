/*
** wake.c - the single pollable fd of an open database.
**
** Owns: an epoll set (the fd a host watches) holding an eventfd ("step has
** work": worker completions, finished requests others wait for), a timerfd
** armed at the earliest deadline, and whatever sockets the backend adds.
** The set is level-triggered, so the epoll fd is readable exactly while
** something inside it is.  The epoll fd never changes for the life of the
** database, even when libpq swaps sockets underneath.
*/
#include "sb_int.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static int ctl(sb_conn *c, int op, int fd, unsigned events)
{
    struct epoll_event ev = { 0 };
    ev.events = (events & SB_EV_READ ? EPOLLIN : 0u) | (events & SB_EV_WRITE ? EPOLLOUT : 0u);
    ev.data.fd = fd;
    return epoll_ctl(c->epfd, op, fd, &ev) == 0 ? SB_OK : SB_ERR;
}

int sb__wake_init(sb_conn *c)
{
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    c->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    c->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (c->epfd < 0 || c->evfd < 0 || c->timerfd < 0 ||
        ctl(c, EPOLL_CTL_ADD, c->evfd, SB_EV_READ) != SB_OK ||
        ctl(c, EPOLL_CTL_ADD, c->timerfd, SB_EV_READ) != SB_OK) {
        sb__wake_fini(c);
        return SB_ERR;
    }
    return SB_OK;
}

void sb__wake_fini(sb_conn *c)
{
    if (c->timerfd >= 0) close(c->timerfd);
    if (c->evfd >= 0) close(c->evfd);
    if (c->epfd >= 0) close(c->epfd);
    c->timerfd = c->evfd = c->epfd = -1;
}

int sb__wake_add(sb_conn *c, int fd, unsigned events) { return ctl(c, EPOLL_CTL_ADD, fd, events); }
int sb__wake_mod(sb_conn *c, int fd, unsigned events) { return ctl(c, EPOLL_CTL_MOD, fd, events); }

void sb__wake_del(sb_conn *c, int fd)
{
    /* the fd may already be closed by libpq: ignore errors */
    struct epoll_event ev = { 0 };
    (void)epoll_ctl(c->epfd, EPOLL_CTL_DEL, fd, &ev);
}

/* The flag is raised AFTER the write: whenever the eventfd holds
** something, the flag is up or about to be, and the drain that sees it
** reads the eventfd (a read that finds it empty costs one EAGAIN; no
** wake-up is lost).  Where only the owner thread signals (PostgreSQL),
** most steps then skip the read: a step made one read(2) that failed per
** request.  Where worker threads signal (SQLite) every step reads: a
** worker between its write and its flag would leave the fd readable after
** a step that already took its result (valgrind's scheduling showed it). */
void sb__wake_signal(sb_conn *c)
{
    uint64_t one = 1;
    ssize_t n;
    do n = write(c->evfd, &one, sizeof one);
    while (n < 0 && errno == EINTR);
    atomic_store_explicit(&c->signalled, 1, memory_order_release);
}

/* The timerfd is read only once its time has come. */
void sb__wake_drain(sb_conn *c)
{
    uint64_t v;
    int signalled = atomic_exchange_explicit(&c->signalled, 0, memory_order_acquire);
    if (signalled || (c->drv->caps & SB_CAP_WORKERS))
        while (read(c->evfd, &v, sizeof v) < 0 && errno == EINTR) {}
    if (c->timer_at && c->timer_at <= sb__now_ms()) {
        while (read(c->timerfd, &v, sizeof v) < 0 && errno == EINTR) {}
    }
}

void sb__wake_arm(sb_conn *c, int64_t at_ms)
{
    if (at_ms == c->timer_at) return;
    struct itimerspec its = { 0 };
    if (at_ms) {
        its.it_value.tv_sec = at_ms / 1000;
        its.it_value.tv_nsec = (at_ms % 1000) * 1000000;
    }
    timerfd_settime(c->timerfd, at_ms ? TFD_TIMER_ABSTIME : 0, &its, NULL);
    c->timer_at = at_ms;
}
