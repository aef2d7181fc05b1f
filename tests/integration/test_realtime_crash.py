"""Real-time mode, PostgreSQL -> PostgreSQL: `lockstep run` killed again and again
under 8 concurrent writers converges anyway.

The workload of test_realtime_writers (tests/harness/rtwriters.py: inserts of fresh
keys, updates of status / a 20-200 KB body / a jsonb doc, key changes, deletes, some
transactions sleeping before COMMIT, one transaction held open for seconds at a
time, one TRUNCATE during the crash sequence below, once the first snapshot is over)
runs for 15 s * LK_SCALE (at least 5 s, and on until the crash sequence is over)
on a source of L.scale(20000) rows (at least 300), where "status = 'active'",
deletes: delete, batch 100.
Meanwhile `run` is:
  1. started with LK_FAILPOINT=mid_copy@K on the first start (the snapshot COPY
     into the empty target): exit 134, and the target then holds exactly the K-1
     batches committed before it;
  2. restarted and killed with SIGKILL at random moments, 3-5 times: once during
     start-up, then each time 0.5-3 s after the restarted run committed a page;
  3. for after_target_commit@N, between_pages@N, after_seal@1 and mid_prune@1: run
     normally for 1-3 s, stopped with SIGTERM (exit 0), then started with the
     failpoint until it exits 134 ("failpoint NAME" in its output). Before
     mid_prune, the test waits until the changelog holds entries every consumer
     has applied, so the prune that follows the first page of the next run
     deletes some;
  4. restarted without a failpoint until the writers stop (at least 2 s later).
Then, by oracles independent of lockstep: the target equals the source rows
matching `where` (md5 computed by each server), the target's (key, version) log
never shows a version going backwards; and `lockstep verify` exits 0, SIGTERM
stops the last run with exit 0, and the logs show that every restart resumed
(one snapshot from scratch: the first start's).
"""
import os
import random
import threading
import time

import lktest as L
import rtwriters as W

L.require_pg()
t = L.Suite("test_realtime_crash")

try:
    _SCALE = float(os.environ.get("LK_SCALE") or 1)
except ValueError:
    _SCALE = 1.0
DURATION = max(5.0, 15.0 * _SCALE)  # seconds of concurrent writes (at least)
N0 = max(300, L.scale(20000))       # rows before the first start
BATCH = 100
WHERE = "status = 'active'"
DEADLINE = 180                      # seconds to wait for convergence (never a timing assertion)
HOLD_S = (max(1.0, 2.0 * _SCALE), max(2.0, 5.0 * _SCALE))  # how long the holder keeps its transaction
FAIL_TIMEOUT = 90                   # seconds for a failpoint to be reached


def prunable(src):
    """Changelog entries every consumer has applied (what the next prune deletes)."""
    try:
        return L.scalar(src, "SELECT count(*) FROM lockstep_cdc.changelog WHERE xid < (SELECT "
                             "min(GREATEST(horizon, COALESCE(xid, horizon))) FROM lockstep_cdc.consumers)")
    except L.psycopg2.Error:
        return 0


def position_text(dst):
    try:
        rows = L.execute(dst, "SELECT pos::text FROM lockstep_sync.position WHERE job = 'items'")
    except L.psycopg2.Error:
        return None
    return rows[0][0] if rows else None


