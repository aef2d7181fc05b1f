"""Scheduled verification in `lockstep run` (issue 19, docs/verify.md): a job key
`verify: {every: DURATION, repair: BOOL}`.

Drift is planted straight into the target, behind lockstep's back: rows updated,
deleted, and keys the source never had inserted. It is planted on keys the writers
never touch (rtwriters.RESERVED_BELOW), so only a verify pass can find and heal it.
Equality is judged by oracles that are not lockstep: lktest.pg_md5 (each server's md5
over the rows as text) PostgreSQL to PostgreSQL, rows_canonical + compare_rows across
engines. The state store is read with Python's sqlite3, /metrics and /api/* over HTTP.

Cases:
- heal_realtime: a real-time PostgreSQL -> PostgreSQL job with `verify: {every: 2s,
  repair: true}` streams while 4 writer threads change the source; drift is planted
  mid-way. Once the writes stop, the target equals the source within one interval plus
  30 s; lockstep_repaired_rows_total{job_name="items"} counts at least the planted
  rows; runs of type `verify` are recorded and repaired them; no key's version ever went
  backwards in the target (a trigger logs every version it writes).
- no_false_alarms: `verify: {every: 1s, repair: false}` under 4 writers for at least
  20 s and 5 passes: every recorded pass found 0 differences, the gauge
  lockstep_verify_differences{job_name="items"} was never above 0, /api/health's
  `verify` check is ok. Then drift is planted (writers stopped): the gauge becomes the
  number planted, /api/health is DEGRADED with its `verify` check not ok, `lockstep
  status --json` and /api/jobs show the last pass's differences, and nothing was repaired.
- poll_and_cross_engine: one daemon with three jobs, each with `verify: {every: 2s,
  repair: true}` (the last with the cron form, `schedule: "*/2 * * * * *"`): a poll job PostgreSQL -> PostgreSQL, a real-time job PostgreSQL ->
  SQLite (the table made by lockstep) and a real-time job SQLite -> PostgreSQL. Drift
  planted into each target (and new source changes) is healed within one interval plus
  30 s; the repaired-rows counter of each job counts at least the planted rows.
"""
import datetime
import decimal
import hashlib
import http.client
import json
import os
import re
import sqlite3
import time

import lktest as L
import rtwriters as W

L.require_pg()
t = L.Suite("test_verify_daemon")

TOKEN = "verify-d43mon"
N = max(400, L.scale(3000))          # rows in each source table
HEAL_S = 30                          # the bound after one interval
try:
    _SCALE = float(os.environ.get("LK_SCALE") or 1)
except ValueError:
    _SCALE = 1.0
WRITE_S = max(8.0, 20.0 * _SCALE)    # seconds of concurrent writes


# ---------------------------------------------------------------------------
# helpers


class Api(W.Daemon):
    """`lockstep run` with its HTTP API (port read from its log)."""

    def __init__(self, cfg, wd):
        super().__init__(cfg, wd.file("run.log"), {"LOCKSTEP_SHUTDOWN_GRACE": "10s"})
        self.start()
        m = L.wait_for(lambda: re.search(r"HTTP API on http://[^:]+:(\d+)/", self.output()) or not self.alive(),
                       30, 0.1)
        self.port = int(m.group(1)) if m and m is not True else None
        if not t.check(self.port, "the daemon logs its HTTP API's address", self.tail()):
            self.kill()
            raise RuntimeError("lockstep run did not start")

    def req(self, method, path, body=None):
        """(status, parsed JSON or text); (None, error text) when the request failed."""
        if not self.port:
            return None, "no port"
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = {"Authorization": "Bearer " + TOKEN}
        data = None if body is None else json.dumps(body)
        if data is not None:
            h["Content-Type"] = "application/json"
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            text = r.read().decode("utf-8", "replace")
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text
        except OSError as e:
            return None, str(e)
        finally:
            c.close()

    def metric(self, name, job):
        """The value of series `name` with label job_name="JOB" in /metrics, or None."""
        code, text = self.req("GET", "/metrics")
        if code != 200 or not isinstance(text, str):
            return None
        pat = re.compile(r'^%s\{([^}]*)\} (\S+)$' % re.escape(name))
        for line in text.splitlines():
            m = pat.match(line)
            if m and ('job_name="%s"' % job) in m.group(1):
                return float(m.group(2))
        return None

    def health(self):
        code, h = self.req("GET", "/api/health")
        return h if isinstance(h, dict) else {}

    def stop(self, what):
        t.eq(self.term(60), 0, "%s: SIGTERM stops lockstep run with exit 0" % what, self.tail())


