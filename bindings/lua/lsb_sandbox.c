/*
** lsb_sandbox.c - instruction and memory budgets for untrusted Lua code
** (routing policies), enforced from C.
**
** A budget is a userdata (core.budget(instructions, memory)).  Code runs
** under it through core.budget_resume(budget, co, ...), a coroutine.resume
** that makes the budget "current" while co runs:
**   - instructions: co gets a count hook (every HOOK_EVERY instructions);
**     coroutines created inside inherit it, and pcall cannot stop it: once
**     a budget is exhausted the hook fires on every instruction and raises
**     again, so any handler that catches the error dies on its next step;
**   - memory: the state's allocator is wrapped once (core.budget_install),
**     and while a budget is current every allocation's growth counts
**     against it (frees give it back); past the limit, growth fails and Lua
**     raises "not enough memory" inside the policy.
** The current budget lives in the allocator's userdata, which is per
** lua_State (not per C process), so several Lua states in one host (say
** FreeSWITCH's threads) never see each other's budgets.
*/
#include "lsb.h"

#include <stdlib.h>
#include <string.h>

#define LSB_BUDGET "switchboard.budget"
#define HOOK_EVERY 1000

enum { ALIVE, KILLED_INSTRUCTIONS, KILLED_MEMORY };

typedef struct budget {
    lua_Integer instr_limit, instr_used;
    lua_Integer mem_limit, mem_used;  /* bytes */
    int killed;
} budget;

/* The allocator wrapper's state: one per lua_State, in a userdata that is
** anchored in the registry; its __gc puts the original allocator back. */
typedef struct wrap {
    lua_Alloc orig;
    void *orig_ud;
    budget *current;  /* the budget of the code running now, or NULL */
} wrap;

static char WRAP_KEY;

static void *budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    wrap *w = ud;
    budget *b = w->current;
    if (b) {
        lua_Integer old = ptr ? (lua_Integer)osize : 0;
        lua_Integer grow = (lua_Integer)nsize - old;
        if (grow > 0 && b->mem_used + grow > b->mem_limit) {
            if (!b->killed) b->killed = KILLED_MEMORY;
            return NULL;  /* Lua raises "not enough memory" */
        }
        void *p = w->orig(w->orig_ud, ptr, osize, nsize);
        if (p || nsize == 0) b->mem_used += grow;
        return p;
    }
    return w->orig(w->orig_ud, ptr, osize, nsize);
}

static wrap *getwrap(lua_State *L)
{
    void *ud;
    return lua_getallocf(L, &ud) == budget_alloc ? ud : NULL;
}

static int wrap_gc(lua_State *L)
{
    wrap *w = lua_touserdata(L, 1);
    void *ud;
    if (lua_getallocf(L, &ud) == budget_alloc && ud == w) lua_setallocf(L, w->orig, w->orig_ud);
    return 0;
}

/* core.budget_install(): wrap this state's allocator (idempotent). */
static int l_install(lua_State *L)
{
    if (getwrap(L)) return 0;
    wrap *w = lua_newuserdatauv(L, sizeof *w, 0);
    w->orig = lua_getallocf(L, &w->orig_ud);
    w->current = NULL;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, wrap_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &WRAP_KEY);
    lua_setallocf(L, budget_alloc, w);
    return 0;
}

static const char *kill_message(const budget *b)
{
    return b->killed == KILLED_MEMORY ? "memory budget exceeded" : "instruction budget exceeded";
}

static void hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    wrap *w = getwrap(L);
    budget *b = w ? w->current : NULL;
    if (!b) return;  /* not inside a budgeted resume: nothing to count */
    if (!b->killed) {
        b->instr_used += HOOK_EVERY;
        if (b->instr_used <= b->instr_limit) return;
        b->killed = KILLED_INSTRUCTIONS;
    }
    lua_sethook(L, hook, LUA_MASKCOUNT, 1);  /* from now on: every instruction */
    luaL_error(L, "%s", kill_message(b));
}

/* core.budget(instructions, memory) --> budget */
static int l_budget(lua_State *L)
{
    lua_Integer instr = luaL_checkinteger(L, 1);
    lua_Integer mem = luaL_checkinteger(L, 2);
    luaL_argcheck(L, instr > 0, 1, "must be positive");
    luaL_argcheck(L, mem > 0, 2, "must be positive");
    budget *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    b->instr_limit = instr;
    b->mem_limit = mem;
    luaL_setmetatable(L, LSB_BUDGET);
    return 1;
}

/* core.budget_resume(budget, co, ...) --> like coroutine.resume(co, ...),
** with the budget current while co (and what it resumes) runs. */
static int l_resume(lua_State *L)
{
    budget *b = luaL_checkudata(L, 1, LSB_BUDGET);
    lua_State *co = lua_tothread(L, 2);
    luaL_argexpected(L, co, 2, "coroutine");
    wrap *w = getwrap(L);
    if (!w) return luaL_error(L, "core.budget_install() was not called");
    int nargs = lua_gettop(L) - 2;
    if (b->killed) {
        lua_pushboolean(L, 0);
        lua_pushstring(L, kill_message(b));
        return 2;
    }
    if (!lua_checkstack(co, nargs)) return luaL_error(L, "too many arguments to resume");
    lua_sethook(co, hook, LUA_MASKCOUNT, HOOK_EVERY);
    lua_xmove(L, co, nargs);
    budget *outer = w->current;  /* budgets nest: a policy inside a policy */
    w->current = b;
    int nres;
    int status = lua_resume(co, L, nargs, &nres);
    w->current = outer;
    if (status == LUA_OK || status == LUA_YIELD) {
        if (!lua_checkstack(L, nres + 1)) {
            lua_pop(co, nres);
            return luaL_error(L, "too many results to resume");
        }
        lua_pushboolean(L, 1);
        lua_xmove(co, L, nres);
        return nres + 1;
    }
    lua_pushboolean(L, 0);
    if (b->killed) lua_pushstring(L, kill_message(b));  /* whatever the policy raised */
    else lua_xmove(co, L, 1);
    return 2;
}

/* budget:usage() --> instructions used (to HOOK_EVERY), bytes, killed reason or nil */
static int budget_usage(lua_State *L)
{
    budget *b = luaL_checkudata(L, 1, LSB_BUDGET);
    lua_pushinteger(L, b->instr_used);
    lua_pushinteger(L, b->mem_used);
    if (b->killed) lua_pushstring(L, kill_message(b));
    else lua_pushnil(L);
    return 3;
}

void lsb_register_sandbox(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        { "budget", l_budget }, { "budget_resume", l_resume }, { "budget_install", l_install },
        { NULL, NULL }
    };
    luaL_newmetatable(L, LSB_BUDGET);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, budget_usage);
    lua_setfield(L, -2, "usage");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_setfuncs(L, funcs, 0);
}
