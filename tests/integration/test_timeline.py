"""Real-time mode after restores: the timeline guard (issue 17, cases 3 and 4;
docs/realtime.md, "Restores and failovers").

The test starts two clusters of its own with pg-test-env.sh (restoring the shared one
would break the tests beside it), both with synchronous_commit = on: the source (database
app) and the target (database dst). Every write below is its own transaction. Judged by
the md5 oracle (each server digests its own rows) and by the log.

  1. An idle table: 40 transactions on a table nobody captures move the source's horizon;
     two catch-ups of job `users` (`lockstep sync users`) see no entry of theirs. The
     consumer registry never runs ahead of the target's position (it hears only what the
     target committed), and the second catch-up resumes (no fresh snapshot).
  2. Upgrading: the target's position loses its "src" (as an earlier lockstep wrote it)
     and the registry is moved to the current horizon (as earlier versions moved it over
     windows without entries): the next catch-up resumes without a fresh snapshot, applies
     3 new rows, and its position has "src" again.
  3. Case 3, the source goes back: the source cluster is stopped and its data folder copied
     (a physical backup), then 60 writes (inserts, updates, deletes) are synced; the copy
     is put back (stop, replace, start) and 15 new writes are made there. The next catch-up
     says the source went back (its transaction counter is behind the position), takes a
     fresh snapshot with the sweep, and ends equal to the restored source. (Before the
     guard: exit 0, the 15 writes never applied and the 60 lost ones kept.)
  4. Case 4, the target goes back: job `orders` is synced, the target cluster is copied
     while stopped, 45 writes are synced (the registry hears them, prune deletes their
     entries), the target's copy is put back and 5 more rows written. The next catch-up
     says the target's position is behind the consumer registry, takes a fresh snapshot
     with the sweep, and ends equal. (Before: exit 0, the 45 writes missing for good.)
  5. The same as 3 under `lockstep run`: the daemon streams `users`, the source is copied
     while stopped and restored after 60 more writes; the daemon reconnects, re-snapshots
     once and converges, /metrics counts
     lockstep_resnapshots_total{job="users",reason="source_went_back"} 1, and /api/health
     has a `resnapshots` check in warn naming it; SIGTERM stops it with exit 0.
  6. A failover to an asynchronous standby: a standby of the source (pg_basebackup -R)
     catches up and stops; 60 writes are synced from the primary, which then crashes; the
     standby is started and promoted (timeline 2) without them, the job is pointed at it
     and 15 writes are made there. The next catch-up says the source is on another
     timeline, re-snapshots with the sweep and ends equal to the promoted standby.
     (Before: exit 0, the 15 writes never applied, the 60 kept.)

LK_TIMELINE_CASES=NAME,... (idle_and_upgrade, source_back, target_back, daemon, failover)
runs only those, each on the state the first catch-up left (to see one case alone on an
older build).
"""
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile

import lktest as L
import rtwriters as W

L.require_pg()
t = L.Suite("test_timeline")

DEADLINE = 120  # seconds to wait for a convergence (never asserted as timing)


sql = L.sql  # lktest.sql: each statement in its own transaction


def md5(url, table):
    return L.pg_md5(url, table, ["id"])


def same(src, dst, table, what):
    return t.eq(md5(dst, table), md5(src, table), "md5 oracle: %s" % what)


def data_dir(cl):
    return os.path.join(cl.dir, "data")


def backup(cl, dest):
    """A physical copy of a stopped cluster's data folder (ownership kept)."""
    cl.stop_fast()
    try:
        subprocess.run(["cp", "-a", data_dir(cl), dest], check=True)
    finally:
        cl.start()


def restore(cl, copy):
    """Puts a copy made by backup() back in place of the cluster's data folder."""
    cl.stop_fast()
    shutil.rmtree(data_dir(cl))
    subprocess.run(["cp", "-a", copy, data_dir(cl)], check=True)
    cl.start()


def position(dst, job):
    rows = L.execute(dst, "SELECT pos::text FROM lockstep_sync.position WHERE job = %s", (job,))
    return json.loads(rows[0][0]) if rows else {}


