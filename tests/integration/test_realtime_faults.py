"""Real-time mode rides out database outages by itself, losing nothing.

This test starts two clusters of its own with pg-test-env.sh (restarting the shared
one would break the tests running beside it): one holds the source table, the other
the target. Both run with synchronous_commit = on, so a commit acknowledged before a
crash survives it (the harness default, off, may lose the last commits in a crash,
which would make the oracle blame lockstep for the server's loss).

Four writer threads (psycopg2, reconnecting after every error) update rows, bumping a
per-row `version`, insert fresh keys and delete rows for the whole test, some holding
their transaction open a moment before COMMIT. `lockstep run` streams the job in the
background. Faults, one after the other, while it runs:

  a. the source cluster crash-stops (-m immediate) and starts again;
  b. pg_terminate_backend() of every lockstep session on the source, then on the target;
  c. the target cluster crash-stops and starts again;
  d. the source cluster is shut down (-m fast) for about five seconds, then started.

After each, lockstep must recover without being restarted: its log shows a warning
"reconnecting with back-off" for the outage (again only when the error itself changes,
as in a restart: connection lost, refused, starting up; never once per retry, never an
error-level "until it is fixed"), then "streaming again after" once; and with the
writers paused the target converges to the source (md5 over every row, computed by
each server). At the end the writers stop, the target equals the source, a trigger-fed
log in the target shows that no key's version ever went backwards (no stale
overwrite), and lockstep, still running, exits 0 on SIGTERM.
"""
import random
import re
import signal
import subprocess
import threading
import time

import lktest as L
import rtwriters as W

L.require_pg()
t = L.Suite("test_realtime_faults")

N = L.scale(20000)
WRITERS = 4
DEADLINE = 120  # seconds to wait for a recovery or a convergence (never asserted as timing)


# ---------------------------------------------------------------------------
# writers


class Writers:
    """WRITERS threads changing `items` until stopped; pause() waits for every open
    transaction to end (each operation runs under its thread's lock)."""

    def __init__(self, url, first_new_id):
        self.url = url
        self.stop_flag = False
        self.paused = False
        self.locks = [threading.Lock() for _ in range(WRITERS)]
        self.commits = [0] * WRITERS
        self.errors = [0] * WRITERS
        self.next_id = [first_new_id + k for k in range(WRITERS)]
        self.max_id = first_new_id
        self.threads = [threading.Thread(target=self._loop, args=(k,), daemon=True) for k in range(WRITERS)]
        for th in self.threads:
            th.start()

    def _one(self, k, rnd, cur):
        op = rnd.random()
        hi = max(self.next_id) - WRITERS
        if op < 0.55:  # updates of 1..5 keys in one transaction, in random order
            for _ in range(rnd.randint(1, 5)):
                cur.execute("UPDATE items SET version = version + 1, status = %s, payload = %s "
                            "WHERE id = %s", (rnd.choice(["active", "inactive", "banned"]),
                                              "w%d-%d" % (k, rnd.randint(0, 1 << 30)),
                                              rnd.randint(1, hi)))
        elif op < 0.80:  # a fresh key (never reused), sometimes updated in the same transaction
            i = self.next_id[k]
            self.next_id[k] += WRITERS
            cur.execute("INSERT INTO items VALUES (%s, 'active', 1, %s)", (i, "new %d" % i))
            if rnd.random() < 0.3:
                cur.execute("UPDATE items SET version = version + 1 WHERE id = %s", (i,))
        elif op < 0.92:
            cur.execute("DELETE FROM items WHERE id = %s", (rnd.randint(1, hi),))
        else:  # a bigger statement
            lo = rnd.randint(1, max(1, hi - 50))
            cur.execute("UPDATE items SET version = version + 1, payload = payload || '+' "
                        "WHERE id BETWEEN %s AND %s AND id %% 7 = %s", (lo, lo + 50, k))
        if rnd.random() < 0.1:
            time.sleep(rnd.uniform(0.001, 0.05))  # held open before COMMIT

    def _loop(self, k):
        rnd = random.Random(1000 + k)
        conn = None
        while not self.stop_flag:
            failed = False
            with self.locks[k]:
                if not self.paused:
                    try:
                        if conn is None:
                            conn = L.psycopg2.connect(self.url, connect_timeout=5,
                                                      application_name="rtf_writer")
                        with conn.cursor() as cur:
                            self._one(k, rnd, cur)
                        conn.commit()
                        self.commits[k] += 1
                    except L.psycopg2.Error:
                        self.errors[k] += 1
                        failed = True
                        try:
                            conn.close()
                        except Exception:  # noqa: BLE001 - a broken connection
                            pass
                        conn = None
            if self.paused or failed:
                time.sleep(0.1)
        if conn is not None:
            conn.close()

    def pause(self):
        self.paused = True
        for lk in self.locks:  # every thread has finished its transaction
            lk.acquire()
            lk.release()

    def resume(self):
        self.paused = False

    def stop(self):
        self.stop_flag = True
        for th in self.threads:
            th.join(60)

    def total(self):
        return sum(self.commits), sum(self.errors)


