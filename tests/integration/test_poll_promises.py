"""Poll mode says what protects a late commit, and keeps that promise (issue 17, cases 5, 6).

A late commit: a transaction that took its cursor value (now()) before a poll and commits
after it. On a PostgreSQL primary that can see every open transaction, the position
never passes the start of one (the cap); elsewhere only `lookback` protects, and
check-config and the run say so.

Cases:
- prepared: a two-phase transaction writes a row, a committed row follows, the
  transaction PREPAREs seconds after it began, a poll runs, COMMIT PREPARED, the next
  poll must bring the row (the cap used to take the PREPARE time as the start). Once
  with a position from before the transaction, once with the prepared transaction
  already there at the job's first run. A cluster of the test's own, for
  max_prepared_transactions.
- standby: a hot standby made with pg_basebackup -R streams from a primary; check-config
  on a poll job reading the standby says the cap does not apply and lookback protects
  (it used to promise the cursor never passes an open transaction), the run logs it
  once, and a row the primary commits late arrives through lookback; with lookback 0
  check-config says such a row is missed, and verify finds the one that was.
- no privilege / track_activities off: the same honesty on a primary, for a role without
  pg_read_all_stats and for a writer session that hides its transaction.
Every data outcome is judged by the md5 oracle (lktest.pg_md5).
"""
import os
import shutil
import socket
import subprocess
import tempfile

import lktest as L

L.require_pg()
t = L.Suite("test_poll_promises")
COLS = L.USERS_COLUMNS
NOT_UPDATED = ", ".join(c for c in COLS if c != "updated_at")


def poll_job(lookback=None):
    j = {"source": {"db": "src", "table": "users", "key": ["id"]},
         "target": {"db": "dst", "table": "users", "create": True},
         "mode": "poll", "cursor": "updated_at", "batch": 500}
    if lookback:
        j["lookback"] = lookback
    return j


def insert_sql(lo, hi, ts="now()"):
    return "INSERT INTO users (%s) SELECT %s, %s FROM (%s) s(%s)" % (
        ", ".join(COLS), NOT_UPDATED, ts, L.users_select_sql(lo, hi), ", ".join(COLS))


def seed(url, n=20):
    L.create_users_pg(url, n, updated_at_type="timestamptz")
    # Old cursor values: the rows written below are the newest.
    L.execute(url, "UPDATE users SET updated_at = '2023-01-01 00:00:00+00'::timestamptz "
                   "+ id * interval '1 minute'")


def same(src, dst, what, table="users"):
    a = L.pg_md5(src, "users", ["id"], COLS)
    b = L.pg_md5(dst, table, ["id"], COLS)
    return t.eq(b, a, "md5 oracle: %s" % what)


def clock_past(url, ts, seconds):
    """Waits until the server's clock is `seconds` past `ts` (a condition, not a sleep)."""
    ok = L.wait_for(lambda: L.scalar(url, "SELECT clock_timestamp() > %s::timestamptz + "
                                          "make_interval(secs => %s)", (ts, seconds)),
                    deadline=60, step=0.1)
    t.check(ok, "the server's clock moved %s s past %s" % (seconds, ts))


def cap_warnings(stderr, words):
    return [l for l in stderr.splitlines() if "level=warn" in l and words in l]


# ---------------------------------------------------------------------------
# case 6: prepared transactions


