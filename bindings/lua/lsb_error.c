/*
** lsb_error.c - switchboard.error: what `nil, err` carries.
**
** An error is a table with fields class, sqlstate, message, detail,
** backend, retryable (and unknown_outcome when a COMMIT's fate is unknown)
** and a metatable whose __tostring is one line:
**   "syntax error [42601] (postgresql): syntax error at or near "SELEC""
** Lua code (the call-center layer) makes its own with core.error{...}.
*/
#include "lsb.h"

static void set_fields(lua_State *L, const sb_error *e)
{
    lua_pushstring(L, sb_errclass_name(sb_error_class(e)));
    lua_setfield(L, -2, "class");
    lua_pushstring(L, sb_error_sqlstate(e));
    lua_setfield(L, -2, "sqlstate");
    lua_pushstring(L, sb_error_message(e));
    lua_setfield(L, -2, "message");
    if (sb_error_detail(e)) {
        lua_pushstring(L, sb_error_detail(e));
        lua_setfield(L, -2, "detail");
    }
    lua_pushstring(L, sb_error_backend(e));
    lua_setfield(L, -2, "backend");
    lua_pushboolean(L, sb_error_retryable(e));
    lua_setfield(L, -2, "retryable");
    if (sb_error_unknown_outcome(e)) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "unknown_outcome");
    }
}

int lsb_push_error(lua_State *L, const sb_error *e)
{
    lua_pushnil(L);
    lua_createtable(L, 0, 8);
    set_fields(L, e);
    luaL_setmetatable(L, LSB_ERROR);
    return 2;
}

/* core.error{ class=, message=, sqlstate=, detail=, backend=, retryable= } */
int lsb_new_error(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (lua_getfield(L, 1, "class") != LUA_TSTRING) luaL_argerror(L, 1, "field 'class' must be a string");
    if (lua_getfield(L, 1, "message") != LUA_TSTRING) luaL_argerror(L, 1, "field 'message' must be a string");
    lua_pop(L, 2);
    if (lua_getfield(L, 1, "backend") == LUA_TNIL) {
        lua_pushliteral(L, "switchboard");
        lua_setfield(L, 1, "backend");
    }
    if (lua_getfield(L, 1, "sqlstate") == LUA_TNIL) {
        lua_pushliteral(L, "XX000");
        lua_setfield(L, 1, "sqlstate");
    }
    if (lua_getfield(L, 1, "retryable") == LUA_TNIL) {
        lua_pushboolean(L, 0);
        lua_setfield(L, 1, "retryable");
    }
    lua_settop(L, 1);
    luaL_setmetatable(L, LSB_ERROR);
    return 1;
}

static int error_tostring(lua_State *L)
{
    lua_getfield(L, 1, "class");
    lua_getfield(L, 1, "sqlstate");
    lua_getfield(L, 1, "backend");
    lua_getfield(L, 1, "message");
    lua_pushfstring(L, "%s error [%s] (%s): %s", luaL_optstring(L, 2, "other"),
                    luaL_optstring(L, 3, "XX000"), luaL_optstring(L, 4, "switchboard"),
                    luaL_optstring(L, 5, ""));
    return 1;
}

void lsb_register_error(lua_State *L)
{
    luaL_newmetatable(L, LSB_ERROR);
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
}
