/*
** sqlite_exec.c - running one request on one SQLite connection (the
** caller is the connection's runner: its worker thread, or the owner
** inline): the statement cache lookup, preparing (one statement only),
** binding parameters, stepping, building the result, and mapping SQLite
** result codes to sb_error.
**
** Does not own: which connection runs what (sqlite_drv.c), threads
** (sqlite_worker.c).
*/
#include "sqlite_int.h"

#include <string.h>

sb_error *sb_sqlite_oom(void)
{
    return sb__error_new(SB_E_OTHER, "53200", SB_BACKEND_CORE, "out of memory", NULL);
}

/* SQLite (extended) result code + message -> sb_error. */
static sb_error *map_error(int x, const char *msg)
{
    sb_errclass cls = SB_E_OTHER;
    const char *state = "XX000";
    switch (x & 0xff) {
    case SQLITE_CONSTRAINT:
        switch (x) {
        case SQLITE_CONSTRAINT_UNIQUE:
        case SQLITE_CONSTRAINT_PRIMARYKEY: state = "23505"; break;
        case SQLITE_CONSTRAINT_NOTNULL: state = "23502"; break;
        case SQLITE_CONSTRAINT_FOREIGNKEY: state = "23503"; break;
        case SQLITE_CONSTRAINT_CHECK: state = "23514"; break;
        default: state = "23000"; break;
        }
        cls = sb__class_from_sqlstate(state);
        break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: cls = SB_E_BUSY; state = "55P03"; break;
    case SQLITE_ERROR:
        if (strstr(msg, "syntax error") || strstr(msg, "incomplete input")) state = "42601";
        else if (strstr(msg, "no such table")) state = "42P01";
        else if (strstr(msg, "no such column")) state = "42703";
        else if (strstr(msg, "no such function")) state = "42883";
        else if (strstr(msg, "ambiguous column name")) state = "42702";
        else state = "42000";
        cls = SB_E_SYNTAX;
        break;
    case SQLITE_INTERRUPT: cls = SB_E_TIMEOUT; state = "57014"; break;
    case SQLITE_MISUSE: cls = SB_E_MISUSE; state = "55000"; break;
    case SQLITE_RANGE: cls = SB_E_MISUSE; state = "22023"; break;
    case SQLITE_NOMEM: state = "53200"; break;
    case SQLITE_IOERR: state = "58030"; break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: state = "XX001"; break;
    case SQLITE_FULL: state = "53100"; break;
    case SQLITE_CANTOPEN: state = "58030"; break;
    case SQLITE_READONLY: state = "25006"; break;
    case SQLITE_TOOBIG: state = "54000"; break;
    case SQLITE_MISMATCH: state = "42804"; break;
    case SQLITE_AUTH:
    case SQLITE_PERM: state = "42501"; break;
    default: break;
    }
    return sb__error_new(cls, state, "sqlite", msg, NULL);
}

/* The error of a call on h that returned rc. */
static sb_error *db_error(sqlite3 *h, int rc)
{
    int x = sqlite3_extended_errcode(h);
    if ((x & 0xff) != (rc & 0xff)) return map_error(rc, sqlite3_errstr(rc));
    return map_error(x, sqlite3_errmsg(h));
}

static sb_error *misuse(const char *msg)
{
    return sb__error_new(SB_E_MISUSE, "42601", "sqlite", msg, NULL);
}

/* ====================================================== run a statement */

/* Only whitespace, ';' and comments in p..end? */
static int only_space(const char *p, const char *end)
{
    while (p < end) {
        char ch = *p;
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v' ||
            ch == ';') {
            p++;
        } else if (ch == '-' && p + 1 < end && p[1] == '-') {
            while (p < end && *p != '\n') p++;
        } else if (ch == '/' && p + 1 < end && p[1] == '*') {
            for (p += 2; p + 1 < end && !(p[0] == '*' && p[1] == '/'); p++) {}
            p = p + 1 < end ? p + 2 : end;  /* SQLite accepts an unterminated one */
        } else {
            return 0;
        }
    }
    return 1;
}

/* Prepare the one statement of sql[0..len) (NUL-terminated).  Leading
** empty statements are skipped; anything but space/comments after the
** statement, or no statement at all, is an error. */
static int prepare(sb_sqlite_slot *s, const char *sql, size_t len, sqlite3_stmt **out,
                   sb_error **err)
{
    const char *p = sql, *end = sql + len, *tail = NULL;
    sqlite3_stmt *st = NULL;
    unsigned flags = s->cache.cap > 0 ? SQLITE_PREPARE_PERSISTENT : 0;
    if (len >= 0x7fffffff) {
        *err = sb__error_new(SB_E_MISUSE, "54000", "sqlite", "statement too long", NULL);
        return SB_ERR;
    }
    for (;;) {
        /* nByte includes the NUL terminator: SQLite can then skip a copy */
        int rc = sqlite3_prepare_v3(s->h, p, (int)(end - p) + 1, flags, &st, &tail);
        if (rc != SQLITE_OK) {
            *err = db_error(s->h, rc);
            return SB_ERR;
        }
        if (st) break;
        if (!tail || tail <= p || only_space(tail, end)) {
            *err = misuse("empty query: no SQL statement");
            return SB_ERR;
        }
        p = tail;
    }
    if (tail && !only_space(tail, end)) {
        sqlite3_finalize(st);
        *err = misuse("multiple statements in one query are not allowed");
        return SB_ERR;
    }
    *out = st;
    return SB_OK;
}