def check_of(h, name):
    return dict((c.get("name"), c) for c in h.get("checks", [])).get(name)


def config(wd, dbs, jobs):
    return L.sync_config(wd, dbs, jobs, extra={"http": {"listen": "127.0.0.1:0", "token": TOKEN}})


def verify_runs(wd, job):
    """Rows (dicts) of lockstep_runs of `job` of type verify, read with sqlite3."""
    path = wd.file("state.db")
    if not os.path.exists(path):
        return []
    c = sqlite3.connect(path, timeout=30)
    try:
        c.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in c.execute(
                "SELECT * FROM lockstep_runs WHERE job = ? AND type = 'verify' ORDER BY started_ms, id",
                (job,))]
        except sqlite3.OperationalError:
            return []
    finally:
        c.close()


def brief(rs, limit=10):
    keys = ("id", "status", "rows_read", "rows_written", "rows_failed", "started_ms", "finished_ms", "error")
    return "%d run(s):\n%s" % (len(rs), "\n".join(repr(dict((k, r.get(k)) for k in keys)) for r in rs[-limit:]))


def position_phase(dst, job, table="lockstep_sync.position"):
    try:
        rows = L.execute(dst, "SELECT pos FROM %s WHERE job = %%s" % table, (job,))
    except L.psycopg2.Error:
        return None
    if not rows or rows[0][0] is None:
        return None
    v = rows[0][0]
    return (v if isinstance(v, dict) else json.loads(v)).get("phase")


def add_reserved(src, table="items", n=20):
    """Source keys -1..-n: the writers never touch them (rtwriters.RESERVED_BELOW)."""
    L.execute(src, "INSERT INTO %s (id, status, version, name, doc) SELECT -g, 'active', 1, "
                   "'reserved ' || g, jsonb_build_object('g', g) FROM generate_series(1, %d) g"
              % (L._quote_pg(table), n))


def plant_pg(dst, table="items"):
    """Drift on reserved keys: 5 changed, 4 missing, 3 extra; returns the count (12)."""
    q = L._quote_pg(table)
    L.sql(dst,
          "UPDATE %s SET name = 'drift ' || id, doc = '{\"drift\": true}' WHERE id IN (-1, -2, -3, -4, -5)" % q,
          "DELETE FROM %s WHERE id IN (-6, -7, -8, -9)" % q,
          "INSERT INTO %s (id, status, version, name) VALUES (-101, 'active', 1, 'extra'), "
          "(-102, 'active', 1, 'extra'), (-103, 'active', 1, 'extra')" % q)
    return 12


def rt_job(verify, table="items"):
    return {"source": {"db": "src", "table": table},
            "target": {"db": "dst", "table": table, "create": False},
            "mode": "realtime", "batch": 200, "verify": verify}


def start_streaming(d, src, dst, what):
    t.check(L.wait_for(lambda: position_phase(dst, "items") == "stream" or not d.alive(), 120, 0.2)
            and d.alive(), "%s: the real-time job streams" % what, d.tail())
    W.wait_equal(t, src, dst, None, 120, what="%s: the target equals the source before the writers "
                 "(md5 oracle)" % what)


# ---------------------------------------------------------------------------
# e. drift healed under writers


