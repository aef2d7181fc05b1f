"""A snapshot carries every type across engines: PostgreSQL -> SQLite and SQLite -> PostgreSQL.

The oracle reads both sides with psycopg2 and the sqlite3 module and compares
canonical Python values (lktest.rows_canonical), independently of lockstep's
own mapping; `lockstep verify` must agree. Tables are created by lockstep
(`target.create: true`), so the declared types it picks are checked too.
"""
import sqlite3

import lktest as L

L.require_pg()
t = L.Suite("test_snapshot_cross_engine")
N = L.scale(50000)

SQLITE_TYPES = {"id": "int", "first_name": "text", "status": "text", "score": "float",
                "balance": "numeric", "is_admin": "bool", "ext_id": "uuid", "metadata": "json",
                "avatar": "bytes", "created_at": "timestamptz", "birthday": "date",
                "updated_at": "timestamp"}
PG_TYPES = {"id": "bigint", "first_name": "text", "status": "text", "score": "double precision",
            "is_admin": "boolean", "ext_id": "uuid", "metadata": "jsonb", "avatar": "bytea",
            "created_at": "timestamp with time zone", "birthday": "date",
            "updated_at": "timestamp without time zone"}


def job():
    return {"source": {"db": "src", "table": "users", "key": ["id"]},
            "target": {"db": "dst", "table": "users", "create": True},
            "mode": "snapshot", "batch": 2000}


def oracle(src, dst, what):
    a = L.rows_canonical(src, "users", ["id"], L.USERS_COLUMNS)
    b = L.rows_canonical(dst, "users", ["id"], L.USERS_COLUMNS)
    diff = L.compare_rows(a, b)
    t.eq((len(a), len(b)), (N, N), "%s: row counts" % what)
    t.check(not diff, "%s: cross-engine oracle finds no difference" % what,
            "%d rows differ:\n%s" % (len(diff), L.describe_diff(a, b, diff)))


def test_pg_to_sqlite():
    src = L.new_db("xe_src")
    L.create_users_pg(src, N)
    w = L.Workdir("xe_pg_sqlite")
    cfg = L.sync_config(w, {"src": src, "dst": "sqlite:dst.db"}, {"users": job()})
    rc, s, _ = L.sync(t, cfg, "users")
    if s:
        t.eq((s.get("rowsRead"), s.get("rowsWritten"), s.get("rowsFailed")), (N, N, 0),
             "summary counts every row once")
    dst = "sqlite:" + w.file("dst.db")
    c = sqlite3.connect(w.file("dst.db"))
    decl = dict((r[1], r[2]) for r in c.execute('PRAGMA table_info("users")'))
    c.close()
    got = dict((k, L.logical_type_sqlite(decl.get(k))) for k in SQLITE_TYPES)
    t.eq(got, SQLITE_TYPES, "created SQLite columns declare lockstep's types", repr(decl))
    oracle(src, dst, "PG -> SQLite")
    v = L.verify(t, cfg, "users", expect=0)
    t.eq((v.get("sourceRows"), v.get("targetRows")), (N, N), "verify counts")

    # One changed value of each hard kind must be seen by verify and repaired by a re-sync.
    c = sqlite3.connect(w.file("dst.db"))
    c.execute("UPDATE users SET balance = '1.0001', created_at = '2001-01-01 00:00:00+00' WHERE id = 10")
    c.commit()
    c.close()
    v = L.verify(t, cfg, "users", expect=1)
    t.check(any(L.key_matches(d.get("key"), [10]) and d.get("kind") == "changed"
                for d in v.get("differences") or []), "verify names the changed SQLite row", repr(v))
    L.sync(t, cfg, "users")
    oracle(src, dst, "PG -> SQLite after repair")


def test_sqlite_to_pg():
    w = L.Workdir("xe_sqlite_pg")
    L.create_users_sqlite(w.file("src.db"), N)
    dst = L.new_db("xe_dst")
    cfg = L.sync_config(w, {"src": "sqlite:src.db", "dst": dst}, {"users": job()})
    rc, s, _ = L.sync(t, cfg, "users")
    if s:
        t.eq((s.get("rowsRead"), s.get("rowsWritten"), s.get("rowsFailed")), (N, N, 0),
             "summary counts every row once")
    types = dict(L.pg_columns(dst, "users"))
    t.eq(dict((k, types.get(k)) for k in PG_TYPES), PG_TYPES,
         "created PostgreSQL columns have the mapped types", repr(types))
    t.check(types.get("balance", "").startswith("numeric"), "balance is numeric", repr(types))
    oracle("sqlite:" + w.file("src.db"), dst, "SQLite -> PG")
    L.verify(t, cfg, "users", expect=0)


t.case(test_pg_to_sqlite)
t.case(test_sqlite_to_pg)
t.finish()
