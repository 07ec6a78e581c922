/*
** lsb_params.c - Lua values to sb_value parameters, and sb.blob.
**
** nil and switchboard.null are NULL; booleans, integers (int64), floats
** and strings map directly; sb.blob(s) marks a string as binary (bytea /
** BLOB).  Anything else is a programming mistake and raises, naming the
** argument and the placeholder.  Strings are not copied here: the values
** point into the Lua stack, and sb_conn_submit copies them.
*/
#include "lsb.h"

static char BLOB_MT;  /* registry key of the blob metatable */

int lsb_toparam(lua_State *L, int idx, sb_value *v)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        v->type = SB_NULL;
        return 1;
    case LUA_TBOOLEAN:
        v->type = SB_BOOL;
        v->u.b = lua_toboolean(L, idx);
        return 1;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            v->type = SB_INT;
            v->u.i = (int64_t)lua_tointeger(L, idx);
        } else {
            v->type = SB_FLOAT;
            v->u.f = (double)lua_tonumber(L, idx);
        }
        return 1;
    case LUA_TSTRING:
        v->type = SB_TEXT;
        v->u.s.p = lua_tolstring(L, idx, &v->u.s.len);
        return 1;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) != NULL) return 0;
        v->type = SB_NULL;  /* switchboard.null */
        return 1;
    case LUA_TTABLE:
        if (lua_getmetatable(L, idx)) {
            lua_rawgetp(L, LUA_REGISTRYINDEX, &BLOB_MT);
            int blob = lua_rawequal(L, -1, -2);
            lua_pop(L, 2);
            if (blob && lua_rawgeti(L, idx, 1) == LUA_TSTRING) {
                v->type = SB_BLOB;
                v->u.s.p = lua_tolstring(L, -1, &v->u.s.len);
                lua_pop(L, 1);  /* still referenced by the blob table */
                return 1;
            }
            lua_pop(L, blob ? 1 : 0);
        }
        return 0;
    default:
        return 0;
    }
}

void lsb_toparams(lua_State *L, int first, int last, sb_value *params)
{
    for (int i = first; i <= last; i++)
        if (!lsb_toparam(L, i, &params[i - first]))
            luaL_argerror(L, i, lua_pushfstring(L, "cannot bind a %s as $%d", luaL_typename(L, i),
                                                i - first + 1));
}

/* sb.blob(s): a marker table { s } that binds s as bytea / BLOB. */
int lsb_blob(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TSTRING);
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &BLOB_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static int blob_tostring(lua_State *L)
{
    lua_rawgeti(L, 1, 1);
    lua_pushfstring(L, "switchboard.blob (%d bytes)", (int)luaL_len(L, -1));
    return 1;
}

void lsb_register_blob(lua_State *L)
{
    luaL_newmetatable(L, LSB_BLOB);
    lua_pushcfunction(L, blob_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "switchboard.blob");
    lua_setfield(L, -2, "__metatable");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &BLOB_MT);
}
