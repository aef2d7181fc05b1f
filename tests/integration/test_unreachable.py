"""Failures before any row moves are clear and have the right exit code.

- a database on a closed port, after its retries: exit 69 within seconds, naming it;
- a missing source table: exit 1 naming the table;
- a target lacking a source column: exit 1 naming the column;
- a target whose key is not unique: exit 1 naming the table.
None of them may change the target.
"""
import socket
import time

import lktest as L

L.require_pg()
t = L.Suite("test_unreachable")


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


def job(**target):
    tgt = {"db": "dst", "table": "users", "create": False}
    tgt.update(target)
    return {"source": {"db": "src", "table": "users", "key": ["id"]}, "target": tgt,
            "mode": "snapshot", "retry": {"attempts": 2, "initial": "100ms"}}


src = L.new_db("unr_src")
L.execute(src, "CREATE TABLE users (id bigint PRIMARY KEY, email text, zz_extra_col text)")
L.execute(src, "INSERT INTO users SELECT i, 'u' || i, 'x' FROM generate_series(1, 100) i")


def unreachable(role):
    dead = "postgresql://postgres@127.0.0.1:%d/nowhere?connect_timeout=2" % closed_port()
    name = "dead_" + role
    if role == "source":
        dbs, sdb, ddb = {name: dead, "dst": L.new_db("unr_dst")}, name, "dst"
    else:
        dbs, sdb, ddb = {"src": src, name: dead}, "src", name
    j = job(create=True)
    j["source"]["db"], j["target"]["db"] = sdb, ddb
    cfg = L.sync_config(L.Workdir("unr_" + role), dbs, {"users": j})
    t0 = time.monotonic()
    rc, out, err = L.run_lockstep(["sync", "users"], cfg, timeout=60)
    took = time.monotonic() - t0
    t.eq(rc, 69, "unreachable %s: sync exits 69 (EX_UNAVAILABLE)" % role, L.show(rc, out, err))
    t.check(took < 10, "unreachable %s: gives up after its 2 attempts in %.1fs (< 10s)" % (role, took))
    t.check(name in err, "unreachable %s: stderr names the database '%s'" % (role, name), L.show(rc, out, err))


def test_unreachable_source():
    unreachable("source")


def test_unreachable_target():
    unreachable("target")


def test_missing_source_table():
    dst = L.new_db("unr_nosrc")
    j = job(create=True)
    j["source"]["table"] = "no_such_table_xyz"
    cfg = L.sync_config(L.Workdir("unr_nosrc"), {"src": src, "dst": dst}, {"users": j})
    rc, out, err = L.run_lockstep(["sync", "users"], cfg, timeout=60)
    t.eq(rc, 1, "missing source table: sync exits 1", L.show(rc, out, err))
    t.check("no_such_table_xyz" in err, "missing source table: stderr names it", L.show(rc, out, err))
    t.eq(L.count_rows(dst, "users"), 0, "missing source table: no target table was created or filled")


def test_missing_target_column():
    dst = L.new_db("unr_nocol")
    L.execute(dst, "CREATE TABLE users (id bigint PRIMARY KEY, email text)")
    cfg = L.sync_config(L.Workdir("unr_nocol"), {"src": src, "dst": dst}, {"users": job()})
    rc, out, err = L.run_lockstep(["sync", "users"], cfg, timeout=60)
    t.eq(rc, 1, "missing target column: sync exits 1", L.show(rc, out, err))
    t.check("zz_extra_col" in err, "missing target column: stderr names the column", L.show(rc, out, err))
    t.eq(L.count_rows(dst, "users"), 0, "missing target column: nothing written")


def test_target_key_not_unique():
    dst = L.new_db("unr_nouniq")
    L.execute(dst, "CREATE TABLE nouniq_target (id bigint, email text, zz_extra_col text)")
    cfg = L.sync_config(L.Workdir("unr_nouniq"), {"src": src, "dst": dst},
                        {"users": job(table="nouniq_target")})
    rc, out, err = L.run_lockstep(["sync", "users"], cfg, timeout=60)
    t.eq(rc, 1, "target key not unique: sync exits 1", L.show(rc, out, err))
    t.check("nouniq_target" in err, "target key not unique: stderr names the table", L.show(rc, out, err))
    t.check("uniq" in err.lower() or "primary key" in err.lower(),
            "target key not unique: stderr says the key is not unique", L.show(rc, out, err))
    t.eq(L.count_rows(dst, "nouniq_target"), 0, "target key not unique: nothing written")


t.case(test_unreachable_source)
t.case(test_unreachable_target)
t.case(test_missing_source_table)
t.case(test_missing_target_column)
t.case(test_target_key_not_unique)
t.finish()
