"""A partitioned source table in real-time mode (issue 17, case 7; docs/realtime.md
"Capture health and partitions").

Table m is partitioned by RANGE (id) into m_1 [0, 1000) and m_2 [1000, 2000), 1500 rows;
job `p` copies it into another database. Each step is followed by a `lockstep sync p`
catch-up, judged by the md5 oracle (each server digests its own rows) and by the log:

  1. Inserts, updates and deletes straight into a partition (m_1) are captured, and a
     write straight into a partition wakes the job (NOTIFY on m's channel).
  2. CREATE TABLE m_4 PARTITION OF m, then inserts into it: captured, and no fresh snapshot
     (a new partition that holds no row older than its capture trigger is no gap).
  3. ATTACH PARTITION of a table m_3 that already holds 50 rows: the catch-up says the
     partition arrived with rows capture never saw and re-snapshots. (Before: exit 0, the
     50 rows never reach the target.)
  4. DETACH PARTITION m_2: the catch-up re-snapshots with the sweep, its 500 rows leave the
     target. (Before: they stay.) The detached table keeps no lockstep trigger.
  5. DROP TABLE m_3 (dropping a partition): the same.
  6. TRUNCATE m_1 (one partition): captured as a TRUNCATE of m. (Before: never seen.)
  7. ALTER TABLE m_1 DISABLE TRIGGER ALL (one partition), writes into it, ENABLE TRIGGER
     ALL: the catch-up re-snapshots, and the partition's triggers are ENABLE ALWAYS again.
  8. `lockstep uninstall p` leaves no lockstep trigger on m or any partition.
  9. A role that does not own m, with CREATE on the database and SELECT and TRIGGER on m:
     PostgreSQL adds a partitioned table's row trigger to each partition, so without
     TRIGGER on m_1 the run stops with one message naming the GRANT; with it the job runs.
     A partition created later (the role has no privilege on it) gets the cloned row
     trigger but no TRUNCATE trigger: a warning says so; its inserts are no re-snapshot
     (the new partition is judged through m), and an ATTACH of a table with rows
     re-snapshots.
"""
import os

import lktest as L

L.require_pg()
t = L.Suite("test_partitions")


def md5(url):
    return L.pg_md5(url, "m", ["id"])


def same(src, dst, what):
    return t.eq(md5(dst), md5(src), "md5 oracle: %s" % what)


def catch_up(cfg, what, fresh):
    """`lockstep sync p`; checks exit 0, equality, and whether it took a fresh snapshot."""
    rc, out, err = L.run_lockstep(["sync", "p", "--json"], cfg)
    t.eq(rc, 0, "%s: sync exits 0" % what, L.show(rc, out, err))
    took = "fresh snapshot" in err or "re-snapshotting" in err
    t.eq(took, fresh, "%s: %s" % (what, "re-snapshots, saying why" if fresh else "no fresh snapshot"),
         err[-3000:])
    return err


def our_triggers(src):
    """[(table, trigger)] for every lockstep trigger in the database."""
    return sorted(L.execute(src, "SELECT tgrelid::regclass::text, tgname::text FROM pg_trigger "
                                 "WHERE tgname LIKE 'lockstep%%'"))


def setup():
    src, dst = L.new_db("part_src"), L.new_db("part_dst")
    L.execute(src, "CREATE TABLE m (id int, v int NOT NULL, note text, PRIMARY KEY (id)) "
                   "PARTITION BY RANGE (id)")
    L.execute(src, "CREATE TABLE m_1 PARTITION OF m FOR VALUES FROM (0) TO (1000)")
    L.execute(src, "CREATE TABLE m_2 PARTITION OF m FOR VALUES FROM (1000) TO (2000)")
    L.execute(src, "INSERT INTO m SELECT g, g, 'n' FROM generate_series(1, 1500) g")
    wd = L.Workdir("partitions")
    cfg = L.sync_config(wd, {"src": src, "dst": dst},
                        {"p": {"source": {"db": "src", "table": "m"},
                               "target": {"db": "dst", "table": "m", "create": True},
                               "mode": "realtime"}})
    L.sync(t, cfg, "p")
    same(src, dst, "after the first sync")
    return src, dst, cfg


