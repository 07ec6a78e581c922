/*
** lsb_batch.c - db:_batch(list [, begin, commit]): statements whose
** parameters are all known up front, sent together and run as ONE
** transaction; db:batch (switchboard/init.lua) adds retries on top.
**
** Every request but the last goes out chained (SB_Q_CHAIN) on one session:
** on PostgreSQL the whole batch is one pipeline with one Sync, one round
** trip, and without `begin` one implicit transaction that the Sync commits
** (or rolls back when any statement failed: the server skips the rest); on
** SQLite the writer runs BEGIN IMMEDIATE .. COMMIT (`begin`, `commit`) in
** order, skipping what follows a failure, inline when it is idle.  Every
** argument is checked before anything is sent: a bad one raises and sends
** nothing.  The outcome is the list of the statements' results (rows for
** those that return columns, else the affected count), or nil and the first
** failure's error with `statement` set to its place in the list.
*/
#include "lsb.h"

/* Raise "bad argument #1 to 'batch' (statement i: what)" where db:batch
** was called (level 2: the caller of the Lua wrapper). */
static void bad_statement(lua_State *L, lua_Integer i, const char *what)
{
    luaL_where(L, 2);
    lua_pushfstring(L, "bad argument #1 to 'batch' (statement %d: %s)", (int)i, what);
    lua_concat(L, 2);
    lua_error(L);
}

/* list[i]'s parameter count; the table is at the top of the stack.  Raw
** access only, here and below: no metamethod may change the list between
** the check and the load. */
static int nparams_of(lua_State *L, lua_Integer i)
{
    lua_Integer n;
    lua_pushliteral(L, "n");
    if (lua_rawget(L, -2) == LUA_TNUMBER && lua_isinteger(L, -1)) n = lua_tointeger(L, -1);
    else n = (lua_Integer)lua_rawlen(L, -2);
    lua_pop(L, 1);
    if (n < 1 || n > 65536) bad_statement(L, i, "field n must count the SQL and its parameters");
    return (int)(n - 1);
}

/* Check list[1..n] (at 2): each { sql, p1, p2, ... [, n = count] }.
** Returns the largest parameter count. */
static int check_list(lua_State *L, lua_Integer n)
{
    int most = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        int t = lua_rawgeti(L, 2, i);
        if (t != LUA_TTABLE)
            bad_statement(L, i, lua_pushfstring(L, "table expected, got %s", lua_typename(L, t)));
        int np = nparams_of(L, i);
        if (lua_rawgeti(L, -1, 1) != LUA_TSTRING)
            bad_statement(L, i, lua_pushfstring(L, "SQL string expected at [1], got %s", luaL_typename(L, -1)));
        lua_pop(L, 1);
        for (int k = 1; k <= np; k++) {
            sb_value v;
            lua_rawgeti(L, -1, k + 1);
            if (!lsb_toparam(L, -1, &v))
                bad_statement(L, i, lua_pushfstring(L, "cannot bind a %s as $%d", luaL_typename(L, -1), k));
            lua_pop(L, 1);
        }
        if (np > most) most = np;
        lua_pop(L, 1);
    }
    return most;
}

/* Fill q from list[i] (checked already); its values stay on the stack
** (strings are pointed at) until the caller pops to `top`. */
static void load(lua_State *L, lua_Integer i, sb_value *params, sb_query *q)
{
    lua_rawgeti(L, 2, i);
    int t = lua_gettop(L);
    int np = nparams_of(L, i);
    lua_rawgeti(L, t, 1);
    q->sql = lua_tolstring(L, -1, &q->sql_len);
    for (int k = 1; k <= np; k++) {
        lua_rawgeti(L, t, k + 1);
        lsb_toparam(L, -1, &params[k - 1]);
    }
    q->params = params;
    q->nparams = np;
}

