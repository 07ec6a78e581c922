/*
** fuzz/fuzz_url.c - libFuzzer target: URL parsing and redaction
** (core/url.c: sb__url_driver, sb__url_redact) and the PostgreSQL
** backend's message scrubbing (core/pg_value.c: sb_pg_scrub_parse,
** sb_pg_scrub_secret).
**
** Properties beyond "no crash, no sanitizer report":
**   - the redacted copy is NUL-terminated and within its documented bound;
**   - a password placed in a well-formed URI (user:PW@host) or conninfo
**     (password=PW) never survives redaction;
**   - sb_pg_scrub_secret leaves no occurrence of the secret;
**   - sb_pg_scrub_parse never writes past its buffer and NUL-terminates.
*/
#include "pg_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static char *cstr(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* A password from fuzz bytes: 4..24 chars of [A-Za-z0-9_-], or NULL. */
static char *password_of(const uint8_t *p, size_t n)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    if (n < 4) return NULL;
    if (n > 24) n = 24;
    char *s = malloc(n + 1);
    if (!s) abort();
    for (size_t i = 0; i < n; i++) s[i] = alpha[p[i] % (sizeof alpha - 1)];
    s[n] = '\0';
    return s;
}

static void check_redacted(const char *url, const char *pw)
{
    char *r = sb__url_redact(url);
    if (!r) abort();
    size_t n = strlen(url);
    if (strlen(r) > n + n / 2 + 7) abort();
    if (pw && strstr(r, pw)) abort();  /* the password survived */
    free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = cstr(data, size);
    const char *target = NULL;
    (void)sb__url_driver(s, &target);
    check_redacted(s, NULL);

    /* well-formed URI and conninfo with a password made from the input */
    char *pw = password_of(data, size);
    if (pw) {
        size_t cap = strlen(pw) + size + 64;
        char *u = malloc(cap);
        if (!u) abort();
        /* the rest of the input as host/db text, without the URI's delimiters */
        char *rest = cstr(data, size > 32 ? 32 : size);
        for (char *q = rest; *q; q++)
            if (*q == '@' || *q == '/' || *q == '?' || *q == ':' || (unsigned char)*q < 33 ||
                *q == '\'' || *q == '\\' || *q == '=' || *q == '&')
                *q = 'h';
        snprintf(u, cap, "postgresql://user:%s@%s/db?sslmode=disable", pw, rest);
        check_redacted(u, pw);
        snprintf(u, cap, "postgresql://user@%s/db?password=%s&port=5", rest, pw);
        check_redacted(u, pw);
        snprintf(u, cap, "host=%s password=%s dbname=x", rest, pw);
        check_redacted(u, pw);
        snprintf(u, cap, "host=%s password = '%s' dbname=x", rest, pw);
        check_redacted(u, pw);

        /* scrubbing a message that quotes the secret */
        char msg[512];
        snprintf(msg, sizeof msg, "%s \"%s\" %s", rest, pw, s);
        char *m2 = strdup(msg);
        if (!m2) abort();
        sb_pg_scrub_secret(m2, pw);
        if (strstr(m2, pw)) abort();
        free(m2);
        free(rest);
        free(u);
    }

    char out[64];
    sb_pg_scrub_parse(s, s, out, sizeof out);
    if (!memchr(out, '\0', sizeof out)) abort();
    char *m = strdup(s);
    if (!m) abort();
    sb_pg_scrub_secret(m, pw ? pw : "");
    if (pw && strlen(pw) >= 4 && strstr(m, pw)) abort();
    free(m);
    free(pw);
    free(s);
    return 0;
}
