/*
** lsb_tx.c - switchboard.tx, a transaction handle: requests pinned to one
** connection through an sb_session.
**
** C owns the handle's life and its statement methods; BEGIN, commit and
** rollback are written in Lua on top (switchboard/init.lua), since they
** only chain statements.  Leaving a scope, __close or __gc without a commit
** never waits: closing the session makes the backend queue a ROLLBACK
** before the connection serves anyone else.  The first error of a
** statement inside the transaction is kept (user value 2) so commit can
** refuse with it.  On PostgreSQL BEGIN is sent chained (tx:_chain) and its
** outcome settled when the next statement's comes back (lsb_await.c).  A
** batch (lsb_batch.c) is the same handle with all its statements chained.
*/
#include "lsb.h"

static lsb_tx *checktx(lua_State *L)
{
    lsb_tx *tx = luaL_checkudata(L, 1, LSB_TX);
    if (!tx->session) luaL_error(L, "attempt to use a finished switchboard.tx");
    return tx;
}

lsb_tx *lsb_tx_new(lua_State *L, int dbidx, int group)
{
    lsb_db *db = lsb_checkdb(L, dbidx);
    lsb_tx *tx = lua_newuserdatauv(L, sizeof *tx, 3);  /* created finished */
    tx->session = NULL;
    tx->chained = NULL;
    tx->nchained = tx->capchained = 0;
    tx->failed = 0;
    tx->batch = 0;
    luaL_setmetatable(L, LSB_TX);
    lua_pushvalue(L, dbidx);
    lua_setiuservalue(L, -2, 1);
    tx->session = group ? sb_group_open(db->conn) : sb_session_open(db->conn);
    if (!tx->session) luaL_error(L, "not enough memory");
    return tx;
}

/* db:_session() --> tx (no BEGIN sent yet) */
int lsb_db_session(lua_State *L)
{
    lsb_tx_new(L, 1, 0);
    return 1;
}

void lsb_tx_chain(lua_State *L, int txidx, lsb_db *db, sb_query *q)
{
    lsb_tx *tx = lua_touserdata(L, txidx);
    if (tx->nchained == tx->capchained) {  /* grow: a new block in user value 3 */
        int cap = tx->capchained ? 2 * tx->capchained : 4;
        sb_req **block = lua_newuserdatauv(L, (size_t)cap * sizeof *block, 0);
        for (int i = 0; i < tx->nchained; i++) block[i] = tx->chained[i];
        lua_setiuservalue(L, txidx, 3);
        tx->chained = block;
        tx->capchained = cap;
    }
    q->session = tx->session;
    q->flags |= SB_Q_CHAIN;
    sb_req *r = sb_conn_submit(db->conn, q);
    if (!r) luaL_error(L, "not enough memory");
    tx->chained[tx->nchained++] = r;
}

void lsb_tx_release(lsb_tx *tx)
{
    for (int i = 0; i < tx->nchained; i++) sb_req_free(tx->chained[i]);  /* cancels unfinished ones */
    tx->nchained = 0;
    if (tx->session) {
        sb_session *s = tx->session;
        tx->session = NULL;
        sb_session_close(s);  /* safe after the db was closed, too */
    }
}

static int tx_call(lua_State *L, lsb_kind kind)
{
    lsb_tx *tx = checktx(L);
    lua_getiuservalue(L, 1, 1);
    int dbidx = lua_gettop(L);
    return lsb_call(L, dbidx, lsb_checkdb(L, dbidx), tx, kind);
}

/* tx:_chain(sql): send sql (BEGIN) chained to the next statement, without
** waiting: one round trip for both on PostgreSQL (SB_Q_CHAIN).  Its outcome
** is looked at when the next statement's comes back (lsb_await.c). */
static int tx_chain(lua_State *L)
{
    lsb_tx *tx = checktx(L);
    size_t len;
    const char *sql = luaL_checklstring(L, 2, &len);
    if (tx->nchained) return luaL_error(L, "this transaction was opened already");
    lua_getiuservalue(L, 1, 1);
    lsb_db *db = lsb_checkdb(L, lua_gettop(L));
    sb_query q = { sql, len, NULL, 0, NULL, db->timeout_ms, 0 };
    lsb_tx_chain(L, 1, db, &q);
    return 0;
}

static int tx_exec(lua_State *L) { return tx_call(L, LSB_EXEC); }
static int tx_query(lua_State *L) { return tx_call(L, LSB_QUERY); }
static int tx_first(lua_State *L) { return tx_call(L, LSB_FIRST); }

/* tx:_release(): give the connection back (rolling back if still open). */
static int tx_release(lua_State *L)
{
    lsb_tx_release(luaL_checkudata(L, 1, LSB_TX));
    return 0;
}

/* tx:_failed() --> the first error of a statement in it, or nil */
static int tx_failed(lua_State *L)
{
    lsb_tx *tx = luaL_checkudata(L, 1, LSB_TX);
    if (!tx->failed) return 0;
    lua_getiuservalue(L, 1, 2);
    return 1;
}

/* tx:_active() --> whether commit/rollback may still be called */
static int tx_active(lua_State *L)
{
    lua_pushboolean(L, ((lsb_tx *)luaL_checkudata(L, 1, LSB_TX))->session != NULL);
    return 1;
}

static int tx_tostring(lua_State *L)
{
    lsb_tx *tx = luaL_checkudata(L, 1, LSB_TX);
    lua_pushstring(L, tx->session ? "switchboard.tx (open)" : "switchboard.tx (finished)");
    return 1;
}

void lsb_register_tx(lua_State *L)
{
    static const luaL_Reg methods[] = {
        { "exec", tx_exec },         { "query", tx_query },   { "first", tx_first },
        { "_chain", tx_chain },
        { "_release", tx_release }, { "_failed", tx_failed }, { "_active", tx_active },
        { NULL, NULL }
    };
    static const luaL_Reg meta[] = {
        { "__gc", tx_release }, { "__close", tx_release }, { "__tostring", tx_tostring }, { NULL, NULL }
    };
    luaL_newmetatable(L, LSB_TX);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}
