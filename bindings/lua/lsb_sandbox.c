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
**     against it (frees give it back, but never below zero: freeing the
**     host's garbage in a collection step must not lend the policy
**     memory); past the limit, growth fails and Lua raises "not enough
**     memory" inside the policy, and the budget is spent for good;
**   - work done inside C functions (string.rep, table.concat, ...) is not
**     seen by the count hook, so every byte allocated under a budget also
**     costs 1/ALLOC_COST instructions, and an allocation that would go
**     past the limit fails at once: a loop of cheap-looking calls that
**     churn megabytes ends as an instruction overrun;
**   - call depth: each time the hook fires it also checks that the running
**     coroutine is less than MAX_DEPTH Lua calls deep.  Lua's own error
**     path walks the whole call stack (luaD_shrinkstack after each failed
**     pcall), so `local function f() pcall(f) f() end` would otherwise cost
**     time quadratic in a depth only the memory budget bounds, in C where
**     the count hook cannot see it;
**   - C work that neither allocates nor runs instructions (table.sort,
**     table.insert, utf8.len, string patterns, ...): the sandbox's wrappers
**     of those functions charge an estimate of it with core.budget_charge(n),
**     which stops the policy like the hook does once the budget is spent;
**   - CPU time, as the backstop for work inside single VM instructions that
**     no wrapper can see (comparing two long strings, copying a long vararg
**     list): the thread's CPU time while the budget is current may not pass
**     cpu_limit (default: NS_PER_INSTRUCTION ns per budgeted instruction, so
**     1 s for 1e6: room for hosts 50x slower, valgrind say).  The hook and every charge check it; the cheap monotonic
**     clock first (wall time >= CPU time), the CPU clock only when wall time
**     alone is over the limit (a blocked database wait, or a real overrun).
** A budget that ran out remembers where ("file:line:") for the message.
** The current budget lives in the allocator's userdata, which is per
** lua_State (not per C process), so several Lua states in one host (say
** FreeSWITCH's threads) never see each other's budgets.
*/
#include "lsb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LSB_BUDGET "switchboard.budget"
#define LSB_STR_(x) #x
#define LSB_STR(x) LSB_STR_(x)
#define HOOK_EVERY 1000
#define ALLOC_COST 16   /* bytes allocated per instruction charged */
#define MAX_DEPTH 200   /* Lua call levels a policy's coroutine may nest */
#define NS_PER_INSTRUCTION 1000  /* default CPU time per budgeted instruction */
#define MAX_RESULTS 8   /* values a resume passes on (a return, a yield) */

enum { ALIVE, KILLED_INSTRUCTIONS, KILLED_MEMORY, KILLED_DEPTH, KILLED_TIME };

typedef struct budget {
    lua_Integer instr_limit, instr_used;
    lua_Integer mem_limit, mem_used;  /* bytes */
    double cpu_limit, cpu_used;  /* seconds of this thread's CPU time */
    double wall0, cpu0;  /* clocks when the current run began (cpu0 < 0: none) */
    int killed;
    char where[96];  /* "file:line:" of the first kill, or "" */
} budget;

/* The allocator wrapper's state: one per lua_State, in a userdata that is
** anchored in the registry; its __gc puts the original allocator back. */
typedef struct wrap {
    lua_Alloc orig;
    void *orig_ud;
    budget *current;  /* the budget of the code running now, or NULL */
    lua_State *running;  /* the coroutine budget_resume runs now, or NULL */
} wrap;

static void hook(lua_State *L, lua_Debug *ar);

static double clock_s(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0) return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A run under b begins / ends (budget_resume). */
static void time_start(budget *b)
{
    b->wall0 = clock_s(CLOCK_MONOTONIC);
    b->cpu0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
}

static void time_stop(budget *b)
{
    if (b->cpu0 >= 0) b->cpu_used += clock_s(CLOCK_THREAD_CPUTIME_ID) - b->cpu0;
    b->cpu0 = -1;
}

/* Is b out of CPU time?  The monotonic clock (cheap) bounds the CPU time
** of the current run from above; only past the limit ask the CPU clock. */
static int over_time(const budget *b)
{
    if (b->cpu0 < 0) return b->cpu_used > b->cpu_limit;
    if (b->cpu_used + (clock_s(CLOCK_MONOTONIC) - b->wall0) <= b->cpu_limit) return 0;
    return b->cpu_used + (clock_s(CLOCK_THREAD_CPUTIME_ID) - b->cpu0) > b->cpu_limit;
}

/* A budget ran out inside the allocator: from the next instruction on,
** every one raises (as lua.c's SIGINT handler does, lua_sethook is safe
** at any moment), so a pcall around the allocation does not buy another
** emergency collection per failed allocation. */
static void *kill_in_alloc(wrap *w, budget *b, int why)
{
    if (!b->killed) b->killed = why;
    if (w->running) lua_sethook(w->running, hook, LUA_MASKCOUNT, 1);
    return NULL;  /* Lua raises "not enough memory" */
}

static char WRAP_KEY;

static void *budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    wrap *w = ud;
    budget *b = w->current;
    if (b) {
        lua_Integer old = ptr ? (lua_Integer)osize : 0;
        lua_Integer grow = (lua_Integer)nsize - old;
        if (grow > 0 && b->mem_used + grow > b->mem_limit) return kill_in_alloc(w, b, KILLED_MEMORY);
        /* an allocation that would spend the instruction budget stops it
        ** now rather than at the hook's next turn (a C function may do a
        ** lot of work per instruction) */
        if (grow > 0 && b->instr_used + grow / ALLOC_COST > b->instr_limit)
            return kill_in_alloc(w, b, KILLED_INSTRUCTIONS);
        void *p = w->orig(w->orig_ud, ptr, osize, nsize);
        if (p || nsize == 0) {
            b->mem_used += grow;
            if (b->mem_used < 0) b->mem_used = 0;
            if (grow > 0) b->instr_used += grow / ALLOC_COST;
        }
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
    w->running = NULL;
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
    switch (b->killed) {
    case KILLED_MEMORY: return "memory budget exceeded";
    case KILLED_DEPTH: return "call depth budget exceeded (" LSB_STR(MAX_DEPTH) " levels)";
    case KILLED_TIME: return "CPU time budget exceeded";
    default: return "instruction budget exceeded";
    }
}

/* The message of a spent budget: "file:line: instruction budget exceeded" */
static void push_kill(lua_State *L, const budget *b)
{
    lua_pushfstring(L, "%s%s", b->where, kill_message(b));
}

/* Stop the code running on L for good: remember where (the function
** `level` levels up, when it is Lua code), make the hook fire on every
** instruction of L and of the budget's coroutine from now on, and raise. */
static int kill(lua_State *L, wrap *w, budget *b, int level)
{
    if (!b->where[0]) {  /* where it ran out: no allocation here (the budget is spent) */
        lua_Debug d;
        if (lua_getstack(L, level, &d) && lua_getinfo(L, "Sl", &d) && d.currentline > 0)
            snprintf(b->where, sizeof b->where, "%s:%d: ", d.short_src, d.currentline);
    }
    lua_sethook(L, hook, LUA_MASKCOUNT, 1);  /* from now on: every instruction */
    if (w->running && w->running != L) lua_sethook(w->running, hook, LUA_MASKCOUNT, 1);
    push_kill(L, b);  /* if even this fails, "not enough memory" ends it as well */
    return lua_error(L);
}

static void hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    wrap *w = getwrap(L);
    budget *b = w ? w->current : NULL;
    if (!b) return;  /* not inside a budgeted resume: nothing to count */
    if (!b->killed) {
        lua_Debug deep;
        b->instr_used += HOOK_EVERY;
        if (lua_getstack(L, MAX_DEPTH, &deep)) b->killed = KILLED_DEPTH;
        else if (b->instr_used > b->instr_limit) b->killed = KILLED_INSTRUCTIONS;
        else if (over_time(b)) b->killed = KILLED_TIME;
        else return;
    }
    kill(L, w, b, 0);
}

