#!/usr/bin/env python3
"""Several `lockstep run` instances on one PostgreSQL state store (SPEC §5, issue 6).

Real processes on the harness's PostgreSQL, leases of 4 s renewed every second so a
takeover is quick. The oracles are not lockstep's code:
- every execution of an `sql` job writes its time range into a table with
  EXCLUDE USING gist (job WITH =, during WITH &&): two instances running one job at once
  fail loudly;
- the lease table, polled by the test, says how long each job went without a live holder;
- real-time jobs: md5 of source and target, and a per-key version log on the target
  whose versions must never go backwards (rtwriters).

Cases:
  spread       3 instances, 6 sql jobs on `every: 1s` for 60 s x LK_SCALE (at least 20 s):
               no overlap, about one execution per second per job, no job unheld longer
               than lease + renew, no instance above ceil(6/3) + 1 leases; then SIGTERM of
               a holder hands its jobs over in under 2 s.
  takeover     SIGKILL of the instance streaming a real-time job while 8 writers run:
               another takes it over within lease + 5 s; equal at the end, versions
               monotonic.
  zombie       SIGSTOP of the streaming instance for longer than the lease, a takeover,
               then SIGCONT: the old holder's writes are fenced or it stopped first; equal,
               versions monotonic; it carries on as a follower.
  cli          `lockstep sync JOB` while an instance holds JOB exits 75 naming the holder;
               `lockstep status` shows the holder and epoch.
  partition    an instance whose state-store connection goes through a loopback proxy
               that stops forwarding stops its job before its lease can expire; the other
               takes it over; no execution overlaps.
  exec_deadline  the same cut with an `exec` job holding a shell and its child, both
               ignoring SIGTERM: the process group is dead (SIGKILL at the lease deadline,
               not after the 5 s SIGTERM grace) before the expiry the store computed for
               the holder's last renewal.
  crash_after_seal  the holder dies right after sealing its epoch (LK_FAILPOINT): another
               instance takes over after the lease; equal, versions monotonic.
  blip         one instance streaming a real-time job, its state-store connection through a
               proxy cut for about a lease: the watch stops the stream, and the lease comes
               back (the late renewal lands, or it is acquired again) while the stream is
               still stopping; the stream must start again and the target catch up (the
               soak found it stayed stopped for good).
  run_on       instances labelled [eu], [us], [eu, big]; jobs pinned with run_on: each is
               only ever held by an instance with all its labels (polled from the lease
               table), a job no instance can run is never held and is logged; a trigger on
               an instance without the labels is a 409 naming run_on; SIGTERM of the
               [eu, big] one leaves its big-only job unheld and moves the eu jobs to [eu].
               Then one instance on an SQLite store: a job its labels do not fit never
               runs, and a trigger is refused the same way.
"""
import calendar
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import lktest as L
import rtwriters as W

t = L.Suite("test_cluster")
LEASE_S, RENEW_S = 4.0, 1.0
CLUSTER = {"lease": "4s", "renew": "1s"}


class Inst:
    """One `lockstep run` with its own config file (same jobs, its own instance name)."""

    def __init__(self, name, dbs, jobs, store, labels=None):
        self.name = name
        self.wd = L.Workdir("cluster_" + name)
        instance = {"name": name}
        if labels is not None:
            instance["labels"] = labels
        self.cfg = L.sync_config(self.wd, dbs, jobs, state=store,
                                 extra={"instance": instance, "cluster": CLUSTER})
        self.run = W.Daemon(self.cfg, self.wd.file("run.log"), {"LOCKSTEP_SHUTDOWN_GRACE": "10s"})
        self.port = None

    def start(self):
        self.run.start()
        m = L.wait_for(lambda: re.search(r"HTTP API on http://[^:]+:(\d+)/", self.run.output())
                     or not self.run.alive(), 30)
        self.port = int(m.group(1)) if m and m is not True else None
        return self

    def get(self, path):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path), timeout=5) as r:
                return json.loads(r.read().decode())
        except Exception:
            return None

    def post(self, path, body):
        """(status, JSON answer) of a POST."""
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path),
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read().decode())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read().decode() or "{}")

    def held(self):
        h = self.get("/api/health") or {}
        return sorted(x["job"] for x in h.get("leases", []))

    def member(self):
        m = re.search(r"this instance is (\S+) \(lease", self.run.output())
        return m and m.group(1)


