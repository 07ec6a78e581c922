/*
** lsb_await.c - the one place where the binding waits for a request.
**
** lsb_run submits a statement and then, depending on where it was called:
**   - inside a task of the built-in scheduler (sb.spawn): yields
**     (AWAIT, db, tag) with lua_yieldk; the scheduler resumes the task
**     when sb_conn_reap hands back the tag;
**   - inside another yieldable coroutine while switchboard.poller is set
**     (cqueues.poll, say): calls poller(db) with lua_callk; the db is a
**     cqueues-style pollable (pollfd/events/timeout);
**   - anywhere else (main chunk, metamethods, plain coroutines): blocks in
**     sb_conn_wait, letting SQLite run the statement on this thread.
** Both paths end in finish(), so they return the same values.  The request
** is owned by a "pending" userdata on the waiting coroutine's stack, so a
** coroutine that is never resumed frees (cancels) it when collected.
*/
#include "lsb.h"

#include <stdint.h>
#include <string.h>

static char TASKS_KEY;   /* registry: weak-keyed set of scheduler tasks */
static char TAGS_KEY;    /* registry: the tag pool (below) */
static char MODULE_KEY;  /* registry: the switchboard module table */
static char AWAIT_KEY;   /* its address marks the scheduler's yields */
static char ALONE_KEY;   /* tasks[ALONE] set: the running task is the only
                            one the scheduler has to run right now */

enum { MODE_BLOCK, MODE_TASK, MODE_TASK_ALONE, MODE_POLLER };

typedef struct pending {
    sb_req *req;
    lsb_tx *tx;  /* the transaction this request runs in, or NULL */
    int mode;
    lua_Integer tag;  /* MODE_TASK: its scheduler tag, else 0 */
} pending;

/*
** Scheduler tags are small integers, reused: the scheduler's tables keyed
** by tag stay in their array part (pointer keys made them rehash all the
** time).  A tag is taken when a task submits and given back when the
** request is done with (finish) or its anchor is collected; the scheduler
** forgets a tag before it resumes the task, so it is never in use twice.
** The pool is a userdata in the registry: { next unused, free stack }.
*/
typedef struct tagpool {
    lua_Integer next;  /* tags 1..next-1 were handed out at least once */
    size_t nfree, cap;
    lua_Integer free[];
} tagpool;

static tagpool *tags_get(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &TAGS_KEY);
    tagpool *t = lua_touserdata(L, -1);
    lua_pop(L, 1);  /* the registry keeps it */
    return t;
}

static tagpool *tags_new(lua_State *L, size_t cap, const tagpool *old)
{
    tagpool *t = lua_newuserdatauv(L, sizeof *t + cap * sizeof t->free[0], 0);
    t->next = old ? old->next : 1;
    t->nfree = old ? old->nfree : 0;
    t->cap = cap;
    if (old) memcpy(t->free, old->free, old->nfree * sizeof t->free[0]);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &TAGS_KEY);
    return t;
}

static lua_Integer tag_take(lua_State *L)
{
    tagpool *t = tags_get(L);
    if (t->nfree) return t->free[--t->nfree];
    if (t->next - 1 == (lua_Integer)t->cap) t = tags_new(L, t->cap * 2, t);  /* room for its return */
    return t->next++;
}

static void tag_give(lua_State *L, lua_Integer tag)
{
    tagpool *t = tags_get(L);
    if (t) t->free[t->nfree++] = tag;  /* cap >= tags handed out */
}

static void pending_release(lua_State *L, pending *p)
{
    if (p->req) {
        sb_req_free(p->req);  /* cancels it if still running */
        p->req = NULL;
    }
    if (p->tag) {
        tag_give(L, p->tag);
        p->tag = 0;
    }
}

static int pending_gc(lua_State *L)
{
    pending_release(L, lua_touserdata(L, 1));
    return 0;
}

/* How a request made here waits.  take_alone: this request uses the
** task's one inline quick read of the turn (MODE_TASK_ALONE). */
static int wait_mode(lua_State *L, int take_alone)
{
    if (!lua_isyieldable(L)) return MODE_BLOCK;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);
    lua_pushthread(L);
    int task = lua_rawget(L, -2) != LUA_TNIL;
    int alone = task && lua_rawgetp(L, -2, &ALONE_KEY) != LUA_TNIL && take_alone;
    if (alone) {  /* one quick read per turn: the task yields after its next */
        lua_pushnil(L);
        lua_rawsetp(L, -4, &ALONE_KEY);
    }
    lua_pop(L, 2 + task);
    if (task) return alone ? MODE_TASK_ALONE : MODE_TASK;
    int poller = 0;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &MODULE_KEY) == LUA_TTABLE) {
        poller = lua_getfield(L, -1, "poller") != LUA_TNIL;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return poller ? MODE_POLLER : MODE_BLOCK;
}

