"""`lockstep run`: the scheduler, overlap, misfire, exec supervision, SIGHUP, memory, shutdown.

Cases (each on its own databases in the shared cluster and its own state store):

- no_overlap (the acceptance test): a `sql` job every 1 s whose statement sleeps 2.5 s
  and then records its execution as tstzrange(transaction start, clock_timestamp()) in a
  table with EXCLUDE USING gist (job WITH =, during WITH &&): a second copy running at
  the same time would fail on the constraint. After ~20 s: enough executions, no failed
  run, the fires that came while a run was going are recorded as `skipped` runs, the
  executions and the recorded runs never overlap (checked again in Python), and the
  "80% of its interval" warning was logged. Beside it, the same job with `overlap:
  queue`: consecutive runs start back to back (one run waited), still never overlapping,
  with fewer skips per executed run (and still some: at most one run waits).
- exec_progress: an exec job's JSON progress lines reach lockstep_runs while it runs
  (progress 40, stage articles, rows_read 400, total_estimate 1000) and at its end
  (succeeded, 1000/1000); LOCKSTEP_RUN_ID and LOCKSTEP_FENCING_TOKEN equal the run's id
  and epoch. A job with `timeout: 1s` is recorded failed with a message naming the
  timeout and its background child is killed with it. A non-zero exit is failed with
  "exited with status 3". A cron job `schedule: "*/2 * * * * *"` runs on even seconds.
- misfire_and_persistence: a job every 1 h keeps its next fire time in
  lockstep_schedules across restarts (not pushed back); with the stored time 3 h in the
  past, `misfire: once` runs once at start, `misfire: skip` does not run and moves the
  next fire to the future, `misfire: catchup` (30 h missed) runs exactly 10 times (the
  cap) and logs the missed runs beyond the cap.
- sighup: while a real-time job streams under concurrent writers, SIGHUP with an added
  `sql` job starts it without restarting the real-time job; an invalid config is
  refused and everything keeps running; a changed batch restarts the real-time job. The
  target ends equal to the source (md5 oracle) and no key's version went backwards.
- memory_budget: memory.limit 1MiB is always exceeded: DEGRADED in the log and the
  heartbeat (batchDivisor 2), the low-priority job does not run, the high one does;
  SIGHUP with 1GiB: HEALTHY, batchDivisor 1, the low job runs.
- graceful_shutdown_resume: SIGTERM during a large snapshot run (grace 10 s) exits 0 in
  time with the run recorded `interrupted` and the target partly filled; the next start
  says the run was interrupted, resumes it from its checkpoint (it writes exactly the
  rows that were missing) and ends with the target equal to the source.
- grace_expiry: SIGTERM while an sql statement runs far past a 2 s grace: the daemon
  exits 0 after the grace (not before), says so, records the run interrupted, and the
  next start runs the job again.

Oracles: the state store is read with Python's sqlite3, the databases with psycopg2;
overlaps are caught by PostgreSQL's exclusion constraint and by Python.
"""
import json
import os
import re
import signal
import sqlite3
import sys
import time

import lktest as L
import rtwriters as W

L.require_pg()
t = L.Suite("test_daemon")

GRACE_ENV = {"LOCKSTEP_SHUTDOWN_GRACE": "10s"}


# ---------------------------------------------------------------------------
# helpers


class Run(W.Daemon):
    """`lockstep -c CFG run` in the background, its output in WD/run.log."""

    def __init__(self, cfg, wd, env=None):
        e = dict(GRACE_ENV)
        e.update(env or {})
        super().__init__(cfg, wd.file("run.log"), e)
        self.start()

    def stop(self, what, within=60):
        """SIGTERM; checks it was running and exits 0; returns the seconds it took."""
        t.check(self.alive(), "%s: lockstep run was still running" % what, self.tail(3000))
        t0 = time.monotonic()
        rc = self.term(within)
        took = time.monotonic() - t0
        t.eq(rc, 0, "%s: SIGTERM stops lockstep run with exit 0 (in %.1f s)" % (what, took), self.tail(3000))
        return took

    def hup(self):
        self.p.send_signal(signal.SIGHUP)


def sq(wd, query, params=()):
    """Rows (dicts) of a query on WD/state.db, read with Python's sqlite3."""
    path = wd.file("state.db")
    if not os.path.exists(path):
        return []
    c = sqlite3.connect(path, timeout=30)
    try:
        c.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in c.execute(query, params)]
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []
            raise
    finally:
        c.close()


def sq_write(wd, query, params=()):
    c = sqlite3.connect(wd.file("state.db"), timeout=30)
    try:
        c.execute(query, params)
        c.commit()
    finally:
        c.close()


def runs(wd, job, status=None):
    q = "SELECT * FROM lockstep_runs WHERE job = ?"
    p = [job]
    if status:
        q += " AND status = ?"
        p.append(status)
    return sq(wd, q + " ORDER BY started_ms, id", p)


def executed(wd, job):
    """The runs that really ran (not skipped), in start order."""
    return [r for r in runs(wd, job) if r["status"] != "skipped"]


def heartbeat(wd, name):
    rows = sq(wd, "SELECT * FROM lockstep_instances WHERE name = ?", (name,))
    if not rows:
        return None
    r = rows[0]
    try:
        r["detail"] = json.loads(r["detail"] or "{}")
    except ValueError:
        r["detail"] = {"unparsable": r["detail"]}
    return r


def heartbeat_job(wd, job):
    """The job's entry in the heartbeat's detail.jobs (any instance), or None."""
    for r in sq(wd, "SELECT detail FROM lockstep_instances"):
        try:
            d = json.loads(r["detail"] or "{}")
        except ValueError:
            continue
        for j in d.get("jobs", []):
            if j.get("job") == job:
                return j
    return None


