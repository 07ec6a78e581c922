/*
** url.c - database URLs: which backend a URL names, what the backend gets
** (the "target"), and the redacted copy that is the only form of a URL the
** core ever shows (tostring, logs).  Passwords in the user-info part of a
** URI and password= settings (in a query string or a key=value conninfo)
** become "***".
*/
#include "sb_int.h"

#include <ctype.h>
#include <string.h>

static int has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

const sb_driver *sb__url_driver(const char *url, const char **target)
{
    if (has_prefix(url, "sqlite:")) {
        const char *t = url + 7;
        if (has_prefix(t, "//")) t += 2;
        *target = t;
        return &sb_sqlite_driver;
    }
    if (has_prefix(url, "postgresql://") || has_prefix(url, "postgres://") ||
        (strchr(url, '=') && !strstr(url, "://"))) {
        *target = url;
        return &sb_pg_driver;
    }
    return NULL;
}

/* Append s[0..n) to buf at *at (buf is large enough by construction). */
static void put(char *buf, size_t *at, const char *s, size_t n)
{
    memcpy(buf + *at, s, n);
    *at += n;
}

/* Copy `in` to `out` replacing the value of every password=... setting.
** Values end at '&' (URI query) or whitespace (conninfo); a quoted value
** ends at its closing quote. */
static void redact_settings(const char *in, char *out, size_t *at, int uri)
{
    const char *p = in;
    while (*p) {
        const char *hit = strstr(p, "password");
        if (!hit) break;
        const char *q = hit + 8;
        while (!uri && *q == ' ') q++;
        int starts_key = hit == in || hit[-1] == '&' || hit[-1] == '?' || isspace((unsigned char)hit[-1]);
        if (*q != '=' || !starts_key) {
            put(out, at, p, (size_t)(hit + 8 - p));
            p = hit + 8;
            continue;
        }
        q++;
        while (!uri && *q == ' ') q++;
        put(out, at, p, (size_t)(q - p));
        if (*q == '\'') {
            for (q++; *q && *q != '\''; q++)
                if (*q == '\\' && q[1]) q++;
            if (*q) q++;
        } else {
            while (*q && (uri ? *q != '&' : !isspace((unsigned char)*q))) q++;
        }
        put(out, at, "***", 3);
        p = q;
    }
    put(out, at, p, strlen(p));
}

char *sb__url_redact(const char *url)
{
    size_t n = strlen(url);
    /* each redaction turns >= 9 bytes ("password=" or ":@" plus value) into
    ** at most 3 more than before, so n + n/2 + 8 always fits */
    char *out = sb__malloc(n + n / 2 + 8);
    if (!out) return NULL;
    size_t at = 0;
    const char *scheme = strstr(url, "://");
    if (!scheme) {
        redact_settings(url, out, &at, 0);
    } else {
        const char *auth = scheme + 3;
        const char *end = auth + strcspn(auth, "/?");
        const char *atsign = NULL;
        for (const char *p = auth; p < end; p++)
            if (*p == '@') atsign = p;
        const char *colon = atsign ? memchr(auth, ':', (size_t)(atsign - auth)) : NULL;
        if (colon) {
            put(out, &at, url, (size_t)(colon + 1 - url));
            put(out, &at, "***", 3);
            put(out, &at, atsign, (size_t)(end - atsign));
        } else {
            put(out, &at, url, (size_t)(end - url));
        }
        redact_settings(end, out, &at, 1);
    }
    out[at] = '\0';
    return out;
}