class Proxy:
    """A loopback TCP proxy to host:port. cut() partitions it: bytes are no longer
    forwarded (connections hang silently, new ones get no answer), like a lost network."""

    def __init__(self, host, port):
        self.target = (host, port)
        self.cut_ev = threading.Event()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(64)
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            if self.cut_ev.is_set():
                continue  # accepted, never answered
            try:
                u = socket.create_connection(self.target)
            except OSError:
                c.close()
                continue
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                while self.cut_ev.is_set():
                    time.sleep(0.1)  # hold it: the other side sees silence
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s_ in (a, b):
                try:
                    s_.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        self.cut_ev.set()

    def heal(self):
        self.cut_ev.clear()


def leases(store):
    """{job: holder} of the live leases, read from the store by the test."""
    rows = L.execute(store, "SELECT job, holder FROM lockstep.leases "
                            "WHERE holder IS NOT NULL AND expires_at > clock_timestamp()")
    return dict((r[0], r[1]) for r in rows)


def stop_all(insts):
    for i in insts:
        if i.run.alive():
            i.run.term(30)


def log_time(ts):
    """Seconds since the epoch of a log line's `ts=` (UTC, as 2024-07-15T12:00:00.250Z).
    UTC arithmetic: mktime() reads the fields as local time, and subtracting
    time.timezone is off by the summer-time hour (then any `stopped < deadline` passes)."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z$", ts)
    if not m:
        raise ValueError("not a log timestamp: %r" % ts)
    return calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + int(m.group(2)) / 1000.0


class LeaseLog:
    """Polls one job's lease row on the store (directly, not through a proxy) every 20 ms
    in a thread: expiry(holder) is the latest expires_at the database computed for that
    holder (seconds since the epoch), the instant from which another instance may take
    the lease."""

    def __init__(self, store, job):
        self.store, self.job = store, job
        self.seen = {}  # holder -> latest expires_at
        self.stop_ev = threading.Event()
        self.th = threading.Thread(target=self._poll, daemon=True)
        self.th.start()

    def _poll(self):
        c = L.connect(self.store)
        try:
            with c.cursor() as cur:
                while not self.stop_ev.is_set():
                    cur.execute("SELECT holder, extract(epoch FROM expires_at)::float8 FROM lockstep.leases"
                                " WHERE job = %s AND holder IS NOT NULL", (self.job,))
                    for holder, exp in cur.fetchall():
                        self.seen[holder] = max(self.seen.get(holder, exp), exp)
                    self.stop_ev.wait(0.02)
        finally:
            c.close()

    def expiry(self, holder):
        return self.seen.get(holder)

    def stop(self):
        self.stop_ev.set()
        self.th.join(10)


def test_spread():
    store, aux = L.new_db("cl_state"), L.new_db("cl_aux")
    L.execute(aux, "CREATE EXTENSION IF NOT EXISTS btree_gist")
    L.execute(aux, "CREATE TABLE execs (job text NOT NULL, during tstzrange NOT NULL,"
                   " EXCLUDE USING gist (job WITH =, during WITH &&))")
    L.execute(aux, "CREATE FUNCTION work(j text) RETURNS void LANGUAGE plpgsql AS $$"
                   " DECLARE t0 timestamptz := clock_timestamp(); BEGIN PERFORM pg_sleep(0.3);"
                   " INSERT INTO execs VALUES (j, tstzrange(t0, clock_timestamp())); END $$")
    names = ["j%d" % i for i in range(1, 7)]
    jobs = dict((n, {"kind": "sql", "db": "aux", "every": "1s", "sql": "SELECT work('%s')" % n})
                for n in names)
    insts = [Inst(n, {"aux": aux}, jobs, store) for n in ("a", "b", "c")]
    duration = max(20.0, L.scale(60000) / 1000.0)
    try:
        for i in insts:
            i.start()
        t.check(all(i.port for i in insts), "3 instances serve their API", [i.run.tail(800) for i in insts])
        t.check(L.wait_for(lambda: len(leases(store)) == 6, 30), "all 6 jobs get a live lease", leases(store))
        # the first instance up holds every job until the others are past their joining
        # grace (2 renewals); then the jobs spread
        t.check(L.wait_for(lambda: sorted(len(i.held()) for i in insts) == [2, 2, 2], 30),
                "the jobs spread: 2 on each instance", dict((i.name, i.held()) for i in insts))
        start = time.monotonic()
        unheld = dict((n, 0.0) for n in names)
        since = {}
        most = 0
        while time.monotonic() - start < duration:
            now = time.monotonic()
            live = leases(store)
            for n in names:
                if n in live:
                    since.pop(n, None)
                else:
                    since.setdefault(n, now)
                    unheld[n] = max(unheld[n], now - since[n])
            most = max([most] + [len(i.held()) for i in insts])
            time.sleep(0.25)
        t.check(max(unheld.values()) <= LEASE_S + RENEW_S,
                "no job went without a live lease longer than lease + renew (longest %.2f s)"
                % max(unheld.values()), unheld)
        t.check(most <= 3, "no instance held more than ceil(6/3) + 1 = 3 leases (most: %d)" % most)
        held = dict((i.name, i.held()) for i in insts)
        t.eq(sorted(len(v) for v in held.values()), [2, 2, 2], "settled: 2 jobs on each instance", held)
        counts = dict(L.execute(aux, "SELECT job, count(*) FROM execs GROUP BY job"))
        t.check(all(counts.get(n, 0) >= 0.6 * duration for n in names),
                "every job ran about once a second (%s in %.0f s)" % (sorted(counts.values()), duration), counts)
        failed = L.execute(store, "SELECT job, error FROM lockstep.runs WHERE status = 'failed'")
        t.eq(failed, [], "no run failed (an overlap would fail on the exclusion constraint)")
        # the exclusion constraint held by construction; check its work independently too
        overlaps = L.execute(aux, "SELECT count(*) FROM execs a JOIN execs b ON a.job = b.job"
                                  " AND a.ctid < b.ctid AND a.during && b.during")
        t.eq(overlaps, [(0,)], "no two executions of a job overlap in time")

        # SIGTERM of a holder: its jobs are taken over in under 2 s
        victim = insts[0]
        mine = victim.held()
        member = victim.member()
        t0 = time.monotonic()
        victim.run.p.send_signal(signal.SIGTERM)
        moved = L.wait_for(lambda: all(leases(store).get(j) not in (None, member) for j in mine), 10, 0.05)
        took = time.monotonic() - t0
        t.check(moved and took < 2.0, "SIGTERM: %s's jobs %s held elsewhere after %.2f s (< 2 s)"
                % (victim.name, mine, took), leases(store))
        t.eq(victim.run.wait(30), 0, "the stopped instance exits 0")
        t.check("released 2 leases" in victim.run.output(), "it logged releasing its 2 leases",
                victim.run.tail(1500))
        time.sleep(3)
        t.eq(sorted(len(i.held()) for i in insts[1:]), [3, 3], "the 2 left hold 3 jobs each")
        rows = L.execute(store, "SELECT count(*) FROM lockstep.runs WHERE status = 'failed'")
        t.eq(rows, [(0,)], "no run failed during the handover")
    finally:
        stop_all(insts)


def realtime_setup(prefix, n_rows):
    store, src, dst = L.new_db(prefix + "_state"), L.new_db(prefix + "_src"), L.new_db(prefix + "_dst")
    W.create_source(src, n=n_rows)
    W.create_target(dst)
    jobs = {"rt": {"source": {"db": "src", "table": "items"},
                   "target": {"db": "dst", "table": "items", "create": False, "deletes": "delete"},
                   "mode": "realtime", "batch": 200}}
    insts = [Inst(prefix + n, {"src": src, "dst": dst}, jobs, store) for n in ("a", "b", "c")]
    return store, src, dst, insts


def stable_holder(insts, store, hold_s=3.0, deadline=40):
    """Waits until rt's holder stays the same for hold_s (the start-up spread is over)."""
    end = time.monotonic() + deadline
    last, since = None, time.monotonic()
    while time.monotonic() < end:
        h = leases(store).get("rt")
        if h != last:
            last, since = h, time.monotonic()
        elif h and time.monotonic() - since >= hold_s:
            return holder_inst(insts, store)
        time.sleep(0.2)
    return None