def next_ms(wd, job):
    rows = sq(wd, "SELECT next_ms FROM lockstep_schedules WHERE job = ?", (job,))
    return rows[0]["next_ms"] if rows else None


def now_ms():
    return int(time.time() * 1000)


def brief(rs, limit=12):
    """A few run rows, for failure messages."""
    keys = ("id", "status", "stage", "progress", "rows_read", "rows_written", "total_estimate",
            "started_ms", "finished_ms", "epoch", "error")
    out = ["%s" % dict((k, r.get(k)) for k in keys) for r in rs[-limit:]]
    return "%d run(s)%s\n%s" % (len(rs), ", last %d:" % limit if len(rs) > limit else ":", "\n".join(out))


def overlaps(intervals):
    """Pairs (a, b) of consecutive intervals (sorted by start) where b starts before a ends."""
    s = sorted(intervals)
    return [(a, b) for a, b in zip(s, s[1:]) if b[0] < a[1]]


def config(wd, databases, jobs, extra=None):
    return L.sync_config(wd, databases, jobs, extra=extra)


# ---------------------------------------------------------------------------
# 1. no overlap


def test_no_overlap():
    db = L.new_db("d_overlap")
    L.execute(db, "CREATE EXTENSION IF NOT EXISTS btree_gist")
    L.execute(db, "CREATE TABLE executions (job text NOT NULL, during tstzrange NOT NULL, "
                  "EXCLUDE USING gist (job WITH =, during WITH &&))")

    def slow(name, **more):
        j = {"kind": "sql", "db": "d", "every": "1s",
             "sql": "SELECT pg_sleep(2.5); INSERT INTO executions VALUES ('%s', tstzrange(now(), "
                    "clock_timestamp()))" % name}
        j.update(more)
        return j

    wd = L.Workdir("d_overlap")
    cfg = config(wd, {"d": db}, {"slow": slow("slow"), "slowq": slow("slowq", overlap="queue")})
    dur = max(14.0, min(20.0, 20.0 * L.scale(1000) / 1000.0))
    run = Run(cfg, wd)
    try:
        time.sleep(dur)
        run.stop("no_overlap")
    finally:
        run.kill()
    log = run.output()

    for job, mode in (("slow", "skip"), ("slowq", "queue")):
        ex = L.execute(db, "SELECT lower(during), upper(during) FROM executions WHERE job = %s "
                           "ORDER BY lower(during)", (job,))
        rs = runs(wd, job)
        done = [r for r in rs if r["status"] != "skipped"]
        failed = [r for r in rs if r["status"] == "failed"]
        skipped = [r for r in rs if r["status"] == "skipped"]
        succeeded = [r for r in rs if r["status"] == "succeeded"]
        t.log("%s (overlap: %s): %d executions, %d runs: %d succeeded, %d failed, %d skipped"
              % (job, mode, len(ex), len(done), len(succeeded), len(failed), len(skipped)))
        t.check(len(ex) >= 4, "%s: at least 4 executions in %.0f s (got %d)" % (job, dur, len(ex)), brief(rs))
        t.eq(len(failed), 0, "%s: no failed run (an overlap fails on the exclusion constraint)" % job,
             brief(failed))
        t.eq(len(succeeded), len(ex), "%s: one execution row per succeeded run" % job, brief(rs))
        t.eq([r for r in rs if r["status"] not in ("succeeded", "skipped")], [],
             "%s: after the stop every run is succeeded or skipped (none left running)" % job)
        t.eq(overlaps([(a, b) for a, b in ex]), [], "%s: the recorded executions never overlap (Python)" % job)
        t.eq(overlaps([(r["started_ms"], r["finished_ms"] or 1 << 62) for r in done]), [],
             "%s: runs in lockstep_runs never overlap by started_ms/finished_ms" % job, brief(done))
        t.check(all(r["error"] and "still going" in r["error"] for r in skipped),
                "%s: skipped runs say the previous run was still going" % job, brief(skipped))
        t.check("job %s: this run has taken over 80%% of its interval" % job in log,
                "%s: the '80%% of its interval' warning was logged" % job, log[-3000:])
        if mode == "skip":
            t.check(len(skipped) >= 4, "slow: at least 4 skipped runs recorded (got %d)" % len(skipped),
                    brief(rs))
            t.check("job slow: skipped a run, the previous one is still going" in log,
                    "slow: the skips are logged")
            skip_ratio = len(skipped) / max(1, len(done))
        else:
            gaps = [b["started_ms"] - a["finished_ms"] for a, b in zip(done, done[1:])]
            t.check(gaps and all(0 <= g < 700 for g in gaps),
                    "slowq: each run starts right after the previous one ends (gaps %s ms)" % gaps, brief(done))
            t.check(len(skipped) >= 1,
                    "slowq: fires beyond the one queued run are still skipped (got %d)" % len(skipped))
            q_ratio = len(skipped) / max(1, len(done))
            t.check(q_ratio < skip_ratio,
                    "overlap: queue skips fewer fires per executed run than overlap: skip "
                    "(%.2f < %.2f)" % (q_ratio, skip_ratio))


# ---------------------------------------------------------------------------
# 2. exec: progress, environment, timeout, exit status, cron