def test_crash():
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    src, dst = L.new_db("rtc_src"), L.new_db("rtc_dst")
    W.create_source(src, N0)
    W.create_target(dst)
    wd = L.Workdir("rt_crash")
    cfg = L.sync_config(wd, {"src": src, "dst": dst}, {"items": {
        "source": {"db": "src", "table": "items", "key": ["id"], "where": WHERE},
        "target": {"db": "dst", "table": "items", "create": False, "deletes": "delete"},
        "mode": "realtime", "batch": BATCH}})
    active = L.count_rows(src, "items", WHERE)
    # Crash in batch K of the first snapshot; writers may move a few rows out of where first.
    K = max(1, min(3, (active - 50) // BATCH))
    t.log("seed %d; source: %d rows (%d active), batch %d, mid_copy@%d, writers for >= %.0f s" % (
        seed, N0, active, BATCH, K, DURATION))

    w = W.Writers(src, n=8, log=t.log, hold_s=HOLD_S)
    d = W.Daemon(cfg, wd.file("run.log"))
    truncate_errors = []

    def truncate():
        try:
            w.truncate()
        except Exception as e:  # noqa: BLE001 - reported below
            truncate_errors.append(repr(e))

    w.start()
    # The TRUNCATE comes 0.5-2 s after a SIGKILL once the first snapshot is over (or after them).
    timer = threading.Timer(rnd.uniform(0.5, 2.0), truncate)
    t0 = time.monotonic()
    runs = {"killed": 0, "failpoint": 0, "stopped": 0}

    def failpoint_run(point, n):
        d.start(env={"LK_FAILPOINT": "%s@%d" % (point, n)})
        rc = d.wait(FAIL_TIMEOUT)
        if rc is None:
            d.kill()
        runs["failpoint"] += 1
        t.eq(rc, 134, "%s@%d: `run` exits 134" % (point, n), d.tail())
        t.check("failpoint %s" % point in d.output(), "%s: the exit is the failpoint's" % point, d.tail())

    def normal_run_more(seconds):
        end = time.monotonic() + seconds
        while d.alive() and time.monotonic() < end:
            time.sleep(0.05)
        return t.check(d.alive(), "`run` is still running %.1f s after its first commit" % seconds, d.tail())

    def normal_run(seconds, until=None):
        """Starts `run` without a failpoint; returns after `seconds` (and until() is true)."""
        d.start()
        start = time.monotonic()
        end = start + seconds
        while d.alive() and (time.monotonic() < end or (until is not None and not until()
                                                        and time.monotonic() < end + 30)):
            time.sleep(0.05)
        return t.check(d.alive(), "`run` is still running after %.1f s" % (time.monotonic() - start),
                       d.tail())

    try:
        t.check(w.holding.wait(30), "the holder's transaction is open before the first start")
        # 1. mid-COPY on the first start (an empty target: the snapshot uses COPY).
        failpoint_run("mid_copy", K)
        t.eq(L.count_rows(dst, "items"), (K - 1) * BATCH,
             "mid_copy@%d: the target holds exactly the %d batches committed before it" % (K, K - 1))
        # 2. SIGKILL at random moments: the first one during start-up, the others 0.5-3 s
        #    after the run committed its first page (a start waits for open writers).
        for i in range(rnd.randint(3, 5)):
            before = position_text(dst)
            if i == 0:
                ok = normal_run(rnd.uniform(0.0, 0.5))
            else:
                ok = (normal_run(0, lambda: position_text(dst) != before)
                      and normal_run_more(rnd.uniform(0.5, 3.0)))
            if ok:
                d.kill()
                runs["killed"] += 1
            if not timer.ident and '"stream"' in (position_text(dst) or ""):
                timer.start()  # the first snapshot is over: TRUNCATE during the next run(s)
        if not timer.ident:
            timer.start()
        # 3. the other failpoints, each after a normal run stopped by SIGTERM.
        for point, n in (("after_target_commit", rnd.randint(2, 8)), ("between_pages", rnd.randint(2, 8)),
                         ("after_seal", 1), ("mid_prune", 1)):
            until = (lambda: prunable(src) > 0) if point == "mid_prune" else None
            if normal_run(rnd.uniform(1.0, 3.0), until):
                if point == "mid_prune":
                    t.check(prunable(src) > 0, "changelog entries every consumer applied exist (%d) "
                            "before mid_prune" % prunable(src))
                ts = time.monotonic()
                rc = d.term(60)
                runs["stopped"] += 1
                t.eq(rc, 0, "SIGTERM under load: `run` exits 0 (in %.1f s)" % (time.monotonic() - ts),
                     d.tail())
            failpoint_run(point, n)
        # 4. a normal run until the writers are done (at least 2 s of them).
        d.start()
        last = time.monotonic()
        while time.monotonic() - t0 < DURATION or time.monotonic() - last < 2.0:
            time.sleep(0.1)
        timer.join()
        if w.truncated_at:
            t.log("TRUNCATE %.1f s after the writers started" % (w.truncated_at - t0))
    except BaseException:
        d.kill()  # a failed check above is no reason to leave lockstep running
        raise
    finally:
        timer.cancel()
        t.check(w.stop(), "the writer threads stop")
    t.log("writers ran %.1f s; runs: %r" % (time.monotonic() - t0, runs))
    t.check(not truncate_errors and w.counts["truncate"] == 1, "the TRUNCATE ran", repr(truncate_errors))
    t.check(not w.errors, "writers met no unexpected error", "\n".join(w.errors))
    t.check(w.counts["committed"] > 50 and w.counts["insert"] and w.counts["rekey"]
            and w.counts["delete"] and w.counts["body"],
            "writers committed every kind of change (%s)" % w.summary())
    t.check(d.alive(), "the last `run` is still running", d.tail())

    try:
        W.wait_equal(t, src, dst, WHERE, DEADLINE)
        bad = W.versions_monotonic(dst)
        t.eq(bad, [], "no key's version went backwards in the target (%d versions logged)" % W.log_count(dst),
             "\n".join("key %s: %r" % (k, W.version_history(dst, k)) for k in bad[:5]))
    finally:
        rc = d.term(60)
    t.eq(rc, 0, "SIGTERM stops the last `run` with exit 0", d.tail())
    L.verify(t, cfg, "items", expect=0)
    with open(wd.file("run.log"), errors="replace") as f:
        logs = f.read()
    # Every restart resumes from the position: one snapshot from scratch (the first
    # start), never a fresh start; the TRUNCATE was met (again by a run killed before
    # it recorded the re-snapshot).
    t.eq((logs.count("snapshot first"), logs.count("taking a fresh snapshot"), "was truncated" in logs),
         (1, 0, True), "restarts resume: (snapshots from scratch, fresh starts, TRUNCATE met) in the logs")
    errors = [l for l in logs.splitlines() if "level=error" in l]
    t.log("%d error lines in the logs of all runs%s" % (
        len(errors), (": " + errors[0].strip()) if errors else ""))


t.case(test_crash)
t.finish()