def registry(src, job):
    rows = L.execute(src, "SELECT horizon::text::bigint, COALESCE(xid::text::bigint, 0), "
                          "COALESCE(seq, 0) FROM lockstep_cdc.consumers WHERE split_part(job, '@', 1) = %s",
                     (job,))  # the row's name is JOB@DEPLOYMENT
    return tuple(rows[0]) if rows else None


def order_key(h, xid, seq):
    """What a PostgreSQL changelog position has applied, as one ordered pair (position.c)."""
    return (xid, seq) if xid > 0 and xid >= h else (h, 0)


def registry_not_ahead(src, dst, job, what):
    p, r = position(dst, job), registry(src, job)
    pk = order_key(int(p.get("h", 0)), int(p.get("xid", 0)), int(p.get("seq", 0)))
    t.check(r is not None and order_key(*r) <= pk,
            "%s: the consumer registry (%s) is not ahead of the target's position %s" % (what, r, pk))


def catch_up(cfg, job, what):
    """`lockstep sync JOB` (a catch-up); returns its stderr."""
    rc, _, err = L.sync(t, cfg, job)
    t.log("%s: exit %s" % (what, rc))
    return err


def users_writes(lo, n_ins, n_upd, n_del, tag):
    """Inserts n_ins fresh ids from lo, updates n_upd and deletes n_del old ones."""
    s = ["INSERT INTO users VALUES (%d, 'new %s %d')" % (i, tag, i) for i in range(lo, lo + n_ins)]
    s += ["UPDATE users SET v = 'upd %s %d' WHERE id = %d" % (tag, i, i) for i in range(1, n_upd + 1)]
    s += ["DELETE FROM users WHERE id = %d" % i for i in range(90, 90 - n_del, -1)]
    return s


def test_idle_and_upgrade(src, dst, cfg):
    # 1. windows without entries of ours
    sql(src, *["INSERT INTO noise VALUES (%d)" % i for i in range(40)])
    err1 = catch_up(cfg, "users", "idle catch-up 1")
    sql(src, *["INSERT INTO noise VALUES (%d)" % i for i in range(40, 80)])
    registry_not_ahead(src, dst, "users", "after catch-ups with empty windows")
    err2 = catch_up(cfg, "users", "idle catch-up 2")
    t.check("fresh snapshot" not in err1 + err2 and "snapshot first" not in err1 + err2,
            "idle catch-ups resume (no fresh snapshot)", (err1 + err2)[-3000:])
    registry_not_ahead(src, dst, "users", "after the second idle catch-up")
    same(src, dst, "users", "after idle catch-ups")

    # 2. a position as earlier versions wrote it, and their registry ahead of it
    sql(dst, "UPDATE lockstep_sync.position SET pos = (pos::jsonb - 'src')::text WHERE job = 'users'")
    sql(src, "UPDATE lockstep_cdc.consumers SET horizon = "
             "pg_snapshot_xmin(pg_current_snapshot()), xid = NULL, seq = NULL "
             "WHERE split_part(job, '@', 1) = 'users'")
    t.check("src" not in position(dst, "users"), "the position reads as an older version's")
    sql(src, *["INSERT INTO users VALUES (%d, 'after upgrade')" % i for i in range(1001, 1004)])
    err = catch_up(cfg, "users", "catch-up after the upgrade")
    t.check("fresh snapshot" not in err and "snapshot first" not in err,
            "an older position resumes without a fresh snapshot", err[-3000:])
    t.check("src" in position(dst, "users"), "the next commit writes \"src\" into the position",
            json.dumps(position(dst, "users")))
    same(src, dst, "users", "after the upgrade")


