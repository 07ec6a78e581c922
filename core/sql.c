/*
** sql.c - the one SQL scanner of the core: finds the $1 .. $n placeholders
** of a statement outside string literals, quoted identifiers, comments and
** dollar-quoted strings, and rewrites them to SQLite's ?N (same length, in
** place).  It does not parse SQL; it only knows where a '$' may start a
** placeholder.  A small per-connection memo remembers the outcome for the
** statements a connection sees again and again, so the hot path costs one
** hash and one memcmp instead of a scan.
*/
#include "sb_int.h"

#include <string.h>

#define MAX_PARAM 65535

static int is_ident(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '$' || (unsigned char)ch >= 0x80;
}

/* Skip a quoted run opened at s[i] by quote q; returns the index after it. */
static size_t skip_quoted(const char *s, size_t len, size_t i, char q, int backslash)
{
    for (i++; i < len; i++) {
        if (backslash && s[i] == '\\') { i++; continue; }
        if (s[i] == q) {
            if (i + 1 < len && s[i + 1] == q) { i++; continue; }  /* doubled */
            return i + 1;
        }
    }
    return len;
}

/* If s[i] starts a dollar quote ($$ or $tag$), returns the tag length
** including both '$' (>= 2), else 0. */
static size_t dollar_tag(const char *s, size_t len, size_t i)
{
    size_t j = i + 1;
    if (j < len && s[j] == '$') return 2;
    if (j >= len || !((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z') || s[j] == '_'))
        return 0;
    while (j < len && is_ident(s[j]) && s[j] != '$') j++;
    return (j < len && s[j] == '$') ? j - i + 1 : 0;
}

int sb__sql_scan(char *s, size_t len, int qmark, int *maxparam)
{
    int max = 0;
    size_t i = 0;
    while (i < len) {
        char ch = s[i];
        int prev_ident = i > 0 && is_ident(s[i - 1]);
        if (ch == '\'') {
            int esc = i > 0 && (s[i - 1] == 'E' || s[i - 1] == 'e') && !(i > 1 && is_ident(s[i - 2]));
            i = skip_quoted(s, len, i, '\'', esc);
        } else if (ch == '"' || ch == '`') {
            i = skip_quoted(s, len, i, ch, 0);
        } else if (ch == '-' && i + 1 < len && s[i + 1] == '-') {
            while (i < len && s[i] != '\n') i++;
        } else if (ch == '/' && i + 1 < len && s[i + 1] == '*') {
            int depth = 1;
            for (i += 2; i < len && depth; i++) {
                if (s[i] == '/' && i + 1 < len && s[i + 1] == '*') { depth++; i++; }
                else if (s[i] == '*' && i + 1 < len && s[i + 1] == '/') { depth--; i++; }
            }
        } else if (ch == '$' && !prev_ident) {
            if (i + 1 < len && s[i + 1] >= '0' && s[i + 1] <= '9') {
                long n = 0;
                size_t j = i + 1;
                while (j < len && s[j] >= '0' && s[j] <= '9') {
                    n = n * 10 + (s[j] - '0');
                    if (n > MAX_PARAM) return SB_ERR;
                    j++;
                }
                if (n == 0) return SB_ERR;
                if (n > max) max = (int)n;
                if (qmark) s[i] = '?';
                i = j;
            } else {
                size_t tag = dollar_tag(s, len, i);
                if (!tag) { i++; continue; }
                size_t j = i + tag;
                while (j + tag <= len && memcmp(s + j, s + i, tag) != 0) j++;
                i = j + tag <= len ? j + tag : len;
            }
        } else {
            i++;
        }
    }
    *maxparam = max;
    return SB_OK;
}

/* ------------------------------------------------------------------ memo */

#define MEMO_SLOTS 256   /* direct-mapped by hash */
#define MEMO_MAXLEN 2048 /* longer statements are scanned every time */

typedef struct memo_entry {
    uint64_t hash;
    size_t len;
    int maxparam;
    char *text;  /* the original, then (len + 1 on) the rewritten form */
} memo_entry;

struct sb_sqlmemo {
    memo_entry slot[MEMO_SLOTS];
};

/* A word at a time: this runs on every submit.  In-process only, so the
** byte order does not matter; keys are compared in full anyway. */
uint64_t sb__sql_hash(const char *p, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n, w;
    for (; n >= 8; p += 8, n -= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 29);
}

int sb__sql_check(sb_conn *c, char *sql, size_t len, int qmark, int *maxparam, uint64_t *hash)
{
    uint64_t h = *hash = sb__sql_hash(sql, len);
    if (len > MEMO_MAXLEN) return sb__sql_scan(sql, len, qmark, maxparam);
    if (!c->sqlmemo) c->sqlmemo = sb__calloc(1, sizeof(struct sb_sqlmemo));
    memo_entry *e = c->sqlmemo ? &c->sqlmemo->slot[h % MEMO_SLOTS] : NULL;
    if (e && e->text && e->hash == h && e->len == len && memcmp(e->text, sql, len) == 0) {
        if (qmark) memcpy(sql, e->text + len + 1, len);
        *maxparam = e->maxparam;
        return SB_OK;
    }
    char *orig = e ? sb__malloc(2 * len + 2) : NULL;
    if (orig) memcpy(orig, sql, len);
    if (sb__sql_scan(sql, len, qmark, maxparam) != SB_OK) {
        sb__free(orig);
        return SB_ERR;
    }
    if (orig) {
        orig[len] = '\0';
        memcpy(orig + len + 1, sql, len);
        orig[2 * len + 1] = '\0';
        sb__free(e->text);
        e->text = orig;
        e->hash = h;
        e->len = len;
        e->maxparam = *maxparam;
    }
    return SB_OK;
}

void sb__sql_memo_free(sb_conn *c)
{
    if (!c->sqlmemo) return;
    for (int i = 0; i < MEMO_SLOTS; i++) sb__free(c->sqlmemo->slot[i].text);
    sb__free(c->sqlmemo);
    c->sqlmemo = NULL;
}
