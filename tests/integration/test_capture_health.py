"""Capture health on a PostgreSQL source (issue 17, case 8; docs/realtime.md "Capture
health and partitions").

Table t (200 rows) is the source of real-time job `h` into another database; every write
below is its own transaction. Judged by the md5 oracle after a `lockstep sync h` catch-up
(or while `lockstep run` streams), and by the log.

  1. A bulk load with triggers off: ALTER TABLE t DISABLE TRIGGER ALL, inserts, updates
     and deletes, ENABLE TRIGGER ALL. The next catch-up says capture was disabled or
     changed, re-snapshots with the sweep and ends equal. (Before: exit 0, the writes made
     while capture was off never reach the target.)
  2. The re-enable made the capture trigger ordinary ('O'): the catch-up above restored
     ENABLE ALWAYS, so a write under session_replication_role = replica is captured.
  3. A dropped lockstep trigger is re-created at the next start with a gap: the writes made
     while it was gone reach the target.
  4. No false alarms: catch-ups with nothing changed, and capture installed by an older
     lockstep (no signature recorded yet), resume without a fresh snapshot.
  5. `lockstep run` streams; a DISABLE/ENABLE pair with writes in between is over before
     the daemon looks: its periodic check (every 10 s) sees the trigger's changed catalogue
     row, and the target converges; SIGTERM exits 0.
"""
import os

import lktest as L
import rtwriters as W

L.require_pg()
t = L.Suite("test_capture_health")

DEADLINE = 60  # seconds a daemon gets to converge (health is checked every 10 s)


def md5(url):
    return L.pg_md5(url, "t", ["id"])


def same(src, dst, what):
    return t.eq(md5(dst), md5(src), "md5 oracle: %s" % what)


def writes(src, base, session=None):
    """Inserts 5 rows, updates 10, deletes 5, each its own transaction."""
    c = L.connect(src)
    c.autocommit = True
    try:
        with c.cursor() as cur:
            for s in session or []:
                cur.execute(s)
            for i in range(5):
                cur.execute("INSERT INTO t VALUES (%s, 1, 'new')", (base + i,))
            for i in range(10):
                cur.execute("UPDATE t SET v = v + 1, note = %s WHERE id = %s", ("u%d" % base, 10 + i))
            for i in range(5):
                cur.execute("DELETE FROM t WHERE id = %s", (100 + base % 50 + i,))
    finally:
        c.close()


def modes(src):
    return sorted(L.execute(src, "SELECT tgname::text, tgenabled::text FROM pg_trigger WHERE "
                                 "tgrelid = 't'::regclass AND tgname LIKE 'lockstep%%'"))


def catch_up(cfg, what, fresh):
    """`lockstep sync h`; checks exit 0 and whether it took a fresh snapshot."""
    rc, out, err = L.run_lockstep(["sync", "h", "--json"], cfg)
    t.eq(rc, 0, "%s: sync exits 0" % what, L.show(rc, out, err))
    took = "fresh snapshot" in err or "re-snapshotting" in err
    t.eq(took, fresh, "%s: %s" % (what, "re-snapshots, saying why" if fresh else "resumes"),
         err[-3000:])
    return err


def setup():
    src, dst = L.new_db("ch_src"), L.new_db("ch_dst")
    L.execute(src, "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, note text)")
    L.execute(src, "INSERT INTO t SELECT g, g, 'n' FROM generate_series(1, 200) g")
    wd = L.Workdir("capture_health")
    cfg = L.sync_config(wd, {"src": src, "dst": dst},
                        {"h": {"source": {"db": "src", "table": "t"},
                               "target": {"db": "dst", "create": True}, "mode": "realtime"}})
    L.sync(t, cfg, "h")
    same(src, dst, "after the first sync")
    return src, dst, cfg, wd


def test_disable_enable(src, dst, cfg):
    L.execute(src, "ALTER TABLE t DISABLE TRIGGER ALL")
    writes(src, 1000)
    L.execute(src, "ALTER TABLE t ENABLE TRIGGER ALL")
    err = catch_up(cfg, "after DISABLE/ENABLE TRIGGER ALL", True)
    t.check("was disabled or changed" in err and "public.t" in err,
            "the warning says capture on public.t was disabled or changed", err[-3000:])
    same(src, dst, "the writes made while capture was off reach the target")
    t.check(all(m == "A" for _, m in modes(src)), "every lockstep trigger is ENABLE ALWAYS again",
            modes(src))


def test_replica_role(src, dst, cfg):
    writes(src, 2000, ["SET session_replication_role = replica"])
    catch_up(cfg, "writes under session_replication_role = replica", False)
    same(src, dst, "writes under session_replication_role = replica are captured")


def test_dropped_trigger(src, dst, cfg):
    L.execute(src, "DROP TRIGGER lockstep_cdc_capture ON t")
    writes(src, 3000)
    err = catch_up(cfg, "after DROP TRIGGER lockstep_cdc_capture", True)
    t.check("lockstep_cdc_capture" in err and "dropped" in err,
            "the warning names the dropped trigger", err[-3000:])
    t.check(("lockstep_cdc_capture", "A") in modes(src), "the trigger is back, ALWAYS", modes(src))
    same(src, dst, "the writes made while the trigger was gone reach the target")


def test_no_false_gap(src, dst, cfg):
    catch_up(cfg, "a catch-up with nothing changed", False)
    L.execute(src, "UPDATE lockstep_cdc.tables SET capture_sig = NULL, capture_sig_at = NULL")
    writes(src, 4000)
    catch_up(cfg, "capture recorded by an older lockstep (no signature yet)", False)
    t.check(L.scalar(src, "SELECT capture_sig IS NOT NULL FROM lockstep_cdc.tables") is True,
            "the signature is recorded in place")
    catch_up(cfg, "the next catch-up", False)
    same(src, dst, "equal after the upgrade")


def test_daemon(src, dst, cfg, wd):
    d = W.Daemon(cfg, os.path.join(str(wd), "run.log")).start()
    try:
        writes(src, 5000)
        L.wait_for(lambda: md5(dst) == md5(src), DEADLINE, 0.3)
        same(src, dst, "the daemon streams")
        L.execute(src, "ALTER TABLE t DISABLE TRIGGER ALL")
        writes(src, 6000)
        L.execute(src, "ALTER TABLE t ENABLE TRIGGER ALL")
        L.wait_for(lambda: md5(dst) == md5(src), DEADLINE, 0.5)
        same(src, dst, "the daemon sees the DISABLE/ENABLE pair and converges")
        t.check("was disabled or changed" in d.output(), "the daemon's log says why",
                d.output()[-3000:])
    finally:
        rc = d.term(60)
    t.eq(rc, 0, "SIGTERM stops lockstep run with exit 0", d.output()[-3000:])


SRC, DST, CFG, WD = setup()
t.case(test_disable_enable, SRC, DST, CFG)
t.case(test_replica_role, SRC, DST, CFG)
t.case(test_dropped_trigger, SRC, DST, CFG)
t.case(test_no_false_gap, SRC, DST, CFG)
t.case(test_daemon, SRC, DST, CFG, WD)
t.finish()