/* Bind v[0..n) to ?1..?n.  Indexes the statement does not have are skipped
** (conn.c checked the highest $N; gaps are legal).  The bytes belong to the
** request, which outlives the statement's use: SQLITE_STATIC. */
static int bind(sqlite3_stmt *st, const sb_value *v, int n)
{
    int np = sqlite3_bind_parameter_count(st);
    if (np > n) np = n;
    for (int i = 0; i < np; i++) {
        int rc;
        switch (v[i].type) {
        case SB_NULL: rc = sqlite3_bind_null(st, i + 1); break;
        case SB_BOOL: rc = sqlite3_bind_int(st, i + 1, v[i].u.b ? 1 : 0); break;
        case SB_INT: rc = sqlite3_bind_int64(st, i + 1, v[i].u.i); break;
        case SB_FLOAT: rc = sqlite3_bind_double(st, i + 1, v[i].u.f); break;
        case SB_TEXT:
            rc = sqlite3_bind_text64(st, i + 1, v[i].u.s.p ? v[i].u.s.p : "", v[i].u.s.len,
                                     SQLITE_STATIC, SQLITE_UTF8);
            break;
        case SB_BLOB:  /* a NULL pointer would bind SQL NULL */
            rc = v[i].u.s.len ? sqlite3_bind_blob64(st, i + 1, v[i].u.s.p, v[i].u.s.len, SQLITE_STATIC)
                              : sqlite3_bind_zeroblob(st, i + 1, 0);
            break;
        default: rc = SQLITE_MISMATCH; break;
        }
        if (rc != SQLITE_OK) return rc;
    }
    return SQLITE_OK;
}

/* Append the current row of st to res.  SB_ERR on OOM (ours or SQLite's). */
static int add_row(sqlite3_stmt *st, sb_result *res, int ncol)
{
    sb_value *row = sb__result_add_row(res);
    if (!row) return SB_ERR;
    for (int i = 0; i < ncol; i++) {
        const void *p;
        switch (sqlite3_column_type(st, i)) {
        case SQLITE_INTEGER:
            row[i].type = SB_INT;
            row[i].u.i = sqlite3_column_int64(st, i);
            break;
        case SQLITE_FLOAT:
            row[i].type = SB_FLOAT;
            row[i].u.f = sqlite3_column_double(st, i);
            break;
        case SQLITE_TEXT:
            p = sqlite3_column_text(st, i);
            if (!p || sb__result_bytes(res, &row[i], SB_TEXT, p, (size_t)sqlite3_column_bytes(st, i)) != SB_OK)
                return SB_ERR;
            break;
        case SQLITE_BLOB:
            p = sqlite3_column_blob(st, i);  /* NULL for a zero-length blob */
            if (!p && sqlite3_errcode(sqlite3_db_handle(st)) == SQLITE_NOMEM) return SB_ERR;
            if (sb__result_bytes(res, &row[i], SB_BLOB, p ? p : "", (size_t)sqlite3_column_bytes(st, i)) != SB_OK)
                return SB_ERR;
            break;
        default:
            break;  /* SB_NULL already */
        }
    }
    return SB_OK;
}

/* An empty result with st's column names. */
static sb_result *new_result(sqlite3_stmt *st, int ncol)
{
    sb_result *res = sb__result_new(ncol);
    if (!res) return NULL;
    for (int i = 0; i < ncol; i++) {
        const char *name = sqlite3_column_name(st, i);
        if (!name || sb__result_colname(res, i, name, strlen(name)) != SB_OK) {
            sb__result_free(res);
            return NULL;
        }
    }
    return res;
}

/*
** May st run on a reader?  sqlite3_stmt_readonly() is also true for
** BEGIN/COMMIT/SAVEPOINT/ATTACH and setting PRAGMAs, which change the
** connection they run on: those return no columns, so "returns columns"
** excludes them.  Functions that read the connection's own state
** (last_insert_rowid(), changes()) must see the writer.
*/
static int is_read_only(sqlite3_stmt *st, const char *sql)
{
    return sqlite3_stmt_readonly(st) && sqlite3_column_count(st) > 0 &&
           !strcasestr(sql, "last_insert_rowid") && !strcasestr(sql, "changes");
}

