-- rockspec/switchboard-scm-1.rockspec
--
-- Build and install from a checkout (no rock is downloaded), on Debian 12 with
-- the Debian packages luarocks, liblua5.4-dev, libpq-dev, libsqlite3-dev:
--
--   luarocks --lua-version=5.4 make rockspec/switchboard-scm-1.rockspec PQ_INCDIR=/usr/include/postgresql
--   lua5.4 -e 'require "switchboard"'
--
-- Run it from the repository root.  It leaves *.o files and a
-- switchboard/core.so there (.gitignore hides them, `make clean` removes
-- them).  PQ_INCDIR is needed because Debian puts libpq-fe.h in
-- /usr/include/postgresql, where luarocks does not look (`pg_config
-- --includedir` prints it).  Add --tree=DIR (or --local) to
-- install somewhere other than /usr/local.  Use lua5.4 explicitly: Debian's
-- luarocks package repoints /usr/bin/lua at Lua 5.1.  `make rockspec-test`
-- does all this into a temporary tree.
--
-- KEEP IN SYNC: the builtin backend needs explicit file lists.  Every
-- core/*.c and bindings/lua/*.c is a source of switchboard.core, and every
-- bindings/lua/switchboard/NAME.lua is the module switchboard.NAME (init.lua
-- is switchboard itself).  `make rockspec-check` (part of `make test`) fails
-- when these lists and the tree differ.
--
-- TODO(migrations): migrations/*.sql must ship with the installed module.
-- `copy_directories = { "migrations" }` only copies them under the rock's
-- own dir (not on package.path), so the plan is to embed them (generate a
-- Lua module from the .sql files) or install them with build.install.lua.

rockspec_format = "3.0"
package = "switchboard"
version = "scm-1"

source = {
   -- Not used by `luarocks make`, which builds the checkout it runs in.
   url = "git+file://./switchboard",
}

description = {
   summary = "Async SQLite and PostgreSQL for Lua 5.4 call-routing scripts",
   detailed = [[
A C11 core that runs SQL on SQLite (worker threads, WAL) or PostgreSQL
(libpq, non-blocking, pipelined pool) without blocking its caller, and the
Lua 5.4 module `switchboard`: a query yields inside a coroutine task and
blocks outside one.
]],
   license = "MIT",
}

dependencies = {
   "lua >= 5.4",
}

external_dependencies = {
   SQLITE = { header = "sqlite3.h" },
   PQ = { header = "libpq-fe.h" },
}

build = {
   type = "builtin",
   modules = {
      ["switchboard.core"] = {
         sources = {
            -- core/*.c
            "core/alloc.c",
            "core/conn.c",
            "core/error.c",
            "core/pg_conn.c",
            "core/pg_drv.c",
            "core/pg_stmt.c",
            "core/pg_value.c",
            "core/req.c",
            "core/result.c",
            "core/sql.c",
            "core/sqlite_drv.c",
            "core/sqlite_worker.c",
            "core/url.c",
            "core/wake.c",
            -- bindings/lua/*.c
            "bindings/lua/lsb.c",
            "bindings/lua/lsb_await.c",
            "bindings/lua/lsb_db.c",
            "bindings/lua/lsb_error.c",
            "bindings/lua/lsb_params.c",
            "bindings/lua/lsb_rows.c",
            "bindings/lua/lsb_sandbox.c",
            "bindings/lua/lsb_tx.c",
            "bindings/lua/lsb_util.c",
         },
         libraries = { "pq", "sqlite3", "pthread" },
         incdirs = { "core", "$(PQ_INCDIR)", "$(SQLITE_INCDIR)" },
         libdirs = {},
         defines = { "_GNU_SOURCE" },
      },
      -- bindings/lua/switchboard/*.lua
      ["switchboard"] = "bindings/lua/switchboard/init.lua",
      ["switchboard.router"] = "bindings/lua/switchboard/router.lua",
      ["switchboard.sandbox"] = "bindings/lua/switchboard/sandbox.lua",
   },
}
