/*
** bench/fsync_probe.c - how long the disk takes to flush, sampled while a
** benchmark cell runs (bench/run.lua starts it beside the open-loop routing
** cells of both backends): a PostgreSQL commit waits for one such flush of
** the WAL, and SQLite's checkpoints and writes share the disk, so a stall
** here shows in every decision that commits at that moment.
**
** Owns: writing 8 KB and fdatasync()ing it every 5 ms for SECS seconds, in
** a file of its own in DIR, then printing one JSON line: samples, p50, p99
** and max in milliseconds, and how many took over 10 ms.
** Usage: fsync_probe DIR SECS
*/
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s DIR SECS\n", argv[0]);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/fsync_probe.%ld", argv[1], (long)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    static char page[8192];
    memset(page, 'x', sizeof page);
    double secs = atof(argv[2]), end = now() + secs;
    size_t cap = (size_t)(secs * 250) + 16, n = 0, slow = 0;
    double *ms = malloc(cap * sizeof *ms);
    if (!ms) return 1;
    struct timespec pause = { 0, 5000000 };
    while (now() < end && n < cap) {
        if (pwrite(fd, page, sizeof page, (off_t)(n % 64) * (off_t)sizeof page) < 0) break;
        double t0 = now();
        if (fdatasync(fd) != 0) break;
        ms[n] = (now() - t0) * 1e3;
        slow += ms[n] > 10;
        n++;
        nanosleep(&pause, NULL);
    }
    close(fd);
    unlink(path);
    if (n == 0) return 1;
    qsort(ms, n, sizeof *ms, cmp);
    printf("{\"samples\":%zu,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.1f,\"over_10ms\":%zu}\n", n,
           ms[n / 2], ms[(size_t)((double)n * 0.99)], ms[n - 1], slow);
    free(ms);
    return 0;
}
