"""lkchaos - pieces for the chaos soak (tests/slow/test_chaos_soak.py, `make soak`).

- PgCluster: a throw-away PostgreSQL cluster of the soak's own (pg-test-env.sh), with
  synchronous_commit on, that can be crash-restarted (pg_ctl -m immediate) on its port.
- Proxy: a loopback TCP proxy in front of one cluster. partition() stops forwarding
  (connections hang silently, new ones get no answer) until heal(); reset() closes
  every connection through it at once with a TCP reset. ProxyHost runs a set of them
  in a process of its own.
- Inst: one `lockstep run` process (own config file and instance name) in its own
  session, its log appended to one file across restarts, its HTTP port parsed from the
  log, its lifetimes (pid, start, end, RSS samples) recorded for the RSS verdict.
- NoDeleteWriters: rtwriters.Writers without deletes or key changes (a poll job does not
  see deletes, so its target can only be equal when the source never deletes).
- Oracles that do not use lockstep: live leases read from the store's table, overlaps in
  the executions table, sampled (key, version) pairs reaching a target's version log.

Copied (not imported) from tests/integration/test_cluster.py where noted: test files
are not modules.
"""

import json
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request

import lktest as L
import rtwriters as W


def now_s():
    return time.monotonic()


# ---------------------------------------------------------------------------
# clusters


class PgCluster(L.Cluster):
    """lktest.Cluster in /tmp/soak-NAME_XXXX with synchronous_commit = on.

    Durability matters here: with synchronous_commit off (the script's default) an
    immediate restart may lose commits already acknowledged, e.g. a source transaction
    whose change lockstep has already applied to the target, which would make source and
    target differ through no fault of lockstep's. fsync stays off: a process crash keeps
    the OS page cache, only a machine crash would need it."""

    def __init__(self, name):
        super().__init__(name, prefix="soak-", sync_commit=True)
        self.restarts = 0

    def restart_immediate(self):
        super().restart_immediate()
        self.restarts += 1

    def create_db(self, db):
        L.execute(self.url(), 'CREATE DATABASE "%s" TEMPLATE template0 ENCODING \'UTF8\'' % db)
        return self.url(db)

    def terminate_lockstep(self):
        """pg_terminate_backend of every session whose application_name starts with
        lockstep (lockstep tags its sessions `lockstep` or `lockstep:JOB`); the count."""
        rows = L.execute(self.url(), "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                                     "WHERE application_name LIKE 'lockstep%%' AND pid <> pg_backend_pid()")
        return rows[0][0]


# ---------------------------------------------------------------------------
# a loopback proxy (after test_cluster.Proxy, plus reset() and close())


class _Conn:
    """One proxied connection: the client's socket and the server's. Its two pump
    threads wait in select() with a short timeout, so that reset() can end it for real:
    closing a socket that another thread is blocked in recv() on does not wake that
    thread, and the kernel keeps the connection open (a silent black hole instead of a
    reset) for as long as the recv() waits."""

    def __init__(self, c, u):
        self.c, self.u = c, u
        self.dead = False
        self.rst = False
        self.lock = threading.Lock()
        self.closed = False

    def finish(self):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s_ in (self.c, self.u):
            if self.rst:
                _rst(s_)
            else:
                try:
                    s_.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    s_.close()
                except OSError:
                    pass


class Proxy:
    def __init__(self, host, port, name=""):
        self.name = name
        self.target = (host, port)
        self.cut_ev = threading.Event()
        self.closed = False
        self.lock = threading.Lock()
        self.conns = set()
        self.held = []  # connections accepted while partitioned: never answered
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(128)
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="proxy-" + name).start()

    def url(self, db):
        return "postgresql://postgres@127.0.0.1:%d/%s" % (self.port, db)

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            if self.cut_ev.is_set():
                with self.lock:
                    self.held.append(c)
                continue
            try:
                u = socket.create_connection(self.target, timeout=5)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            conn = _Conn(c, u)
            with self.lock:
                self.conns.add(conn)
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(conn, a, b), daemon=True).start()

    def _pump(self, conn, a, b):
        try:
            while not conn.dead:
                r, _, _ = select.select([a], [], [], 0.2)
                if conn.dead:
                    break
                if not r:
                    continue
                data = a.recv(65536)
                if not data:
                    break
                while self.cut_ev.is_set() and not self.closed and not conn.dead:
                    time.sleep(0.05)  # hold it: the other side sees silence
                if conn.dead:
                    break
                b.sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            conn.dead = True
            conn.finish()
            with self.lock:
                self.conns.discard(conn)

    def partition(self):
        self.cut_ev.set()

    def heal(self):
        self.cut_ev.clear()
        with self.lock:
            held, self.held = self.held, []
        for c in held:
            _rst(c)

    def reset(self):
        """Ends every connection through the proxy with a TCP reset (within 0.2 s: the
        pump threads close them); the count."""
        with self.lock:
            conns = list(self.conns)
        for conn in conns:
            conn.rst = True
            conn.dead = True
        return len(conns)

    def close(self):
        self.closed = True
        self.cut_ev.clear()
        try:
            self.srv.close()
        except OSError:
            pass
        self.reset()
        self.heal()


