/*
** lsb_rows.c - a finished request's sb_result to what Lua gets back.
**
**   exec  -> the affected row count
**   query -> { {col = value, ...}, ..., columns = {"col", ...} }
**   first -> the first row table, or nil when there is none
** Column names are made into Lua strings once per result, not per row.
** SQL NULL becomes nil (the key is absent) unless the db was opened with
** a `null` sentinel, which is then stored instead.
*/
#include "lsb.h"

static void push_value(lua_State *L, const sb_value *v)
{
    switch (v->type) {
    case SB_BOOL: lua_pushboolean(L, v->u.b); break;
    case SB_INT: lua_pushinteger(L, (lua_Integer)v->u.i); break;
    case SB_FLOAT: lua_pushnumber(L, (lua_Number)v->u.f); break;
    case SB_TEXT:
    case SB_BLOB: lua_pushlstring(L, v->u.s.p, v->u.s.len); break;
    default: lua_pushnil(L); break;
    }
}

/* Push row `row` as a table; names are at [names, names + ncols). */
static void push_row(lua_State *L, const sb_result *res, int row, int names, int nullidx)
{
    int ncols = sb_result_ncols(res);
    const sb_value *v = sb_result_row(res, row);
    int usenull = !lua_isnil(L, nullidx);
    lua_createtable(L, 0, ncols);
    for (int c = 0; c < ncols; c++) {
        if (v[c].type == SB_NULL) {
            if (!usenull) continue;
            lua_pushvalue(L, names + c);
            lua_pushvalue(L, nullidx);
        } else {
            lua_pushvalue(L, names + c);
            push_value(L, &v[c]);
        }
        lua_rawset(L, -3);
    }
}

int lsb_push_result(lua_State *L, const sb_result *res, lsb_kind kind, int nullidx)
{
    if (kind == LSB_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (kind == LSB_EXEC) {
        lua_pushinteger(L, (lua_Integer)sb_result_affected(res));
        return 1;
    }
    int ncols = sb_result_ncols(res);
    int nrows = sb_result_nrows(res);
    if (kind == LSB_FIRST && nrows == 0) {
        lua_pushnil(L);
        return 1;
    }
    luaL_checkstack(L, ncols + 4, "too many columns");
    int names = lua_gettop(L) + 1;
    for (int c = 0; c < ncols; c++) lua_pushstring(L, sb_result_colname(res, c));
    if (kind == LSB_FIRST) {
        push_row(L, res, 0, names, nullidx);
        return 1;
    }
    lua_createtable(L, nrows, 1);
    for (int r = 0; r < nrows; r++) {
        push_row(L, res, r, names, nullidx);
        lua_rawseti(L, -2, r + 1);
    }
    lua_createtable(L, ncols, 0);
    for (int c = 0; c < ncols; c++) {
        lua_pushvalue(L, names + c);
        lua_rawseti(L, -2, c + 1);
    }
    lua_setfield(L, -2, "columns");
    return 1;
}
