/*
** sql.c - the one SQL scanner of the core: finds the $1 .. $n placeholders
** of a statement outside string literals, quoted identifiers, comments and
** dollar-quoted strings, and rewrites them to SQLite's ?N (same length, in
** place).  It does not parse SQL; it only knows where a '$' may start a
** placeholder.
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