def test_source_back(S, src, dst, cfg, wd):
    copy = wd.file("source_copy")
    backup(S, copy)
    sql(src, *users_writes(2000, 40, 15, 5, "lost"))
    catch_up(cfg, "users", "catch-up of 60 writes after the copy")
    same(src, dst, "users", "before the restore")
    pos_before = position(dst, "users")
    restore(S, copy)
    sql(src, *users_writes(3000, 10, 5, 0, "after restore"))
    next_xid = int(L.scalar(src, "SELECT pg_snapshot_xmax(pg_current_snapshot())::text"))
    t.log("restored source: next xid %d, the target's position %s" % (next_xid, pos_before))
    t.check(next_xid < int(pos_before.get("h", 0)),
            "the restored source's counter is behind the position (a precondition)")
    err = catch_up(cfg, "users", "catch-up after the source's restore")
    t.check(re.search(r"job users: the source's transaction counter \(next xid \d+\) is behind "
                      r"its position .*went back in time.*; taking a fresh snapshot, with the sweep",
                      err) is not None,
            "the catch-up says once that the source went back, and why", err[-3000:])
    t.eq(err.count("taking a fresh snapshot"), 1, "one fresh snapshot")
    same(src, dst, "users", "after the source went back: the target equals the restored source")
    t.eq(L.count_rows(dst, "users", "v LIKE 'new lost%'"), 0,
         "the rows the source lost are gone from the target (the sweep)")
    err = catch_up(cfg, "users", "catch-up after the re-snapshot")
    t.check("fresh snapshot" not in err, "the next catch-up resumes", err[-3000:])


def test_poll_source_back(S, src, dst, cfg, wd):
    """A poll job's source restored from a backup taken before its last run: rows updated
    after the backup went back to older versions with older cursor values, behind the
    job's cursor. The job sees the source went back, says so, and reads every row again:
    the target then equals the restored source on every key the source has; the rows
    inserted after the backup stay on the target (poll mode does not see deletes)."""
    sql(src, "UPDATE items SET v = 'before copy' WHERE id <= 5")
    catch_up(cfg, "items", "poll: catch-up before the copy")
    copy = wd.file("source_copy_poll")
    backup(S, copy)
    sql(src, "UPDATE items SET v = 'newer', updated_at = clock_timestamp() WHERE id <= 10",
        "INSERT INTO items SELECT i, 'lost', clock_timestamp() FROM generate_series(2000, 2009) i")
    catch_up(cfg, "items", "poll: catch-up after the copy")
    same(src, dst, "items", "poll: before the restore")
    nx = int(position(dst, "items").get("src", {}).get("nx", 0))
    t.check(nx > 0, "poll: the position records the source's next transaction id",
            json.dumps(position(dst, "items")))
    restore(S, copy)
    sql(src, "UPDATE items SET v = 'after restore', updated_at = clock_timestamp() WHERE id = 50")
    t.check(int(L.scalar(src, "SELECT pg_snapshot_xmax(pg_current_snapshot())::text")) < nx,
            "poll: the restored source's counter is behind the position (a precondition)")
    err = catch_up(cfg, "items", "poll: catch-up after the restore")
    t.check(re.search(r"level=warn .*job items: the source's transaction counter .* went back in "
                      r"time.*; reading every row again from the beginning", err) is not None,
            "poll: the catch-up says the source went back and that it reads every row again",
            err[-3000:])
    t.eq(L.pg_md5(dst, "items", ["id"], where="id < 2000"), L.pg_md5(src, "items", ["id"]),
         "md5 oracle: poll: every row the restored source has is equal on the target")
    t.eq(L.count_rows(dst, "items", "id >= 2000"), 10,
         "poll: the rows the restore removed stay on the target (poll mode sees no deletes)")
    err = catch_up(cfg, "items", "poll: the next catch-up")
    t.check("reading every row again" not in err, "poll: the next catch-up resumes", err[-3000:])


def test_target_back(T, src, dst, cfg, wd):
    sql(src, "CREATE TABLE orders (id int PRIMARY KEY, v text)",
        "INSERT INTO orders SELECT i, 'o' || i FROM generate_series(1, 100) i")
    catch_up(cfg, "orders", "orders: first catch-up (snapshot)")
    sql(src, *["UPDATE orders SET v = 'u1 %d' WHERE id = %d" % (i, i) for i in range(1, 11)])
    catch_up(cfg, "orders", "orders: catch-up before the target's copy")
    same(src, dst, "orders", "orders before the target's copy")
    copy = wd.file("target_copy")
    backup(T, copy)
    sql(src, *["INSERT INTO orders VALUES (%d, 'mid %d')" % (i, i) for i in range(200, 230)])
    sql(src, *["UPDATE orders SET v = 'u2 %d' WHERE id = %d" % (i, i) for i in range(11, 21)])
    sql(src, *["DELETE FROM orders WHERE id = %d" % i for i in range(95, 100)])
    catch_up(cfg, "orders", "orders: catch-up of 45 writes")
    same(src, dst, "orders", "orders before the target's restore")
    left = L.scalar(src, "SELECT count(*) FROM lockstep_cdc.changelog WHERE relid = 'orders'::regclass")
    t.log("orders: %d changelog entries left after the prune" % left)
    restore(T, copy)
    sql(src, *["INSERT INTO orders VALUES (%d, 'late %d')" % (i, i) for i in range(300, 305)])
    err = catch_up(cfg, "orders", "orders: catch-up after the target's restore")
    t.check(re.search(r"job orders: the target's position \(.*\) is behind what the source's "
                      r"consumer registry says it applied .*; taking a fresh snapshot, with the sweep",
                      err) is not None,
            "the catch-up says once that the target is behind the registry, and why", err[-3000:])
    same(src, dst, "orders", "orders after the target went back")