/* core.budget_charge(n [, level]): count n instructions' worth of work
** that a C function is about to do against the current budget (no budget
** current: nothing); raises like the hook when the budget is spent, or out
** of CPU time.  The message names the function `level` levels up from the
** one that charges (default 1: the caller of the wrapper that charges). */
static int l_charge(lua_State *L)
{
    lua_Number n = luaL_checknumber(L, 1);
    int level = (int)luaL_optinteger(L, 2, 1);
    wrap *w = getwrap(L);
    budget *b = w ? w->current : NULL;
    if (!b) return 0;
    if (!b->killed) {
        lua_Number left = (lua_Number)(b->instr_limit - b->instr_used);
        if (n < 0) n = 0;
        if (!(n <= left)) {  /* also NaN */
            b->instr_used = b->instr_limit + 1;
            b->killed = KILLED_INSTRUCTIONS;
        } else {
            b->instr_used += (lua_Integer)n;
            if (!over_time(b)) return 0;
            b->killed = KILLED_TIME;
        }
    }
    return kill(L, w, b, level + 1);
}

/* core.budget(instructions, memory [, cpu_seconds]) --> budget
** (cpu_seconds: default NS_PER_INSTRUCTION ns per instruction) */
static int l_budget(lua_State *L)
{
    lua_Integer instr = luaL_checkinteger(L, 1);
    lua_Integer mem = luaL_checkinteger(L, 2);
    lua_Number cpu = luaL_optnumber(L, 3, (lua_Number)instr * NS_PER_INSTRUCTION * 1e-9);
    luaL_argcheck(L, instr > 0, 1, "must be positive");
    luaL_argcheck(L, mem > 0, 2, "must be positive");
    luaL_argcheck(L, cpu > 0, 3, "must be positive");
    budget *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    b->instr_limit = instr;
    b->mem_limit = mem;
    b->cpu_limit = cpu;
    b->cpu0 = -1;
    luaL_setmetatable(L, LSB_BUDGET);
    return 1;
}