/* The sb_query flags of a request submitted in `mode`: a blocking caller
** lets SQLite run it right here when its connection is idle; a yielding
** one still lets a write run here when the writer is idle, and a quick
** read when no other task waits to run (the reader threads would only add
** two wake-ups to its latency).  A task's request waits for the
** scheduler's step to go out with the others of its batch (SB_Q_DEFER);
** under a foreign poller the fd wakes the waiter (SB_Q_WAKE). */
static unsigned mode_flags(int mode)
{
    switch (mode) {
    case MODE_BLOCK: return SB_Q_INLINE;
    case MODE_TASK: return SB_Q_INLINE_WRITE | SB_Q_DEFER;
    case MODE_TASK_ALONE: return SB_Q_INLINE_WRITE | SB_Q_DEFER | SB_Q_INLINE_QUICK;
    default: return SB_Q_INLINE_WRITE | SB_Q_WAKE;  /* MODE_POLLER */
    }
}

unsigned lsb_chain_flags(lua_State *L)
{
    return mode_flags(wait_mode(L, 0)) & ~(unsigned)SB_Q_WAKE;
}

/* Push nil, e; inside a transaction (tx_call's frame: the tx is at 1) the
** first error is also kept for commit to refuse with. */
static int push_failure(lua_State *L, const sb_error *e, lsb_tx *tx)
{
    int n = lsb_push_error(L, e);
    if (tx && !tx->failed) {
        tx->failed = 1;
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, 1, 2);
    }
    return n;
}

/* Push what the finished request r gives; the db is at dbidx. */
static int push_outcome(lua_State *L, sb_req *r, int dbidx, lsb_kind kind, lsb_tx *tx)
{
    if (kind == LSB_BATCH) return lsb_push_batch(L, r, dbidx, tx);
    if (tx && tx->nchained && sb_req_status(tx->chained[0]) != SB_PENDING) {
        sb_req *b = tx->chained[0];  /* its chained BEGIN is back */
        int n = sb_req_status(b) == SB_ERR ? push_failure(L, sb_req_error(b), tx) : 0;
        tx->nchained = 0;
        sb_req_free(b);
        if (n) return n;  /* r was skipped by the server: BEGIN's error is the one */
    }
    if (sb_req_status(r) == SB_OK) {
        lua_getiuservalue(L, dbidx, 1);  /* its NULL sentinel */
        return lsb_push_result(L, sb_req_result(r), kind, lua_gettop(L));
    }
    return push_failure(L, sb_req_error(r), tx);
}

/* The anchored request finished: push what it gives and free it. */
static int finish(lua_State *L, int aidx, lsb_kind kind)
{
    pending *p = lua_touserdata(L, aidx);
    sb_req *r = p->req;
    lua_getiuservalue(L, aidx, 1);  /* the db */
    int n = push_outcome(L, r, lua_gettop(L), kind, p->tx);
    pending_release(L, p);
    return n;
}

static int await_k(lua_State *L, int status, lua_KContext ctx);

static int await(lua_State *L, int aidx, lsb_kind kind)
{
    pending *p = lua_touserdata(L, aidx);
    lua_KContext ctx = (lua_KContext)aidx | ((lua_KContext)kind << 16);
    for (;;) {
        if (sb_req_status(p->req) != SB_PENDING) return finish(L, aidx, kind);
        lua_getiuservalue(L, aidx, 1);
        lsb_db *db = lua_touserdata(L, -1);
        if (!db->conn) return luaL_error(L, "request lost by a closed database");
        if (p->mode == MODE_BLOCK) {
            lua_pop(L, 1);
            if (sb_conn_wait(db->conn, p->req, -1) == SB_ERR && sb_req_status(p->req) == SB_PENDING)
                return luaL_error(L, "cannot wait for the database (re-entrant step?)");
            continue;
        }
        if (p->mode == MODE_TASK) {  /* the scheduler steps once its batch of tasks ran */
            lua_pushlightuserdata(L, &AWAIT_KEY);
            lua_insert(L, -2);
            lua_pushinteger(L, p->tag);
            return lua_yieldk(L, 3, ctx, await_k);
        }
        sb_conn_step(db->conn);
        if (sb_req_status(p->req) != SB_PENDING) {
            lua_pop(L, 1);
            continue;
        }
        lua_rawgetp(L, LUA_REGISTRYINDEX, &MODULE_KEY);
        lua_getfield(L, -1, "poller");
        lua_remove(L, -2);
        lua_insert(L, -2);  /* poller, db */
        lua_callk(L, 1, 0, ctx, await_k);
        lua_settop(L, aidx);
    }
}

