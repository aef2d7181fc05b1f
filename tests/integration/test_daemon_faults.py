"""`lockstep run` and a database that goes away: the per-database circuit breaker.

This test starts a cluster of its own with pg-test-env.sh (stopping the shared one would
break the tests running beside it). It holds the source table; the target is in the
shared cluster. A snapshot job runs every second with one connection attempt per run
(`retry: {attempts: 1}`) and the source database has `breaker: {failures: 2, cooldown:
2s, probe_timeout: 1s}`.

- breaker: with the source cluster crash-stopped (pg_ctl -m immediate), the log says the
  circuit breaker opened; runs are recorded failed, quickly, with an error that says the
  database is failing fast; lockstep_instances.detail.breakers shows the source `open`
  (and the target `closed`); after the cooldown the breaker probes (half-open) and opens
  again while the source stays down. With the cluster started again the log shows
  half-open, then closed; the heartbeat shows it closed; rows inserted, updated and
  deleted on the source after the restart reach the target without restarting lockstep,
  and the target equals the source (md5 over the rows, computed by each server).
  lockstep never exits by itself and stops with exit 0 on SIGTERM.
- probe_timeout: a "database" that accepts TCP connections and never answers (a
  listening socket nobody accepts from). An sql job every 1 s with one attempt per run,
  breaker {failures: 1, cooldown: 1s, probe_timeout: 2s}: the first run waits for the
  normal connect timeout (10 s), the breaker opens, and the half-open probes fail after
  about 2 s (their own timeout), not 10; the runs in between fail fast.
- probe_answered: a source behind a loopback proxy that first closes every connection
  (transient failures: the breaker {failures: 1, cooldown: 1s} opens), then forwards to
  the test cluster, where the URL's database does not exist yet: the half-open probe fails
  with a non-transient error, and the breaker must open again (it stayed half-open for
  good, failing every run fast until lockstep restarted). Once the database is created
  (the cause fixed, as a corrected password would be: the test cluster trusts every
  login), the next probe closes the breaker and the job succeeds, without a restart.
- store_restart: a PostgreSQL state store in a cluster of its own, crash-restarted
  (pg_ctl -m immediate) under a running daemon with a real-time job (SQLite to SQLite)
  and an `sql` job every second: the long-lived store handles (the heartbeat's, the
  real-time thread's, the API's) reconnect; /api/health's state_store check is ok again,
  the sql job's runs are recorded again, and rows changed after the restart reach the
  target (read with sqlite3). Found by the chaos soak (`make soak`).
"""
import json
import os
import re
import socket
import sqlite3
import time

import lkchaos as C
import lktest as L
import rtwriters as W

L.require_pg()
t = L.Suite("test_daemon_faults")

N = L.scale(5000)


def sq(wd, query, params=()):
    c = sqlite3.connect(wd.file("state.db"), timeout=30)
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


def runs(wd, job, since_ms=0):
    return sq(wd, "SELECT * FROM lockstep_runs WHERE job = ? AND started_ms >= ? ORDER BY started_ms, id",
              (job, since_ms))


def breakers(wd, name):
    """{db: breaker dict} from the heartbeat of instance `name`."""
    rows = sq(wd, "SELECT detail FROM lockstep_instances WHERE name = ?", (name,))
    if not rows:
        return {}
    try:
        d = json.loads(rows[0]["detail"] or "{}")
    except ValueError:
        return {}
    return dict((b.get("db"), b) for b in d.get("breakers", []))


def brief(rs, limit=10):
    keys = ("status", "rows_read", "rows_written", "started_ms", "finished_ms", "error")
    return "%d run(s):\n%s" % (len(rs), "\n".join(repr(dict((k, r.get(k)) for k in keys)) for r in rs[-limit:]))


def now_ms():
    return int(time.time() * 1000)


