"""test_resnapshot_manual - `resnapshot: manual` holds a real-time job that needs a fresh
snapshot, says so once, and shows it, instead of re-copying by itself (issue 17,
"Re-snapshots are controlled").

The event is a capture gap on a real SQLite source file: SQLite's documented 12-step ALTER
rebuilds the table, which drops lockstep's triggers, and writes follow while capture is off.
The targets (real SQLite files) are judged with the cross-engine oracle (lktest.rows_canonical
+ compare_rows), never through lockstep.

- catch_up: `lockstep sync` of the manual job exits non-zero naming the reason and the way
  out, and again on the next run (the job stays held, the target is left as it was: it
  differs, and that is said); `sync --full` then converges and later runs stream again. The
  auto job on the same table re-snapshots by itself and converges.
- hold_persists (PostgreSQL): a hold for source_went_back is recorded in the target's
  position, so it outlives the evidence (the restored source's counter passing the old
  horizon again) until `sync --full`.
- daemon: `lockstep run` streams both jobs; after the rebuild the auto job converges,
  the manual one is held: /api/health's resnapshots check warns naming it, /metrics shows
  lockstep_resnapshot_held 1 and counts lockstep_capture_gaps_total for both; POST /api/sync
  with type full re-snapshots it, the target converges and the gauge returns to 0.
"""

import http.client
import json
import re
import sqlite3

import lktest as L
import rtwriters as W

L.require_pg()
t = L.Suite("test_resnapshot_manual")

DEADLINE = 120  # seconds to converge (waited for, never a timing assertion)
TOKEN = "t0k3n-resnap"

DDL = "CREATE TABLE items (id INTEGER PRIMARY KEY, sku TEXT NOT NULL, qty INTEGER, note TEXT);"
REBUILD = """
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE new_items (id INTEGER PRIMARY KEY, sku TEXT NOT NULL, qty INTEGER, note TEXT);
INSERT INTO new_items SELECT id, sku, qty, note FROM items;
DROP TABLE items;
ALTER TABLE new_items RENAME TO items;
COMMIT;
"""


def sql(path, script):
    c = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        c.executescript(script)
    finally:
        c.close()


def writes(path, base, n=5):
    """n inserts from key base, n updates and n deletes of older keys."""
    j = base // 1000
    stmts = ["BEGIN;"]
    for i in range(n):
        stmts.append("INSERT INTO items VALUES (%d, 'new-%d', %d, 'w');" % (base + i, base + i, i))
        stmts.append("UPDATE items SET note = 'upd %d' WHERE id = %d;" % (base, 20 * j + i))
        stmts.append("DELETE FROM items WHERE id = %d;" % (150 + 20 * j + i))
    stmts.append("COMMIT;")
    sql(path, "\n".join(stmts))


class Setup:
    """A source file with items (200 rows) and two SQLite targets: job `auto` (the default)
    and job `manual` (resnapshot: manual), both real-time."""

    def __init__(self, name, http=False):
        self.w = L.Workdir(name)
        self.src = self.w.file("src.db")
        sql(self.src, DDL + "BEGIN;" + "".join(
            "INSERT INTO items VALUES (%d, 'sku-%d', %d, 'n');" % (i, i, i) for i in range(1, 201))
            + "COMMIT;")
        jobs = {}
        for name in ("auto", "manual"):
            jobs[name] = {"source": {"db": "src", "table": "items"}, "mode": "realtime",
                          "batch": 50, "target": {"db": name, "table": "items", "create": True}}
        jobs["manual"]["resnapshot"] = "manual"
        extra = {"http": {"listen": "127.0.0.1:0", "token": TOKEN}} if http else None
        self.cfg = L.sync_config(self.w, {"src": "sqlite:src.db", "auto": "sqlite:auto.db",
                                          "manual": "sqlite:manual.db"}, jobs, extra=extra)

    def diff(self, job):
        a = L.rows_canonical("sqlite:" + self.src, "items", ["id"])
        try:
            b = L.rows_canonical("sqlite:" + self.w.file(job + ".db"), "items", ["id"])
        except (RuntimeError, sqlite3.Error):
            return a, {}, ["(no target table yet)"]
        return a, b, L.compare_rows(a, b)

    def equal(self, job):
        return not self.diff(job)[2]

    def check_equal(self, job, what):
        a, b, d = self.diff(job)
        t.check(len(a) > 0 and not d, "%s: job %s's target equals the source (oracle, %d rows)"
                % (what, job, len(a)), "%d keys differ:\n%s" % (len(d), L.describe_diff(a, b, d)))