static int await_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    int aidx = (int)(ctx & 0xffff);
    lua_settop(L, aidx);  /* drop whatever the resumer passed */
    return await(L, aidx, (lsb_kind)(ctx >> 16));
}

/*
** The blocking fast path: the statement runs (on this thread when SQLite's
** connection is idle) and its results are pushed with no anchor userdata.
** The request sits in db->held meanwhile, so a memory error raised while
** pushing leaves it where db:close frees it.  A call nested inside that
** window (a __gc metamethod querying the same db) finds held taken and goes
** the anchored way instead.
*/
static int run_blocking(lua_State *L, int dbidx, lsb_db *db, sb_query *q, lsb_kind kind, lsb_tx *tx)
{
    q->flags |= SB_Q_INLINE;
    sb_req *r = sb_conn_submit(db->conn, q);
    if (!r) return luaL_error(L, "not enough memory");
    db->held = r;
    if (sb_req_status(r) == SB_PENDING && sb_conn_wait(db->conn, r, -1) != SB_OK)
        return luaL_error(L, "cannot wait for the database (re-entrant step?)");
    int n = push_outcome(L, r, dbidx, kind, tx);
    db->held = NULL;
    sb_req_free(r);
    return n;
}

int lsb_run(lua_State *L, int dbidx, lsb_db *db, sb_query *q, lsb_kind kind, lsb_tx *tx)
{
    int mode = wait_mode(L, 1);
    if (mode == MODE_BLOCK && !db->held) return run_blocking(L, dbidx, db, q, kind, tx);
    pending *p = lua_newuserdatauv(L, sizeof *p, 1);
    p->req = NULL;
    p->tx = tx;
    p->mode = mode;
    p->tag = 0;
    luaL_setmetatable(L, LSB_PENDING);
    lua_pushvalue(L, dbidx);
    lua_setiuservalue(L, -2, 1);
    int aidx = lua_gettop(L);
    q->flags |= mode_flags(mode);
    if (mode == MODE_TASK_ALONE) mode = p->mode = MODE_TASK;
    p->req = sb_conn_submit(db->conn, q);
    if (!p->req) return luaL_error(L, "not enough memory");
    if (mode == MODE_TASK) {
        p->tag = tag_take(L);
        sb_req_set_tag(p->req, (uintptr_t)p->tag);
    }
    return await(L, aidx, kind);
}

/* The statement methods of db and tx: SQL at 2, parameters from 3 to the
** top as it was on entry; tx (at 1) pins them to its session. */
int lsb_call(lua_State *L, int dbidx, lsb_db *db, lsb_tx *tx, lsb_kind kind)
{
    int top = tx ? dbidx - 1 : lua_gettop(L);
    luaL_checktype(L, 2, LUA_TSTRING);
    size_t len;
    const char *sql = lua_tolstring(L, 2, &len);
    int n = top - 2;
    sb_value stackbuf[16];
    sb_value *params = n <= 16 ? stackbuf : lua_newuserdatauv(L, (size_t)n * sizeof(sb_value), 0);
    lsb_toparams(L, 3, top, params);
    sb_query q = { sql, len, params, n, tx ? tx->session : NULL, db->timeout_ms, 0 };
    return lsb_run(L, dbidx, db, &q, kind, tx);
}

/* core._bind(module, tasks): where the poller and the task set live. */
int lsb_bind(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &MODULE_KEY);
    return 0;
}

void lsb_register_await(lua_State *L)
{
    luaL_newmetatable(L, LSB_PENDING);
    lua_pushcfunction(L, pending_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    tags_new(L, 64, NULL);
    lua_newtable(L);  /* until _bind: no tasks */
    lua_rawsetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);
    /* the marker the scheduler compares yields against (module field AWAIT) */
    lua_pushlightuserdata(L, &AWAIT_KEY);
    lua_setfield(L, -2, "AWAIT");
    lua_pushlightuserdata(L, &ALONE_KEY);
    lua_setfield(L, -2, "ALONE");
}
