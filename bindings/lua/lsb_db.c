/*
** lsb_db.c - switchboard.db, the database handle.
**
** Owns: sb.open's option parsing, the handle's life (created closed, one
** idempotent close behind :close, __close and __gc, as liolib does), views
** with their own per-request timeout (db:with), the statement methods
** exec/query/first, and the cqueues-style pollable methods
** pollfd/events/timeout/step.  Finalizers never block: closing
** only starts the core's non-blocking teardown.
*/
#include "lsb.h"

#include <string.h>

/* The db at idx in any state; a view whose root was closed is closed. */
static lsb_db *todb(lua_State *L, int idx)
{
    lsb_db *db = luaL_checkudata(L, idx, LSB_DB);
    if (db->view && db->conn) {
        lua_getiuservalue(L, idx, 2);
        if (!((lsb_db *)lua_touserdata(L, -1))->conn) db->conn = NULL;
        lua_pop(L, 1);
    }
    return db;
}

lsb_db *lsb_checkdb(lua_State *L, int idx)
{
    lsb_db *db = todb(L, idx);
    if (!db->conn) luaL_error(L, "attempt to use a closed switchboard.db");
    return db;
}

static int opt_int(lua_State *L, const char *name, int min)
{
    if (!lua_isinteger(L, -1))
        luaL_error(L, "bad option '%s' to 'open' (integer expected, got %s)", name, luaL_typename(L, -1));
    lua_Integer v = lua_tointeger(L, -1);
    if (v < min || v > 0x7fffffff) luaL_error(L, "bad option '%s' to 'open' (must be >= %d)", name, min);
    return (int)v;
}

/* Read the options table at idx into o; the null sentinel goes to the db. */
static void read_options(lua_State *L, int idx, sb_options *o, lsb_db *db, int udidx)
{
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "bad option to 'open' (string keys expected)");
        const char *k = lua_tostring(L, -2);
        if (!strcmp(k, "pool")) o->pool = opt_int(L, k, 1);
        else if (!strcmp(k, "readers")) o->readers = opt_int(L, k, 0);
        else if (!strcmp(k, "busy_timeout")) o->busy_timeout_ms = opt_int(L, k, 0);
        else if (!strcmp(k, "statement_cache")) o->statement_cache = opt_int(L, k, 0);
        else if (!strcmp(k, "connect_timeout")) o->connect_timeout_ms = opt_int(L, k, 1);
        else if (!strcmp(k, "timeout")) db->timeout_ms = opt_int(L, k, 0);
        else if (!strcmp(k, "prepare")) {
            if (!lua_isboolean(L, -1)) luaL_error(L, "bad option 'prepare' to 'open' (boolean expected)");
            o->prepare = lua_toboolean(L, -1);
        } else if (!strcmp(k, "synchronous")) {
            const char *v = lua_tostring(L, -1);
            if (lua_type(L, -1) != LUA_TSTRING || (strcasecmp(v, "NORMAL") && strcasecmp(v, "FULL")))
                luaL_error(L, "bad option 'synchronous' to 'open' (\"NORMAL\" or \"FULL\" expected)");
            o->synchronous_full = !strcasecmp(v, "FULL");
        } else if (!strcmp(k, "null")) {
            lua_pushvalue(L, -1);
            lua_setiuservalue(L, udidx, 1);
        } else {
            luaL_error(L, "unknown option '%s' to 'open'", k);
        }
        lua_pop(L, 1);
    }
}

/* core.open(url [, opts]) --> db | nil, err */
int lsb_open_db(lua_State *L)
{
    const char *url = luaL_checkstring(L, 1);
    if (lua_type(L, 1) != LUA_TSTRING) luaL_typeerror(L, 1, "string");
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    lsb_db *db = lua_newuserdatauv(L, sizeof *db, 2);  /* created closed */
    db->conn = NULL;
    db->held = NULL;
    db->timeout_ms = 0;
    db->view = 0;
    luaL_setmetatable(L, LSB_DB);
    sb_options o;
    sb_options_init(&o);
    if (lua_istable(L, 2)) read_options(L, 2, &o, db, 3);
    sb_error *err = NULL;
    db->conn = sb_conn_open(url, &o, &err);
    if (!db->conn) {
        int n = lsb_push_error(L, err);
        sb_error_free(err);
        return n;
    }
    return 1;
}

static int db_close(lua_State *L)
{
    lsb_db *db = luaL_checkudata(L, 1, LSB_DB);
    if (db->held) {
        sb_req_free(db->held);
        db->held = NULL;
    }
    if (db->conn && !db->view) sb_conn_close(db->conn);
    db->conn = NULL;
    lua_pushboolean(L, 1);
    return 1;
}