def test_heal_realtime():
    src, dst = L.new_db("vd_heal_src"), L.new_db("vd_heal_dst")
    W.create_source(src, N)
    add_reserved(src)
    W.create_target(dst)
    wd = L.Workdir("vd_heal")
    interval = 2
    cfg = config(wd, {"src": src, "dst": dst}, {"items": rt_job({"every": "%ds" % interval, "repair": True})})
    d = Api(cfg, wd)
    w = W.Writers(src, n=4, hold_s=(0.5, 2.0), body_kb=(1, 8), log=t.log)
    try:
        start_streaming(d, src, dst, "heal")
        before = d.metric("lockstep_repaired_rows_total", "items") or 0
        w.start()
        t0 = time.monotonic()
        t.check(L.wait_for(lambda: w.counts["committed"] >= 50, 60, 0.1),
                "heal: the writers are committing (%s)" % w.summary())
        planted = plant_pg(dst)
        t.log("heal: drift planted (%d keys) %.1f s into the writes" % (planted, time.monotonic() - t0))
        while time.monotonic() - t0 < WRITE_S:  # the workload's length, not a synchronisation
            if not d.alive():
                break
            time.sleep(0.2)
    finally:
        t.check(w.stop(), "heal: the writer threads stop")
    try:
        t.check(not w.errors, "heal: the writers met no unexpected error", "\n".join(w.errors))
        t.check(d.alive(), "heal: lockstep run survived the writes", d.tail())
        W.wait_equal(t, src, dst, None, interval + HEAL_S,
                     what="heal: within one interval + %d s of the last write the target equals the "
                          "source, planted drift included (md5 oracle)" % HEAL_S)
        bad = W.versions_monotonic(dst)
        t.eq(bad, [], "heal: no key's version went backwards in the target (%d logged)" % W.log_count(dst),
             "\n".join("key %s: %r" % (k, W.version_history(dst, k)) for k in bad[:5]))
        grew = L.wait_for(lambda: (d.metric("lockstep_repaired_rows_total", "items") or 0) - before >= planted,
                          interval + HEAL_S, 0.5)
        t.check(grew, "heal: lockstep_repaired_rows_total{job_name=\"items\"} grew by at least %d (%r -> %r)"
                % (planted, before, d.metric("lockstep_repaired_rows_total", "items")))
        # a pass may be going now: wait (a slow machine, a sanitizer build) until two ended
        L.wait_for(lambda: len([r for r in verify_runs(wd, "items") if r.get("finished_ms")]) >= 2,
                   60, 0.2)
        rs = verify_runs(wd, "items")
        done = [r for r in rs if r.get("finished_ms")]
        t.check(len(done) >= 2 and all(r.get("status") == "succeeded" for r in done),
                "heal: passes are recorded as runs of type verify, each succeeded", brief(rs))
        t.check(sum(r.get("rows_written") or 0 for r in done) >= planted,
                "heal: the verify runs repaired at least the %d planted rows (rows_written)" % planted, brief(rs))
        t.check(any((r.get("rows_read") or 0) >= N for r in done),
                "heal: a verify run read the source's rows (rows_read >= %d)" % N, brief(rs))
        d.stop("heal")
    finally:
        d.kill()


# ---------------------------------------------------------------------------
# f. no false alarms under writers; then unrepaired drift is shown