def test_breaker():
    cluster = run = None
    try:
        # synchronous_commit on: the crash must keep the rows the test wrote (with it off,
        # a loaded machine lost the source's first rows, and the oracle blamed lockstep)
        cluster = L.Cluster("src", prefix="lk_dmf_", sync_commit=True)
        L.execute(cluster.url(), "CREATE DATABASE brk_src")
        src = cluster.url("brk_src")
        dst = L.new_db("dmf_brk_dst")
        L.execute(src, "CREATE TABLE items (id bigint PRIMARY KEY, status text NOT NULL, version bigint NOT NULL, "
                       "payload text)")
        L.execute(src, "INSERT INTO items SELECT i, 'active', 1, md5(i::text) FROM generate_series(1, %d) i" % N)
        wd = L.Workdir("dmf_breaker")
        cfg = L.sync_config(wd, {
            "src": {"url": src, "breaker": {"failures": 2, "cooldown": "2s", "probe_timeout": "1s"}},
            "dst": dst,
        }, {"copy": {
            "source": {"db": "src", "table": "items"},
            "target": {"db": "dst", "table": "items", "create": True},
            "mode": "snapshot", "every": "1s", "batch": 1000, "retry": {"attempts": 1}}},
            extra={"instance": {"name": "it_brk"}})
        run = W.Daemon(cfg, wd.file("run.log"), env={"LOCKSTEP_SHUTDOWN_GRACE": "10s"}).start()

        def md5s():
            return L.pg_md5(src, "items", ["id"]), L.pg_md5(dst, "items", ["id"])

        def equal():
            try:
                a, b = md5s()
                return a == b
            except L.psycopg2.Error:
                return False

        t.check(L.wait_for(lambda: [r for r in runs(wd, "copy") if r["status"] == "succeeded"], deadline=60)
                and L.wait_for(equal, deadline=30), "the job copies the source while it is up", run.tail(3000))

        # ---- the source goes away
        mark, down_ms = len(run.output()), now_ms()
        cluster.stop_immediate()
        t.log("source cluster stopped (-m immediate)")
        t.check(L.wait_for(lambda: "circuit breaker open" in run.output()[mark:] or not run.alive(), deadline=30)
                and run.alive(), "source down: the log says the circuit breaker is open", run.tail(3000))
        m = re.search(r"database 'src': circuit breaker open after (\d+) consecutive failures", run.output()[mark:])
        t.check(m and int(m.group(1)) == 2, "source down: it opened after 2 consecutive failures (breaker.failures)",
                run.tail(2000))

        def fast_failures():
            return [r for r in runs(wd, "copy", down_ms) if r["status"] == "failed"
                    and "failing fast" in (r["error"] or "")]

        ff = L.wait_for(lambda: len(fast_failures()) >= 2, deadline=20) and fast_failures()
        t.check(ff, "source down: runs are recorded failed with an error saying the database is failing fast",
                brief(runs(wd, "copy", down_ms)))
        if ff:
            t.check(all("circuit breaker is open" in r["error"] and "'src'" in r["error"] for r in ff),
                    "source down: the error names the database and its open breaker", brief(ff))
            took = [r["finished_ms"] - r["started_ms"] for r in ff]
            t.check(all(0 <= x < 1000 for x in took), "source down: failing-fast runs end at once (%s ms)" % took)
        bs = L.wait_for(lambda: breakers(wd, "it_brk").get("src", {}).get("state") == "open"
                        and breakers(wd, "it_brk"), deadline=10, step=0.3)
        t.check(bs, "source down: lockstep_instances.detail.breakers shows src open", repr(breakers(wd, "it_brk")))
        if bs:
            t.check(bs["src"].get("failures", 0) >= 2, "source down: the src breaker counts its failures (%r)"
                    % bs["src"].get("failures"))
            t.eq(bs.get("dst", {}).get("state"), "closed", "source down: the target's breaker stays closed",
                 repr(bs))
        t.check(L.wait_for(lambda: "database 'src': circuit breaker half-open, probing" in run.output()[mark:],
                           deadline=15), "source down: after the cooldown the breaker probes (half-open)")
        time.sleep(1.5)
        tail = run.output()[mark:]
        t.check(tail.count("circuit breaker open after") >= 2,
                "source down: the failed probe opens the breaker again (%d opens)"
                % tail.count("circuit breaker open after"), tail[-3000:])
        t.check("database 'src': circuit breaker closed" not in tail, "source down: the breaker never closed")
        n_down = len(runs(wd, "copy", down_ms))
        t.check(run.alive(), "source down: lockstep keeps running", run.tail(2000))

        # ---- the source comes back, with changes made after its restart
        mark = len(run.output())
        cluster.start()
        t.log("source cluster started again")
        up_ms = now_ms()
        L.execute(src, "INSERT INTO items SELECT i, 'new', 1, 'after the outage' FROM generate_series(%d, %d) i"
                  % (N + 1, N + 300))
        L.execute(src, "UPDATE items SET version = version + 1, status = 'changed' WHERE id % 17 = 3")
        L.execute(src, "DELETE FROM items WHERE id % 101 = 5")  # snapshot without deletes: kept in the target
        t.check(L.wait_for(lambda: "database 'src': circuit breaker closed" in run.output()[mark:], deadline=30),
                "source back: the log says the breaker closed", run.tail(3000))
        tail = run.output()[mark:]
        i_half = tail.find("circuit breaker half-open")
        i_closed = tail.find("circuit breaker closed")
        t.check(0 <= i_half < i_closed, "source back: half-open (probe) came before closed", tail[-3000:])
        t.check(L.wait_for(lambda: breakers(wd, "it_brk").get("src", {}).get("state") == "closed", deadline=10),
                "source back: the heartbeat shows the src breaker closed", repr(breakers(wd, "it_brk")))
        t.eq(breakers(wd, "it_brk").get("src", {}).get("failures"), 0, "source back: its failure count is reset")

        # The job has no deletes: compare the rows the source still has, and the deleted
        # ones separately (a snapshot keeps them in the target).
        def caught_up():
            try:
                a = L.pg_md5(src, "items", ["id"])
                b = L.pg_md5(dst, "items", ["id"], where="id % 101 <> 5")
                return a == b, a, b
            except L.psycopg2.Error as e:
                return False, None, repr(e)

        ok = L.wait_for(lambda: caught_up()[0], deadline=60, step=0.5)
        _, a, b = caught_up()
        t.check(ok, "source back: the target catches up by itself: md5 of the source == md5 of the target "
                "(the rows the source still has) (%r, %r)" % (a, b),
                brief(runs(wd, "copy", up_ms)) + "\n" + run.tail(2000))
        fresh = L.count_rows(src, "items", "id > %d" % N)
        t.check(fresh > 250, "source back: the source holds %d of the rows inserted after its restart" % fresh)
        t.eq(L.count_rows(dst, "items", "id > %d AND id %% 101 <> 5" % N), fresh,
             "source back: the rows inserted after the restart are in the target")
        # rows the source deleted stay in the target (no deletes), changed or not depending
        # on whether a run saw the update before the delete: left out of this count
        t.eq(L.count_rows(dst, "items", "status = 'changed' AND version = 2 AND id % 101 <> 5"),
             L.count_rows(src, "items", "status = 'changed' AND version = 2"),
             "source back: the updates made after the restart are in the target")
        # a run that began (as the probe) just before up_ms may be the one that succeeded
        later = [r for r in runs(wd, "copy") if r["status"] == "succeeded" and (r["finished_ms"] or 0) >= up_ms]
        t.check(later, "source back: runs succeed again", brief(runs(wd, "copy", up_ms)))
        t.check(n_down >= 3, "source down: the job kept firing while the source was down (%d runs)" % n_down)

        t.check(run.alive(), "lockstep never exited by itself", run.tail(2000))
        rc = run.term(60)
        t.eq(rc, 0, "SIGTERM: lockstep run exits 0", run.tail(3000))
    finally:
        if run is not None:
            if run.alive():
                run.kill()
            if t.failed:
                print("---- lockstep log (tail) ----\n%s" % run.tail(6000))
        if cluster is not None:
            cluster.destroy()


