/*
** fuzz/fuzz_sql.c - libFuzzer target: placeholder translation
** (core/sql.c: sb__sql_scan).
**
** Properties beyond "no crash, no sanitizer report":
**   - without qmark the text is never modified;
**   - with qmark the only changes are '$' -> '?' at positions followed by
**     a digit, and the result (status, highest placeholder) is the same as
**     without qmark;
**   - a reported highest placeholder is between 1 and 65535.
*/
#include "sb_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *a = malloc(size + 1), *b = malloc(size + 1);
    if (!a || !b) abort();
    memcpy(a, data, size);
    memcpy(b, data, size);
    a[size] = b[size] = '\0';
    int ma = -1, mb = -1;
    int ra = sb__sql_scan(a, size, 0, &ma);
    int rb = sb__sql_scan(b, size, 1, &mb);
    if (memcmp(a, data, size) != 0) abort();        /* qmark=0 modified the text */
    if (ra != rb) abort();
    if (ra == SB_OK && ma != mb) abort();
    if (ra == SB_OK && (ma < 0 || ma > 65535)) abort();
    for (size_t i = 0; i < size; i++) {
        if (a[i] == b[i]) continue;
        if (a[i] != '$' || b[i] != '?') abort();
        if (i + 1 >= size || b[i + 1] < '0' || b[i + 1] > '9') abort();
    }
    free(a);
    free(b);
    return 0;
}