def test_no_false_alarms():
    src, dst = L.new_db("vd_quiet_src"), L.new_db("vd_quiet_dst")
    W.create_source(src, N)
    add_reserved(src)
    W.create_target(dst)
    wd = L.Workdir("vd_quiet")
    cfg = config(wd, {"src": src, "dst": dst}, {"items": rt_job({"every": "1s", "repair": False})})
    d = Api(cfg, wd)
    w = W.Writers(src, n=4, hold_s=(0.5, 2.0), body_kb=(1, 8), log=t.log)
    gauges = []
    try:
        start_streaming(d, src, dst, "quiet")
        n0 = len([r for r in verify_runs(wd, "items") if r.get("finished_ms")])
        w.start()
        t0 = time.monotonic()

        def enough():
            g = d.metric("lockstep_verify_differences", "items")
            if g is not None:
                gauges.append(g)
            done = len([r for r in verify_runs(wd, "items") if r.get("finished_ms")]) - n0
            return (time.monotonic() - t0 >= WRITE_S and done >= 5) or not d.alive()
        L.wait_for(enough, max(90, 4 * WRITE_S), 0.5)
        t.log("quiet: %.1f s of writes (%s)" % (time.monotonic() - t0, w.summary()))
    finally:
        t.check(w.stop(), "quiet: the writer threads stop")
    try:
        t.check(not w.errors, "quiet: the writers met no unexpected error", "\n".join(w.errors))
        t.check(d.alive(), "quiet: lockstep run survived the writes", d.tail())
        rs = [r for r in verify_runs(wd, "items") if r.get("finished_ms")]
        t.check(len(rs) - n0 >= 5, "quiet: at least 5 verify passes ran during the writes", brief(rs))
        t.eq([r for r in rs if (r.get("rows_failed") or 0) != 0 or r.get("status") != "succeeded"], [],
             "quiet: every verify pass under writers succeeded and found 0 differences (rows_failed 0)",
             brief(rs))
        t.check(gauges and max(gauges) == 0,
                "quiet: lockstep_verify_differences{job_name=\"items\"} stayed 0 (%d samples)" % len(gauges),
                repr(gauges[-40:]))
        vc = check_of(d.health(), "verify")
        t.check(vc is not None and vc.get("status") == "ok", "quiet: /api/health's verify check is ok", vc)
        W.wait_equal(t, src, dst, None, 120, what="quiet: the stream caught up (md5 oracle)")

        # drift, repair: false: found, shown, not repaired
        planted = plant_pg(dst)
        g = L.wait_for(lambda: d.metric("lockstep_verify_differences", "items") == planted, 60, 0.5)
        t.check(g, "quiet: with drift planted the gauge becomes %d (%r)" % (
            planted, d.metric("lockstep_verify_differences", "items")))
        t.check(d.metric("lockstep_verify_last_pass_timestamp_seconds", "items") is not None and
                abs(d.metric("lockstep_verify_last_pass_timestamp_seconds", "items") - time.time()) < 120,
                "quiet: lockstep_verify_last_pass_timestamp_seconds is a recent time",
                d.metric("lockstep_verify_last_pass_timestamp_seconds", "items"))
        h = d.health()
        vc = check_of(h, "verify")
        t.check(h.get("status") == "DEGRADED" and vc is not None and vc.get("status") == "warn",
                "quiet: /api/health is DEGRADED with its verify check warn", h)
        rc, out, err = L.run_lockstep(["status", "--json"], cfg, timeout=60)
        obj = L.whole_json(out) or {}
        job = dict((j.get("name"), j) for j in obj.get("jobs", [])).get("items") or {}
        lv = job.get("lastVerify") or {}
        t.check(rc == 0 and lv.get("type") == "verify" and lv.get("rowsFailed") == planted
                and lv.get("rowsWritten") == 0,
                "quiet: status --json: lastVerify is a verify run with %d differences, 0 repaired" % planted,
                L.show(rc, out, err))
        rc, out, err = L.run_lockstep(["status"], cfg, timeout=60)
        t.check(rc == 0 and re.search(r"last verify .*\b%d differences, 0 repaired" % planted, out),
                "quiet: status shows the last verify: %d differences, 0 repaired" % planted, L.show(rc, out, err))
        code, body = d.req("GET", "/api/jobs")
        js = dict((j.get("name"), j) for j in (body or {}).get("jobs", [])) if isinstance(body, dict) else {}
        v = (js.get("items") or {}).get("verify") or {}
        lp = v.get("lastPass") or {}
        t.check(code == 200 and v.get("repair") is False and v.get("everySeconds") == 1
                and lp.get("type") == "verify" and (lp.get("stats") or {}).get("rowsFailed") == planted
                and (lp.get("stats") or {}).get("rowsWritten") == 0 and lp.get("finishTime"),
                "quiet: /api/jobs shows the verify schedule and the last pass (%d differences, 0 repaired)"
                % planted, body)
        last = [r for r in verify_runs(wd, "items") if r.get("finished_ms")][-1:]
        t.check(last and last[0].get("rows_failed") == planted and (last[0].get("rows_written") or 0) == 0,
                "quiet: the last verify run found %d differences and repaired none" % planted, brief(last))
        t.eq(L.count_rows(dst, "items", "id IN (-101, -102, -103)"), 3,
             "quiet: repair: false leaves the drift in place (the extra rows are still there)")
        d.stop("quiet")
    finally:
        d.kill()


# ---------------------------------------------------------------------------
# g. a poll job and both cross-engine directions, in one daemon

X_COLS = ["id", "status", "version", "name", "amount", "ts", "data"]
X_PG_DDL = ("CREATE TABLE items (id bigint PRIMARY KEY, status text NOT NULL, version bigint NOT NULL, "
            "name text, amount numeric(12,2), ts timestamptz, data bytea)")
X_SQLITE_DDL = ("CREATE TABLE items (id INTEGER PRIMARY KEY, status TEXT NOT NULL, version INTEGER NOT NULL, "
                "name TEXT, amount NUMERIC TEXT, ts TIMESTAMPTZ TEXT, data BLOB)")