def holder_inst(insts, store):
    h = leases(store).get("rt")
    for i in insts:
        if h and i.member() == h:
            return i
    return None


def test_takeover():
    store, src, dst, insts = realtime_setup("clk", L.scale(5000))
    writers = None
    try:
        for i in insts:
            i.start()
        t.check(stable_holder(insts, store), "rt gets a steady holder", leases(store))
        W.wait_equal(t, src, dst, None, 120, what="the snapshot is equal")
        writers = W.Writers(src, n=8, hold_s=(0.5, 1.5))
        writers.start()
        time.sleep(3)
        victim = holder_inst(insts, store)
        old = victim.member()
        t0 = time.monotonic()
        victim.run.kill()
        new = L.wait_for(lambda: (leases(store).get("rt") or old) != old and leases(store)["rt"], LEASE_S + 10, 0.1)
        took = time.monotonic() - t0
        t.check(new and took <= LEASE_S + 5, "SIGKILL: rt taken over by %s after %.1f s (<= lease + 5 s)"
                % (new, took))
        time.sleep(3)
        writers.stop()
        t.eq(writers.errors, [], "the writers saw no unexpected errors")
        W.wait_equal(t, src, dst, None, 120, what="after the takeover the target equals the source")
        t.eq(W.versions_monotonic(dst), [], "no key's version went backwards")
        survivors = [i for i in insts if i is not victim]
        takeovers = sum(1 for i in survivors if "took over its lease from " + old in i.run.output())
        t.eq(takeovers, 1, "exactly one survivor logs taking rt over from the killed holder")
    finally:
        if writers:
            writers.stop()
        stop_all(insts)