def test_catch_up():
    s = Setup("resnap_manual")
    for job in ("auto", "manual"):
        L.sync(t, s.cfg, job)
    writes(s.src, 1000)
    for job in ("auto", "manual"):
        L.sync(t, s.cfg, job)
        s.check_equal(job, "catch_up: before the rebuild")
    sql(s.src, REBUILD)
    writes(s.src, 2000)  # made while capture is off
    rc, _, err = L.sync(t, s.cfg, "manual", expect=1)
    t.check(rc != 0, "catch_up: the manual job's run fails instead of re-copying", err[-2000:])
    t.check(re.search(r"job manual needs a fresh snapshot: .*triggers were missing.* \(reason "
                      r"capture_gap\); it has resnapshot: manual.*lockstep sync manual --full", err) is not None,
            "catch_up: its error names the reason and the way out", err[-2000:])
    t.check("taking a fresh snapshot" not in err and "copied" not in err,
            "catch_up: the manual job copies nothing", err[-2000:])
    t.check(not s.equal("manual"), "catch_up: its target is left as it was (it differs, and that "
            "was said)")
    rc, out, err = L.run_lockstep(["status"], s.cfg)
    t.check(rc == 0 and re.search(r"manual .*failed.*\n\s+error: job manual needs a fresh snapshot", out),
            "catch_up: `lockstep status` shows the job held and why", out + err)
    rc, _, err = L.sync(t, s.cfg, "manual", expect=1)
    t.check(rc != 0 and "needs a fresh snapshot" in err,
            "catch_up: the next run is still held (the gap is not forgotten)", err[-2000:])
    _, _, err = L.sync(t, s.cfg, "auto")
    t.check("taking a fresh snapshot" in err or "re-snapshotting" in err,
            "catch_up: the auto job re-snapshots by itself", err[-2000:])
    s.check_equal("auto", "catch_up: after the rebuild")
    rc, out, err = L.run_lockstep(["status"], s.cfg)
    t.check(rc == 0 and re.search(r"(?m)^auto .*\n(\s+lag: .*\n)?\s+re-snapshots: 1, the last at "
                                  r"\S+ \(capture_gap: .*triggers were missing", out),
            "catch_up: `lockstep status` shows the auto job's re-snapshot and why", out + err)
    rc, out, err = L.run_lockstep(["status", "--json"], s.cfg)
    jobs = {j["name"]: j for j in json.loads(out)["jobs"]} if rc == 0 else {}
    rs = jobs.get("auto", {}).get("resnapshots") or {}
    t.check(rs.get("count") == 1 and rs.get("reason") == "capture_gap" and rs.get("last"),
            "catch_up: `status --json` has it too", out + err)
    t.check(jobs.get("manual", {}).get("resnapshots", "absent") is None,
            "catch_up: the held job took none", out)
    L.sync(t, s.cfg, "manual", "--full")
    s.check_equal("manual", "catch_up: after `sync manual --full`")
    writes(s.src, 3000)
    _, _, err = L.sync(t, s.cfg, "manual")
    t.check("needs a fresh snapshot" not in err, "catch_up: later runs stream again", err[-2000:])
    s.check_equal("manual", "catch_up: writes after the full run")


