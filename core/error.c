/*
** error.c - sb_error: the structured error (class, SQLSTATE, message,
** detail, backend, retryable, unknown outcome), its constructors for the
** backends, the SQLSTATE -> class mapping both backends share, and a static
** out-of-memory error that can be handed out without allocating (the idea
** of libpq's OOM_result).
**
** Errors never contain a conninfo or password: backends pass only server
** or library messages, and conn.c never formats a URL into one.
*/
#include "sb_int.h"

#include <stdio.h>
#include <string.h>

const char *const SB_BACKEND_CORE = "switchboard";

static char oom_message[] = "out of memory";
static sb_error oom_error = {
    SB_E_OTHER, "53200", 0, 0, "switchboard", oom_message, NULL
};

sb_error *sb__error_new(sb_errclass cls, const char *sqlstate, const char *backend,
                        const char *message, const char *detail)
{
    size_t mlen = message ? strlen(message) : 0;
    size_t dlen = detail ? strlen(detail) : 0;
    /* libpq messages end in a newline; keep errors one line */
    while (mlen && (message[mlen - 1] == '\n' || message[mlen - 1] == ' ')) mlen--;
    while (dlen && (detail[dlen - 1] == '\n' || detail[dlen - 1] == ' ')) dlen--;
    sb_error *e = sb__malloc(sizeof *e + mlen + 1 + (detail ? dlen + 1 : 0));
    if (!e) return &oom_error;
    e->cls = cls;
    snprintf(e->sqlstate, sizeof e->sqlstate, "%s", sqlstate ? sqlstate : "XX000");
    e->backend = backend ? backend : SB_BACKEND_CORE;
    e->message = (char *)(e + 1);
    memcpy(e->message, message ? message : "", mlen);
    e->message[mlen] = '\0';
    e->detail = NULL;
    if (detail) {
        e->detail = e->message + mlen + 1;
        memcpy(e->detail, detail, dlen);
        e->detail[dlen] = '\0';
    }
    e->retryable = sb__retryable(cls, e->sqlstate);
    e->unknown_outcome = 0;
    return e;
}

sb_error *sb__error_fmt(sb_errclass cls, const char *sqlstate, const char *backend,
                        const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return sb__error_new(cls, sqlstate, backend, buf, NULL);
}

sb_errclass sb__class_from_sqlstate(const char *s)
{
    if (!s || strlen(s) != 5) return SB_E_OTHER;
    if (!strcmp(s, "40001") || !strcmp(s, "40P01")) return SB_E_SERIALIZATION;
    if (!strcmp(s, "55P03")) return SB_E_BUSY;
    if (!strcmp(s, "57014")) return SB_E_TIMEOUT;      /* query_canceled */
    if (!strncmp(s, "57P0", 4)) return SB_E_CONNECTION; /* admin/crash shutdown */
    if (!strncmp(s, "23", 2)) return SB_E_CONSTRAINT;
    if (!strncmp(s, "42", 2)) return SB_E_SYNTAX;
    if (!strncmp(s, "08", 2)) return SB_E_CONNECTION;
    return SB_E_OTHER;
}

int sb__retryable(sb_errclass cls, const char *sqlstate)
{
    (void)sqlstate;
    return cls == SB_E_BUSY || cls == SB_E_SERIALIZATION;
}

void sb_error_free(sb_error *e)
{
    if (e && e != &oom_error) sb__free(e);
}

sb_errclass sb_error_class(const sb_error *e) { return e->cls; }
const char *sb_error_sqlstate(const sb_error *e) { return e->sqlstate; }
const char *sb_error_message(const sb_error *e) { return e->message; }
const char *sb_error_detail(const sb_error *e) { return e->detail; }
const char *sb_error_backend(const sb_error *e) { return e->backend; }
int sb_error_retryable(const sb_error *e) { return e->retryable; }
int sb_error_unknown_outcome(const sb_error *e) { return e->unknown_outcome; }

const char *sb_errclass_name(sb_errclass cls)
{
    static const char *const names[] = {
        "none", "constraint", "syntax", "busy", "timeout", "connection",
        "serialization", "closed", "misuse", "other"
    };
    return (unsigned)cls < sizeof names / sizeof *names ? names[cls] : "other";
}