def test_zombie():
    store, src, dst, insts = realtime_setup("clz", L.scale(5000))
    writers = None
    try:
        for i in insts:
            i.start()
        t.check(stable_holder(insts, store), "rt gets a steady holder", leases(store))
        W.wait_equal(t, src, dst, None, 120, what="the snapshot is equal")
        writers = W.Writers(src, n=8, hold_s=(0.5, 1.5))
        writers.start()
        time.sleep(2)
        zombie = holder_inst(insts, store)
        old = zombie.member()
        zombie.run.p.send_signal(signal.SIGSTOP)
        try:
            new = L.wait_for(lambda: (leases(store).get("rt") or old) != old and leases(store)["rt"],
                           LEASE_S + 10, 0.1)
            t.check(bool(new), "while the holder is stopped, another instance takes rt (%s)" % new)
            before = W.log_count(dst)
            t.check(L.wait_for(lambda: W.log_count(dst) > before, 20), "the new holder commits changes")
        finally:
            zombie.run.p.send_signal(signal.SIGCONT)
        time.sleep(5)
        writers.stop()
        t.eq(writers.errors, [], "the writers saw no unexpected errors")
        W.wait_equal(t, src, dst, None, 120, what="after the zombie woke the target equals the source")
        t.eq(W.versions_monotonic(dst), [], "no key's version went backwards")
        out = zombie.run.output()
        t.check("job rt: its lease was not renewed for" in out,
                "the woken holder noticed its lease lapsed and stopped rt", zombie.run.tail(2500))
        t.check(zombie.run.alive(), "the old holder keeps running (as a follower)")
        rows = L.execute(store, "SELECT count(*) FROM lockstep.leases WHERE job = 'rt'"
                                " AND holder IS NOT NULL AND expires_at > clock_timestamp()")
        t.eq(rows, [(1,)], "rt has exactly one live holder at the end")
    finally:
        if writers:
            writers.stop()
        stop_all(insts)


def test_cli():
    store, src, dst, insts = realtime_setup("clc", 100)
    try:
        a = insts[0].start()
        t.check(L.wait_for(lambda: leases(store).get("rt"), 30), "one instance holds rt")
        rc, out, err = L.run_lockstep(["sync", "rt"], a.cfg, timeout=60)
        t.eq(rc, 75, "lockstep sync rt while an instance holds it: exit 75", L.show(rc, out, err))
        t.check(a.member() and a.member() in err, "the message names the holder (%s)" % a.member(), err)
        rc, out, err = L.run_lockstep(["status", "--json"], a.cfg, timeout=60)
        st = dict((j["name"], j) for j in json.loads(out.strip().splitlines()[-1])["jobs"]) if rc == 0 else {}
        t.check(st.get("rt", {}).get("holder") == a.member() and st["rt"].get("epoch", 0) >= 1,
                "lockstep status --json shows rt's holder and epoch", st.get("rt"))
        rc, out, err = L.run_lockstep(["status"], a.cfg, timeout=60)
        t.check(rc == 0 and ("held by %s (epoch" % a.member()) in out, "lockstep status says who holds rt", out)
        t.eq(a.run.term(30), 0, "the instance stops (exit 0) and releases rt")
        rc, out, err = L.run_lockstep(["sync", "rt"], a.cfg, timeout=120)
        t.eq(rc, 0, "with no instance running, lockstep sync rt takes the lease itself", L.show(rc, out, err))
        t.eq(leases(store).get("rt"), None, "and frees it when done")
    finally:
        stop_all(insts)


def sql_setup(prefix, names):
    store, aux = L.new_db(prefix + "_state"), L.new_db(prefix + "_aux")
    L.execute(aux, "CREATE EXTENSION IF NOT EXISTS btree_gist")
    L.execute(aux, "CREATE TABLE execs (job text NOT NULL, during tstzrange NOT NULL,"
                   " EXCLUDE USING gist (job WITH =, during WITH &&))")
    L.execute(aux, "CREATE FUNCTION work(j text) RETURNS void LANGUAGE plpgsql AS $$"
                   " DECLARE t0 timestamptz := clock_timestamp(); BEGIN PERFORM pg_sleep(0.3);"
                   " INSERT INTO execs VALUES (j, tstzrange(t0, clock_timestamp())); END $$")
    jobs = dict((n, {"kind": "sql", "db": "aux", "every": "1s", "sql": "SELECT work('%s')" % n})
                for n in names)
    return store, aux, jobs