def _rst(s_):
    try:
        s_.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        s_.close()
    except OSError:
        pass


class ProxyHost:
    """Proxies in a process of their own, so that the soak's writer threads and checks
    (one Python process, one GIL) cannot slow the proxied connections down and cause
    lease losses nobody injected. Made before any thread starts (it forks).

    proxy(name) gives a handle with port, url(db), partition(), heal(), reset()."""

    def __init__(self, targets):
        import multiprocessing
        ctx = multiprocessing.get_context("fork")
        self.lock = threading.Lock()
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_proxy_host_main, args=(child, targets), daemon=True)
        self.proc.start()
        child.close()
        self.ports = self.conn.recv()

    def call(self, *cmd):
        with self.lock:
            self.conn.send(cmd)
            return self.conn.recv()

    def proxy(self, name):
        return _ProxyHandle(self, name, self.ports[name])

    def close(self):
        try:
            self.call("close")
        except (OSError, EOFError):
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


class _ProxyHandle:
    def __init__(self, host, name, port):
        self.host, self.name, self.port = host, name, port

    def url(self, db):
        return "postgresql://postgres@127.0.0.1:%d/%s" % (self.port, db)

    def partition(self):
        return self.host.call("partition", self.name)

    def heal(self):
        return self.host.call("heal", self.name)

    def reset(self):
        return self.host.call("reset", self.name)


def _proxy_host_main(conn, targets):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the soak itself stops this process
    proxies = dict((name, Proxy(host, port, name)) for name, (host, port) in targets.items())
    conn.send(dict((name, p.port) for name, p in proxies.items()))
    while True:
        try:
            cmd = conn.recv()
        except (EOFError, OSError):
            break
        if cmd[0] == "close":
            for p in proxies.values():
                p.close()
            conn.send(None)
            break
        conn.send(getattr(proxies[cmd[1]], cmd[0])())


# ---------------------------------------------------------------------------
# lockstep run instances


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Lifetime:
    """One process of an instance: pid, when it started and ended (soak clock), how it
    ended, and its RSS samples [(seconds since its start, KiB)]."""

    def __init__(self, pid, start, failpoint=None):
        self.pid = pid
        self.start = start
        self.end = None
        self.how = None
        self.failpoint = failpoint
        self.samples = []