static int db_gc(lua_State *L)
{
    db_close(L);
    return 0;
}

static int db_tostring(lua_State *L)
{
    lsb_db *db = todb(L, 1);
    if (db->conn) lua_pushfstring(L, "switchboard.db (%s)", sb_conn_url(db->conn));
    else lua_pushliteral(L, "switchboard.db (closed)");
    return 1;
}

/* db:with{ timeout = ms } --> a view of db: the same connections, its own
** per-request timeout (0 = none); closing a view leaves db open. */
static int db_with(lua_State *L)
{
    lsb_db *db = lsb_checkdb(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int timeout = db->timeout_ms;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        if (lua_type(L, -2) != LUA_TSTRING || strcmp(lua_tostring(L, -2), "timeout"))
            luaL_error(L, "bad option to 'with' (only 'timeout' is known)");
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) > 0x7fffffff)
            luaL_error(L, "bad option 'timeout' to 'with' (milliseconds >= 0 expected)");
        timeout = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    lsb_db *v = lua_newuserdatauv(L, sizeof *v, 2);
    v->conn = db->conn;
    v->held = NULL;
    v->timeout_ms = timeout;
    v->view = 1;
    luaL_setmetatable(L, LSB_DB);
    lua_getiuservalue(L, 1, 1);
    lua_setiuservalue(L, -2, 1);  /* the same NULL sentinel */
    if (db->view) lua_getiuservalue(L, 1, 2);
    else lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 2);  /* the root */
    return 1;
}

/* db:exec/query/first(sql, ...) on the db at 1 */
static int db_call(lua_State *L, lsb_kind kind)
{
    return lsb_call(L, 1, lsb_checkdb(L, 1), NULL, kind);
}

static int db_exec(lua_State *L) { return db_call(L, LSB_EXEC); }
static int db_query(lua_State *L) { return db_call(L, LSB_QUERY); }
static int db_first(lua_State *L) { return db_call(L, LSB_FIRST); }

static int db_pollfd(lua_State *L)
{
    lua_pushinteger(L, sb_conn_fd(lsb_checkdb(L, 1)->conn));
    return 1;
}

static int db_events(lua_State *L)
{
    lsb_checkdb(L, 1);
    lua_pushliteral(L, "r");
    return 1;
}

static int db_timeout(lua_State *L)
{
    int ms = sb_conn_timeout(lsb_checkdb(L, 1)->conn);
    if (ms < 0) lua_pushnil(L);
    else lua_pushnumber(L, ms / 1000.0);
    return 1;
}

static int db_step(lua_State *L)
{
    if (sb_conn_step(lsb_checkdb(L, 1)->conn) != SB_OK)
        return luaL_error(L, "db:step called re-entrantly");
    lua_pushboolean(L, 1);
    return 1;
}

static int db_backend(lua_State *L)
{
    lua_pushstring(L, sb_conn_backend(lsb_checkdb(L, 1)->conn));
    return 1;
}

static int db_isclosed(lua_State *L)
{
    lua_pushboolean(L, todb(L, 1)->conn == NULL);
    return 1;
}

/* db:_reap(t): the tags of finished scheduler requests into t[1..n]; n */
static int db_reap(lua_State *L)
{
    lsb_db *db = todb(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer n = 0;
    if (db->conn) {
        uintptr_t tags[64];
        size_t got;
        do {
            got = sb_conn_reap(db->conn, tags, 64);
            for (size_t i = 0; i < got; i++) {
                lua_pushinteger(L, (lua_Integer)tags[i]);
                lua_rawseti(L, 2, ++n);
            }
        } while (got == 64);
    }
    lua_pushinteger(L, n);
    return 1;
}

void lsb_register_db(lua_State *L)
{
    static const luaL_Reg methods[] = {
        { "exec", db_exec },       { "query", db_query },     { "first", db_first },
        { "close", db_close },     { "_session", lsb_db_session }, { "pollfd", db_pollfd },
        { "events", db_events },   { "timeout", db_timeout }, { "step", db_step },
        { "backend", db_backend }, { "isclosed", db_isclosed }, { "_reap", db_reap },
        { "with", db_with },       { "_batch", lsb_db_batch },
        { NULL, NULL }
    };
    static const luaL_Reg meta[] = {
        { "__gc", db_gc }, { "__close", db_gc }, { "__tostring", db_tostring }, { NULL, NULL }
    };
    luaL_newmetatable(L, LSB_DB);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}
