/*
** lsb.c - luaopen_switchboard_core: the C half of the `switchboard` module.
**
** Registers the metatables (db, tx, pending, error, blob) and exports the
** primitives that switchboard/init.lua builds the public API from: open,
** blob, null, error, version, the scheduler's AWAIT marker, _bind, now and
** poll (poll(2) over several databases' fds, for the built-in scheduler),
** plus the helpers of lsb_util.c and lsb_sandbox.c.
*/
#include "lsb.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* core.now() --> monotonic seconds (float) */
static int l_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + ts.tv_nsec / 1e9);
    return 1;
}

/* core.poll(fds, n, timeout) waits until one of fds[1..n] is readable or
** timeout seconds (nil = forever) passed --> number of ready fds */
static int l_poll(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = (int)luaL_checkinteger(L, 2);
    double t = luaL_optnumber(L, 3, -1);
    struct pollfd stackfds[16];
    struct pollfd *fds = n <= 16 ? stackfds : lua_newuserdatauv(L, (size_t)n * sizeof *fds, 0);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, 1, i + 1);
        fds[i].fd = (int)luaL_checkinteger(L, -1);
        fds[i].events = POLLIN;
        fds[i].revents = 0;
        lua_pop(L, 1);
    }
    /* ppoll: microsecond timeouts, so sb.sleep wakes on time (poll's
    ** milliseconds woke sleepers up to 1 ms late) */
    struct timespec ts, *tp = NULL;
    if (t >= 0) {
        if (t > 1e9) t = 1e9;
        ts.tv_sec = (time_t)t;
        ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
        tp = &ts;
    }
    int rc = ppoll(fds, (nfds_t)n, tp, NULL);
    if (rc < 0 && errno != EINTR) return luaL_error(L, "poll failed (errno %d)", errno);
    lua_pushinteger(L, rc < 0 ? 0 : rc);
    return 1;
}

/* core.stat(path) --> mtime_ns, size, inode | nil, message (hot reload) */
static int l_stat(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(path, &st) != 0) {
        luaL_pushfail(L);
        lua_pushfstring(L, "%s: %s", path, strerror(errno));
        return 2;
    }
    lua_pushinteger(L, (lua_Integer)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec);
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_pushinteger(L, (lua_Integer)st.st_ino);
    return 3;
}

static void export_methods(lua_State *L, const char *mt, const char *field)
{
    luaL_getmetatable(L, mt);
    lua_getfield(L, -1, "__index");
    lua_setfield(L, -3, field);
    lua_pop(L, 1);
}

int luaopen_switchboard_core(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        { "open", lsb_open_db }, { "blob", lsb_blob }, { "error", lsb_new_error },
        { "_bind", lsb_bind },   { "now", l_now },     { "poll", l_poll },
        { "stat", l_stat },
        { NULL, NULL }
    };
    luaL_newlib(L, funcs);
    lsb_register_db(L);
    lsb_register_tx(L);
    lsb_register_error(L);
    lsb_register_blob(L);
    lsb_register_await(L);  /* sets module.AWAIT */
    lsb_register_util(L);     /* time_ms, sha256 */
    lsb_register_sandbox(L);  /* budget, budget_resume, budget_install */
    export_methods(L, LSB_DB, "db_methods");
    export_methods(L, LSB_TX, "tx_methods");
    luaL_getmetatable(L, LSB_ERROR);
    lua_setfield(L, -2, "error_mt");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_pushliteral(L, SB_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