BASE = datetime.datetime(2024, 1, 1, tzinfo=L.UTC)


def x_row(i, name=None):
    return (i, "inactive" if i % 3 == 0 else "active", 1,
            name or (None if i % 11 == 0 else "name %d %s" % (i, chr(1024 + i % 200))),
            None if i % 13 == 0 else str((decimal.Decimal(i) * decimal.Decimal("1.25")).quantize(
                decimal.Decimal("0.01"))),
            L.fmt_ts(BASE + datetime.timedelta(seconds=i, microseconds=i), True),
            None if i % 7 == 0 else hashlib.md5(str(i).encode()).digest())


def x_fill_pg(url, n):
    L.sql(url, X_PG_DDL,
          "INSERT INTO items SELECT i, CASE WHEN i %% 3 = 0 THEN 'inactive' ELSE 'active' END, 1, "
          "CASE WHEN i %% 11 = 0 THEN NULL ELSE 'name ' || i || ' ' || chr(1024 + i %% 200) END, "
          "CASE WHEN i %% 13 = 0 THEN NULL ELSE (i * 1.25)::numeric(12,2) END, "
          "'2024-01-01 00:00:00+00'::timestamptz + i * interval '1 second 1 microsecond', "
          "CASE WHEN i %% 7 = 0 THEN NULL ELSE decode(md5(i::text), 'hex') END "
          "FROM generate_series(1, %d) i" % n)


def sqlite_exec(path, *stmts):
    c = sqlite3.connect(path, timeout=30)
    try:
        c.execute("PRAGMA busy_timeout = 30000")
        for s in stmts:
            if isinstance(s, tuple):
                c.executemany(s[0], s[1])
            else:
                c.execute(s)
        c.commit()
    finally:
        c.close()


def x_fill_sqlite(path, n):
    c = sqlite3.connect(path)
    try:
        c.execute("PRAGMA journal_mode = WAL")
        c.execute(X_SQLITE_DDL)
        c.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)", [x_row(i) for i in range(1, n + 1)])
        c.commit()
    finally:
        c.close()


CHANGED, MISSING, EXTRA = [5, 50, 150, 250, 350], [7, 70, 170, 270], [-101, -102, -103]
PLANTED = len(CHANGED) + len(MISSING) + len(EXTRA)


def ids(keys):
    return ",".join(map(str, keys))


