/*
** lsb.h - shared declarations of the switchboard Lua binding (the C module
** `switchboard.core`): metatable names, the userdata layouts, and the
** helpers each binding file offers the others.  The core (sb.h) knows
** nothing of Lua; this layer is thin: check arguments, convert values,
** wait in exactly one place (lsb_await.c).
*/
#ifndef LSB_H
#define LSB_H

#include "sb.h"

#include <lauxlib.h>
#include <lua.h>

#define LSB_DB "switchboard.db"
#define LSB_TX "switchboard.tx"
#define LSB_PENDING "switchboard.pending"
#define LSB_ERROR "switchboard.error"
#define LSB_BLOB "switchboard.blob"

/* User value 1 of a db: the NULL sentinel (nil = use nil). */
/* A database handle, or a view of one (db:with): a view shares its root's
** connection (user value 2 is the root) and never closes it. */
typedef struct lsb_db {
    sb_conn *conn;  /* NULL once closed (for a view: once it or its root is) */
    int timeout_ms; /* per-request timeout, 0 = none */
    int view;
    sb_req *held;   /* the blocking call's request while its results are
                       pushed (lsb_await.c); freed by close if a memory
                       error left it there */
} lsb_db;

/* A transaction handle, or a batch's (db:batch).  User values: 1 its db
** userdata, 2 the first error of a statement in it, 3 the block that
** `chained` points into. */
typedef struct lsb_tx {
    sb_session *session;  /* NULL once committed, rolled back or closed */
    sb_req **chained;     /* requests sent chained (SB_Q_CHAIN) whose outcome
                             was not looked at yet: a transaction's BEGIN, a
                             batch's statements; owned here */
    int nchained, capchained;
    int failed;           /* a statement in it failed: commit must not */
    int batch;            /* 0: a transaction; 1: a batch; 2: a batch whose
                             chained[0] is a BEGIN and last request a COMMIT */
} lsb_tx;

/* What a finished request is turned into (LSB_BATCH: a batch's results,
** lsb_batch.c). */
typedef enum lsb_kind { LSB_EXEC, LSB_QUERY, LSB_FIRST, LSB_OK, LSB_BATCH } lsb_kind;

/* lsb_db.c */
lsb_db *lsb_checkdb(lua_State *L, int idx);  /* raises if closed */
int lsb_open_db(lua_State *L);
void lsb_register_db(lua_State *L);

/* lsb_tx.c */
void lsb_register_tx(lua_State *L);
int lsb_db_session(lua_State *L);  /* db:_session() --> tx, before BEGIN */
/* Push a new tx on the db at dbidx, its session open (a request group's
** when group: sb_group_open). */
lsb_tx *lsb_tx_new(lua_State *L, int dbidx, int group);
/* Submit q chained (SB_Q_CHAIN) in the tx at txidx (of db), keeping the
** request; raises only when out of memory. */
void lsb_tx_chain(lua_State *L, int txidx, lsb_db *db, sb_query *q);
/* Free its chained requests (cancelling unfinished ones) and give the
** connection back (rolling back what is open). */
void lsb_tx_release(lsb_tx *tx);

/* lsb_batch.c: db:_batch(list [, begin, commit]) */
int lsb_db_batch(lua_State *L);
/* push the outcome of a batch whose last request `last` finished */
int lsb_push_batch(lua_State *L, sb_req *last, int dbidx, lsb_tx *tx);

/* lsb_params.c: convert the Lua values at [first, last] into params
** (which must have room for last - first + 1 values); raises on types
** that cannot be bound. */
void lsb_toparams(lua_State *L, int first, int last, sb_value *params);
/* One value at idx into *v; 0 (v untouched) when it cannot be bound. */
int lsb_toparam(lua_State *L, int idx, sb_value *v);
int lsb_blob(lua_State *L);
void lsb_register_blob(lua_State *L);

/* lsb_rows.c: push what a finished, successful request returns. */
int lsb_push_result(lua_State *L, const sb_result *res, lsb_kind kind, int nullidx);

/* lsb_error.c */
int lsb_push_error(lua_State *L, const sb_error *e);  /* pushes nil, err: returns 2 */
int lsb_new_error(lua_State *L);
void lsb_register_error(lua_State *L);

/* lsb_await.c: submit q on db (at stack index dbidx) and return what the
** request gives (kind); yields or blocks as the calling context allows.
** When tx is not NULL a failure marks it failed.  Must be a tail call:
** `return lsb_run(...)`. */
int lsb_run(lua_State *L, int dbidx, lsb_db *db, sb_query *q, lsb_kind kind, lsb_tx *tx);
/* db/tx:exec/query/first: SQL at 2, parameters after it (up to the top as it
** was on entry; a tx call pushed its db just above them, at dbidx). */
int lsb_call(lua_State *L, int dbidx, lsb_db *db, lsb_tx *tx, lsb_kind kind);
void lsb_register_await(lua_State *L);
/* The flags lsb_run would give a request submitted here, for requests
** chained ahead of it (no SB_Q_WAKE: only the awaited one wakes a waiter). */
unsigned lsb_chain_flags(lua_State *L);
int lsb_bind(lua_State *L);

/* lsb_util.c: time_ms, sha256 */
void lsb_register_util(lua_State *L);

/* lsb_sandbox.c: instruction and memory budgets for policies */
void lsb_register_sandbox(lua_State *L);

#endif
