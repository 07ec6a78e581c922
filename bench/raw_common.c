/*
** raw_common.c - command line, clock, parameters, latencies and JSON output
** of the raw C baselines.  See raw_common.h.
*/
#include "raw_common.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Twins of bench/ops.lua's constants. */
#define N_AGENTS 200
#define T_AGENT0 INT64_C(1700000000000)
#define T_REC0 INT64_C(1690000000000)
#define T_CALL0 INT64_C(1710000000000)
#define DAY_MS INT64_C(86400000)
#define WINDOW_DAYS 10

static const char *const OP_NAMES[] = { "update", "available", "assign", "assign1", "analytics", "routing" };

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s --op NAME [--db FILE] [--mode prepared|pipeline] [--secs S] [--warm S] [--rate R]\n"
            "          [--max N] [--base ID] [--conns N] [--depth N] [--check-args N]\n"
            "          [--pgdb NAME] [--policy NAME --policy-version V] -- SQL...\n"
            "  one benchmark cell: runs NAME (update|available|assign|assign1|analytics|routing),\n"
            "  whose statements are the SQL arguments (from bench/ops.lua), and prints one JSON line.\n",
            prog);
    exit(2);
}

void bench_parse(int argc, char **argv, bench_args *a)
{
    memset(a, 0, sizeof *a);
    a->secs = 1.0;
    a->warm_secs = 0.2;
    a->max_ops = 1000000000L;
    a->conns = 16;
    a->depth = 16;
    a->mode = "prepared";
    int i = 1;
    for (; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "--")) { i++; break; }
        if (i + 1 >= argc) usage(argv[0]);
        const char *v = argv[++i];
        if (!strcmp(k, "--op")) a->op_name = v;
        else if (!strcmp(k, "--db")) a->db = v;
        else if (!strcmp(k, "--mode")) a->mode = v;
        else if (!strcmp(k, "--secs")) a->secs = atof(v);
        else if (!strcmp(k, "--warm")) a->warm_secs = atof(v);
        else if (!strcmp(k, "--rate")) a->rate = atof(v);
        else if (!strcmp(k, "--max")) a->max_ops = atol(v);
        else if (!strcmp(k, "--base")) a->base = atol(v);
        else if (!strcmp(k, "--conns")) a->conns = atoi(v);
        else if (!strcmp(k, "--depth")) a->depth = atoi(v);
        else if (!strcmp(k, "--check-args")) a->check_args = atoi(v);
        else if (!strcmp(k, "--pgdb")) a->pgdb = v;
        else if (!strcmp(k, "--policy")) a->policy_name = v;
        else if (!strcmp(k, "--policy-version")) a->policy_version = v;
        else usage(argv[0]);
    }
    if (!a->op_name) usage(argv[0]);
    int found = 0;
    for (int o = 0; o < (int)(sizeof OP_NAMES / sizeof *OP_NAMES); o++)
        if (!strcmp(a->op_name, OP_NAMES[o])) { a->op = (bench_op)o; found = 1; }
    if (!found || a->conns < 1 || a->depth < 1) usage(argv[0]);
    a->nsql = argc - i;
    a->sql = argv + i;
    /* routing: raw_sqlite takes 6 statements, raw_pg 2 (they check) */
    int want = a->op == OP_ASSIGN ? 5 : a->op == OP_ROUTING ? a->nsql : 1;
    if (a->op == OP_ROUTING && !a->check_args && (!a->policy_name || !a->policy_version)) {
        fprintf(stderr, "%s: op routing needs --policy and --policy-version\n", argv[0]);
        exit(2);
    }
    if (!a->check_args && a->nsql != want) {
        fprintf(stderr, "%s: op %s takes %d statement(s), got %d\n", argv[0], a->op_name, want, a->nsql);
        exit(2);
    }
}

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double bench_start(const bench_args *a, double *due)
{
    if (a->rate <= 0) return bench_now();
    *due -= log(1.0 - drand48()) / a->rate;
    struct timespec ts = { (time_t)*due, (long)((*due - (double)(time_t)*due) * 1e9) };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
    return *due;
}

double bench_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int64_t bench_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_int(bench_params *o, int j, int64_t v)
{
    o->i[j] = v;
    o->is_int[j] = 1;
    snprintf(o->buf[j], sizeof o->buf[j], "%" PRId64, v);
    o->p[j] = o->buf[j];
}

static void set_text(bench_params *o, int j, const char *s)
{
    o->is_int[j] = 0;
    o->p[j] = s;
}