# ---------------------------------------------------------------------------


TARGET_DDL = """
CREATE TABLE items (id bigint PRIMARY KEY, status text NOT NULL, version bigint NOT NULL, payload text);
CREATE TABLE version_log (n bigserial PRIMARY KEY, id bigint NOT NULL, version bigint NOT NULL);
CREATE FUNCTION log_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO version_log (id, version) VALUES (NEW.id, NEW.version); RETURN NULL; END $$;
CREATE TRIGGER log_version AFTER INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION log_version();
"""

BACKWARDS = """
SELECT id, prev, version FROM (
  SELECT id, version, lag(version) OVER (PARTITION BY id ORDER BY n) AS prev FROM version_log) s
WHERE version < prev ORDER BY id LIMIT 10"""


class Run(W.Daemon):
    """`lockstep run` in the background (rtwriters.Daemon)."""

    def __init__(self, cfg, log_path):
        super().__init__(cfg, log_path)
        self.start()

    @property
    def proc(self):
        return self.p

    def text(self):
        return self.output()

    def tail(self, n=60):
        return "\n".join(self.text().splitlines()[-n:])


def diff_rows(src, dst, limit=5):
    """The first keys whose rows differ, with both sides (for failure messages)."""
    a = dict((r[0], r) for r in L.execute(src, "SELECT * FROM items"))
    b = dict((r[0], r) for r in L.execute(dst, "SELECT * FROM items"))
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return "%d differing keys; first: %s" % (len(keys), "; ".join(
        "%s: source %r, target %r" % (k, a.get(k), b.get(k)) for k in keys[:limit]))