def notified(src, write):
    """Whether `write` (autocommit) sends a NOTIFY on m's channel, as a listener sees it."""
    c = L.connect(src)
    c.autocommit = True
    try:
        with c.cursor() as cur:
            cur.execute("LISTEN lockstep_cdc_%d" % L.scalar(src, "SELECT 'm'::regclass::oid::bigint"))
        L.execute(src, write)

        def got():
            c.poll()
            return bool(c.notifies)
        return L.wait_for(got, 10, 0.1)
    finally:
        c.close()


def test_direct_writes(src, dst, cfg):
    t.check(notified(src, "INSERT INTO m_2 VALUES (1700, 1, 'wake')"),
            "a write straight into a partition wakes the job (NOTIFY)")
    for i in range(3):
        L.execute(src, "INSERT INTO m_2 VALUES (%s, 1, 'direct')", (1600 + i,))
    L.execute(src, "UPDATE m_1 SET v = v + 1 WHERE id BETWEEN 10 AND 19")
    L.execute(src, "DELETE FROM m_2 WHERE id BETWEEN 1100 AND 1104")
    catch_up(cfg, "writes straight into partitions", False)
    same(src, dst, "writes straight into partitions are captured")


def test_create_partition_of(src, dst, cfg):
    L.execute(src, "CREATE TABLE m_4 PARTITION OF m FOR VALUES FROM (3000) TO (4000)")
    L.execute(src, "INSERT INTO m SELECT g, g, 'm_4' FROM generate_series(3000, 3019) g")
    L.execute(src, "INSERT INTO m_4 VALUES (3500, 1, 'direct')")
    catch_up(cfg, "CREATE TABLE ... PARTITION OF, then inserts", False)
    same(src, dst, "rows of a new partition reach the target")
    t.check(("m_4", "lockstep_cdc_part_truncate") in our_triggers(src),
            "the new partition got a TRUNCATE trigger", our_triggers(src))


def test_attach_with_rows(src, dst, cfg):
    L.execute(src, "CREATE TABLE m_3 (id int PRIMARY KEY, v int NOT NULL, note text)")
    L.execute(src, "INSERT INTO m_3 SELECT g, g, 'attached' FROM generate_series(2000, 2049) g")
    L.execute(src, "ALTER TABLE m ATTACH PARTITION m_3 FOR VALUES FROM (2000) TO (3000)")
    err = catch_up(cfg, "ATTACH PARTITION of a table holding rows", True)
    t.check("partition public.m_3 was attached to public.m" in err,
            "the warning names the attached partition", err[-3000:])
    same(src, dst, "the attached partition's rows reach the target")


def test_detach(src, dst, cfg):
    L.execute(src, "ALTER TABLE m DETACH PARTITION m_2")
    err = catch_up(cfg, "DETACH PARTITION", True)
    t.check("partition public.m_2 was detached from public.m" in err,
            "the warning names the detached partition", err[-3000:])
    same(src, dst, "the detached partition's rows leave the target")
    t.eq([x for x in our_triggers(src) if x[0] == "m_2"], [],
         "the detached table keeps no lockstep trigger")


def test_drop_partition(src, dst, cfg):
    L.execute(src, "DROP TABLE m_3")
    catch_up(cfg, "DROP TABLE of a partition", True)
    same(src, dst, "the dropped partition's rows leave the target")


def test_truncate_partition(src, dst, cfg):
    L.execute(src, "TRUNCATE m_1")
    catch_up(cfg, "TRUNCATE of one partition", True)
    same(src, dst, "a partition's TRUNCATE reaches the target")
    L.execute(src, "INSERT INTO m_1 VALUES (5, 5, 'after')")
    catch_up(cfg, "a write after the TRUNCATE", False)
    same(src, dst, "capture goes on after the TRUNCATE")


def test_partition_disabled(src, dst, cfg):
    L.execute(src, "ALTER TABLE m_1 DISABLE TRIGGER ALL")
    L.execute(src, "INSERT INTO m_1 VALUES (6, 6, 'off')")
    L.execute(src, "UPDATE m SET v = v + 1 WHERE id = 5")
    L.execute(src, "ALTER TABLE m_1 ENABLE TRIGGER ALL")
    err = catch_up(cfg, "DISABLE/ENABLE TRIGGER ALL on one partition", True)
    t.check("on public.m_1" in err, "the warning names the partition", err[-3000:])
    same(src, dst, "the writes made while the partition's triggers were off reach the target")
    modes = L.execute(src, "SELECT tgname::text, tgenabled::text FROM pg_trigger "
                           "WHERE tgrelid = 'm_1'::regclass AND tgname LIKE 'lockstep%%'")
    t.check(len(modes) == 3 and all(m == "A" for _, m in modes),
            "the partition's triggers are ENABLE ALWAYS again", modes)


