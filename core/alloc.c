/*
** alloc.c - the core's allocator hook and small shared utilities (the
** monotonic clock).  Every allocation in core/ goes through sb__malloc and
** friends so that tests can inject failures (sb_set_allocator).
*/
#include "sb_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static void *(*xmalloc)(size_t) = malloc;
static void *(*xrealloc)(void *, size_t) = realloc;
static void (*xfree)(void *) = free;

void sb_set_allocator(void *(*m)(size_t), void *(*r)(void *, size_t), void (*f)(void *))
{
    xmalloc = m ? m : malloc;
    xrealloc = r ? r : realloc;
    xfree = f ? f : free;
}

void *sb__malloc(size_t n) { return xmalloc(n ? n : 1); }

void *sb__calloc(size_t n, size_t size)
{
    if (size && n > (size_t)-1 / size) return NULL;
    size_t total = n * size;
    void *p = xmalloc(total ? total : 1);
    if (p) memset(p, 0, total);
    return p;
}

void *sb__realloc(void *p, size_t n) { return xrealloc(p, n ? n : 1); }

void sb__free(void *p)
{
    if (p) xfree(p);
}

char *sb__strndup(const char *s, size_t n)
{
    char *d = sb__malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *sb__strdup(const char *s) { return sb__strndup(s, strlen(s)); }

int64_t sb__now_ms(void)
{
    return sb__now_us() / 1000;
}

int64_t sb__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