/* r, run on s, failed with err: if it was chained to its session's next
** request (SB_Q_CHAIN), that one is skipped.  A lock given up on at once
** (nowait) is not a failure yet: a worker retries it. */
static void chain_failed(sb_sqlite_slot *s, const sb_req *r, const sb_error *err)
{
    if (r->session && (r->flags & SB_Q_CHAIN) && !(s->nowait && sb_error_class(err) == SB_E_BUSY))
        s->chain_failed = 1;
}

/*
** Run r on slot s (the caller is s's runner).  *ro gets what the
** statement is (-1 if it did not prepare).  With `probe` (s is a reader
** trying unknown SQL) a statement that is not read-only, or does not
** prepare, is not run: SB_SQLITE_BOUNCED, nothing in *res / *err.
*/
int sb_sqlite_exec(sb_sqlite_slot *s, const sb_req *r, uint64_t hash, int probe,
                sb_result **res_out, sb_error **err_out, int *ro_out)
{
    sqlite3 *h = s->h;
    sqlite3_stmt *st;
    sb_error *err = NULL;
    int ro, owned = 0;  /* owned: not in the cache, finalize after use */

    *ro_out = -1;
    if (r->session && s->chain_failed) {  /* the request chained to it failed */
        s->chain_failed = (r->flags & SB_Q_CHAIN) != 0;
        *res_out = NULL;
        *err_out = sb__error_new(SB_E_OTHER, "XX000", "sqlite", SB_MSG_CHAIN_SKIPPED, NULL);
        return SB_SQLITE_RAN;
    }
    sb_sqlite_ent *e = sb_sqlite_lru_get(&s->cache, hash, r->sql, r->sql_len);
    if (e) {
        st = e->st;
        ro = *ro_out = e->ro;
        if (probe && !ro) return SB_SQLITE_BOUNCED;
    } else {
        if (prepare(s, r->sql, r->sql_len, &st, &err) != SB_OK) {
            if (probe) {
                sb_error_free(err);
                return SB_SQLITE_BOUNCED;  /* the writer gives the real answer */
            }
            chain_failed(s, r, err);
            *err_out = err;
            return SB_SQLITE_RAN;
        }
        ro = *ro_out = is_read_only(st, r->sql);
        if (probe && !ro) {  /* never cache writes on a reader */
            sqlite3_finalize(st);
            return SB_SQLITE_BOUNCED;
        }
        if (!sb_sqlite_lru_put(&s->cache, hash, r->sql, r->sql_len, st, ro)) owned = 1;
    }

    sb_result *res = NULL;
    int rc = bind(st, r->params, r->nparams);
    if (rc != SQLITE_OK) {
        err = db_error(h, rc);
    } else {
        int64_t before = sqlite3_total_changes64(h), nrows = 0;
        rc = sqlite3_step(st);
        /* columns only now: step re-prepares a cached statement after a
        ** schema change (SELECT * may have gained a column) */
        int ncol = sqlite3_column_count(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) err = db_error(h, rc);
        else if (!(res = new_result(st, ncol))) err = sb_sqlite_oom();
        for (; !err && rc == SQLITE_ROW; rc = sqlite3_step(st)) {
            if (add_row(st, res, ncol) != SB_OK) err = sb_sqlite_oom();
            nrows++;
        }
        if (!err && rc != SQLITE_DONE) err = db_error(h, rc);
        if (!err)
            sb__result_set_affected(res, ro ? nrows
                                         : sqlite3_total_changes64(h) != before ? sqlite3_changes64(h) : 0);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (owned) sqlite3_finalize(st);
    if (err) {
        sb__result_free(res);
        res = NULL;
        chain_failed(s, r, err);
    }
    *res_out = res;
    *err_out = err;
    return SB_SQLITE_RAN;
}

/* Give the writer back clean: roll back what a session left open. */
void sb_sqlite_rollback_open(sb_sqlite_slot *s)
{
    s->chain_failed = 0;
    if (!sqlite3_get_autocommit(s->h)) (void)sqlite3_exec(s->h, "ROLLBACK", NULL, NULL, NULL);
}

void sb_sqlite_checkpoint(sb_sqlite *d)
{
    /* copies what no reader still needs; never waits for anyone */
    (void)sqlite3_wal_checkpoint_v2(d->ckpt, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
}

uint32_t sb_sqlite_elapsed_us(int64_t since)
{
    int64_t us = sb__now_us() - since;
    return us < 0 ? 0 : us >= UINT32_MAX ? UINT32_MAX - 1 : (uint32_t)us;
}

void sb_sqlite_run(sb_sqlite_slot *s, sb_sqlite_job *j)
{
    if (!j->r) {
        sb_sqlite_rollback_open(s);
        return;
    }
    int64_t t0 = sb__now_us();
    j->bounced = sb_sqlite_exec(s, j->r, j->hash, j->probe, &j->res, &j->err, &j->ro) == SB_SQLITE_BOUNCED;
    j->us = sb_sqlite_elapsed_us(t0);
}
