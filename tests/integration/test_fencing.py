"""The fence, deterministically: a batch that carries an older epoch than the target's
position row is rejected by the target, whatever the timing.

`lockstep sync` of a snapshot job is frozen (LK_FAILPOINT=before_batch@K:stop: SIGSTOP just
before its K-th batch's target transaction) as a paused holder would be; meanwhile a newer
holder seals a newer epoch in the target (the test bumps the position row's epoch, as a
seal does); then the frozen run goes on. Its batch must be refused (the run fails, saying
it was fenced), the target must hold exactly the batches committed before the freeze, and
the position row must keep the newer epoch and the position it had. Then a new run (a
newer epoch again) resumes and ends equal to the source (md5 oracle for PostgreSQL, the
cross-engine oracle for SQLite). For a PostgreSQL target and an SQLite target.
"""
import os
import signal
import sqlite3

import lktest as L

L.require_pg()
t = L.Suite("test_fencing")
N, BATCH, K = 2000, 100, 4


def state(pid):
    """The process state letter from /proc (T: stopped), or None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def position(dst):
    """(epoch, pos) of job 'users' in the target's position table."""
    if L.is_sqlite(dst):
        c = sqlite3.connect(L.sqlite_path(dst))
        try:
            return c.execute("SELECT epoch, pos FROM lockstep_sync_position WHERE job = 'users'").fetchone()
        finally:
            c.close()
    rows = L.execute(dst, "SELECT epoch, pos FROM lockstep_sync.position WHERE job = 'users'")
    return rows[0] if rows else None


def seal_newer(dst):
    """What a newer holder's seal does: the position row's epoch goes up, its position stays."""
    if L.is_sqlite(dst):
        c = sqlite3.connect(L.sqlite_path(dst))
        try:
            c.execute("UPDATE lockstep_sync_position SET epoch = epoch + 1 WHERE job = 'users'")
            c.commit()
        finally:
            c.close()
    else:
        L.execute(dst, "UPDATE lockstep_sync.position SET epoch = epoch + 1 WHERE job = 'users'")


def stale_batch(kind):
    src = L.new_db("fence_src_" + kind)
    L.create_users_pg(src, N)
    wd = L.Workdir("fence_" + kind)
    dst = L.new_db("fence_dst") if kind == "pg" else "sqlite:" + wd.file("dst.db")
    cfg = L.sync_config(wd, {"src": src, "dst": dst},
                        {"users": {"source": {"db": "src", "table": "users"},
                                   "target": {"db": "dst", "table": "users", "create": True},
                                   "mode": "snapshot", "batch": BATCH}})
    p = L.start_lockstep(["sync", "users", "--json"], cfg, env={"LK_FAILPOINT": "before_batch@%d:stop" % K})
    try:
        t.check(L.wait_for(lambda: state(p.pid) in ("T", None), deadline=120, step=0.05) and state(p.pid) == "T",
                "%s: the run is frozen before its batch %d" % (kind, K), state(p.pid))
        committed = L.count_rows(dst, "users")
        before = position(dst)
        t.eq(committed, (K - 1) * BATCH, "%s: the target holds the %d batches committed before the freeze"
             % (kind, K - 1))
        t.check(before is not None, "%s: the target has the job's position row" % kind)
        seal_newer(dst)
        sealed = position(dst)
        p.send_signal(signal.SIGCONT)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    t.check(p.returncode not in (0, None), "%s: the woken run fails (exit %s)" % (kind, p.returncode),
            L.show(p.returncode, out, err))
    t.check("newer epoch" in err or "fenced" in err, "%s: it says it was fenced" % kind, L.show(p.returncode, out, err))
    t.eq(L.count_rows(dst, "users"), committed, "%s: the stale batch wrote nothing to the target" % kind)
    t.eq(position(dst), sealed, "%s: the newer epoch and its position are kept" % kind)

    rc, s, err = L.sync(t, cfg, "users")
    t.eq(rc, 0, "%s: a new run (newer epoch) succeeds" % kind, err)
    if kind == "pg":
        cols = [c for c, _ in L.pg_columns(src, "users")]
        t.eq(L.pg_md5(dst, "users", ["id"], cols), L.pg_md5(src, "users", ["id"], cols),
             "pg: md5 oracle after the new run")
    else:
        a = L.rows_canonical(src, "users", ["id"])
        b = L.rows_canonical(dst, "users", ["id"])
        diff = L.compare_rows(a, b)
        t.eq(diff, [], "sqlite: cross-engine oracle after the new run", L.describe_diff(a, b, diff))
    t.check(position(dst)[0] > sealed[0], "%s: the new run's epoch is above the sealed one (%s > %s)"
            % (kind, position(dst)[0], sealed[0]))


for k in ("pg", "sqlite"):
    t.case(stale_batch, k)
t.finish()