def http_get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def test_daemon(S, src, dst, cfg, wd):
    d = W.Daemon(cfg, wd.file("run.log"), {"LOCKSTEP_SHUTDOWN_GRACE": "10s"}).start()
    try:
        port = L.wait_for(lambda: re.search(r"HTTP API on http://[^:]+:(\d+)/", d.output()) or not d.alive(),
                          deadline=30, step=0.1)
        t.check(port and d.alive(), "the daemon logs the HTTP API's address", d.tail())
        port = int(port.group(1))
        sql(src, "INSERT INTO users VALUES (5000, 'daemon')")
        L.wait_for(lambda: md5(dst, "users") == md5(src, "users"), DEADLINE, 0.3)
        same(src, dst, "users", "the daemon streams")
        copy = wd.file("source_copy2")
        backup(S, copy)
        sql(src, *users_writes(6000, 40, 15, 5, "lost2"))
        L.wait_for(lambda: md5(dst, "users") == md5(src, "users"), DEADLINE, 0.3)
        same(src, dst, "users", "the daemon applied the writes made after the copy")
        restore(S, copy)
        sql(src, *users_writes(7000, 5, 3, 0, "after restore 2"))
        L.wait_for(lambda: md5(dst, "users") == md5(src, "users")
                   and "taking a fresh snapshot" in d.output(), DEADLINE, 0.3)
        same(src, dst, "users", "the daemon converges after the source went back")
        log = d.output()
        t.eq(log.count("taking a fresh snapshot"), 1, "the daemon re-snapshots once, saying why",
             d.tail())
        t.check("went back in time" in log, "the daemon's warning says the source went back", d.tail())
        code, text = http_get(port, "/metrics")
        t.check(code == 200 and 'lockstep_resnapshots_total{job="users",reason="source_went_back"} 1'
                in text, "/metrics counts the re-snapshot by job and reason",
                "\n".join(l for l in text.splitlines() if "resnapshot" in l))
        code, text = http_get(port, "/api/health")
        checks = {c["name"]: c for c in json.loads(text).get("checks", [])} if code == 200 else {}
        rs = checks.get("resnapshots", {})
        t.check(rs.get("status") == "warn" and "source_went_back" in rs.get("detail", ""),
                "/api/health's resnapshots check warns and names the reason", json.dumps(rs))
    finally:
        rc = d.term()
    t.eq(rc, 0, "SIGTERM stops the daemon with exit 0", d.tail())


def as_owner(cmd):
    """cmd as the clusters' owner (`postgres` when we are root, as pg-test-env.sh does)."""
    return ["runuser", "-u", "postgres", "--"] + cmd if os.geteuid() == 0 else cmd