def test_exec_progress():
    wd = L.Workdir("d_exec")
    envfile, pidfile = wd.file("env.txt"), wd.file("child.pids")
    prog = wd.file("prog.sh")
    with open(prog, "w") as f:
        f.write('#!/bin/sh\n'
                'echo "$LOCKSTEP_RUN_ID $LOCKSTEP_FENCING_TOKEN" >> "%s"\n'
                'echo \'{"progress": 40, "stage": "articles", "stats": {"processed": 400, "total": 1000}}\'\n'
                'sleep 2.5\n'
                'echo \'{"progress": 100, "stage": "done-ish", "stats": {"processed": 1000, "total": 1000}}\'\n'
                % envfile)
    jobs = {
        "prog": {"kind": "exec", "every": "2s", "command": ["/bin/sh", prog]},
        "tmo": {"kind": "exec", "every": "3s", "timeout": "1s",
                "command": ["/bin/sh", "-c", "sleep 60 & echo $! >> '%s'; sleep 30" % pidfile]},
        "bad": {"kind": "exec", "every": "2s", "command": ["/bin/sh", "-c", "echo oops-on-stderr >&2; exit 3"]},
        "cron2": {"kind": "exec", "schedule": "*/2 * * * * *", "command": ["/bin/true"]},
    }
    cfg = config(wd, {}, jobs)
    run = Run(cfg, wd)
    seen = None
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and seen is None and run.alive():
            for r in runs(wd, "prog", "running"):
                if r["progress"] == 40 and r["stage"] == "articles":
                    seen = r
            time.sleep(0.1)
        t.check(seen is not None, "prog: a running run shows progress 40, stage articles in lockstep_runs",
                brief(runs(wd, "prog")) + "\n" + run.tail(2000))
        if seen:
            t.eq((seen["rows_read"], seen["total_estimate"]), (400, 1000),
                 "prog: while running, rows_read 400 and total_estimate 1000 (stats.processed/total)")
        L.wait_for(lambda: len(runs(wd, "prog", "succeeded")) >= 2 and runs(wd, "tmo", "failed")
                   and runs(wd, "bad", "failed") and len(runs(wd, "cron2", "succeeded")) >= 2
                   or not run.alive(), deadline=40)
        run.stop("exec_progress")
    finally:
        run.kill()
    log = run.output()

    # prog
    ok = runs(wd, "prog", "succeeded")
    t.check(len(ok) >= 2, "prog: at least 2 succeeded runs", brief(runs(wd, "prog")))
    t.check(ok and all((r["rows_read"], r["total_estimate"], r["progress"]) == (1000, 1000, 100) for r in ok),
            "prog: succeeded runs end with rows_read 1000, total_estimate 1000, progress 100", brief(ok))
    t.eq([r for r in runs(wd, "prog") if r["status"] == "failed"], [], "prog: no failed run")
    lines = []
    if os.path.exists(envfile):
        with open(envfile) as f:
            lines = [ln.split() for ln in f if ln.strip()]
    by_id = dict((r["id"], r) for r in executed(wd, "prog"))
    t.check(lines and all(len(x) == 2 for x in lines),
            "prog: the command saw LOCKSTEP_RUN_ID and LOCKSTEP_FENCING_TOKEN (%d runs)" % len(lines),
            repr(lines))
    bad_env = [x for x in lines if len(x) != 2 or x[0] not in by_id or str(by_id[x[0]]["epoch"]) != x[1]]
    t.eq(bad_env, [], "prog: each LOCKSTEP_RUN_ID is its run's id and LOCKSTEP_FENCING_TOKEN its epoch",
         brief(list(by_id.values())))
    t.eq(sorted(x[0] for x in lines), sorted(by_id), "prog: every executed run saw its own id, once")
    t.check(all(r["epoch"] >= 1 for r in by_id.values()), "prog: every run carries an epoch >= 1")

    # tmo
    failed = runs(wd, "tmo", "failed")
    t.check(failed and all("timeout" in (r["error"] or "") for r in failed),
            "tmo: recorded failed with an error naming the timeout", brief(runs(wd, "tmo")))
    if failed:
        took = [(r["finished_ms"] - r["started_ms"]) / 1000.0 for r in failed]
        t.check(all(0.9 <= x < 8 for x in took), "tmo: killed about 1 s after its start (%s s)" % took)
    pids = []
    if os.path.exists(pidfile):
        with open(pidfile) as f:
            pids = [int(x) for x in f.read().split()]
    t.check(pids, "tmo: its background child wrote its pid")

    def child_alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmd = f.read().split(b"\0")
            with open("/proc/%d/stat" % pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        # A zombie is dead (reaping orphans is init's business); a reused pid is not ours.
        return cmd[:2] == [b"sleep", b"60"] and state != "Z"

    L.wait_for(lambda: not [p for p in pids if child_alive(p)], deadline=5)
    alive = [p for p in pids if child_alive(p)]
    t.eq(alive, [], "tmo: the background child (sleep 60) of each timed-out run is gone")
    for p in alive:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass

    # bad
    failed = runs(wd, "bad", "failed")
    t.check(failed and all("exited with status 3" in (r["error"] or "") for r in failed),
            "bad: a non-zero exit is a failed run saying 'exited with status 3'", brief(runs(wd, "bad")))
    t.check("job bad: stderr: oops-on-stderr" in log, "bad: its stderr line is logged")

    # cron2
    ok = runs(wd, "cron2", "succeeded")
    t.check(len(ok) >= 2, "cron2 (schedule */2 * * * * *): at least 2 succeeded runs", brief(runs(wd, "cron2"))
            + "\n" + "\n".join(ln for ln in log.splitlines() if "cron2" in ln)[-2000:])
    nm = next_ms(wd, "cron2")
    t.check(nm is not None and nm % 2000 == 0, "cron2: its next fire time is on an even second (%r)" % nm)
    spec = sq(wd, "SELECT spec FROM lockstep_schedules WHERE job = 'cron2'")
    t.check(spec and "*/2 * * * * *" in spec[0]["spec"], "cron2: lockstep_schedules keeps its cron spec",
            repr(spec))


# ---------------------------------------------------------------------------
# 3. misfire and persistence


HOUR = 3600 * 1000


def test_misfire_and_persistence():
    # An hour boundary inside this case would fire the job for real: wait it out.
    left = HOUR - now_ms() % HOUR
    if left < 45 * 1000:
        t.log("misfire: %.0f s before an hour boundary; waiting for it to pass" % (left / 1000.0))
        time.sleep(left / 1000.0 + 2)
    db = L.new_db("d_misfire")
    L.execute(db, "CREATE TABLE mf (n serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
    wd = L.Workdir("d_misfire")

    def cfg_with(misfire):
        job = {"kind": "sql", "db": "d", "every": "1h", "sql": "INSERT INTO mf DEFAULT VALUES"}
        if misfire:
            job["misfire"] = misfire
        return config(wd, {"d": db}, {"hourly": job})

    def start(misfire, what):
        cfg = cfg_with(misfire)
        r = Run(cfg, wd)
        ok = L.wait_for(lambda: "lockstep running:" in r.output() or not r.alive(), deadline=30)
        t.check(ok and r.alive(), "%s: lockstep run started" % what, r.tail(2000))
        return r

    def count():
        return L.scalar(db, "SELECT count(*) FROM mf")

    # first start: the next fire is the next hour boundary, kept in the state store
    r = start(None, "first start")
    try:
        nm1 = L.wait_for(lambda: next_ms(wd, "hourly"), deadline=10)
        now = now_ms()
        t.check(nm1 and nm1 % HOUR == 0 and now < nm1 <= now + HOUR,
                "first start: lockstep_schedules holds the next hour boundary (%r)" % nm1)
        time.sleep(1.5)
        r.stop("first start")
    finally:
        r.kill()
    t.eq(runs(wd, "hourly"), [], "first start: no run (the job is due in the future)")

    # restart: the stored fire time is kept as it is, not recomputed from the start time
    # (a value one boundary later than the next one tells the two apart)
    kept = (nm1 or 0) + HOUR
    sq_write(wd, "UPDATE lockstep_schedules SET next_ms = ? WHERE job = 'hourly'", (kept,))
    r = start(None, "restart")
    try:
        time.sleep(2.5)
        t.eq(next_ms(wd, "hourly"), kept, "restart: the stored next fire time is kept, unchanged")
        h = L.wait_for(lambda: heartbeat_job(wd, "hourly"), deadline=5)
        t.eq(h and h.get("nextMs"), kept, "restart: the heartbeat shows the stored next fire time")
        r.stop("restart")
    finally:
        r.kill()
    t.eq(runs(wd, "hourly"), [], "restart: still no run")

    def downtime(hours):
        sq_write(wd, "UPDATE lockstep_schedules SET next_ms = ? WHERE job = 'hourly'", (now_ms() - hours * HOUR,))

    # misfire: once -> one run at start
    downtime(3)
    r = start("once", "misfire once")
    try:
        got = L.wait_for(lambda: runs(wd, "hourly", "succeeded"), deadline=20)
        time.sleep(3)  # no second run follows
        t.eq(len(runs(wd, "hourly", "succeeded")), 1, "misfire once: exactly one run at start",
             brief(runs(wd, "hourly")))
        t.eq(count(), 1, "misfire once: the job's statement ran once")
        t.check("job hourly: 1 missed run to make up (misfire: once)" in r.output(),
                "misfire once: the log says one missed run is made up", r.tail(2000))
        nm = next_ms(wd, "hourly")
        t.check(got and nm and nm > now_ms() and nm % HOUR == 0,
                "misfire once: the next fire is the next hour boundary again (%r)" % nm)
        r.stop("misfire once")
    finally:
        r.kill()

    # misfire: skip -> no run, the next fire moves to the future
    downtime(3)
    past = next_ms(wd, "hourly")
    r = start("skip", "misfire skip")
    try:
        moved = L.wait_for(lambda: (next_ms(wd, "hourly") or 0) > now_ms(), deadline=10)
        time.sleep(3)
        t.eq(len(executed(wd, "hourly")), 1, "misfire skip: no run (still only the earlier one)",
             brief(runs(wd, "hourly")))
        t.eq(count(), 1, "misfire skip: the statement did not run")
        nm = next_ms(wd, "hourly")
        t.check(moved and nm % HOUR == 0 and nm > past,
                "misfire skip: the next fire moved to the next hour boundary (%r, was %r)" % (nm, past))
        r.stop("misfire skip")
    finally:
        r.kill()

    # misfire: catchup over 30 h -> the cap of 10 runs
    downtime(30)
    r = start("catchup", "misfire catchup")
    try:
        L.wait_for(lambda: len(runs(wd, "hourly", "succeeded")) >= 11, deadline=60)
        time.sleep(3)  # and no more
        ran = len(runs(wd, "hourly", "succeeded")) - 1
        t.eq(ran, 10, "misfire catchup: exactly 10 runs (the cap) for 30 missed hours", brief(runs(wd, "hourly")))
        t.eq(count(), 11, "misfire catchup: the statement ran 10 more times")
        log = r.output()
        m = re.search(r"job hourly: (\d+) missed runs beyond the catch-up cap of 10 are skipped", log)
        t.check(m and 19 <= int(m.group(1)) <= 22,
                "misfire catchup: the log names the ~21 missed runs beyond the cap", log[-2000:])
        t.check("job hourly: 10 missed runs to make up (misfire: catchup)" in log,
                "misfire catchup: the log says 10 runs are made up")
        done = executed(wd, "hourly")
        t.eq(overlaps([(x["started_ms"], x["finished_ms"] or 1 << 62) for x in done]), [],
             "misfire catchup: the catch-up runs run one after the other")
        r.stop("misfire catchup")
    finally:
        r.kill()


# ---------------------------------------------------------------------------
# 4. SIGHUP


def test_sighup():
    src, dst, aux = L.new_db("d_hup_src"), L.new_db("d_hup_dst"), L.new_db("d_hup_aux")
    W.create_source(src, n=L.scale(3000))
    W.create_target(dst)
    L.execute(aux, "CREATE TABLE ticks (n serial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
    wd = L.Workdir("d_hup")
    dbs = {"src": src, "dst": dst, "aux": aux}

    def rt(batch):
        return {"source": {"db": "src", "table": "items"},
                "target": {"db": "dst", "table": "items", "create": False, "deletes": "delete"},
                "mode": "realtime", "batch": batch, "retry": {"initial": "200ms", "max": "2s"}}

    tick = {"kind": "sql", "db": "aux", "every": "1s", "sql": "INSERT INTO ticks DEFAULT VALUES"}
    cfg = config(wd, dbs, {"rt": rt(200)})
    writers = W.Writers(src, n=4, body_kb=(1, 16), hold_s=(0.5, 2.0), log=t.log)
    run = Run(cfg, wd)
    started = "of job rt started"

    def ticks():
        return L.scalar(aux, "SELECT count(*) FROM ticks")

    try:
        t.check(L.wait_for(lambda: started in run.output() or not run.alive(), deadline=60) and run.alive(),
                "sighup: the real-time job started", run.tail(3000))
        W.wait_equal(t, src, dst, None, 60, what="sighup: the first snapshot is equal to the source")
        writers.start()
        time.sleep(3)

        # 1. a job added
        mark = len(run.output())
        config(wd, dbs, {"rt": rt(200), "tick": tick})
        run.hup()
        t.check(L.wait_for(lambda: "config reloaded" in run.output()[mark:], deadline=20),
                "reload 1: the log says config reloaded", run.tail(3000))
        t.check("config reloaded: 1 job added, 0 changed, 0 removed, 1 unchanged" in run.output()[mark:],
                "reload 1: one job added, the real-time one unchanged", run.tail(2000))
        t.check(L.wait_for(lambda: ticks() >= 2, deadline=20), "reload 1: the added sql job runs (%d ticks)" % ticks(),
                run.tail(3000))
        time.sleep(2)
        after = run.output()[mark:]
        t.check("job rt: stopped" not in after and "reload: job rt" not in after,
                "reload 1: the real-time job was not stopped", after[-3000:])
        t.eq(run.output().count(started), 1, "reload 1: the real-time job was not started again")

        # 2. an invalid config is refused
        mark = len(run.output())
        with open(cfg, "a") as f:
            f.write("bogus_key: 1\n")
        run.hup()
        t.check(L.wait_for(lambda: "reload refused" in run.output()[mark:] or not run.alive(), deadline=20)
                and run.alive(), "reload 2: an invalid config is refused and lockstep keeps running",
                run.tail(3000))
        n0 = ticks()
        t.check(L.wait_for(lambda: ticks() >= n0 + 2, deadline=20),
                "reload 2: the sql job keeps running (%d -> %d ticks)" % (n0, ticks()))
        after = run.output()[mark:]
        t.check("job rt: stopped" not in after and run.output().count(started) == 1,
                "reload 2: the real-time job keeps streaming, untouched", after[-3000:])

        # 3. the real-time job changed: restarted
        mark = len(run.output())
        config(wd, dbs, {"rt": rt(100), "tick": tick})
        run.hup()
        t.check(L.wait_for(lambda: "config reloaded" in run.output()[mark:], deadline=20),
                "reload 3: the log says config reloaded", run.tail(3000))
        after = run.output()[mark:]
        t.check("reload: job rt changed: restarting it" in after, "reload 3: the changed real-time job is restarted",
                after[-3000:])
        t.check("config reloaded: 0 jobs added, 1 changed, 0 removed, 1 unchanged" in after,
                "reload 3: one job changed, the sql job unchanged", after[-2000:])
        t.check(L.wait_for(lambda: run.output().count(started) == 2, deadline=60)
                and "job rt: stopped" in run.output()[mark:],
                "reload 3: the old real-time job stopped and a new run started", run.tail(3000))
        n0 = ticks()
        t.check(L.wait_for(lambda: ticks() >= n0 + 2, deadline=20), "reload 3: the sql job keeps running")
        time.sleep(3)
        writers.stop()
        t.eq(writers.errors, [], "the writers saw no unexpected error")
        t.log("writers: %s" % writers.summary())
        W.wait_equal(t, src, dst, None, 90, what="sighup: the target equals the source at the end")
        t.eq(W.versions_monotonic(dst), [], "sighup: no key's version ever went backwards in the target")
        t.check(W.log_count(dst) > L.scale(3000), "sighup: the version log saw the writes (%d)" % W.log_count(dst))
        t.eq(run.output().count(started), 2, "sighup: the real-time job started exactly twice in all")
        run.stop("sighup")
    finally:
        writers.stop()
        run.kill()


# ---------------------------------------------------------------------------
# 5. memory budget


def test_memory_budget():
    db = L.new_db("d_mem")
    L.execute(db, "CREATE TABLE hits (job text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())")
    wd = L.Workdir("d_mem")
    jobs = {"low": {"kind": "sql", "db": "d", "every": "1s", "priority": "low",
                    "sql": "INSERT INTO hits (job) VALUES ('low')"},
            "high": {"kind": "sql", "db": "d", "every": "1s", "priority": "high",
                     "sql": "INSERT INTO hits (job) VALUES ('high')"},
            # Pages of the real-time applier, one target transaction each, are logged by a
            # target trigger: the oracle for "batch sizes halve" (20 -> 10).
            "rt": {"source": {"db": "d", "table": "src_items"},
                   "target": {"db": "d", "table": "dst_items"}, "mode": "realtime", "batch": 20}}
    L.execute(db, "CREATE TABLE src_items (id int PRIMARY KEY, v int NOT NULL)")
    L.execute(db, "CREATE TABLE dst_items (id int PRIMARY KEY, v int NOT NULL)")
    L.execute(db, "CREATE TABLE page_log (xid xid8 NOT NULL)")
    L.execute(db, "CREATE FUNCTION log_page() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$BEGIN INSERT INTO page_log VALUES (pg_current_xact_id()); RETURN NEW; END$$")
    L.execute(db, "CREATE TRIGGER log_page AFTER INSERT ON dst_items FOR EACH ROW EXECUTE FUNCTION log_page()")

    def burst(first):
        """100 new source rows in one transaction; returns the largest target transaction."""
        L.execute(db, "INSERT INTO src_items SELECT i, i FROM generate_series(%d, %d) i" % (first, first + 99))
        L.wait_for(lambda: L.scalar(db, "SELECT count(*) FROM dst_items") >= first + 99, deadline=30)
        return L.scalar(db, "SELECT max(n) FROM (SELECT count(*) AS n FROM page_log WHERE xid IN "
                            "(SELECT xid FROM page_log GROUP BY xid) GROUP BY xid) p")

    def write(limit):
        return config(wd, {"d": db}, jobs, extra={"memory": {"limit": limit}, "instance": {"name": "it_mem"}})

    cfg = write("1MiB")
    run = Run(cfg, wd)

    def hits(job):
        return L.scalar(db, "SELECT count(*) FROM hits WHERE job = %s", (job,))

    def hb_is(health, divisor):
        h = heartbeat(wd, "it_mem")
        return h if h and h["health"] == health and h["detail"].get("batchDivisor") == divisor else None

    try:
        t.check(L.wait_for(lambda: "(DEGRADED)" in run.output() or not run.alive(), deadline=15) and run.alive(),
                "memory 1MiB: the log says DEGRADED", run.tail(2000))
        t.check("batch sizes halved" in run.output() and "low-priority jobs paused" in run.output(),
                "memory 1MiB: the log says batch sizes are halved and low-priority jobs paused")
        h = L.wait_for(lambda: hb_is("DEGRADED", 2), deadline=10)
        t.check(h, "memory 1MiB: lockstep_instances says DEGRADED with batchDivisor 2",
                repr(heartbeat(wd, "it_mem")))
        if h:
            d = h["detail"]
            t.check(d.get("memoryLimitBytes") == 1 << 20 and d.get("rssBytes", 0) > 1 << 20,
                    "memory 1MiB: the heartbeat shows the limit and an RSS over it", repr(d))
            paused = dict((j.get("job"), j.get("paused")) for j in d.get("jobs", []))
            t.eq(paused, {"low": True, "high": False, "rt": False}, "memory 1MiB: the heartbeat shows the low job paused")
        biggest = burst(1)
        t.eq(L.scalar(db, "SELECT count(*) FROM dst_items"), 100, "memory 1MiB: the real-time job applies 100 rows")
        t.eq(biggest, 10, "memory 1MiB: the applier's target transactions hold at most 10 rows (batch 20 halved)")
        t.check(L.wait_for(lambda: len(runs(wd, "high", "succeeded")) >= 3, deadline=20),
                "memory 1MiB: the high-priority job runs", brief(runs(wd, "high")))
        time.sleep(1)
        t.eq(hits("low"), 0, "memory 1MiB: the low-priority job's statement never ran")
        t.eq(executed(wd, "low"), [], "memory 1MiB: no run of the low-priority job was started",
             brief(executed(wd, "low")))
        # A paused run never started: it cannot have taken 80% of its interval.
        slow = [ln for ln in run.output().splitlines() if "job low: this run has taken over 80%" in ln]
        t.eq(slow, [], "memory 1MiB: no '80% of its interval' warning for the paused, never started low job")

        mark = len(run.output())
        write("1GiB")
        run.hup()
        t.check(L.wait_for(lambda: "(HEALTHY)" in run.output()[mark:], deadline=15),
                "memory 1GiB after SIGHUP: the log says HEALTHY again", run.tail(2000))
        t.check(L.wait_for(lambda: hb_is("HEALTHY", 1), deadline=10),
                "memory 1GiB: lockstep_instances says HEALTHY with batchDivisor 1", repr(heartbeat(wd, "it_mem")))
        t.check(L.wait_for(lambda: hits("low") >= 2, deadline=15),
                "memory 1GiB: the low-priority job runs again (%d)" % hits("low"))
        t.check(len(runs(wd, "low", "succeeded")) >= 1, "memory 1GiB: lockstep_runs records the low job's runs")
        L.execute(db, "TRUNCATE page_log")
        t.eq(burst(101), 20, "memory 1GiB: the applier's target transactions hold 20 rows again (batch restored)")
        run.stop("memory_budget")
    finally:
        run.kill()


# ---------------------------------------------------------------------------
# 6. graceful shutdown and resume


def test_graceful_shutdown_resume():
    n = max(L.scale(1000000), 300000)
    src, dst = L.new_db("d_grace_src"), L.new_db("d_grace_dst")
    L.execute(src, "CREATE TABLE big (id bigint PRIMARY KEY, v text NOT NULL, n int, at timestamptz)")
    L.execute(src, "INSERT INTO big SELECT i, md5(i::text), i %% 1000, '2024-01-01'::timestamptz "
                   "+ i * interval '1 second' FROM generate_series(1, %d) i" % n)
    L.execute(src, "ANALYZE big")
    # 20 ms every 1,000 rows read: the first run takes 6 s or more however fast the copy is
    # (the binary path copies 300,000 rows in about a second), so SIGTERM cuts that run.
    L.execute(src, "CREATE FUNCTION lk_throttle(bigint) RETURNS boolean LANGUAGE sql VOLATILE AS "
                   "$$ SELECT CASE WHEN mod($1, 1000) = 0 THEN (SELECT true FROM pg_sleep(0.02)) "
                   "ELSE true END $$")
    wd = L.Workdir("d_grace")
    cfg = config(wd, {"src": src, "dst": dst}, {"big": {
        "source": {"db": "src", "table": "big", "where": "lk_throttle(id)"},
        "target": {"db": "dst", "table": "big", "create": True},
        "mode": "snapshot", "every": "1s", "overlap": "skip", "batch": 500}})
    run = Run(cfg, wd)
    try:
        going = L.wait_for(lambda: [r for r in runs(wd, "big", "running") if r["rows_written"] > 0]
                           or not run.alive(), deadline=60, step=0.1)
        t.check(going and run.alive(), "the snapshot run is copying (rows_written > 0)", run.tail(2000))
        time.sleep(0.3)  # small batches and a short wait: the first run is still copying
        took = run.stop("SIGTERM during the snapshot", within=30)
        t.check(took <= 12, "it exits within 12 s of SIGTERM with LOCKSTEP_SHUTDOWN_GRACE=10s (%.1f s)" % took)
    finally:
        run.kill()
    first = executed(wd, "big")
    t.check(first and first[-1]["status"] == "interrupted", "the cut run is recorded interrupted", brief(first))
    t.eq([r for r in first if r["status"] == "running"], [], "no run is left recorded as running")
    have = L.count_rows(dst, "big")
    t.check(0 < have < n, "the target holds part of the rows (%d of %d)" % (have, n))

    restart = now_ms()
    run = Run(cfg, wd)
    try:
        done = L.wait_for(lambda: [r for r in runs(wd, "big", "succeeded") if r["started_ms"] >= restart]
                          or not run.alive(), deadline=180, step=0.3)
        log = run.output()
        t.check("job big: its last run was interrupted; resuming it now" in log,
                "restart: the log says the last run was interrupted and resumes it", log[-3000:])
        t.check("job big: resuming the snapshot after the last committed key" in log,
                "restart: the snapshot resumes after its last committed key", log[-3000:])
        t.check(done and run.alive(), "restart: the resumed run succeeds", brief(runs(wd, "big")) + run.tail(2000))
        run.stop("after the resumed run")
    finally:
        run.kill()
    if done:
        r = done[0]
        t.check(0 < r["rows_written"] < n, "the resumed run wrote fewer rows than the table holds (%d of %d)"
                % (r["rows_written"], n), brief([r]))
        t.eq(r["rows_written"], n - have, "the resumed run wrote exactly the rows missing at the stop")
    t.eq(L.pg_md5(dst, "big", ["id"]), L.pg_md5(src, "big", ["id"]), "md5 oracle: the target equals the source")


# ---------------------------------------------------------------------------
# 7. retention and the restart counter


def test_retention_and_restarts():
    db = L.new_db("d_ret")
    L.execute(db, "CREATE TABLE ticks (at timestamptz NOT NULL DEFAULT clock_timestamp())")
    wd = L.Workdir("d_ret")
    jobs = {"tick": {"kind": "sql", "db": "d", "every": "1s", "sql": "INSERT INTO ticks DEFAULT VALUES"}}
    cfg = config(wd, {"d": db}, jobs, extra={"retention": "3s", "instance": {"name": "it_ret"}})
    run = Run(cfg, wd)
    try:
        t.check(L.wait_for(lambda: len(runs(wd, "tick", "succeeded")) >= 2, deadline=20),
                "first start: the job runs", brief(runs(wd, "tick")))
        run.stop("retention: first start")
    finally:
        run.kill()
    before = heartbeat(wd, "it_ret")
    old = [r["id"] for r in runs(wd, "tick")]
    time.sleep(4)  # every recorded run is now older than the 3 s retention
    run = Run(cfg, wd)
    try:
        t.check(L.wait_for(lambda: "pruned" in run.output(), deadline=15),
                "second start: the log says old runs were pruned", run.tail(2000))
        left = [r["id"] for r in runs(wd, "tick") if r["id"] in old]
        t.eq(left, [], "second start: runs finished before the retention are deleted from lockstep_runs")
        after = L.wait_for(lambda: heartbeat(wd, "it_ret"), deadline=5)
        t.check(before and after and after["restarts"] == before["restarts"] + 1,
                "second start: the instance's restart counter went up by one",
                "%r -> %r" % (before and before["restarts"], after and after["restarts"]))
        run.stop("retention: second start")
    finally:
        run.kill()


# ---------------------------------------------------------------------------
# 8. a reload that changes a job while it runs


def test_reload_running_job():
    db = L.new_db("d_reload_busy")
    L.execute(db, "CREATE EXTENSION IF NOT EXISTS btree_gist")
    L.execute(db, "CREATE TABLE executions (job text NOT NULL, version text NOT NULL, during tstzrange NOT NULL, "
                  "EXCLUDE USING gist (job WITH =, during WITH &&))")
    wd = L.Workdir("d_reload_busy")

    def job(version):
        return {"kind": "sql", "db": "d", "every": "1s",
                "sql": "SELECT pg_sleep(2); INSERT INTO executions VALUES ('slow', '%s', tstzrange(now(), "
                       "clock_timestamp()))" % version}

    cfg = config(wd, {"d": db}, {"slow": job("v1")})
    run = Run(cfg, wd)
    try:
        t.check(L.wait_for(lambda: runs(wd, "slow", "running"), deadline=30), "reload_busy: a v1 run is going",
                run.tail(2000))
        time.sleep(0.3)
        mark = len(run.output())
        config(wd, {"d": db}, {"slow": job("v2")})
        run.hup()
        t.check(L.wait_for(lambda: L.scalar(db, "SELECT count(*) FROM executions WHERE version = 'v2'") >= 2,
                           deadline=30), "reload_busy: the changed job runs its new version (twice)", run.tail(3000))
        after = run.output()[mark:]
        t.check("job slow: the new version starts once the old one has stopped" in after
                and "job slow: the old version stopped; the new one starts" in after,
                "reload_busy: the new version waited for the old run to stop", after[-3000:])
        t.check("this run is skipped" not in after and "held by" not in after,
                "reload_busy: no fire of the new version found the job busy and was dropped", after[-3000:])
        t.eq(runs(wd, "slow", "failed"), [], "reload_busy: no failed run (an overlap fails on the constraint)")
        ex = L.execute(db, "SELECT lower(during), upper(during) FROM executions ORDER BY 1")
        t.eq(overlaps([(a, b) for a, b in ex]), [], "reload_busy: no two executions overlap")
        run.stop("reload_busy")
    finally:
        run.kill()


# ---------------------------------------------------------------------------
# 9. sql jobs' timeout on both engines


def test_sql_timeout():
    db = L.new_db("d_sql_timeout")
    wd = L.Workdir("d_sql_timeout")
    lite = wd.file("lite.db")
    c = sqlite3.connect(lite)
    c.execute("CREATE TABLE done (at TEXT)")
    c.commit()
    c.close()
    forever = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
               "INSERT INTO done SELECT x FROM c WHERE x < 0 LIMIT 1")
    cfg = config(wd, {"pg": db, "lite": "sqlite:" + lite}, {
        "pg_slow": {"kind": "sql", "db": "pg", "every": "2s", "timeout": "1s", "sql": "SELECT pg_sleep(30)",
                    "retry": {"attempts": 1}},
        "lite_slow": {"kind": "sql", "db": "lite", "every": "2s", "timeout": "1s", "sql": forever,
                      "retry": {"attempts": 1}},
        "lite_quick": {"kind": "sql", "db": "lite", "every": "2s", "sql": "INSERT INTO done VALUES ('x')"},
    })
    run = Run(cfg, wd)
    try:
        for job in ("pg_slow", "lite_slow"):
            t.check(L.wait_for(lambda: runs(wd, job, "failed"), deadline=20),
                    "%s: the run over its timeout is recorded failed" % job, brief(runs(wd, job)) + run.tail(2000))
            r = (runs(wd, job, "failed") or [{}])[0]
            took = ((r.get("finished_ms") or 0) - (r.get("started_ms") or 0)) / 1000.0
            t.check("cancelled by its timeout of 1000 ms" in (r.get("error") or ""),
                    "%s: the error names the timeout" % job, brief([r]))
            t.check(0.9 <= took <= 5.0, "%s: cancelled after about 1 s (%.1f s)" % (job, took), brief([r]))
        t.check(L.wait_for(lambda: runs(wd, "lite_quick", "succeeded"), deadline=20),
                "lite_quick: a job without a timeout on the same SQLite file succeeds", run.tail(2000))
        run.stop("sql_timeout")
        # `lockstep sync` of an sql job is a usage error that records nothing (it crashed once)
        before = len(runs(wd, "lite_quick"))
        rc, out, err = L.run_lockstep(["sync", "lite_quick"], cfg)
        t.eq(rc, 2, "sync of an sql job: exit 2", L.show(rc, out, err))
        t.check("is an sql job, not a sync job" in err, "sync of an sql job: the message says why", err)
        t.eq(len(runs(wd, "lite_quick")), before, "sync of an sql job: no run recorded")
    finally:
        run.kill()


# ---------------------------------------------------------------------------
# 10. the shutdown grace runs out


def test_grace_expiry():
    """SIGTERM while an sql statement runs far longer than the grace (2 s): the daemon waits
    the grace, says the run did not stop, records it interrupted and exits 0; the next start
    runs the job again."""
    db = L.new_db("d_grace_exp")
    wd = L.Workdir("d_grace_exp")
    cfg = config(wd, {"d": db}, {"long": {"kind": "sql", "db": "d", "every": "1s", "sql": "SELECT pg_sleep(60)",
                                          "retry": {"attempts": 1}}})
    run = Run(cfg, wd, env={"LOCKSTEP_SHUTDOWN_GRACE": "2s"})
    try:
        going = L.wait_for(lambda: runs(wd, "long", "running") or not run.alive(), deadline=30, step=0.1)
        t.check(going and run.alive(), "grace_expiry: the long statement is running", run.tail(2000))
        rid = (runs(wd, "long", "running") or [{}])[0].get("id")
        t.check(L.wait_for(lambda: L.scalar(db, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                                                "'%%pg_sleep(60)%%' AND state = 'active' AND datname = "
                                                "current_database() AND pid <> pg_backend_pid()") == 1, 30, 0.1),
                "grace_expiry: its statement is active on the server")
        took = run.stop("grace_expiry: SIGTERM", within=30)
        t.check(1.8 <= took <= 10, "grace_expiry: it exits after the 2 s grace, not before nor much later "
                "(%.1f s)" % took, run.tail(2000))
        out = run.output()
        t.check("did not reach a checkpoint within 2 s; exiting anyway" in out,
                "grace_expiry: the log says the run did not stop within the grace", run.tail(2000))
        t.eq([r["status"] for r in runs(wd, "long") if r["id"] == rid], ["interrupted"],
             "grace_expiry: the cut run is recorded interrupted")
        L.execute(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE "
                      "'%%pg_sleep(60)%%' AND datname = current_database() AND pid <> pg_backend_pid()")
    finally:
        run.kill()
    run = Run(cfg, wd, env={"LOCKSTEP_SHUTDOWN_GRACE": "2s"})
    try:
        t.check(L.wait_for(lambda: [r for r in runs(wd, "long", "running") if r["id"] != rid], deadline=30),
                "grace_expiry: the next start runs the job again", run.tail(2000))
    finally:
        run.kill()


CASES = (test_no_overlap, test_exec_progress, test_misfire_and_persistence, test_sighup,
         test_memory_budget, test_graceful_shutdown_resume,
         test_retention_and_restarts, test_reload_running_job, test_sql_timeout, test_grace_expiry)
# Arguments name cases to run alone (e.g. `test_daemon.py sighup`); none runs them all.
for case in CASES:
    if len(sys.argv) < 2 or case.__name__[len("test_"):] in sys.argv[1:]:
        t.case(case)
t.finish()