def x_plant_sqlite(path):
    sqlite_exec(path,
                "UPDATE items SET name = 'drift ' || id, amount = '0.01' WHERE id IN (%s)" % ids(CHANGED),
                "DELETE FROM items WHERE id IN (%s)" % ids(MISSING),
                ("INSERT INTO items (id, status, version, name, amount, ts, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 [x_row(k, "extra") for k in EXTRA]))


def x_plant_pg(url):
    L.sql(url,
          "UPDATE items SET name = 'drift ' || id, amount = 0.01 WHERE id IN (%s)" % ids(CHANGED),
          "DELETE FROM items WHERE id IN (%s)" % ids(MISSING),
          "INSERT INTO items (id, status, version, name) VALUES %s"
          % ", ".join("(%d, 'active', 1, 'extra')" % k for k in EXTRA))


def x_diff(a_url, b_url):
    a = L.rows_canonical(a_url, "items", ["id"], X_COLS)
    b = L.rows_canonical(b_url, "items", ["id"], X_COLS)
    return a, b, L.compare_rows(a, b)


def copied(a_url, b_url):
    """True once the target table exists and equals the source (canonical rows)."""
    try:
        return not x_diff(a_url, b_url)[2]
    except (RuntimeError, sqlite3.Error, L.psycopg2.Error):  # the target table is not made yet
        return False


def test_poll_and_cross_engine():
    wd = L.Workdir("vd_x")
    src, dst = L.new_db("vd_x_src"), L.new_db("vd_x_dst")
    W.create_source(src, N, table="pitems")
    W.create_target(dst, table="pitems", log_table=None)
    x_fill_pg(src, N)                       # PostgreSQL source of p2l
    lite_src, lite_dst = wd.file("source.db"), wd.file("target.db")
    x_fill_sqlite(lite_src, N)              # SQLite source of l2p
    interval = 2
    ver = {"every": "%ds" % interval, "repair": True}
    ver_cron = {"schedule": "*/%d * * * * *" % interval, "repair": True}  # the cron form
    jobs = {"pl": {"source": {"db": "src", "table": "pitems"},
                   "target": {"db": "dst", "table": "pitems", "create": False},
                   "mode": "poll", "cursor": "updated_at", "every": "1s", "batch": 500, "verify": ver},
            "p2l": {"source": {"db": "src", "table": "items"},
                    "target": {"db": "lite_t", "table": "items", "create": True},
                    "mode": "realtime", "batch": 200, "verify": ver},
            "l2p": {"source": {"db": "lite_s", "table": "items"},
                    "target": {"db": "dst", "table": "items", "create": True},
                    "mode": "realtime", "batch": 200, "verify": ver_cron}}
    cfg = config(wd, {"src": src, "dst": dst, "lite_t": "sqlite:" + lite_dst, "lite_s": "sqlite:" + lite_src},
                 jobs)
    pairs = {"p2l": (src, "sqlite:" + lite_dst), "l2p": ("sqlite:" + lite_src, dst)}
    d = Api(cfg, wd)
    try:
        W.wait_equal(t, src, dst, None, 120, src_table="pitems", dst_table="pitems",
                     what="x: the poll job copied pitems (md5 oracle)")
        for job, (a, b) in pairs.items():
            ok = L.wait_for(lambda: copied(a, b), 120, 0.5)
            t.check(ok, "x: %s copied its table (canonical-row oracle)" % job, d.tail())
        before = dict((j, d.metric("lockstep_repaired_rows_total", j) or 0) for j in jobs)

        # drift in every target, and new source changes beside it
        L.sql(dst,
              "UPDATE pitems SET name = 'drift ' || id WHERE id IN (%s)" % ids(CHANGED),
              "DELETE FROM pitems WHERE id IN (%s)" % ids(MISSING),
              "INSERT INTO pitems (id, status, version, name) VALUES %s"
              % ", ".join("(%d, 'active', 1, 'extra')" % k for k in EXTRA))
        x_plant_sqlite(lite_dst)
        x_plant_pg(dst)
        L.sql(src, "UPDATE pitems SET version = version + 1, name = 'new', updated_at = now() WHERE id IN (1, 2)",
              "UPDATE items SET version = version + 1, name = 'new' WHERE id IN (1, 2)")
        sqlite_exec(lite_src, "UPDATE items SET version = version + 1, name = 'new' WHERE id IN (1, 2)")
        t0 = time.monotonic()
        deadline = interval + HEAL_S

        W.wait_equal(t, src, dst, None, deadline, src_table="pitems", dst_table="pitems",
                     what="x: poll job pl healed within one interval + %d s (md5 oracle)" % HEAL_S)
        for job, (a, b) in pairs.items():
            last = {}

            def same():
                last["v"] = x_diff(a, b)
                return not last["v"][2]
            ok = L.wait_for(same, max(1, deadline - (time.monotonic() - t0)), 0.5)
            a_rows, b_rows, diff = last["v"]
            t.check(ok, "x: %s healed within one interval + %d s of the drift (canonical-row oracle, "
                    "%.1f s)" % (job, HEAL_S, time.monotonic() - t0),
                    "%d keys differ:\n%s" % (len(diff), L.describe_diff(a_rows, b_rows, diff)))
        for job in jobs:
            grew = L.wait_for(lambda: (d.metric("lockstep_repaired_rows_total", job) or 0) - before[job]
                              >= PLANTED, 30, 0.5)
            t.check(grew, "x: lockstep_repaired_rows_total{job_name=\"%s\"} grew by at least %d (%r -> %r)"
                    % (job, PLANTED, before[job], d.metric("lockstep_repaired_rows_total", job)))
            rs = [r for r in verify_runs(wd, job) if r.get("finished_ms")]
            t.check(rs and sum(r.get("rows_written") or 0 for r in rs) >= PLANTED,
                    "x: %s's verify runs are recorded and repaired at least %d rows" % (job, PLANTED), brief(rs))
        t.check(d.alive(), "x: lockstep run is still running", d.tail())
        d.stop("x")
    finally:
        d.kill()


t.case(test_heal_realtime)
t.case(test_no_false_alarms)
t.case(test_poll_and_cross_engine)
t.finish()