class Inst:
    """One `lockstep run` with its own config and instance name."""

    def __init__(self, name, cfg, logfile, clock, env=None):
        self.name = name
        self.cfg = cfg
        self.logfile = logfile
        self.clock = clock  # () -> seconds on the soak clock
        self.env = dict(env or {})
        self.p = None
        self.offset = 0
        self.port = None
        self.lifetimes = []
        self.lock = threading.Lock()
        self.ctl = threading.RLock()  # held by whoever starts, stops or signals the process
        self.expect_exit = False  # set while the soak itself ends or crashes the process
        self.stopped = False  # SIGSTOPped by the soak

    # -- process

    def start(self, failpoint=None, wait_api=60):
        e = dict(os.environ)
        e.pop("LK_FAILPOINT", None)
        e["NO_COLOR"] = "1"
        e.update(self.env)
        if failpoint:
            e["LK_FAILPOINT"] = failpoint
        with open(self.logfile, "a") as f:
            f.write("==== %s: lockstep run%s\n" % (time.strftime("%H:%M:%S"),
                                                   " (LK_FAILPOINT=%s)" % failpoint if failpoint else ""))
            f.flush()
            self.offset = f.tell()
            # its own session: a Ctrl-C of `make soak` reaches the soak, which then stops
            # every instance itself (and SIGSTOP/SIGKILL hit this process alone)
            p = subprocess.Popen([L.lk_bin(), "-c", str(self.cfg), "run"], env=e, stdout=f,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        with self.lock:
            self.p = p
            self.port = None
            self.stopped = False
            self.lifetimes.append(Lifetime(p.pid, self.clock(), failpoint))
        m = L.wait_for(lambda: re.search(r"HTTP API on http://[^:]+:(\d+)/", self.output()) or not self.alive(),
                       wait_api, 0.1)
        if m and m is not True:
            self.port = int(m.group(1))
        return self.port is not None

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def pid(self):
        return self.p.pid if self.p else None

    def _ended(self, how):
        with self.lock:
            lt = self.lifetimes[-1] if self.lifetimes else None
            if lt and lt.end is None:
                lt.end = self.clock()
                lt.how = how

    def reap(self, how):
        """Records the end of a process that exited by itself; its exit code."""
        rc = self.p.poll() if self.p else None
        if rc is not None:
            self._ended("%s (exit %d)" % (how, rc))
        return rc

    def kill(self, how="SIGKILL"):
        if self.p is None:
            return None
        if self.alive():
            try:
                os.kill(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        rc = self.p.wait()
        self.stopped = False
        self._ended(how)
        return rc

    def term(self, timeout=40, how="SIGTERM"):
        """SIGTERM (SIGCONT first when stopped); SIGKILL when it does not stop in time.
        The exit code, or None when it had to be killed."""
        if self.p is None:
            return None
        rc = None
        if self.alive():
            try:
                if self.stopped:
                    os.kill(self.p.pid, signal.SIGCONT)
                    self.stopped = False
                os.kill(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                rc = self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                rc = None
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait()
        else:
            rc = self.p.wait()
        self._ended(how if rc is not None else how + " (did not stop in %d s: SIGKILL)" % timeout)
        return rc

    def signal(self, sig):
        os.kill(self.p.pid, sig)
        if sig == signal.SIGSTOP:
            self.stopped = True
        elif sig == signal.SIGCONT:
            self.stopped = False

    def output(self):
        try:
            with open(self.logfile, errors="replace") as f:
                f.seek(self.offset)
                return f.read()
        except OSError:
            return ""

    def tail(self, limit=3000):
        s = self.output()
        return s if len(s) <= limit else "..." + s[-limit:]

    def member(self):
        m = re.search(r"this instance is (\S+) \(lease", self.output())
        return m.group(1) if m else None

    # -- HTTP

    def health(self, timeout=3):
        """(HTTP status, JSON) of GET /api/health, or (None, None)."""
        if not self.port:
            return None, None
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/api/health" % self.port, timeout=timeout) as r:
                return r.status, json.loads(r.read().decode())
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read().decode() or "{}")
            except ValueError:
                return e.code, None
        except Exception:  # noqa: BLE001 - not answering
            return None, None

    # -- RSS

    def sample_rss(self):
        with self.lock:
            if not self.alive() or not self.lifetimes:
                return
            lt = self.lifetimes[-1]
            if lt.end is not None or lt.pid != self.p.pid:
                return
            kib = rss_kib(lt.pid)
            if kib:
                lt.samples.append((self.clock() - lt.start, kib))


# ---------------------------------------------------------------------------
# workload


class NoDeleteWriters(W.Writers):
    """Writers without deletes and key changes: the source of a poll job."""

    WEIGHTS = (("insert", 30), ("status", 30), ("doc", 25), ("body", 15))


# ---------------------------------------------------------------------------
# oracles


def live_leases(store_url):
    """{job: holder} of the live leases, read from the store's table by the soak."""
    rows = L.execute(store_url, "SELECT job, holder FROM lockstep.leases "
                                "WHERE holder IS NOT NULL AND expires_at > clock_timestamp()")
    return dict((r[0], r[1]) for r in rows)


EXECS_DDL = [
    "CREATE EXTENSION IF NOT EXISTS btree_gist",
    "CREATE TABLE execs (id bigserial PRIMARY KEY, job text NOT NULL, during tstzrange NOT NULL,"
    " EXCLUDE USING gist (job WITH =, during WITH &&))",
    # as in test_cluster.sql_setup: each execution records its time range
    "CREATE FUNCTION work(j text) RETURNS void LANGUAGE plpgsql AS $$"
    " DECLARE t0 timestamptz := clock_timestamp(); BEGIN PERFORM pg_sleep(0.3);"
    " INSERT INTO execs (job, during) VALUES (j, tstzrange(t0, clock_timestamp())); END $$",
    "CREATE INDEX execs_job_start ON execs (job, lower(during))",
]


def overlaps(aux_url):
    """Pairs of executions of one job whose time ranges overlap (independent of the
    constraint: the query compares every pair of one job's executions)."""
    return L.scalar(aux_url, "SELECT count(*) FROM execs a JOIN execs b ON a.job = b.job"
                             " AND a.id < b.id AND a.during && b.during")


def exclusion_failures(store_url):
    """Runs recorded failed in the store because of the exclusion constraint."""
    return L.execute(store_url, "SELECT job, error FROM lockstep.runs WHERE status = 'failed' AND "
                                "(error ILIKE '%%exclusion%%' OR error ILIKE '%%execs_job_during_excl%%' "
                                "OR error LIKE '%%23P01%%')")


def sample_recent(src_url, table, n=5):
    """[(key, version)] of the n rows of `table` written last (by updated_at): writes
    that committed before now."""
    return L.execute(src_url, 'SELECT id, version FROM "%s" ORDER BY updated_at DESC, id DESC LIMIT %d'
                     % (table, n))


def reached(src_url, dst_url, table, log_table, sample):
    """True when every sampled (key, version) reached the target: the target's version
    log holds that key at that version or later, or the key is gone from the source (a
    later delete or key change: nothing is left to judge for it)."""
    if not sample:
        return True
    keys = [k for k, _ in sample]
    logged = dict(L.execute(dst_url, 'SELECT key, max(version) FROM "%s" WHERE key = ANY(%%s) GROUP BY key'
                            % log_table, (keys,)))
    pending = [(k, v) for k, v in sample if logged.get(k, 0) < v]
    if not pending:
        return True
    present = set(r[0] for r in L.execute(src_url, 'SELECT id FROM "%s" WHERE id = ANY(%%s)' % table,
                                          ([k for k, _ in pending],)))
    return not any(k in present for k, _ in pending)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else None


def choose(rnd, weighted):
    """One item of [(item, weight)]."""
    total = sum(w for _, w in weighted)
    x = rnd.uniform(0, total)
    for item, w in weighted:
        x -= w
        if x <= 0:
            return item
    return weighted[-1][0]


__all__ = ["PgCluster", "Proxy", "ProxyHost", "Inst", "Lifetime", "NoDeleteWriters", "live_leases", "EXECS_DDL",
           "overlaps", "exclusion_failures", "sample_recent", "reached", "median", "choose", "rss_kib",
           "now_s", "random"]
