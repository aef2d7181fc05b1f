"""A value the target cannot hold exactly goes to the dead-letter queue, named.

NaN into SQLite (which would store NULL), text with a NUL byte into PostgreSQL (which
cannot store it), and a numeric with more digits than a double into an SQLite REAL
column. Nothing is silently coerced (DESIGN decision 8): lockstep refuses the row
before sending it, the rest of the batch commits, the run exits 0 and counts the row
as dead-lettered; the dead letter names the key, the column and the value, with an
SQLSTATE (22003 for numbers, 22021 for NUL). After the bad value is fixed in the
source, the next run applies the row, the dead letter resolves itself, and verify
finds the tables equal.
"""
import json
import sqlite3

import lktest as L

L.require_pg()
t = L.Suite("test_value_refusals")


def dead_letters(cfg):
    rc, out, err = L.run_lockstep(["errors", "list", "--json"], cfg)
    obj = L.whole_json(out)
    t.check(rc == 0 and isinstance(obj, dict), "errors list --json succeeds", L.show(rc, out, err))
    return obj.get("errors", []) if isinstance(obj, dict) else []


def check_refused(cfg, job, what, key, column, sqlstate, words):
    rc, out, err = L.run_lockstep(["sync", job, "--json"], cfg)
    s = L.last_json(out) or {}
    t.eq(rc, 0, "%s: the run succeeds" % what, L.show(rc, out, err))
    t.eq(s.get("rowsFailed"), 1, "%s: one row dead-lettered" % what, L.show(rc, out, err))
    dls = dead_letters(cfg)
    d = dls[0] if len(dls) == 1 else {}
    t.check(d.get("key") == [str(key)] and d.get("sqlstate") == sqlstate
            and ("'%s'" % column) in d.get("message", "")
            and all(w in d.get("message", "") for w in words),
            "%s: the dead letter names the key (%s), the column and the value" % (what, key),
            json.dumps(dls, indent=1))


def test_nan_into_sqlite():
    src = L.new_db("nan_src")
    L.execute(src, "CREATE TABLE m (id int PRIMARY KEY, v double precision)")
    L.execute(src, "INSERT INTO m SELECT i, i / 4.0 FROM generate_series(1, 100) i")
    L.execute(src, "UPDATE m SET v = 'NaN' WHERE id = 42")
    w = L.Workdir("nan")
    cfg = L.sync_config(w, {"src": src, "lite": "sqlite:" + w.file("t.db")},
                        {"m": {"source": {"db": "src", "table": "m"},
                               "target": {"db": "lite", "create": True}}})
    check_refused(cfg, "m", "NaN into SQLite", 42, "v", "22003", ["NaN"])
    c = sqlite3.connect(w.file("t.db"))
    nulls = c.execute("SELECT count(*) FROM m WHERE v IS NULL").fetchone()[0]
    rows = c.execute("SELECT count(*) FROM m").fetchone()[0]
    c.close()
    t.eq((nulls, rows), (0, 99), "no NaN was stored as NULL; the other 99 rows were")
    L.execute(src, "UPDATE m SET v = 0 WHERE id = 42")
    L.sync(t, cfg, "m")
    t.eq(dead_letters(cfg), [], "after the fix the row applied and its dead letter resolved")
    L.verify(t, cfg, "m", expect=0)


def test_nul_text_into_postgres():
    dst = L.new_db("nul_dst")
    w = L.Workdir("nul")
    lite = w.file("s.db")
    c = sqlite3.connect(lite)
    c.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    c.executemany("INSERT INTO notes VALUES (?, ?)", [(i, "note %d" % i) for i in range(1, 51)])
    c.execute("UPDATE notes SET body = 'bad' || char(0) || 'byte' WHERE id = 7")
    c.commit()
    c.close()
    cfg = L.sync_config(w, {"lite": "sqlite:" + lite, "dst": dst},
                        {"notes": {"source": {"db": "lite", "table": "notes"},
                                   "target": {"db": "dst", "create": True}}})
    check_refused(cfg, "notes", "text with a NUL byte into PostgreSQL", 7, "body", "22021",
                  ["NUL"])
    t.eq(L.count_rows(dst, "notes"), 49, "the other 49 rows were copied")
    c = sqlite3.connect(lite)
    c.execute("UPDATE notes SET body = 'fixed' WHERE id = 7")
    c.commit()
    c.close()
    L.sync(t, cfg, "notes")
    t.eq(L.count_rows(dst, "notes"), 50, "after the fix every row is copied")
    t.eq(dead_letters(cfg), [], "and the dead letter resolved itself")
    L.verify(t, cfg, "notes", expect=0)


def test_numeric_precision_into_real():
    src = L.new_db("num_src")
    L.execute(src, "CREATE TABLE p (id int PRIMARY KEY, amount numeric)")
    L.execute(src, "INSERT INTO p VALUES (1, 1.5), (2, 12345678901234567890.123456789)")
    w = L.Workdir("num")
    lite = w.file("t.db")
    c = sqlite3.connect(lite)
    c.execute("CREATE TABLE p (id INTEGER PRIMARY KEY, amount REAL)")
    c.commit()
    c.close()
    cfg = L.sync_config(w, {"src": src, "lite": "sqlite:" + lite},
                        {"p": {"source": {"db": "src", "table": "p"}, "target": {"db": "lite"}}})
    check_refused(cfg, "p", "a numeric a double cannot hold, into REAL", 2, "amount", "22003",
                  ["12345678901234567890.123456789", "REAL"])
    c = sqlite3.connect(lite)
    rows = c.execute("SELECT id, amount FROM p").fetchall()
    c.close()
    t.eq(rows, [(1, 1.5)], "only the exact row was stored")


t.case(test_nan_into_sqlite)
t.case(test_nul_text_into_postgres)
t.case(test_numeric_precision_into_real)
t.finish()