/* db:_batch(list [, begin, commit]) --> results | nil, err */
int lsb_db_batch(lua_State *L)
{
    lsb_db *db = lsb_checkdb(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    const char *begin = luaL_optstring(L, 3, NULL);
    const char *commit = begin ? luaL_checkstring(L, 4) : NULL;
    lua_settop(L, 4);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
    if (n == 0) {
        lua_newtable(L);
        return 1;
    }
    int most = check_list(L, n);
    luaL_checkstack(L, most + 8, "too many parameters");
    sb_value *params = lua_newuserdatauv(L, (size_t)(most ? most : 1) * sizeof *params, 0);  /* 5 */
    /* an implicit transaction needs no connection of its own: PostgreSQL
    ** pipelines it with other requests */
    lsb_tx *tx = lsb_tx_new(L, 1, begin == NULL);  /* 6 */
    tx->batch = begin ? 2 : 1;
    /* submitted the way the last one will be (lsb_run); with a timeout they
    ** go to SQLite's worker, where the deadline can interrupt them */
    unsigned inl = lsb_chain_flags(L);
    if (db->timeout_ms > 0) inl &= ~(unsigned)(SB_Q_INLINE | SB_Q_INLINE_WRITE);
    int top = lua_gettop(L);
    if (begin) {
        sb_query q = { begin, lua_rawlen(L, 3), NULL, 0, NULL, 0, inl };
        lsb_tx_chain(L, top, db, &q);
    }
    lua_Integer last = begin ? n : n - 1;  /* without COMMIT the last statement ends it */
    for (lua_Integer i = 1; i <= last; i++) {
        sb_query q = { NULL, 0, NULL, 0, NULL, 0, inl };
        load(L, i, params, &q);
        lsb_tx_chain(L, top, db, &q);
        lua_settop(L, top);
    }
    /* the request that ends the batch carries its timeout: when it passes,
    ** the batch fails and lsb_push_batch's release cancels the rest */
    sb_query q = { NULL, 0, NULL, 0, tx->session, db->timeout_ms, 0 };
    if (begin) {
        q.sql = commit;
        q.sql_len = lua_rawlen(L, 4);
    } else {
        load(L, n, params, &q);
    }
    return lsb_run(L, 1, db, &q, LSB_BATCH, tx);
}

/* Request k of the batch: its chained ones, then `last`. */
static sb_req *nth(lsb_tx *tx, sb_req *last, int k)
{
    return k < tx->nchained ? tx->chained[k] : last;
}

int lsb_push_batch(lua_State *L, sb_req *last, int dbidx, lsb_tx *tx)
{
    int total = tx->nchained + 1;
    int lead = tx->batch == 2;  /* a BEGIN first and a COMMIT last: not the caller's */
    int bad = -1, unfinished = 0;
    for (int k = 0; k < total; k++) {
        int st = sb_req_status(nth(tx, last, k));
        unfinished += st == SB_PENDING;  /* only when the last one timed out */
        if (st == SB_ERR && bad < 0) bad = k;
    }
    if (bad < 0 && unfinished) {  /* a backend finishes a session's requests in order */
        lsb_tx_release(tx);
        return luaL_error(L, "switchboard: a batch statement did not finish");
    }
    /* a broken connection after the Sync or COMMIT went out: the batch may
    ** have committed, and that is what the caller must hear */
    if (sb_req_status(last) == SB_ERR && sb_error_unknown_outcome(sb_req_error(last))) bad = total - 1;
    if (bad >= 0) {
        int n = lsb_push_error(L, sb_req_error(nth(tx, last, bad)));
        if (bad >= lead && bad < total - lead) {
            lua_pushinteger(L, bad - lead + 1);
            lua_setfield(L, -2, "statement");
        }
        lsb_tx_release(tx);
        return n;
    }
    lua_getiuservalue(L, dbidx, 1);  /* its NULL sentinel */
    int nullidx = lua_gettop(L);
    lua_createtable(L, total - 2 * lead, 0);
    for (int k = lead; k < total - lead; k++) {
        const sb_result *res = sb_req_result(nth(tx, last, k));
        if (sb_result_ncols(res) > 0) {  /* it leaves the column names under the rows */
            int t = lua_gettop(L);
            lsb_push_result(L, res, LSB_QUERY, nullidx);
            lua_replace(L, t + 1);
            lua_settop(L, t + 1);
        } else {
            lua_pushinteger(L, (lua_Integer)sb_result_affected(res));
        }
        lua_rawseti(L, -2, k - lead + 1);
    }
    lsb_tx_release(tx);
    return 1;
}
