"""Memory soak (label slow; `make soak`, not CI): lockstep run's RSS stays flat.

One daemon runs, for LK_SOAK_MINUTES (30 by default), every kind of work at once:

- rt: a real-time job (PostgreSQL -> PostgreSQL) under 2 concurrent writers (inserts,
  updates, deletes, key changes, long transactions);
- poll: a poll job every 5 s (PostgreSQL -> SQLite) while a thread touches 40 rows a second;
- tick: a `sql` job every 1 s;
- ex: an `exec` job every 2 s printing JSON progress lines.

The daemon's VmRSS is sampled every 5 s into WD/rss.csv. "The RSS at minute T" is the
median of the samples in the minute before T, so one sample taken while a page is in
flight (RSS moves by a couple of MiB within seconds) does not decide the verdict. The
verdict compares the RSS at the end with the RSS after the warm-up
(LK_SOAK_WARMUP_MINUTES, 2 by default): within 10%. The peak over the whole run must
stay within 25% of the warm-up figure, and is reported. The work itself is checked by
oracles outside lockstep: the target equals the source (md5), no key's version went
backwards, the SQLite copy of the polled table equals its source, and every scheduled
job really ran many times without a failed run.
"""
import os
import random
import sqlite3
import threading
import time

import lktest as L
import rtwriters as W

L.require_pg()
t = L.Suite("test_rss_soak")

MINUTES = float(os.environ.get("LK_SOAK_MINUTES", "30"))
WARMUP = float(os.environ.get("LK_SOAK_WARMUP_MINUTES", "2"))
TOLERANCE = 0.10


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else None


def window(samples, end_s, width_s=60):
    """The median RSS of the samples in (end_s - width_s, end_s]."""
    return median([k for s, k in samples if end_s - width_s < s <= end_s])


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


class Toucher:
    """Updates 40 random rows of the polled table every second (cursor updated_at)."""

    def __init__(self, url, n):
        self.url, self.n = url, n
        self.stop_ev = threading.Event()
        self.th = threading.Thread(target=self._loop, daemon=True)
        self.count = 0

    def _loop(self):
        c = L.connect(self.url)
        c.autocommit = True
        rnd = random.Random(7)
        try:
            with c.cursor() as cur:
                while not self.stop_ev.is_set():
                    ids = [rnd.randint(1, self.n) for _ in range(40)]
                    cur.execute("UPDATE users SET last_name = md5(random()::text), updated_at = clock_timestamp() "
                                "WHERE id = ANY(%s)", (ids,))
                    self.count += 1
                    self.stop_ev.wait(1.0)
        finally:
            c.close()

    def start(self):
        self.th.start()

    def stop(self):
        self.stop_ev.set()
        self.th.join(30)


def runs_by_status(state_path, job):
    c = sqlite3.connect(state_path, timeout=30)
    try:
        return dict(c.execute("SELECT status, count(*) FROM lockstep_runs WHERE job = ? GROUP BY status", (job,)))
    finally:
        c.close()