def test_probe_timeout():
    lsn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(64)  # never accepted: the kernel completes the handshake, nobody answers
    port = lsn.getsockname()[1]
    wd = L.Workdir("dmf_probe")
    cfg = L.sync_config(wd, {
        "silent": {"url": "postgresql://postgres@127.0.0.1:%d/x" % port,
                   # a cooldown of 1.5 s against fires every 1 s: a fire always falls inside it
                   # (with 1 s, the fire after a failure raced the cooldown's end by the few ms
                   # between a fire and its connect, and a busy machine lost the race)
                   "breaker": {"failures": 1, "cooldown": "1500ms", "probe_timeout": "2s"}},
    }, {"q": {"kind": "sql", "db": "silent", "every": "1s", "sql": "SELECT 1", "retry": {"attempts": 1}}},
        extra={"instance": {"name": "it_probe"}})
    run = W.Daemon(cfg, wd.file("run.log"), env={"LOCKSTEP_SHUTDOWN_GRACE": "5s"}).start()
    try:
        def took(r):
            return (r["finished_ms"] - r["started_ms"]) / 1000.0

        def probes():
            return [r for r in runs(wd, "q") if r["status"] == "failed" and "failing fast" not in (r["error"] or "")
                    and r["finished_ms"]]

        t.check(L.wait_for(lambda: len(probes()) >= 3, deadline=60), "probe_timeout: a first try and 2 probes failed",
                brief(runs(wd, "q")) + "\n" + run.tail(2000))
        ps = probes()
        t.log("connect attempts took %s s" % ", ".join("%.1f" % took(r) for r in ps[:4]))
        t.check(9.0 <= took(ps[0]) <= 13.0, "probe_timeout: the first try waits the normal 10 s connect timeout "
                "(%.1f s)" % took(ps[0]), brief(ps))
        t.check(all(1.5 <= took(r) <= 3.5 for r in ps[1:3]),
                "probe_timeout: each half-open probe gives up after its own 2 s timeout (%s)"
                % ", ".join("%.1f" % took(r) for r in ps[1:3]), brief(ps))
        fast = [r for r in runs(wd, "q") if "failing fast" in (r["error"] or "")]
        t.check(len(fast) >= 1 and all(took(r) < 0.5 for r in fast),
                "probe_timeout: runs between the probes fail fast (%d)" % len(fast), brief(fast))
        failed = [r for r in runs(wd, "q") if r["status"] == "failed"]
        log = run.output()
        first, again = log.count("job q: run failed"), log.count("job q: still failing")
        t.check(first == 1 and 1 <= again < len(failed) - 1,
                "failure log: one 'run failed' line, then repeats held back (%d + %d lines for %d failed runs)"
                % (first, again, len(failed)), log[-3000:])
        t.eq(run.term(30), 0, "probe_timeout: SIGTERM stops lockstep run with exit 0", run.tail(2000))
    finally:
        run.kill()
        lsn.close()