def req(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    h = {"Authorization": "Bearer " + TOKEN}
    data = None
    if body is not None:
        data = json.dumps(body)
        h["Content-Type"] = "application/json"
    try:
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def metric(port, line):
    code, text = req(port, "GET", "/metrics")
    return code == 200 and any(l.startswith(line) for l in text.splitlines())


def health_check(port):
    code, text = req(port, "GET", "/api/health")
    if code not in (200, 503):
        return {}
    return {c["name"]: c for c in json.loads(text).get("checks", [])}.get("resnapshots", {})


def test_daemon():
    s = Setup("resnap_daemon", http=True)
    d = W.Daemon(s.cfg, s.w.file("run.log"), {"LOCKSTEP_SHUTDOWN_GRACE": "10s"}).start()
    try:
        m = L.wait_for(lambda: re.search(r"HTTP API on http://[^:]+:(\d+)/", d.output())
                       or not d.alive(), deadline=30, step=0.1)
        t.check(bool(m) and d.alive(), "daemon: it logs the HTTP API's address", d.tail())
        port = int(m.group(1))
        L.wait_for(lambda: s.equal("auto") and s.equal("manual"), DEADLINE, 0.3)
        writes(s.src, 1000)
        L.wait_for(lambda: s.equal("auto") and s.equal("manual"), DEADLINE, 0.3)
        for job in ("auto", "manual"):
            s.check_equal(job, "daemon: before the rebuild")
        sql(s.src, REBUILD)
        writes(s.src, 2000)
        L.wait_for(lambda: s.equal("auto") and metric(port, 'lockstep_resnapshot_held{job="manual"} 1'),
                   DEADLINE, 0.5)
        s.check_equal("auto", "daemon: the auto job after the rebuild")
        t.check(not s.equal("manual"), "daemon: the manual job's target is left as it was")
        t.check(metric(port, 'lockstep_resnapshot_held{job="manual"} 1'),
                "daemon: /metrics shows the manual job held")
        for job in ("auto", "manual"):
            t.check(metric(port, 'lockstep_capture_gaps_total{job="%s"} ' % job)
                    and not metric(port, 'lockstep_capture_gaps_total{job="%s"} 0' % job),
                    "daemon: /metrics counts job %s's capture gap" % job)
        rs = health_check(port)
        t.check(rs.get("status") == "warn" and "job manual" in rs.get("detail", "")
                and "resnapshot: manual" in rs.get("detail", "")
                and "lockstep sync manual --full" in (rs.get("recommendation") or ""),
                "daemon: /api/health's resnapshots check names the held job and the way out",
                json.dumps(rs))
        rc, out, err = L.run_lockstep(["status"], s.cfg)
        t.check(rc == 0 and re.search(r"re-snapshots: 1, the last at \S+ \(capture_gap: ", out)
                and re.search(r"(?m)^manual .*failed.*\n\s+error: job manual needs a fresh", out),
                "daemon: `lockstep status` shows auto's re-snapshot and manual held", out + err)
        log = d.output()
        t.eq(log.count("job manual needs a fresh snapshot"), 1,
             "daemon: the hold is logged once (the job retries quietly)", d.tail())
        code, body = req(port, "POST", "/api/sync", {"job": "manual", "type": "full"})
        t.eq(code, 202, "daemon: POST /api/sync type full is accepted", body)
        L.wait_for(lambda: s.equal("manual"), DEADLINE, 0.3)
        s.check_equal("manual", "daemon: the manual job after its full run")
        t.check(L.wait_for(lambda: metric(port, 'lockstep_resnapshot_held{job="manual"} 0'), 30, 0.3),
                "daemon: the held gauge returns to 0")
        writes(s.src, 3000)
        L.wait_for(lambda: s.equal("auto") and s.equal("manual"), DEADLINE, 0.3)
        for job in ("auto", "manual"):
            s.check_equal(job, "daemon: writes after the full run")
    finally:
        rc = d.term()
    t.eq(rc, 0, "daemon: SIGTERM stops lockstep run with exit 0", d.tail())


def test_throttle():
    s = Setup("resnap_throttle", http=True)
    d = W.Daemon(s.cfg, s.w.file("run.log"), {"LOCKSTEP_SHUTDOWN_GRACE": "10s"}).start()
    try:
        L.wait_for(lambda: s.equal("auto") or not d.alive(), DEADLINE, 0.3)
        sql(s.src, REBUILD)
        writes(s.src, 1000)
        L.wait_for(lambda: s.equal("auto") or not d.alive(), DEADLINE, 0.3)
        s.check_equal("auto", "throttle: the first re-snapshot is not held back")
        sql(s.src, REBUILD)
        writes(s.src, 2000)
        m = L.wait_for(lambda: re.search(r"job auto: .*triggers were missing.*re-snapshotting, with "
                                         r"the sweep \(about \d+ rows\); re-snapshot 2 within the "
                                         r"hour: throttled, it starts in (\d+) s", d.output())
                       or not d.alive(), DEADLINE, 0.3)
        t.check(bool(m) and d.alive() and 30 <= int(m.group(1)) <= 60,
                "throttle: a second one within the hour waits, saying why, how big and how long",
                d.tail())
        t.check(not s.equal("auto"), "throttle: meanwhile the target differs (and that was said)")
        stopped = d.term()
        t.eq(stopped, 0, "throttle: SIGTERM during the wait stops lockstep run with exit 0", d.tail())
        d.start()  # a new process: the gap is still in the changelog, not forgotten
        L.wait_for(lambda: s.equal("auto") or not d.alive(), DEADLINE, 0.3)
        s.check_equal("auto", "throttle: after a restart the gap is met again and the job converges")
    finally:
        rc = d.term()
    t.eq(rc, 0, "throttle: SIGTERM stops lockstep run with exit 0", d.tail())


AHEAD = 5000  # xids the moved position is ahead of the source


def test_hold_persists():
    """A hold is recorded in the target's position, not only in the process: a job held for
    source_went_back stays held after the restored source's transaction counter has passed
    the old horizon again (then the guard alone could no longer see it)."""
    w = L.Workdir("resnap_persist")
    src, dst = L.new_db("resnap_persist_s"), L.new_db("resnap_persist_t")
    L.execute(src, "CREATE TABLE users (id bigint PRIMARY KEY, v bigint NOT NULL)")
    L.execute(src, "INSERT INTO users SELECT i, 1 FROM generate_series(1, 100) i")
    cfg = L.sync_config(w, {"src": src, "dst": dst}, {
        "users": {"source": {"db": "src", "table": "users"}, "mode": "realtime",
                  "resnapshot": "manual", "target": {"db": "dst", "table": "users", "create": True}}})
    L.sync(t, cfg, "users")
    # What a source restored from an older backup looks like to the guard: its counter is
    # behind the position's horizon (here the position is moved ahead instead).
    nxt = int(L.scalar(src, "SELECT pg_snapshot_xmax(pg_current_snapshot())::text"))
    p = json.loads(L.scalar(dst, "SELECT pos::text FROM lockstep_sync.position"))
    # far ahead: other tests on the same cluster use transaction ids meanwhile
    p["h"] = str(nxt + AHEAD)
    L.execute(dst, "UPDATE lockstep_sync.position SET pos = %s", (json.dumps(p),))
    _, _, err = L.sync(t, cfg, "users", expect=1)
    t.check("reason source_went_back" in err, "persist: the run is held, source_went_back", err[-2000:])
    L.execute(src, "DO $$ BEGIN FOR i IN 1..%d LOOP PERFORM txid_current(); COMMIT; END LOOP; "
              "END $$" % (AHEAD + 20))
    t.check(int(L.scalar(src, "SELECT pg_snapshot_xmax(pg_current_snapshot())::text")) > nxt + AHEAD,
            "persist: the source's counter has passed the old horizon")
    _, _, err = L.sync(t, cfg, "users", expect=1)
    t.check("reason source_went_back" in err,
            "persist: a later run is still held, for the same reason", err[-2000:])
    L.execute(src, "UPDATE users SET v = 2 WHERE id <= 10")
    L.sync(t, cfg, "users", "--full")
    _, _, err = L.sync(t, cfg, "users")
    t.check("needs a fresh snapshot" not in err and "fresh snapshot" not in err,
            "persist: after the full run the job streams again", err[-2000:])
    t.eq(L.pg_md5(dst, "users", ["id"]), L.pg_md5(src, "users", ["id"]), "persist: md5 oracle")


t.case(test_catch_up)
t.case(test_daemon)
t.case(test_throttle)
t.case(test_hold_persists)
t.finish()