def test_partition():
    """An instance cut off from the state store stops its job before its lease expires."""
    store, aux, jobs = sql_setup("clp", ["p1", "p2"])
    u = urllib.parse.urlparse(store)
    proxy = Proxy(u.hostname, u.port)
    via_proxy = store.replace(":%d/" % u.port, ":%d/" % proxy.port)
    a = Inst("pa", {"aux": aux}, jobs, via_proxy)
    b = Inst("pb", {"aux": aux}, jobs, store)
    lease_log = None
    try:
        a.start()
        b.start()
        t.check(L.wait_for(lambda: len(a.held()) == 1 and len(b.held()) == 1, 30),
                "one job on each instance", (a.held(), b.held()))
        job = a.held()[0]
        member = a.member()
        lease_log = LeaseLog(store, job)
        t.check(L.wait_for(lambda: lease_log.expiry(member), 10, 0.05),
                "the test reads %s's lease of %s from the store" % (member, job))
        time.sleep(2)
        cut_at = time.time()
        proxy.cut()
        line = L.wait_for(lambda: re.search(r'ts=(\S+) level=error comp=lease msg="job %s: its lease was '
                                          r'not renewed' % job, a.run.output()), LEASE_S + 5, 0.05)
        t.check(bool(line), "the cut-off instance logs that it stops %s" % job, a.run.tail(1500))
        stopped_at = log_time(line.group(1)) if line else float("inf")
        # The guarantee (docs/cluster.md): the holder stops at its last successful renewal's
        # start + lease - margin, before the expiry the database computed for that renewal
        # (now() of the renewal + lease), so before any other instance may take the lease.
        # A renewal in flight at the cut can only land (and only push the expiry later).
        t.check(L.wait_for(lambda: leases(store).get(job) != member, LEASE_S + 5, 0.05),
                "%s's lease of %s ends" % (member, job), leases(store))
        lease_log.stop()
        expiry = lease_log.expiry(member) or 0.0
        t.check(stopped_at < expiry,
                "the cut-off instance stops %s %.2f s after the cut, %.2f s before the lease expiry "
                "the store computed for its last renewal" % (job, stopped_at - cut_at, expiry - stopped_at),
                a.run.tail(1500))
        new = L.wait_for(lambda: (leases(store).get(job) or "").startswith("pb#"), LEASE_S + 5, 0.1)
        t.check(bool(new), "the other instance takes %s over after the lease ends (%.1f s after the cut)"
                % (job, time.time() - cut_at))
        n0 = L.scalar(aux, "SELECT count(*) FROM execs WHERE job = '%s'" % job)
        t.check(L.wait_for(lambda: L.scalar(aux, "SELECT count(*) FROM execs WHERE job = '%s'" % job) >= n0 + 3, 15),
                "%s runs again, on the other instance" % job)
        overlaps = L.execute(aux, "SELECT count(*) FROM execs a JOIN execs b ON a.job = b.job"
                                  " AND a.ctid < b.ctid AND a.during && b.during")
        t.eq(overlaps, [(0,)], "no two executions overlapped (the exclusion constraint holds)")
    finally:
        if lease_log:
            lease_log.stop()
        a.run.kill()
        stop_all([b])