def test_rss_flat():
    src, dst = L.new_db("soak_src"), L.new_db("soak_dst")
    W.create_source(src, n=20000)
    W.create_target(dst)
    L.create_users_pg(src, 5000, updated_at_type="timestamptz")
    wd = L.Workdir("soak_rss")
    poll_db = wd.file("poll.db")
    aux = L.new_db("soak_aux")
    L.execute(aux, "CREATE TABLE ticks (n bigserial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
    jobs = {
        "rt": {"source": {"db": "src", "table": "items"},
               "target": {"db": "dst", "table": "items", "create": False, "deletes": "delete"},
               "mode": "realtime", "batch": 500},
        "poll": {"source": {"db": "src", "table": "users"}, "target": {"db": "lite", "table": "users", "create": True},
                 "mode": "poll", "cursor": "updated_at", "lookback": "1m", "batch": 500, "every": "5s"},
        "tick": {"kind": "sql", "db": "aux", "every": "1s",
                 "sql": "INSERT INTO ticks DEFAULT VALUES; DELETE FROM ticks WHERE n < currval('ticks_n_seq') - 1000"},
        "ex": {"kind": "exec", "every": "2s", "timeout": "30s",
               "command": ["/bin/sh", "-c", 'echo \'{"progress": 50, "stage": "half"}\'; sleep 0.2; '
                           'echo \'{"progress": 100, "stats": {"processed": 10, "total": 10}}\'']},
    }
    cfg = L.sync_config(wd, {"src": src, "dst": dst, "aux": aux, "lite": "sqlite:" + poll_db}, jobs,
                        extra={"retention": "10m"})
    writers = W.Writers(src, n=2, body_kb=(1, 8), hold_s=(0.5, 2.0), pause_s=(0.02, 0.1), log=t.log)
    toucher = Toucher(src, 5000)
    run = W.Daemon(cfg, wd.file("run.log"))
    run.start()
    samples = []
    t0 = time.monotonic()
    try:
        end = t0 + MINUTES * 60
        warm_at = t0 + WARMUP * 60
        writers.start()
        toucher.start()
        with open(wd.file("rss.csv"), "w") as csv:
            csv.write("seconds,rss_kib\n")
            while time.monotonic() < end and run.alive():
                time.sleep(5)
                if not run.alive():
                    break
                now = time.monotonic()
                kib = rss_kib(run.p.pid)
                samples.append((now - t0, kib))
                csv.write("%.0f,%d\n" % (now - t0, kib))
                csv.flush()
                if warm_at <= now < warm_at + 5:
                    t.log("RSS after %.1f min of warm-up: %.1f MiB" % (WARMUP, window(samples, now - t0) / 1024))
                if len(samples) % 60 == 0:
                    t.log("%4.0f s: RSS %.1f MiB, writers %s" % (now - t0, kib / 1024, writers.summary()))
        t.check(run.alive(), "lockstep run ran for the whole soak", run.tail(4000))
        warm = window(samples, WARMUP * 60)
        final = window(samples, samples[-1][0]) if samples else None
        peak = max(k for _, k in samples) if samples else None
        t.check(warm is not None and final is not None, "RSS samples after the warm-up and at the end")
        if warm and final:
            ratio = final / warm
            t.log("RSS: warm-up %.1f MiB, end %.1f MiB (ratio %.3f), peak %.1f MiB over %.0f min"
                  % (warm / 1024, final / 1024, ratio, peak / 1024, MINUTES))
            t.check(abs(ratio - 1.0) <= TOLERANCE,
                    "the RSS at the end (%.1f MiB) is within 10%% of the RSS after the warm-up (%.1f MiB)"
                    % (final / 1024, warm / 1024))
            t.check(peak <= warm * 1.25, "the peak RSS (%.1f MiB) stays within 25%% of the warm-up RSS"
                    % (peak / 1024))
        writers.stop()
        toucher.stop()
        t.eq(writers.errors, [], "the writers saw no unexpected error")
        t.log("writers: %s; toucher rounds %d" % (writers.summary(), toucher.count))
        W.wait_equal(t, src, dst, None, 180, what="rt: the target equals the source at the end")
        t.eq(W.versions_monotonic(dst), [], "rt: no key's version ever went backwards")
        time.sleep(12)  # two more polls after the last touch
        a = L.rows_canonical(src, "users", ["id"])
        b = L.rows_canonical("sqlite:" + poll_db, "users", ["id"])
        d = L.compare_rows(a, b)
        t.check(len(a) == 5000 and d == [], "poll: the SQLite copy equals the source (%d rows, %d differ)"
                % (len(a), len(d)), L.describe_diff(a, b, d))
        minimum = max(3, int(MINUTES * 60 / 10))
        for job in ("poll", "tick", "ex"):
            st = runs_by_status(wd.file("state.db"), job)
            t.log("runs of %s: %s" % (job, st))
            t.eq(st.get("failed", 0), 0, "%s: no failed run" % job)
        for job in ("tick", "ex"):
            # retention 10m keeps only the recent runs: at least the last minutes' worth
            st = runs_by_status(wd.file("state.db"), job)
            t.check(st.get("succeeded", 0) >= min(minimum, 100), "%s ran many times (%s)" % (job, st))
        rc = run.term(60)
        t.eq(rc, 0, "SIGTERM stops lockstep run with exit 0", run.tail(3000))
    finally:
        writers.stop()
        toucher.stop()
        run.kill()


t.case(test_rss_flat)
t.finish()