def late_prepared(cl, first_run_before):
    """A prepared transaction whose row's cursor value (its start) is seconds before its
    PREPARE; a committed row with a later value is polled while it is prepared."""
    tag = "before" if first_run_before else "first"
    src = cl.url()
    L.execute(src, "DROP DATABASE IF EXISTS p_src_%s" % tag)
    L.execute(src, "DROP DATABASE IF EXISTS p_dst_%s" % tag)
    L.execute(src, "CREATE DATABASE p_src_%s" % tag)
    L.execute(src, "CREATE DATABASE p_dst_%s" % tag)
    src, dst = cl.url("p_src_%s" % tag), cl.url("p_dst_%s" % tag)
    seed(src)
    # No look-back: only the cap stands between the prepared row and its loss.
    cfg = L.sync_config(L.Workdir("poll_prep_" + tag), {"src": src, "dst": dst},
                        {"users": poll_job()})
    if first_run_before:
        L.sync(t, cfg, "users")
        same(src, dst, "first poll (%s)" % tag)

    w = L.psycopg2.connect(src)  # not autocommit: one transaction, later prepared
    gid = "lk_t6_%s_%d" % (tag, os.getpid())
    try:
        cur = w.cursor()
        cur.execute(insert_sql(5001, 5001))  # cursor value: this transaction's start
        cur.execute("SELECT now()::text")
        start = cur.fetchone()[0]
        clock_past(src, start, 2.5)
        L.execute(src, insert_sql(5002, 5002))  # committed, cursor value start + 2.5 s
        clock_past(src, start, 5)
        cur.execute("PREPARE TRANSACTION '%s'" % gid)
        t.eq(L.scalar(src, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = %s", (gid,)), 1,
             "the transaction is prepared, 5 s after it began")
        rc, s, err = L.sync(t, cfg, "users")
        t.eq(L.count_rows(dst, "users", "id IN (5001, 5002)"), 1,
             "the poll while it is prepared copies only the committed row (%s)" % tag)
        t.check("keeps the position at or below" in err, "the run says the prepared "
                "transaction holds the position", L.show(rc, "", err))
        L.execute(src, "COMMIT PREPARED '%s'" % gid)
    finally:
        w.close()
    L.sync(t, cfg, "users")
    t.eq(L.count_rows(dst, "users", "id = 5001"), 1,
         "the prepared transaction's row arrives with the poll after COMMIT PREPARED (%s)" % tag)
    same(src, dst, "prepared transaction (%s)" % tag)
    # The position moves on once nothing is prepared: a later row, then nothing new.
    L.execute(src, insert_sql(5003, 5003))
    L.sync(t, cfg, "users")
    same(src, dst, "a later row after the prepared one (%s)" % tag)


def prepare(url, gid):
    """A transaction that writes elsewhere, left prepared as `gid`."""
    c = L.psycopg2.connect(url)
    try:
        cur = c.cursor()
        cur.execute("INSERT INTO side VALUES (1)")
        cur.execute("PREPARE TRANSACTION '%s'" % gid)
    finally:
        c.close()


def prepared_every_run(cl):
    """A different transaction is prepared at every run (two-phase commit all day long):
    the position still moves on, one run behind, instead of staying where the first
    prepared transaction found it."""
    L.execute(cl.url(), "CREATE DATABASE p_src_live")
    L.execute(cl.url(), "CREATE DATABASE p_dst_live")
    src, dst = cl.url("p_src_live"), cl.url("p_dst_live")
    seed(src)
    L.execute(src, "CREATE TABLE side (x int)")
    cfg = L.sync_config(L.Workdir("poll_prep_live"), {"src": src, "dst": dst},
                        {"users": poll_job()})
    L.sync(t, cfg, "users")
    gids = ["lk_live_%d_%d" % (i, os.getpid()) for i in range(3)]
    prepare(src, gids[0])
    L.execute(src, insert_sql(6001, 6001))
    clock_past(src, L.scalar(src, "SELECT updated_at::text FROM users WHERE id = 6001"), 1.5)
    L.sync(t, cfg, "users")  # R1: gids[0] is new: held at the cap the last run saw
    L.execute(src, "COMMIT PREPARED '%s'" % gids[0])
    prepare(src, gids[1])
    L.execute(src, insert_sql(6002, 6002))
    L.sync(t, cfg, "users")  # R2: gids[1] is new: held at the cap R1 saw, past row 6001
    L.execute(src, "COMMIT PREPARED '%s'" % gids[1])
    prepare(src, gids[2])
    rc, s, err = L.sync(t, cfg, "users")  # R3: reads from R2's position
    t.eq(s and s.get("rowsRead"), 1, "with a new transaction prepared at every run the "
         "position moves on: the third run reads only row 6002, not 6001 again")
    L.execute(src, "COMMIT PREPARED '%s'" % gids[2])
    L.sync(t, cfg, "users")
    same(src, dst, "a transaction prepared at every run")


def test_prepared_transactions():
    cl = L.Cluster("poll_2pc")
    try:
        L.execute(cl.url(), "ALTER SYSTEM SET max_prepared_transactions = 10")
        cl.stop_fast()
        cl.start()
        t.eq(L.scalar(cl.url(), "SHOW max_prepared_transactions"), "10",
             "the test's cluster allows prepared transactions")
        late_prepared(cl, True)
        late_prepared(cl, False)
        prepared_every_run(cl)
    finally:
        for gid, db in L.execute(cl.url(), "SELECT gid, database FROM pg_prepared_xacts"):
            L.execute(cl.url(db), "ROLLBACK PREPARED '%s'" % gid)
        cl.destroy()


# ---------------------------------------------------------------------------
# case 5: a hot standby


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def as_owner(cmd):
    """cmd as the clusters' owner (`postgres` when we are root, as pg-test-env.sh does)."""
    return ["runuser", "-u", "postgres", "--"] + cmd if os.geteuid() == 0 else cmd


class Standby:
    """A hot standby of `primary` (an L.Cluster): pg_basebackup -R, streaming, own port."""

    def __init__(self, primary):
        self.dir = tempfile.mkdtemp(prefix="lk_cl_standby_")
        self.data = os.path.join(self.dir, "data")
        self.bindir = primary.bindir
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        p = subprocess.run(as_owner([os.path.join(self.bindir, "pg_basebackup"), "-h", "127.0.0.1",
                                     "-p", str(primary.port), "-U", "postgres", "-D", self.data,
                                     "-R", "-X", "stream", "-c", "fast"]),
                           capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            raise RuntimeError("pg_basebackup failed: %s%s" % (p.stdout, p.stderr))
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
            f.write("port = %d\nhot_standby = on\n" % self.port)
        p = subprocess.run(as_owner([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l",
                                     os.path.join(self.dir, "pg.log"), "-w", "-t", "60", "start"]),
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            log = open(os.path.join(self.dir, "pg.log")).read()[-3000:]
            raise RuntimeError("standby did not start: %s%s\n%s" % (p.stdout, p.stderr, log))

    def url(self, db="postgres"):
        return "postgresql://postgres@127.0.0.1:%d/%s" % (self.port, db)

    def destroy(self):
        subprocess.run(as_owner([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m",
                                 "immediate", "-w", "-t", "60", "stop"]), capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def check_config(cfg):
    rc, out, err = L.run_lockstep(["check-config"], cfg)
    t.eq(rc, 0, "check-config exits 0", L.show(rc, out, err))
    return out


def test_hot_standby():
    primary = L.Cluster("poll_primary")
    standby = None
    try:
        L.execute(primary.url(), "CREATE DATABASE app")
        seed(primary.url("app"))
        standby = Standby(primary)
        rep = standby.url("app")
        t.check(L.wait_for(lambda: L.scalar(rep, "SELECT pg_is_in_recovery()") and
                           L.count_rows(rep, "users") == 20), "the standby streams the table")
        dst = L.new_db("poll_standby_dst")
        cfg = L.sync_config(L.Workdir("poll_standby"), {"src": rep, "dst": dst},
                            {"users": poll_job("1m"),
                             "users0": dict(poll_job(), target={"db": "dst", "table": "users0",
                                                                "create": True})})
        out = check_config(cfg)
        t.check("hot standby" in out and "lookback (60s) is what protects" in out
                and "never passes" not in out,
                "check-config: on a standby the cap does not apply; lookback protects", out)
        t.check("lookback is 0: a row committed after a poll with an older cursor value is "
                "missed" in out, "check-config: with lookback 0 on a standby, a late row is "
                "missed, said out loud", out)

        rc, s, err = L.sync(t, cfg, "users")
        t.eq(len(cap_warnings(err, "hot standby")), 1, "the run logs once that the cap does not "
             "apply on a standby", err)
        L.sync(t, cfg, "users0")
        # A late commit on the primary: the row's cursor value is seconds before it commits,
        # and a row committed in between is polled from the standby first.
        w = L.psycopg2.connect(primary.url("app"))
        try:
            cur = w.cursor()
            cur.execute(insert_sql(5001, 5001))
            cur.execute("SELECT now()::text")
            start = cur.fetchone()[0]
            clock_past(primary.url("app"), start, 2.5)
            L.execute(primary.url("app"), insert_sql(5002, 5002))
            t.check(L.wait_for(lambda: L.count_rows(rep, "users", "id = 5002") == 1),
                    "the standby replays the committed row")
            L.sync(t, cfg, "users")
            L.sync(t, cfg, "users0")
            t.eq(L.count_rows(dst, "users", "id IN (5001, 5002)"), 1,
                 "the poll during the open transaction sees only the committed row")
            w.commit()
        finally:
            w.close()
        t.check(L.wait_for(lambda: L.count_rows(rep, "users", "id = 5001") == 1),
                "the standby replays the late row")
        rc, s, err = L.sync(t, cfg, "users")
        t.eq(L.count_rows(dst, "users", "id = 5001"), 1, "lookback brings the late row from the "
             "standby")
        same(rep, dst, "poll from a hot standby with lookback")
        L.sync(t, cfg, "users0")
        # lookback 0: the row is missed, as check-config said; verify says so too.
        t.eq(L.count_rows(dst, "users0", "id = 5001"), 0, "with lookback 0 the late row is missed "
             "(as check-config says)")
        L.verify(t, cfg, "users0", expect=1)
    finally:
        if standby:
            standby.destroy()
        primary.destroy()


# ---------------------------------------------------------------------------
# a role that cannot see other sessions, a session that hides its transaction


def test_no_privilege_and_untracked():
    src, dst = L.new_db("poll_prom_src"), L.new_db("poll_prom_dst")
    seed(src)
    role = "lk_poll_noprivs_%d" % os.getpid()
    L.execute(L.pg_url(), "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') "
                          "THEN CREATE ROLE \"%s\" LOGIN; END IF; END$$" % (role, role))
    L.execute(src, 'GRANT SELECT ON users TO "%s"' % role)
    weak = src.replace("postgresql://postgres@", "postgresql://%s@" % role)
    cfg = L.sync_config(L.Workdir("poll_noprivs"), {"src": weak, "dst": dst},
                        {"users": poll_job("5m")})
    out = check_config(cfg)
    t.check("pg_read_all_stats" in out and "lookback (300s) is what protects" in out,
            "check-config: without pg_read_all_stats the cap does not apply; lookback protects",
            out)
    rc, s, err = L.sync(t, cfg, "users")
    t.eq(len(cap_warnings(err, "pg_read_all_stats")), 1, "the run logs once that the role "
         "cannot see other sessions' transactions", err)
    same(src, dst, "poll without pg_read_all_stats")

    # A superuser session may turn track_activities off: its transaction's start is hidden.
    cfg2 = L.sync_config(L.Workdir("poll_untracked"), {"src": src, "dst": dst},
                         {"users": poll_job()})
    w = L.psycopg2.connect(src)
    try:
        cur = w.cursor()
        cur.execute("SET track_activities = off")
        cur.execute(insert_sql(5001, 5001))
        cur.execute("SELECT now()::text")
        start = cur.fetchone()[0]
        clock_past(src, start, 2.5)
        out = check_config(cfg2)
        t.check("track_activities off" in out and "lookback is 0" in out
                and "never passes" not in out,
                "check-config: a session with track_activities off voids the cap, said out loud",
                out)
        rc, s, err = L.sync(t, cfg2, "users")
        t.eq(len(cap_warnings(err, "track_activities off")), 1, "the run logs it once", err)
        w.rollback()
    finally:
        w.close()
    out = check_config(cfg2)
    t.check("every open transaction is visible" in out and "database clock" in out,
            "check-config: once every transaction is visible, the cap applies, for cursor values "
            "from the database clock", out)


t.case(test_prepared_transactions)
t.case(test_hot_standby)
t.case(test_no_privilege_and_untracked)
t.finish()