class Standby:
    """A streaming standby of `primary` (an L.Cluster): pg_basebackup -R, its own port."""

    def __init__(self, primary):
        self.dir = tempfile.mkdtemp(prefix="lk_cl_tl_standby_")
        self.data = os.path.join(self.dir, "data")
        self.bindir = primary.bindir
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                  "-D", self.data, "-R", "-X", "stream", "-c", "fast")
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
            f.write("port = %d\nhot_standby = on\n" % self.port)
        self.ctl("-l", os.path.join(self.dir, "pg.log"), "-w", "-t", "60", "start")

    def _run(self, tool, *args):
        p = subprocess.run(as_owner([os.path.join(self.bindir, tool)] + list(args)),
                           capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            raise RuntimeError("%s %s failed: %s%s" % (tool, " ".join(args), p.stdout, p.stderr))

    def ctl(self, *args):
        self._run("pg_ctl", "-D", self.data, *args)

    def url(self, db="postgres"):
        return "postgresql://postgres@127.0.0.1:%d/%s" % (self.port, db)

    def destroy(self):
        subprocess.run(as_owner([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m",
                                 "immediate", "-w", "-t", "60", "stop"]), capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def test_failover(S, src, dst, cfg, wd, jobs):
    sb = Standby(S)
    try:
        lsn = L.scalar(src, "SELECT pg_current_wal_lsn()::text")
        t.check(L.wait_for(lambda: L.scalar(sb.url(), "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn",
                                            (lsn,)), 60), "the standby has caught up")
        sb.ctl("-m", "fast", "-w", "-t", "60", "stop")  # an asynchronous standby falls behind
        sql(src, *users_writes(8000, 40, 15, 5, "lost3"))
        catch_up(cfg, "users", "catch-up of 60 writes the standby lacks")
        same(src, dst, "users", "before the failover")
        S.stop_immediate()
        sb.ctl("-l", os.path.join(sb.dir, "pg.log"), "-w", "-t", "60", "start")
        sb.ctl("-w", "-t", "60", "promote")
        new_src = sb.url("app")
        cfg2 = L.sync_config(wd, {"src": new_src, "dst": dst}, jobs)
        sql(new_src, *users_writes(9000, 10, 5, 0, "after failover"))
        err = catch_up(cfg2, "users", "catch-up from the promoted standby")
        t.check(re.search(r"job users: the source is on timeline (\d+), its position was taken on "
                          r"timeline 1: .*; taking a fresh snapshot, with the sweep", err) is not None,
                "the catch-up says once that the source is on another timeline", err[-3000:])
        t.eq(err.count("taking a fresh snapshot"), 1, "one fresh snapshot")
        same(new_src, dst, "users", "after the failover: the target equals the promoted standby")
    finally:
        sb.destroy()


def main():
    S = L.Cluster("tl_src", sync_commit=True)
    T = L.Cluster("tl_dst", sync_commit=True)
    try:
        for cl, db in ((S, "app"), (T, "dst")):
            L.execute(cl.url(), "CREATE DATABASE %s" % db)
        src, dst = S.url("app"), T.url("dst")
        sql(src, "CREATE TABLE users (id int PRIMARY KEY, v text)",
            "INSERT INTO users SELECT i, 'u' || i FROM generate_series(1, 100) i",
            "CREATE TABLE noise (id int)",
            "CREATE TABLE items (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL)",
            "INSERT INTO items SELECT i, 'i' || i, '2026-01-01'::timestamptz + i * interval '1 s'"
            " FROM generate_series(1, 100) i")
        wd = L.Workdir("timeline")
        job = {"mode": "realtime", "batch": 50}
        jobs = {
            "users": dict(job, source={"db": "src", "table": "users", "key": ["id"]},
                          target={"db": "dst", "table": "users", "create": True, "deletes": "delete"}),
            "orders": dict(job, source={"db": "src", "table": "orders", "key": ["id"]},
                           target={"db": "dst", "table": "orders", "create": True, "deletes": "delete"})}
        jobs["items"] = {"mode": "poll", "cursor": "updated_at", "batch": 50,
                         "source": {"db": "src", "table": "items"},
                         "target": {"db": "dst", "table": "items", "create": True}}
        cfg = L.sync_config(wd, {"src": src, "dst": dst}, jobs)
        catch_up(cfg, "users", "first catch-up (snapshot)")
        same(src, dst, "users", "after the first catch-up")
        only = [c for c in os.environ.get("LK_TIMELINE_CASES", "").split(",") if c]
        for fn, args in ((test_idle_and_upgrade, (src, dst, cfg)),
                         (test_source_back, (S, src, dst, cfg, wd)),
                         (test_poll_source_back, (S, src, dst, cfg, wd)),
                         (test_target_back, (T, src, dst, cfg, wd)),
                         (test_daemon, (S, src, dst, cfg, wd)),
                         (test_failover, (S, src, dst, cfg, wd, jobs))):
            if not only or fn.__name__[len("test_"):] in only:
                t.case(fn, *args)
    finally:
        S.destroy()
        T.destroy()


main()
t.finish()
