/*
** spec/c/harness.h - a tiny header-only test harness for the core's C tests.
**
** Owns: the CHECK macros, running a list of test functions (each in its own
** forked child, so a crash, a hang or a leak report fails one test and not
** the run), the closing line "N passed, N failed[, N skipped]", and small
** helpers for building values and running queries against sb.h.
** Does not own: anything of the core; tests use the public sb.h only.
**
** A test is `TEST(name) { ... }`, listed in `static const h_test tests[] =
** { T(name), ... }`, run by `return h_main(argc, argv, tests, H_COUNT(tests));`.
** CHECK* records a failure and goes on; REQUIRE* records it and returns
** from the test function; SKIP(why) ends the test as skipped.
**
** Environment:
**   SB_TEST_NOFORK=1       run tests in-process (for gdb); the first crash
**                          ends the run
**   SB_TEST_TIMEOUT=S      per-test time limit in seconds (default 60,
**                          multiplied by the time factor)
**   SB_TEST_TIME_FACTOR=N  multiply timing limits by N (slow runs: ASan 3,
**                          valgrind 20)
**   SB_TEST_TMP=DIR        where temp files go (default /tmp)
** Arguments: test names to run only those.
*/
#ifndef SB_TEST_HARNESS_H
#define SB_TEST_HARNESS_H

#include "sb.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Every helper is static (header-only) and may go unused in a test file. */
#define H_API static __attribute__((unused))

/* ----------------------------------------------------------- registry */

typedef struct h_test {
    const char *name;
    void (*fn)(void);
} h_test;

#define TEST(name) static void name(void)
#define T(name) { #name, name }
#define H_COUNT(a) (sizeof(a) / sizeof((a)[0]))

enum { H_EXIT_PASS = 0, H_EXIT_FAIL = 1, H_EXIT_SKIP = 77 };

static int h_nfail;          /* failed checks in the current test */
static int h_skipped;        /* the current test called SKIP */
static int h_forked;         /* tests run in a forked child */
static const char *h_cur;    /* name of the current test */
static char h_tmp[512];      /* per-run temp dir */

H_API void h_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

H_API void h_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    h_nfail++;
    printf("  FAIL %s:%d: [%s] ", file, line, h_cur ? h_cur : "?");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