/* core.budget_resume(budget, co, ...) --> like coroutine.resume(co, ...),
** with the budget current while co (and what it resumes) runs; at most
** MAX_RESULTS of the values co returns or yields. */
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
        push_kill(L, b);
        return 2;
    }
    if (!lua_checkstack(co, nargs)) return luaL_error(L, "too many arguments to resume");
    lua_sethook(co, hook, LUA_MASKCOUNT, HOOK_EVERY);
    lua_xmove(L, co, nargs);
    budget *outer = w->current;  /* budgets nest: a policy inside a policy */
    lua_State *outer_co = w->running;
    w->current = b;
    w->running = co;
    time_start(b);
    int nres;
    int status = lua_resume(co, L, nargs, &nres);
    time_stop(b);
    w->current = outer;
    w->running = outer_co;
    if ((status == LUA_OK || status == LUA_YIELD) && b->killed) {
        /* spent inside a pcall that returned before the hook fired again */
        lua_pop(co, nres);
        lua_pushboolean(L, 0);
        push_kill(L, b);
        return 2;
    }
    if (status == LUA_OK || status == LUA_YIELD) {
        /* only the first few: `return table.unpack(huge)` would grow the
        ** host's stack (kept after the collection) outside any budget */
        if (nres > MAX_RESULTS) {
            lua_pop(co, nres - MAX_RESULTS);
            nres = MAX_RESULTS;
        }
        if (!lua_checkstack(L, nres + 1)) {
            lua_pop(co, nres);
            return luaL_error(L, "too many results to resume");
        }
        lua_pushboolean(L, 1);
        lua_xmove(co, L, nres);
        return nres + 1;
    }
    lua_pushboolean(L, 0);
    if (b->killed) push_kill(L, b);  /* whatever the policy raised */
    else lua_xmove(co, L, 1);
    return 2;
}

/* core.budget_active() --> true while code runs under a budget */
static int l_active(lua_State *L)
{
    wrap *w = getwrap(L);
    lua_pushboolean(L, w && w->current);
    return 1;
}

/* budget:usage() --> instructions used (to HOOK_EVERY), bytes, killed
** reason or nil, CPU seconds */
static int budget_usage(lua_State *L)
{
    budget *b = luaL_checkudata(L, 1, LSB_BUDGET);
    lua_pushinteger(L, b->instr_used);
    lua_pushinteger(L, b->mem_used);
    if (b->killed) lua_pushstring(L, kill_message(b));
    else lua_pushnil(L);
    lua_pushnumber(L, b->cpu_used);
    return 4;
}

void lsb_register_sandbox(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        { "budget", l_budget }, { "budget_resume", l_resume }, { "budget_install", l_install },
        { "budget_active", l_active }, { "budget_charge", l_charge },
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