def gone(pid):
    """Whether the process is gone (or a zombie waiting to be reaped)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_exec_deadline():
    """An exec job whose command ignores SIGTERM: the cut-off holder kills its process group
    (SIGKILL at the lease deadline, not after the 5 s SIGTERM grace) before the expiry the
    store computed for its last renewal, so before another instance may take the job."""
    store = L.new_db("cle_state")
    u = urllib.parse.urlparse(store)
    proxy = Proxy(u.hostname, u.port)
    via_proxy = store.replace(":%d/" % u.port, ":%d/" % proxy.port)
    wd = L.Workdir("cluster_exec_pids")
    pids = wd.file("pids")
    # the shell ignores SIGTERM, and so does its child (sleep 60 in the background, which
    # inherits the ignored signal): only SIGKILL ends them
    jobs = {"long": {"kind": "exec", "every": "1s",
                     "command": ["/bin/sh", "-c", "trap '' TERM; sleep 60 & echo $$$$ $! >> '%s'; wait" % pids]}}
    a = Inst("ea", {}, jobs, via_proxy)
    lease_log = None
    try:
        a.start()
        t.check(L.wait_for(lambda: a.held() == ["long"] and os.path.exists(pids), 30),
                "the instance holds the exec job and its command runs", a.run.tail(1500))
        procs = [int(x) for x in open(pids).read().split()]
        t.check(len(procs) == 2 and not any(gone(p) for p in procs),
                "the shell and its child are alive", procs)
        ignored = [p for p in procs if not ignores_sigterm(p)]
        t.eq(ignored, [], "both processes ignore SIGTERM (SigIgn in /proc)")
        member = a.member()
        lease_log = LeaseLog(store, "long")  # read directly from the store, not through the proxy
        t.check(L.wait_for(lambda: lease_log.expiry(member), 10, 0.05),
                "the test reads %s's lease of long from the store" % member)
        time.sleep(1)
        cut_at = time.time()
        proxy.cut()
        dead = L.wait_for(lambda: all(gone(p) for p in procs), LEASE_S + 10, 0.02)
        dead_at = time.time()  # the group was dead by then (polled every 20 ms)
        t.check(L.wait_for(lambda: leases(store).get("long") != member, LEASE_S + 5, 0.05),
                "%s's lease of long ends" % member, leases(store))
        lease_log.stop()
        expiry = lease_log.expiry(member) or 0.0
        t.check(dead and dead_at < expiry,
                "the cut-off holder kills the command's process group %.2f s after the cut, %.2f s before the "
                "lease expiry the store computed for its last renewal" % (dead_at - cut_at, expiry - dead_at),
                a.run.tail(1500))
        t.check("job long: its lease was not renewed" in a.run.output(), "and logs why",
                a.run.tail(1500))
        t.eq(open(pids).read().split(), [str(p) for p in procs], "no new run starts while cut off")
    finally:
        if lease_log:
            lease_log.stop()
        proxy.heal()  # so the instance can stop without waiting out its connections
        stop_all([a])
        for p in [int(x) for x in (open(pids).read().split() if os.path.exists(pids) else [])]:
            if not gone(p):
                os.kill(p, signal.SIGKILL)


def ignores_sigterm(pid):
    """Whether the process ignores SIGTERM (bit 15 of SigIgn in /proc/PID/status)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("SigIgn:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    except OSError:
        pass
    return False


def test_blip():
    """A lease lost to a store blip and got back while the stream was still stopping: the
    stream starts again (chaos soak finding, docs/soak.md bug 2)."""
    store, src, dst = L.new_db("clq_state"), L.new_db("clq_src"), L.new_db("clq_dst")
    W.create_source(src, n=L.scale(2000))
    W.create_target(dst)
    jobs = {"rt": {"source": {"db": "src", "table": "items"},
                   "target": {"db": "dst", "table": "items", "create": False, "deletes": "delete"},
                   "mode": "realtime", "batch": 200}}
    u = urllib.parse.urlparse(store)
    proxy = Proxy(u.hostname, u.port)
    a = Inst("qa", {"src": src, "dst": dst}, jobs, store.replace(":%d/" % u.port, ":%d/" % proxy.port))
    writers = None
    try:
        a.start()
        t.check(L.wait_for(lambda: a.held() == ["rt"], 30), "the instance holds rt", a.run.tail(1500))
        W.wait_equal(t, src, dst, None, 120, what="the snapshot is equal")
        writers = W.Writers(src, n=4, hold_s=(0.2, 0.6))
        writers.start()
        for k in range(3):
            time.sleep(2)
            stops = a.run.output().count("job rt: its lease was not renewed")
            proxy.cut()
            lost = L.wait_for(lambda: a.run.output().count("job rt: its lease was not renewed") > stops,
                              LEASE_S + 5, 0.05)
            time.sleep(0.4)  # the stream is told to stop; its store statements hang in the cut
            proxy.heal()
            t.check(bool(lost), "blip %d: the cut-off instance drops rt's lease" % (k + 1), a.run.tail(1500))
            t.check(L.wait_for(lambda: a.held() == ["rt"], LEASE_S + 10, 0.1),
                    "blip %d: after the heal it holds rt again" % (k + 1), a.run.tail(1500))
            before = W.log_count(dst)
            t.check(L.wait_for(lambda: W.log_count(dst) > before + 10, 20, 0.2),
                    "blip %d: the stream runs again (new changes reach the target)" % (k + 1),
                    a.run.tail(2500))
        writers.stop()
        t.eq(writers.errors, [], "the writers saw no unexpected errors")
        W.wait_equal(t, src, dst, None, 120, what="the target equals the source")
        t.eq(W.versions_monotonic(dst), [], "no key's version went backwards")
    finally:
        if writers:
            writers.stop()
        proxy.heal()
        stop_all([a])


def test_crash_after_seal():
    """The holder dies right after sealing its new epoch in the target (LK_FAILPOINT
    after_seal): the others take the job over after the lease and end equal."""
    store, src, dst, insts = realtime_setup("cls", L.scale(3000))
    writers = None
    a = insts[0]
    try:
        writers = W.Writers(src, n=8, hold_s=(0.5, 1.5))
        writers.start()
        a.run.start(env={"LK_FAILPOINT": "after_seal"})  # alone: it takes rt, seals, dies
        rc = a.run.wait(30)
        t.check(rc is not None and rc != 0, "the holder crashed right after its seal (exit %s)" % rc,
                a.run.tail(1500))
        sealed = L.execute(dst, "SELECT epoch FROM lockstep_sync.position WHERE job = 'rt'")
        t.check(sealed and sealed[0][0] >= 1, "its seal is in the target (epoch %s)" % sealed)
        t0 = time.monotonic()
        for i in insts[1:]:
            i.start()
        new = L.wait_for(lambda: (leases(store).get("rt") or "")[:4] in ("clsb", "clsc"), LEASE_S + 15, 0.1)
        t.check(bool(new), "another instance takes rt over once the crashed holder's lease ends "
                "(%.1f s after the others started)" % (time.monotonic() - t0))
        time.sleep(3)
        writers.stop()
        t.eq(writers.errors, [], "the writers saw no unexpected errors")
        W.wait_equal(t, src, dst, None, 120, what="the target equals the source")
        t.eq(W.versions_monotonic(dst), [], "no key's version went backwards")
        epoch = L.execute(dst, "SELECT epoch FROM lockstep_sync.position WHERE job = 'rt'")[0][0]
        t.check(epoch > sealed[0][0], "the new holder sealed a newer epoch (%d > %d)" % (epoch, sealed[0][0]))
    finally:
        if writers:
            writers.stop()
        a.run.kill()
        stop_all(insts)


def test_run_on():
    pins = {"eu1": ["eu"], "eu2": ["eu"], "big1": ["eu", "big"], "mars": ["mars"],
            "any1": None, "any2": None}
    store, aux, jobs = sql_setup("clr", sorted(pins))
    for n, on in pins.items():
        if on:
            jobs[n]["run_on"] = on
    labels = {"a": ["eu"], "b": ["us"], "c": ["eu", "big"]}
    insts = [Inst(n, {"aux": aux}, jobs, store, labels[n]) for n in ("a", "b", "c")]
    try:
        for i in insts:
            i.start()
        t.check(all(i.port for i in insts), "3 labelled instances serve their API",
                [i.run.tail(800) for i in insts])
        # each member's name is in its log once its lease thread started: wait for all three
        t.check(L.wait_for(lambda: all(i.member() for i in insts), 30),
                "3 instances log their member names", [i.run.tail(800) for i in insts])
        members = dict((i.member(), i.name) for i in insts)

        def fits(job, holder):
            inst = members.get(holder)
            return inst is not None and all(x in labels[inst] for x in (pins[job] or []))

        # the cold start (the first instance up may hold what fits it) settles once all
        # three are past their grace; from then on, poll the lease table for a while
        t.check(L.wait_for(lambda: len(leases(store)) == 5 and len(insts[2].held()) >= 1, 30),
                "the 5 jobs that can run somewhere get a live lease", leases(store))
        time.sleep(2 * RENEW_S + 1)
        bad, seen, end = [], {}, time.monotonic() + max(6.0, L.scale(12000) / 1000.0)
        while time.monotonic() < end:
            for job, holder in leases(store).items():
                seen.setdefault(job, set()).add(members.get(holder, holder))
                if not fits(job, holder):
                    bad.append((job, members.get(holder, holder)))
            time.sleep(0.25)
        t.eq(bad, [], "every lease is held by an instance with all of its job's run_on labels")
        t.eq(seen.get("big1"), {"c"}, "big1 (run_on [eu, big]) is held by c, the one with both")
        t.check(seen.get("eu1", set()) | seen.get("eu2", set()) <= {"a", "c"},
                "eu1 and eu2 (run_on [eu]) are held by a or c", seen)
        t.check("mars" not in seen, "mars (run_on [mars]) is never held", seen)
        counts = dict(L.execute(aux, "SELECT job, count(*) FROM execs GROUP BY job"))
        t.check(counts.get("mars", 0) == 0 and all(counts.get(n, 0) >= 3 for n in pins if n != "mars"),
                "mars never ran; every other job ran (%s)" % counts)
        t.check(all("job mars: no live instance has all the labels of its run_on" in i.run.output()
                    for i in insts), "each instance logs that no live instance can run mars",
                insts[0].run.tail(1500))
        t.eq(insts[0].run.output().count("job mars: no live instance"), 1, "and says it once")
        h = insts[1].get("/api/health") or {}
        jc = dict((c["name"], c) for c in h.get("checks", [])).get("jobs", {})
        t.check(h.get("status") == "DEGRADED" and jc.get("status") == "warn"
                and "1 job whose run_on no live instance" in jc.get("detail", ""),
                "/api/health: the jobs check warns about mars, DEGRADED", h)
        st, body = insts[1].post("/api/sync", {"job": "eu1"})
        t.check(st == 409 and "run_on" in body.get("detail", ""),
                "POST /api/sync eu1 on b [us]: 409 naming run_on", (st, body))
        byname = dict((j["name"], j) for j in (insts[1].get("/api/jobs") or {}).get("jobs", []))
        t.eq((byname.get("big1", {}).get("runOn"), "runOn" in byname.get("any1", {"runOn": 1})),
             (["eu", "big"], False), "/api/jobs shows runOn for a pinned job only")

        # the only [eu, big] instance stops: big1 has nowhere to go, eu jobs go to a
        c = insts[2]
        said = insts[0].run.output().count("job big1: no live instance has all the labels")
        t.eq(c.run.term(30), 0, "c (labels [eu, big]) stops with exit 0")
        moved = L.wait_for(lambda: all(members.get(leases(store).get(j)) == "a" for j in ("eu1", "eu2")),
                           10, 0.1)
        t.check(moved, "eu1 and eu2 are now held by a, the other [eu] instance",
                dict((k, members.get(v, v)) for k, v in leases(store).items()))
        time.sleep(2 * RENEW_S)
        t.check("big1" not in leases(store), "big1 is unheld with no [eu, big] instance live",
                leases(store))
        t.check(L.wait_for(lambda: insts[0].run.output().count(
                           "job big1: no live instance has all the labels") == said + 1, 5),
                "and a logs it once", insts[0].run.tail(1500))
        n_big = L.execute(aux, "SELECT count(*) FROM execs WHERE job = 'big1'")[0][0]
        time.sleep(2.5)
        t.eq(L.execute(aux, "SELECT count(*) FROM execs WHERE job = 'big1'")[0][0], n_big,
             "big1 does not run while unheld")
        overlaps = L.execute(aux, "SELECT count(*) FROM execs a JOIN execs b ON a.job = b.job"
                                  " AND a.ctid < b.ctid AND a.during && b.during")
        t.eq(overlaps, [(0,)], "no two executions of a job overlap in time")
    finally:
        stop_all(insts)

    # one instance on an SQLite state store: no leases, the labels still decide
    wd = L.Workdir("cluster_run_on_single")
    one = dict((n, dict(jobs[n])) for n in ("eu1", "any1"))
    cfg = L.sync_config(wd, {"aux": aux}, one, extra={"instance": {"labels": ["us"]}})
    L.execute(aux, "DELETE FROM execs")
    run = W.Daemon(cfg, wd.file("run.log"))
    inst = Inst.__new__(Inst)
    inst.run = run
    try:
        run.start()
        m = L.wait_for(lambda: re.search(r"HTTP API on http://[^:]+:(\d+)/", run.output()), 30)
        inst.port = int(m.group(1)) if m else None
        t.check(L.wait_for(lambda: "job eu1: this instance lacks labels its run_on asks for" in run.output(), 10),
                "SQLite store: the instance logs that eu1 does not run here", run.tail(1500))
        h = inst.get("/api/health") or {}
        jc = dict((c["name"], c) for c in h.get("checks", [])).get("jobs", {})
        t.check(jc.get("status") == "warn" and "1 job whose run_on" in jc.get("detail", ""),
                "SQLite store: /api/health's jobs check warns about eu1", h)
        t.check(L.wait_for(lambda: L.execute(aux, "SELECT count(*) FROM execs WHERE job = 'any1'")[0][0] >= 3, 20),
                "any1 runs on it")
        t.eq(L.execute(aux, "SELECT count(*) FROM execs WHERE job = 'eu1'"), [(0,)], "eu1 never ran")
        st, body = inst.post("/api/sync", {"job": "eu1"})
        t.check(st == 409 and "run_on" in body.get("detail", ""), "POST /api/sync eu1: 409 naming run_on",
                (st, body))
        t.eq(run.term(30), 0, "it stops with exit 0")
    finally:
        if run.alive():
            run.term(30)


CASES = (test_spread, test_takeover, test_zombie, test_cli, test_partition, test_exec_deadline,
         test_blip, test_crash_after_seal, test_run_on)
for case in CASES:
    if len(sys.argv) < 2 or case.__name__[len("test_"):] in sys.argv[1:]:
        t.case(case)
t.finish()