/* Informational output, indented under the test's name. */
H_API void h_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
H_API void h_note(const char *fmt, ...)
{
    va_list ap;
    printf("    - ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

#define CHECK(cond) \
    do { if (!(cond)) h_fail(__FILE__, __LINE__, "CHECK(%s)", #cond); } while (0)
#define CHECKF(cond, ...) \
    do { if (!(cond)) h_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define REQUIRE(cond) \
    do { if (!(cond)) { h_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond); return; } } while (0)
#define REQUIREF(cond, ...) \
    do { if (!(cond)) { h_fail(__FILE__, __LINE__, __VA_ARGS__); return; } } while (0)
#define CHECK_INT(a, op, b) \
    do { long long h_a_ = (long long)(a), h_b_ = (long long)(b); \
         if (!(h_a_ op h_b_)) h_fail(__FILE__, __LINE__, "CHECK_INT(%s %s %s): %lld vs %lld", \
                                     #a, #op, #b, h_a_, h_b_); } while (0)
#define CHECK_STR(a, b) \
    do { const char *h_a_ = (a), *h_b_ = (b); \
         if (!h_a_ || !h_b_ || strcmp(h_a_, h_b_) != 0) \
             h_fail(__FILE__, __LINE__, "CHECK_STR(%s, %s): \"%s\" vs \"%s\"", #a, #b, \
                    h_a_ ? h_a_ : "(null)", h_b_ ? h_b_ : "(null)"); } while (0)
#define SKIP(...) \
    do { h_skipped = 1; printf("    skipped: "); printf(__VA_ARGS__); printf("\n"); return; } while (0)

/* ------------------------------------------------------------- timing */

H_API int64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

H_API int h_time_factor(void)
{
    const char *s = getenv("SB_TEST_TIME_FACTOR");
    int f = s ? atoi(s) : 1;
    return f > 0 ? f : 1;
}

/* A time limit in ms, scaled for slow (sanitizer, valgrind) runs. */
#define H_MS(ms) ((int)((ms) * h_time_factor()))

H_API int h_ci(void)
{
    const char *s = getenv("CI");
    return s && (strcmp(s, "true") == 0 || strcmp(s, "1") == 0);
}

/* Path of a file in the run's temp dir (static buffers, 4 in rotation). */
H_API const char *h_path(const char *name)
{
    static char buf[4][600];
    static int i;
    char *b = buf[i++ & 3];
    snprintf(b, sizeof buf[0], "%s/%d-%s", h_tmp, (int)getpid(), name);
    return b;
}

/* "sqlite:" + h_path(name), with the file and its -wal/-shm removed first. */
H_API const char *h_sqlite_url(const char *name)
{
    static char buf[4][640];
    static int i;
    char *b = buf[i++ & 3];
    char extra[640];
    const char *p = h_path(name);
    unlink(p);
    snprintf(extra, sizeof extra, "%s-wal", p); unlink(extra);
    snprintf(extra, sizeof extra, "%s-shm", p); unlink(extra);
    snprintf(b, sizeof buf[0], "sqlite:%s", p);
    return b;
}

/* ------------------------------------------------------------- values */

H_API sb_value vnull(void) { sb_value v; memset(&v, 0, sizeof v); v.type = SB_NULL; return v; }
H_API sb_value vbool(int b) { sb_value v = vnull(); v.type = SB_BOOL; v.u.b = b; return v; }
H_API sb_value vint(int64_t i) { sb_value v = vnull(); v.type = SB_INT; v.u.i = i; return v; }
H_API sb_value vfloat(double f) { sb_value v = vnull(); v.type = SB_FLOAT; v.u.f = f; return v; }
H_API sb_value vtextn(const char *p, size_t n)
{
    sb_value v = vnull(); v.type = SB_TEXT; v.u.s.p = p; v.u.s.len = n; return v;
}
H_API sb_value vtext(const char *s) { return vtextn(s, strlen(s)); }
H_API sb_value vblob(const void *p, size_t n)
{
    sb_value v = vnull(); v.type = SB_BLOB; v.u.s.p = (const char *)p; v.u.s.len = n; return v;
}

H_API const char *h_typename(sb_type t)
{
    switch (t) {
    case SB_NULL: return "NULL";
    case SB_BOOL: return "BOOL";
    case SB_INT: return "INT";
    case SB_FLOAT: return "FLOAT";
    case SB_TEXT: return "TEXT";
    case SB_BLOB: return "BLOB";
    }
    return "?";
}

/* ------------------------------------------------------------ queries */

/* "class sqlstate backend: message" of a failed request (static buffer). */
H_API const char *h_errstr(const sb_req *r)
{
    static char buf[1024];
    const sb_error *e;
    if (!r) return "(no request: submit returned NULL)";
    if (sb_req_status(r) == SB_PENDING) return "(still pending)";
    if (sb_req_status(r) == SB_OK) return "(succeeded)";
    e = sb_req_error(r);
    if (!e) return "(failed, but sb_req_error is NULL)";
    snprintf(buf, sizeof buf, "%s %s %s: %s%s%s", sb_errclass_name(sb_error_class(e)),
             sb_error_sqlstate(e) ? sb_error_sqlstate(e) : "-----",
             sb_error_backend(e) ? sb_error_backend(e) : "?",
             sb_error_message(e) ? sb_error_message(e) : "(null)",
             sb_error_detail(e) ? " / " : "", sb_error_detail(e) ? sb_error_detail(e) : "");
    return buf;
}

H_API sb_errclass h_class(const sb_req *r)
{
    if (!r || sb_req_status(r) != SB_ERR || !sb_req_error(r)) return SB_E_NONE;
    return sb_error_class(sb_req_error(r));
}

H_API const char *h_sqlstate(const sb_req *r)
{
    if (!r || sb_req_status(r) != SB_ERR || !sb_req_error(r)) return "";
    return sb_error_sqlstate(sb_req_error(r));
}

H_API sb_req *h_submit(sb_conn *c, sb_session *s, const char *sql, const sb_value *p,
                        int n, unsigned flags, int timeout_ms)
{
    sb_query q;
    memset(&q, 0, sizeof q);
    q.sql = sql;
    q.sql_len = strlen(sql);
    q.params = p;
    q.nparams = n;
    q.session = s;
    q.timeout_ms = timeout_ms;
    q.flags = flags;
    return sb_conn_submit(c, &q);
}

/* Block until r is finished (30 s, scaled); a request still pending then is
** reported as a failure by the caller's CHECKs. */
H_API int h_wait(sb_conn *c, sb_req *r)
{
    if (!r) return SB_ERR;
    if (sb_req_status(r) != SB_PENDING) return SB_OK;
    return sb_conn_wait(c, r, H_MS(30000));
}

/* Submit (no flags), wait, return the finished request (caller frees). */
H_API sb_req *h_run_s(sb_conn *c, sb_session *s, const char *sql, const sb_value *p, int n)
{
    sb_req *r = h_submit(c, s, sql, p, n, 0, 0);
    h_wait(c, r);
    return r;
}
H_API sb_req *h_run(sb_conn *c, const char *sql, const sb_value *p, int n)
{
    return h_run_s(c, NULL, sql, p, n);
}

#define CHECK_OK(r) \
    CHECKF((r) && sb_req_status(r) == SB_OK, "%s: expected success, got %s", #r, h_errstr(r))
#define REQUIRE_OK(r) \
    REQUIREF((r) && sb_req_status(r) == SB_OK, "%s: expected success, got %s", #r, h_errstr(r))
#define CHECK_ERR(r, cls) \
    CHECKF((r) && sb_req_status(r) == SB_ERR && h_class(r) == (cls), \
           "%s: expected error class %s, got %s", #r, sb_errclass_name(cls), h_errstr(r))

/* Run a statement that must succeed; frees the request. */
#define EXEC(c, sql) \
    do { sb_req *h_r_ = h_run((c), (sql), NULL, 0); \
         CHECKF(h_r_ && sb_req_status(h_r_) == SB_OK, "EXEC(%s): %s", (sql), h_errstr(h_r_)); \
         sb_req_free(h_r_); } while (0)

/* The single value of a one-row one-column result, or NULL. */
H_API const sb_value *h_cell(const sb_req *r, int row, int col)
{
    const sb_result *res;
    if (!r || sb_req_status(r) != SB_OK) return NULL;
    res = sb_req_result(r);
    if (!res || row >= sb_result_nrows(res) || col >= sb_result_ncols(res)) return NULL;
    return &sb_result_row(res, row)[col];
}

/* Run sql and return its first column of the first row as an integer;
** INT64_MIN (and a failure) if that is not possible. */
H_API int64_t h_scalar_int_(sb_conn *c, sb_session *s, const char *sql, const char *file, int line)
{
    sb_req *r = h_run_s(c, s, sql, NULL, 0);
    const sb_value *v = h_cell(r, 0, 0);
    int64_t out = INT64_MIN;
    if (v && v->type == SB_INT) out = v->u.i;
    else if (v && v->type == SB_TEXT) out = strtoll(v->u.s.p, NULL, 10);
    else h_fail(file, line, "scalar(%s): %s", sql,
                v ? h_typename(v->type) : h_errstr(r));
    sb_req_free(r);
    return out;
}
#define SCALAR(c, sql) h_scalar_int_((c), NULL, (sql), __FILE__, __LINE__)
#define SCALAR_S(c, s, sql) h_scalar_int_((c), (s), (sql), __FILE__, __LINE__)

H_API sb_conn *h_open_(const char *url, const sb_options *o, const char *file, int line)
{
    sb_error *err = NULL;
    sb_conn *c = sb_conn_open(url, o, &err);
    if (!c)
        h_fail(file, line, "sb_conn_open failed: %s %s: %s",
               err ? sb_errclass_name(sb_error_class(err)) : "?",
               err ? sb_error_sqlstate(err) : "?", err ? sb_error_message(err) : "(no error)");
    sb_error_free(err);
    return c;
}
#define OPEN(url, o) h_open_((url), (o), __FILE__, __LINE__)

/*
** The host contract driven by a plain poll(2) loop: until every request in
** rs[0..n) has finished (or limit_ms passes), poll sb_conn_fd for POLLIN
** with sb_conn_timeout() as the timeout, then sb_conn_step.  Checks that
** the fd never changes.  Returns the number still pending.
*/
H_API int h_poll_all(sb_conn *c, sb_req **rs, int n, int limit_ms)
{
    int fd = sb_conn_fd(c), pending = n, i;
    int64_t end = h_now_ms() + limit_ms;
    CHECKF(fd >= 0, "sb_conn_fd = %d", fd);
    while (h_now_ms() < end) {
        struct pollfd p;
        int t = sb_conn_timeout(c), left = (int)(end - h_now_ms());
        pending = 0;
        for (i = 0; i < n; i++)
            if (rs[i] && sb_req_status(rs[i]) == SB_PENDING) pending++;
        if (!pending) break;
        if (t < 0 || t > left) t = left;
        p.fd = fd; p.events = POLLIN; p.revents = 0;
        if (poll(&p, 1, t) < 0 && errno != EINTR) {
            h_fail(__FILE__, __LINE__, "poll: %s", strerror(errno));
            break;
        }
        CHECKF(sb_conn_step(c) == SB_OK, "sb_conn_step failed");
        CHECKF(sb_conn_fd(c) == fd, "sb_conn_fd changed from %d to %d", fd, sb_conn_fd(c));
    }
    pending = 0;
    for (i = 0; i < n; i++)
        if (rs[i] && sb_req_status(rs[i]) == SB_PENDING) pending++;
    return pending;
}

/* ------------------------------------------------------------- runner */

H_API void h_alarm(int sig)
{
    static const char msg[] = "  FAIL: test timed out (SB_TEST_TIMEOUT)\n";
    (void)sig;
    if (write(1, msg, sizeof msg - 1) < 0) { /* nothing to do */ }
    _exit(H_EXIT_FAIL);
}

H_API int h_run_one(const h_test *t, int timeout_s)
{
    h_cur = t->name;
    h_nfail = 0;
    h_skipped = 0;
    if (h_forked) {
        signal(SIGALRM, h_alarm);
        alarm((unsigned)timeout_s);
    }
    t->fn();
    fflush(stdout);
    if (h_nfail) return H_EXIT_FAIL;
    return h_skipped ? H_EXIT_SKIP : H_EXIT_PASS;
}

H_API int h_main(int argc, char **argv, const h_test *tests, size_t n)
{
    size_t i;
    int passed = 0, failed = 0, skipped = 0, timeout_s;
    const char *e = getenv("SB_TEST_TIMEOUT");
    const char *base = getenv("SB_TEST_TMP");
    char cmd[600];

    timeout_s = (e && atoi(e) > 0 ? atoi(e) : 60) * h_time_factor();
    h_forked = !(getenv("SB_TEST_NOFORK") && strcmp(getenv("SB_TEST_NOFORK"), "1") == 0);
    snprintf(h_tmp, sizeof h_tmp, "%s/sb-ctest.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(h_tmp)) {
        printf("cannot create a temp dir under %s: %s\n", base ? base : "/tmp", strerror(errno));
        printf("0 passed, 1 failed\n");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    for (i = 0; i < n; i++) {
        int rc, a, selected = argc <= 1;
        for (a = 1; a < argc; a++)
            if (strcmp(argv[a], tests[i].name) == 0) selected = 1;
        if (!selected) continue;
        printf("%s\n", tests[i].name);
        fflush(stdout);
        if (h_forked) {
            int st;
            pid_t pid = fork();
            if (pid < 0) { printf("  FAIL: fork: %s\n", strerror(errno)); failed++; continue; }
            if (pid == 0) exit(h_run_one(&tests[i], timeout_s));
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
            if (WIFEXITED(st)) {
                rc = WEXITSTATUS(st);
                if (rc != H_EXIT_PASS && rc != H_EXIT_FAIL && rc != H_EXIT_SKIP) {
                    printf("  FAIL: [%s] exited with status %d (a sanitizer or valgrind report above?)\n",
                           tests[i].name, rc);
                    rc = H_EXIT_FAIL;
                }
            } else {
                printf("  FAIL: [%s] killed by signal %d (%s)\n", tests[i].name,
                       WTERMSIG(st), strsignal(WTERMSIG(st)));
                rc = H_EXIT_FAIL;
            }
        } else {
            rc = h_run_one(&tests[i], timeout_s);
        }
        if (rc == H_EXIT_PASS) passed++;
        else if (rc == H_EXIT_SKIP) skipped++;
        else { failed++; printf("  -> %s FAILED\n", tests[i].name); }
        fflush(stdout);
    }

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", h_tmp);
    if (system(cmd) != 0) { /* leftovers in a temp dir are harmless */ }
    if (skipped)
        printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else
        printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#endif /* SB_TEST_HARNESS_H */