def test_uninstall(src, cfg):
    rc, out, err = L.run_lockstep(["uninstall", "p"], cfg)
    t.eq(rc, 0, "uninstall p exits 0", L.show(rc, out, err))
    t.eq(our_triggers(src), [], "no lockstep trigger is left on m or its partitions")


def test_not_owner():
    src, dst = L.new_db("part_role_src"), L.new_db("part_role_dst")
    L.execute(src, "CREATE TABLE m (id int, v int NOT NULL, note text, PRIMARY KEY (id)) "
                   "PARTITION BY RANGE (id)")
    L.execute(src, "CREATE TABLE m_1 PARTITION OF m FOR VALUES FROM (0) TO (1000)")
    L.execute(src, "INSERT INTO m SELECT g, g, 'n' FROM generate_series(1, 500) g")
    role = "lk_part_role_%d" % os.getpid()
    dbname = src.rsplit("/", 1)[1]
    L.execute(L.pg_url(), "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') "
                          "THEN CREATE ROLE \"%s\" LOGIN; END IF; END$$" % (role, role))
    try:
        for g in ('GRANT CONNECT, CREATE ON DATABASE "%s" TO "%s"' % (dbname, role),
                  'GRANT USAGE ON SCHEMA public TO "%s"' % role,
                  'GRANT SELECT, TRIGGER ON m TO "%s"' % role):
            L.execute(src, g)
        role_src = src.replace("postgresql://postgres@", "postgresql://%s@" % role)
        wd = L.Workdir("partitions_role")
        cfg = L.sync_config(wd, {"src": role_src, "dst": dst},
                            {"p": {"source": {"db": "src", "table": "m"},
                                   "target": {"db": "dst", "table": "m", "create": True},
                                   "mode": "realtime"}})
        rc, out, err = L.run_lockstep(["sync", "p", "--json"], cfg)
        t.eq(rc, 1, "not the owner, no TRIGGER on m_1: the run exits 1", L.show(rc, out, err))
        t.check('GRANT TRIGGER ON m_1 TO "%s"' % role in err,
                "not the owner, no TRIGGER on m_1: the message names the GRANT", L.show(rc, out, err))
        L.execute(src, 'GRANT TRIGGER ON m_1 TO "%s"' % role)
        L.sync(t, cfg, "p")
        same(src, dst, "not the owner: after the first sync")
        L.execute(src, "CREATE TABLE m_2 PARTITION OF m FOR VALUES FROM (1000) TO (2000)")
        L.execute(src, "INSERT INTO m SELECT g, g, 'm_2' FROM generate_series(1000, 1009) g")
        err = catch_up(cfg, "not the owner: CREATE TABLE ... PARTITION OF, then inserts", False)
        t.check("cannot see a TRUNCATE of partition public.m_2" in err,
                "not the owner: it warns that m_2's TRUNCATE cannot be seen", err[-3000:])
        same(src, dst, "not the owner: rows of a new partition reach the target")
        L.execute(src, "CREATE TABLE m_3 (id int PRIMARY KEY, v int NOT NULL, note text)")
        L.execute(src, "INSERT INTO m_3 SELECT g, g, 'attached' FROM generate_series(2000, 2009) g")
        L.execute(src, "ALTER TABLE m ATTACH PARTITION m_3 FOR VALUES FROM (2000) TO (3000)")
        catch_up(cfg, "not the owner: ATTACH PARTITION of a table holding rows", True)
        same(src, dst, "not the owner: the attached partition's rows reach the target")
    finally:
        try:
            L.drop_one(src)
            L.execute(L.pg_url(), 'DROP ROLE IF EXISTS "%s"' % role)
        except Exception as e:  # noqa: BLE001 - cleanup only
            t.log("cleanup of role %s: %s" % (role, e))


SRC, DST, CFG = setup()
t.case(test_direct_writes, SRC, DST, CFG)
t.case(test_create_partition_of, SRC, DST, CFG)
t.case(test_attach_with_rows, SRC, DST, CFG)
t.case(test_detach, SRC, DST, CFG)
t.case(test_drop_partition, SRC, DST, CFG)
t.case(test_truncate_partition, SRC, DST, CFG)
t.case(test_partition_disabled, SRC, DST, CFG)
t.case(test_uninstall, SRC, CFG)
t.case(test_not_owner)
t.finish()