/* Twins of ops.lua's update_args, available_args, assign_args, analytics_args. */
void bench_params_for(bench_op op, long k, long base, bench_params *o)
{
    switch (op) {
    case OP_UPDATE: {
        int64_t id = 1 + k % N_AGENTS;
        o->n = 3;
        set_text(o, 0, id % 2 == 0 ? "AVAILABLE" : "BUSY");
        set_int(o, 1, T_AGENT0 + k);
        set_int(o, 2, id);
        break;
    }
    case OP_AVAILABLE:
        o->n = 1;
        set_text(o, 0, "AVAILABLE");
        break;
    case OP_ASSIGN:
    case OP_ASSIGN1: {
        int64_t c = base + k;
        o->n = 4;
        set_int(o, 0, c);
        set_int(o, 1, 2 + 2 * (c % 100));
        snprintf(o->buf[2], sizeof o->buf[2], "+1555%" PRId64, c);
        set_text(o, 2, o->buf[2]);
        set_int(o, 3, T_CALL0 + k);
        break;
    }
    case OP_ANALYTICS: {
        int64_t from = T_REC0 + (k % (100 - WINDOW_DAYS + 1)) * DAY_MS;
        o->n = 2;
        set_int(o, 0, from);
        set_int(o, 1, from + WINDOW_DAYS * DAY_MS);
        break;
    }
    case OP_ROUTING: {
        /* session ids are text (callcenter stores ids as their decimal text) */
        o->n = 3;
        snprintf(o->buf[0], sizeof o->buf[0], "%" PRId64, (int64_t)base + k);
        set_text(o, 0, o->buf[0]);
        set_text(o, 1, ROUTE_QUEUE);
        set_text(o, 2, ROUTE_SKILLS);
        break;
    }
    }
}

int bench_stmt_params(bench_op op, int stmt, int idx[4])
{
    switch (op) {
    case OP_UPDATE: idx[0] = 0; idx[1] = 1; idx[2] = 2; return 3;
    case OP_AVAILABLE: idx[0] = 0; return 1;
    case OP_ANALYTICS: idx[0] = 0; idx[1] = 1; return 2;
    case OP_ASSIGN1: idx[0] = 0; idx[1] = 1; idx[2] = 3; return 3;
    case OP_ASSIGN:
        switch (stmt) {
        case 1: idx[0] = 0; return 1;                                  /* DELETE */
        case 2: idx[0] = 0; idx[1] = 1; idx[2] = 2; idx[3] = 3; return 4; /* INSERT */
        case 3: idx[0] = 1; return 1;                                  /* UPDATE */
        default: return 0;                                             /* BEGIN, COMMIT */
        }
    case OP_ROUTING: return 0;  /* its own code in raw_sqlite.c / raw_pg.c */
    }
    return 0;
}

int bench_stmt_expect(bench_op op, int stmt)
{
    switch (op) {
    case OP_UPDATE:
    case OP_ASSIGN1: return 1;
    case OP_ASSIGN: return stmt >= 1 && stmt <= 3 ? 1 : -1;
    default: return -1;
    }
}

void bench_print_args(const bench_args *a)
{
    bench_params p;
    for (long k = 0; k < a->check_args; k++) {
        bench_params_for(a->op, k, a->base, &p);
        printf("%ld", k);
        for (int j = 0; j < p.n; j++) printf(" %s", p.p[j]);
        putchar('\n');
    }
}

void bench_lat_init(bench_lat *l, long cap)
{
    l->n = 0;
    l->cap = cap > 16 ? cap : 16;
    l->us = malloc((size_t)l->cap * sizeof *l->us);
    if (!l->us) { fprintf(stderr, "out of memory\n"); exit(1); }
}

void bench_lat_add(bench_lat *l, double us)
{
    if (l->n == l->cap) {
        l->cap *= 2;
        double *p = realloc(l->us, (size_t)l->cap * sizeof *l->us);
        if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
        l->us = p;
    }
    l->us[l->n++] = us;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Nearest rank, as bench/lib/stats.lua. */
static double pct(const bench_lat *l, double p)
{
    if (l->n == 0) return 0;
    long i = (long)ceil(p / 100.0 * (double)l->n);
    if (i < 1) i = 1;
    return l->us[i - 1];
}

void bench_emit(const char *impl, const bench_args *a, long ops, long ops_all, double secs,
                double cpu, bench_lat *l, long errors, long check)
{
    qsort(l->us, (size_t)l->n, sizeof *l->us, cmp_double);
    printf("{\"impl\":\"%s\",\"op\":\"%s\",\"ops\":%ld,\"ops_all\":%ld,\"secs\":%.6f,\"ops_per_s\":%.2f,"
           "\"cpu_us_per_op\":%.2f,\"p50_us\":%.2f,\"p99_us\":%.2f,\"errors\":%ld,\"check\":%ld}\n",
           impl, a->op_name, ops, ops_all, secs, secs > 0 ? (double)ops / secs : 0.0,
           ops > 0 ? cpu * 1e6 / (double)ops : 0.0, pct(l, 50), pct(l, 99), errors, check);
    fflush(stdout);
    free(l->us);
}