def test_probe_answered():
    db = "t_dmf_answered_%d" % os.getpid()
    L.execute(L.pg_url(), "DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing listens there: the proxy closes each connection it accepts
    proxy = C.Proxy("127.0.0.1", dead_port, "answered")
    wd = L.Workdir("dmf_answered")
    cfg = L.sync_config(wd, {
        "ans": {"url": proxy.url(db), "breaker": {"failures": 1, "cooldown": "1s", "probe_timeout": "2s"}},
    }, {"q": {"kind": "sql", "db": "ans", "every": "1s", "sql": "SELECT 1", "retry": {"attempts": 1}}},
        extra={"instance": {"name": "it_answered"}})
    run = W.Daemon(cfg, wd.file("run.log"), env={"LOCKSTEP_SHUTDOWN_GRACE": "5s"}).start()
    try:
        t.check(L.wait_for(lambda: "database 'ans': circuit breaker open after" in run.output(), deadline=30),
                "probe_answered: connections closed by the proxy open the breaker", run.tail(3000))
        mark = len(run.output())
        info = L.pg()
        proxy.target = (info["host"], info["port"])  # the server answers now: no such database
        t.log("the proxy forwards to the test cluster; database %s does not exist" % db)

        def answered_probe():
            return [r for r in runs(wd, "q") if r["status"] == "failed" and "does not exist" in (r["error"] or "")]

        t.check(L.wait_for(answered_probe, deadline=30), "probe_answered: the half-open probe reached the server "
                "and failed with 'does not exist'", brief(runs(wd, "q")) + "\n" + run.tail(3000))
        reopened = re.compile(r"database 'ans': circuit breaker open after \d+ consecutive failures \([^)]*does not "
                              r"exist")
        t.check(L.wait_for(lambda: reopened.search(run.output()[mark:]), deadline=20),
                "probe_answered: the probe's non-transient failure opens the breaker again (not half-open for good)",
                run.tail(3000))
        t.check(L.wait_for(lambda: len(re.findall(r"database 'ans': circuit breaker half-open",
                                                  run.output()[mark:])) >= 2, deadline=20),
                "probe_answered: a new probe follows the new cooldown", run.tail(3000))
        L.execute(L.pg_url(), "CREATE DATABASE %s" % db)
        fixed_ms = now_ms()
        t.log("database %s created" % db)
        t.check(L.wait_for(lambda: [r for r in runs(wd, "q", fixed_ms) if r["status"] == "succeeded"], deadline=30),
                "probe_answered: once the cause is fixed, the job succeeds again without a restart",
                brief(runs(wd, "q")) + "\n" + run.tail(3000))
        t.check("database 'ans': circuit breaker closed" in run.output()[mark:],
                "probe_answered: the log says the breaker closed", run.tail(2000))
        t.check(L.wait_for(lambda: breakers(wd, "it_answered").get("ans", {}).get("state") == "closed", deadline=10),
                "probe_answered: the heartbeat shows the breaker closed", repr(breakers(wd, "it_answered")))
        t.eq(run.term(30), 0, "probe_answered: SIGTERM stops lockstep run with exit 0", run.tail(2000))
    finally:
        run.kill()
        proxy.close()
        L.execute(L.pg_url(), "DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)


def test_store_restart():
    # synchronous_commit on: a crash keeps what was acknowledged (the migrations too)
    cluster = L.Cluster("store", prefix="lk_dmf_", sync_commit=True)
    run = None
    try:
        store = cluster.url("postgres")
        wd = L.Workdir("dmf_store")
        for name in ("a.db", "b.db"):
            with sqlite3.connect(wd.file(name)) as c:
                c.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
        with sqlite3.connect(wd.file("a.db")) as c:
            c.executemany("INSERT INTO items VALUES (?, 0)", [(i,) for i in range(1, 201)])
            c.execute("CREATE TABLE ticks (at TEXT)")
        cfg = L.sync_config(wd, {"a": "sqlite:a.db", "b": "sqlite:b.db"}, {
            "rt": {"source": {"db": "a", "table": "items"}, "target": {"db": "b"}, "mode": "realtime"},
            "tick": {"kind": "sql", "db": "a", "every": "1s", "sql": "INSERT INTO ticks VALUES (1)"},
        }, state=store, extra={"instance": {"name": "it_store"}, "cluster": {"lease": "4s", "renew": "1s"},
                                "http": {"listen": "127.0.0.1:0"}})
        run = W.Daemon(cfg, wd.file("run.log"), env={"LOCKSTEP_SHUTDOWN_GRACE": "5s"}).start()
        m = L.wait_for(lambda: re.search(r"HTTP API on http://[^:]+:(\d+)/", run.output()), 30)
        port = int(m.group(1)) if m else 0

        def health():
            import urllib.request
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/api/health" % port, timeout=5) as r:
                    return json.loads(r.read().decode())
            except Exception as e:  # 503 when UNHEALTHY
                body = getattr(e, "read", lambda: b"{}")()
                return json.loads(body.decode() or "{}")

        def store_ok():
            return dict((c["name"], c["status"]) for c in health().get("checks", [])).get("state_store") == "ok"

        def target_sum():
            with sqlite3.connect(wd.file("b.db"), timeout=30) as c:
                return c.execute("SELECT count(*), coalesce(sum(v), 0) FROM items").fetchone()

        def recorded():
            return L.scalar(cluster.url("postgres"), "SELECT count(*) FROM lockstep.runs WHERE job = 'tick'")

        t.check(L.wait_for(lambda: target_sum() == (200, 0), 30), "store_restart: the real-time job copied the rows")
        t.check(L.wait_for(store_ok, 10), "store_restart: the state store check is ok", health())
        cluster.restart_immediate()
        t0 = time.monotonic()
        n0 = L.wait_for(lambda: recorded(), 30)
        with sqlite3.connect(wd.file("a.db")) as c:
            c.execute("UPDATE items SET v = v + 1")
        t.check(L.wait_for(lambda: target_sum() == (200, 200), 30),
                "store_restart: rows changed after the restart reach the target", target_sum())
        t.check(L.wait_for(store_ok, 30), "store_restart: /api/health's state_store check is ok again (%.1f s)"
                % (time.monotonic() - t0), health())
        t.check(L.wait_for(lambda: recorded() >= (n0 or 0) + 3, 30),
                "store_restart: the sql job's runs are recorded again", run.tail(2000))
        t.check("reconnected to the state store" in run.output(), "store_restart: the log says it reconnected",
                run.tail(2000))
        t.check(run.alive(), "store_restart: lockstep never exited by itself")
        t.eq(run.term(30), 0, "store_restart: SIGTERM stops lockstep run with exit 0", run.tail(2000))
    finally:
        if run:
            run.kill()
        cluster.destroy()


t.case(test_breaker)
t.case(test_probe_timeout)
t.case(test_probe_answered)
t.case(test_store_restart)
t.finish()