def main():
    src_cluster = dst_cluster = writers = run = None
    try:
        src_cluster = L.Cluster("src", prefix="lk_rtf_", sync_commit=True)
        dst_cluster = L.Cluster("dst", prefix="lk_rtf_", sync_commit=True)
        L.execute(src_cluster.url(), "CREATE DATABASE rtf_src")
        L.execute(dst_cluster.url(), "CREATE DATABASE rtf_dst")
        src, dst = src_cluster.url("rtf_src"), dst_cluster.url("rtf_dst")
        L.execute(src, "CREATE TABLE items (id bigint PRIMARY KEY, status text NOT NULL, "
                       "version bigint NOT NULL, payload text)")
        L.execute(src, "INSERT INTO items SELECT i, (ARRAY['active','inactive','banned'])[1 + i %% 3], 1, "
                       "md5(i::text) FROM generate_series(1, %d) i" % N)
        L.execute(dst, TARGET_DDL)

        wd = L.Workdir("rt_faults")
        cfg = L.sync_config(wd, {"src": src, "dst": dst}, {"items": {
            "source": {"db": "src", "table": "items", "key": ["id"]},
            "target": {"db": "dst", "table": "items", "create": False, "deletes": "delete"},
            "mode": "realtime", "batch": 500,
            "retry": {"initial": "200ms", "max": "2s"}}})

        # The first snapshot already runs under writes.
        writers = Writers(src, N + 1)
        run = Run(cfg, wd.file("lockstep.log"))

        def phase():
            try:
                r = L.execute(dst, "SELECT pos FROM lockstep_sync.position WHERE job = 'items'")
            except L.psycopg2.Error:
                return None
            return r[0][0] if r else None

        streaming = L.wait_for(lambda: '"phase":"stream"' in (phase() or "") or run.proc.poll() is not None,
                               deadline=DEADLINE, step=0.25)
        t.check(streaming and run.proc.poll() is None,
                "the first snapshot under writes ends and the job streams", run.tail())

        diverged = []  # once a change is lost for good, later waits need not be long

        def equal_now():
            return L.pg_md5(dst, "items", ["id"]) == L.pg_md5(src, "items", ["id"])

        def converge(what):
            writers.pause()
            try:
                L.wait_for(lambda: run.proc.poll() is not None or equal_now(),
                           deadline=15 if diverged else DEADLINE, step=0.5)
                want, got = L.pg_md5(src, "items", ["id"]), L.pg_md5(dst, "items", ["id"])
                if not t.eq(got, want, "md5 oracle: the target converges to the source (%s)" % what,
                            "" if got == want else diff_rows(src, dst)):
                    diverged.append(what)
                t.check(run.proc.poll() is None, "lockstep is still running (%s)" % what, run.tail())
            finally:
                writers.resume()

        converge("after the first snapshot")

        def fault(name, action, also=None):
            """Runs a fault; checks lockstep's log for this outage and its recovery, then
            the convergence."""
            t.log("fault %s" % name)
            start = len(run.text())
            commits0, _ = writers.total()
            action()
            if also:
                also(start)
            recovered = L.wait_for(lambda: "streaming again after" in run.text()[start:]
                                   or run.proc.poll() is not None, deadline=DEADLINE, step=0.25)
            log = run.text()[start:]
            warns = [re.sub(r"^ts=\S+ ", "", ln) for ln in log.splitlines()
                     if "reconnecting with back-off" in ln]
            errors = [ln for ln in log.splitlines() if "until it is fixed" in ln]
            t.check(recovered and run.proc.poll() is None and log.count("streaming again after") == 1,
                    "%s: lockstep logs 'streaming again after' once, by itself" % name, run.tail())
            # One warning per outage; the daemon logs again only when the error itself
            # changes (a restart: connection lost, refused, starting up), never per retry.
            t.check(warns and len(set(warns)) == len(warns),
                    "%s: the outage is logged as %d 'reconnecting with back-off' warning(s), "
                    "none repeated" % (name, len(warns)), log[-4000:])
            t.check(not errors, "%s: the outage is treated as transient (no 'until it is fixed' error)"
                    % name, "\n".join(errors[:5]))
            m = re.search(r"streaming again after ([0-9.]+) s", log)
            t.log("%s: %d warning line(s), streaming again after %s s" % (
                name, len(warns), m.group(1) if m else "?"))
            # Writes go on after the recovery before the convergence check.
            L.wait_for(lambda: writers.total()[0] > commits0 + 300, deadline=60, step=0.25)
            converge("after fault %s" % name)

        # a. the source crashes mid-stream
        errs0 = writers.total()[1]
        fault("a: source restart-immediate", src_cluster.restart_immediate)
        t.check(writers.total()[1] > errs0, "a: the writers saw the source crash (%d errors)"
                % (writers.total()[1] - errs0))

        # b. every lockstep session killed, on the source, then on the target
        def kill_sessions(url):
            def act():
                n = L.wait_for(lambda: L.scalar(url, "SELECT count(*) FROM pg_stat_activity "
                                                     "WHERE left(application_name, 8) = 'lockstep'"),
                               deadline=30, step=0.25)
                killed = L.execute(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                        "WHERE left(application_name, 8) = 'lockstep'")
                t.check(n > 0 and len(killed) > 0 and all(r[0] for r in killed),
                        "lockstep's %d session(s) terminated" % len(killed))
            return act
        fault("b1: pg_terminate_backend on the source", kill_sessions(src_cluster.url()))
        fault("b2: pg_terminate_backend on the target", kill_sessions(dst_cluster.url()))

        # c. the target crashes
        fault("c: target restart-immediate", dst_cluster.restart_immediate)

        # d. the source is down for about five seconds
        def down_5s():
            src_cluster.stop_fast()
            time.sleep(5)

        def noticed_while_down(start):
            t.check("reconnecting with back-off" in run.text()[start:],
                    "d: lockstep noticed the outage while the source was down", run.tail())
            t.check(run.proc.poll() is None, "d: lockstep keeps running while the source is down",
                    run.tail())
            src_cluster.start()
        fault("d: source down for 5 s", down_5s, also=noticed_while_down)

        writers.stop()
        commits, errs = writers.total()
        t.log("writers: %d commits, %d errors" % (commits, errs))
        t.check(commits > 200, "the writers committed %d transactions during the test" % commits)

        L.wait_for(lambda: run.proc.poll() is not None or equal_now(),
                   deadline=15 if diverged else DEADLINE, step=0.5)
        want = L.pg_md5(src, "items", ["id"])
        got = L.pg_md5(dst, "items", ["id"])
        t.eq(got, want, "md5 oracle: the target equals the source at the end",
             "" if got == want else diff_rows(src, dst))
        t.check(want[1] > N // 2, "the source still holds %d rows" % want[1])
        back = L.execute(dst, BACKWARDS)
        logged = L.scalar(dst, "SELECT count(*) FROM version_log WHERE version > 1")
        t.check(logged > 0, "the version log saw %d updated versions" % logged)
        t.check(not back, "no key's version ever went backwards in the target (no stale overwrite)",
                "(id, before, after): %r" % (back,))

        t.check(run.proc.poll() is None, "lockstep never exited on its own", run.tail())
        run.proc.send_signal(signal.SIGTERM)
        try:
            rc = run.proc.wait(60)
        except subprocess.TimeoutExpired:
            rc = "still running 60 s after SIGTERM"
        t.eq(rc, 0, "SIGTERM: lockstep run exits 0", run.tail())
    finally:
        if writers is not None:
            writers.stop()
        if run is not None:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()
            if t.failed:
                print("---- lockstep log (tail) ----\n%s" % run.tail(80))
        for c in (src_cluster, dst_cluster):
            if c is not None:
                c.destroy()


t.case(main)
t.finish()
