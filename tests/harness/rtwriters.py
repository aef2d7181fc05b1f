"""rtwriters - a concurrent write workload and a version oracle for real-time tests.

The source table (create_source):

    items(id bigint PRIMARY KEY, status text NOT NULL, version bigint NOT NULL,
          name text, body text, doc jsonb, updated_at timestamptz DEFAULT now())

with a sequence items_id_seq handing out fresh keys (a deleted or re-keyed key never
comes back), and a view items_md5 that shows md5(body) instead of body, so the md5
oracle (lktest.pg_md5 over the view) stays small while bodies are 20-200 KB.

The target table (create_target) is made by the test (the job says create: false):
the same columns (plus optional extra ones, e.g. deleted_at), the same view, and the
version oracle: version_log(id bigserial, key bigint, version bigint) filled by an
AFTER INSERT OR UPDATE row trigger with (NEW.id, NEW.version). Every write bumps
`version`, so a version lower than an earlier logged version of the same key is a
stale overwrite (versions_monotonic).

Writers runs N threads (psycopg2, autocommit off) doing random transactions of 1-5
statements (inserts of fresh keys, updates of status / a 20-200 KB body / the jsonb
doc, key changes, deletes), some sleeping 0-200 ms before COMMIT, plus one thread
that repeatedly holds a transaction open for a few seconds after an early update.
Keys below 1 (RESERVED_BELOW) are never touched by the writers: the test's own rows.
The controller may TRUNCATE the table once (truncate()). A writer survives a lost
connection or a source restart: the transaction in flight is dropped (it never
committed) and the thread reconnects and goes on.

Daemon runs `lockstep run` in the background with its output in a log file (a
pipe could fill up and block it) and stops it with SIGTERM or SIGKILL.
"""

import atexit
import collections
import os
import random
import signal
import subprocess
import threading
import time

import lktest as L

TABLE = "items"
# The columns the md5 oracle compares, over the view <table>_md5.
MD5_COLS = ["id", "status", "version", "name", "body_md5", "doc", "updated_at"]

ITEMS_DDL = ("CREATE TABLE {t} (id bigint PRIMARY KEY, status text NOT NULL, version bigint NOT NULL, "
             "name text, body text, doc jsonb, updated_at timestamptz DEFAULT now(){extra})")
VIEW_DDL = "CREATE VIEW {v} AS SELECT *, md5(body) AS body_md5 FROM {t}"

# Keys below this are left to the test: the writers' keys come from the sequence (1 and
# up) and their updates and deletes never pick a key below it, so a test can write rows
# of its own beside the workload and judge exactly what becomes of them.
RESERVED_BELOW = 1

# SQLSTATEs a writer expects under contention or an outage; anything else is reported.
EXPECTED_STATES = ("40P01", "40001", "55P03", "57014", "57P01", "57P02", "57P03", "25P02")


def _q(name):
    return L._quote_pg(name)


def create_source(url, n=0, table=TABLE, active_share=0.6):
    """Creates `table`, its key sequence (starting after n) and view <table>_md5, and
    loads rows 1..n server-side (status 'active' for about active_share of them)."""
    L.execute(url, ITEMS_DDL.format(t=_q(table), extra=""))
    L.execute(url, VIEW_DDL.format(t=_q(table), v=_q(table + "_md5")))
    L.execute(url, "CREATE SEQUENCE %s START %d" % (_q(table + "_id_seq"), n + 1))
    if n > 0:
        L.execute(url, (
            "INSERT INTO {t} (id, status, version, name, body, doc, updated_at) "
            "SELECT i, CASE WHEN (i * 7919) % 100 < {pct} THEN 'active' ELSE 'inactive' END, 1, "
            "'row ' || i || ' ' || chr(1024 + i % 200), "
            "CASE WHEN i % 5 = 0 THEN NULL ELSE repeat(md5(i::text), 1 + i % 40) END, "
            "CASE WHEN i % 7 = 0 THEN NULL ELSE jsonb_build_object('i', i, 'tags', "
            "jsonb_build_array('a', i % 3, true, null), 'x', i * 0.5) END, "
            "'2024-01-01 00:00:00+00'::timestamptz + i * interval '1 second 1 microsecond' "
            "FROM generate_series(1, {n}) i").format(t=_q(table), n=int(n), pct=int(active_share * 100)))
    L.execute(url, "ANALYZE %s" % _q(table))


def create_target(url, table=TABLE, extra_cols="", log_table="version_log"):
    """Creates the target `table` (same columns, primary key id, plus extra_cols such as
    ", deleted_at timestamptz"), its view <table>_md5, and the version oracle:
    `log_table` and an AFTER INSERT OR UPDATE row trigger logging (NEW.id, NEW.version)."""
    L.execute(url, ITEMS_DDL.format(t=_q(table), extra=extra_cols))
    L.execute(url, VIEW_DDL.format(t=_q(table), v=_q(table + "_md5")))
    if log_table:
        L.execute(url, "CREATE TABLE %s (id bigserial PRIMARY KEY, key bigint NOT NULL, "
                       "version bigint NOT NULL)" % _q(log_table))
        L.execute(url, "CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                       "INSERT INTO %s (key, version) VALUES (NEW.id, NEW.version); RETURN NULL; END $$"
                  % (_q(log_table + "_fn"), _q(log_table)))
        L.execute(url, "CREATE TRIGGER %s AFTER INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION %s()"
                  % (_q(log_table + "_trg"), _q(table), _q(log_table + "_fn")))


def versions_monotonic(target_url, log_table="version_log", limit=100):
    """Keys whose logged version is lower than the one logged just before it for the
    same key (in log order): a stale overwrite. [] when versions never went back."""
    rows = L.execute(target_url, (
        "SELECT key FROM (SELECT key, version, lag(version) OVER (PARTITION BY key ORDER BY id) AS prev "
        "FROM {log}) s WHERE version < prev GROUP BY key ORDER BY key LIMIT {lim}").format(
        log=_q(log_table), lim=int(limit)))
    return [r[0] for r in rows]


def version_history(target_url, key, log_table="version_log"):
    """[(log id, version)] of one key, for failure messages."""
    return L.execute(target_url, "SELECT id, version FROM %s WHERE key = %%s ORDER BY id" % _q(log_table),
                     (key,))


def log_count(target_url, log_table="version_log"):
    return L.scalar(target_url, "SELECT count(*) FROM %s" % _q(log_table))


def md5s(src_url, dst_url, where, src_table=TABLE, dst_table=TABLE, dst_where=None, cols=MD5_COLS):
    """((md5, count) of the source rows matching where, (md5, count) of the target rows)."""
    a = L.pg_md5(src_url, src_table + "_md5", ["id"], cols, where=where)
    b = L.pg_md5(dst_url, dst_table + "_md5", ["id"], cols, where=dst_where)
    return a, b


def wait_equal(t, src_url, dst_url, where, deadline_s, src_table=TABLE, dst_table=TABLE, dst_where=None,
               what=None, poll_s=0.5):
    """Polls until md5(source rows matching where) == md5(target rows [matching dst_where])
    or deadline_s passes. Returns (equal, source (md5, count), target (md5, count)).
    Both tables need their <table>_md5 view (create_source / create_target make them).

    With a Suite t, also records one check (with a key-level diff when it fails)."""
    t0 = time.monotonic()
    a = b = None
    while True:
        a, b = md5s(src_url, dst_url, where, src_table, dst_table, dst_where)
        if a == b or time.monotonic() - t0 >= deadline_s:
            break
        time.sleep(poll_s)
    ok = a == b
    if t is not None:
        label = what or "target equals the source rows matching %r (md5 oracle)" % where
        detail = ""
        if not ok:
            detail = "after %.0f s: source %r, target %r\n%s" % (
                deadline_s, a, b, diff(src_url, dst_url, where, src_table, dst_table, dst_where))
        t.check(ok, "%s (after %.1f s)" % (label, time.monotonic() - t0), detail)
    return ok, a, b


def diff(src_url, dst_url, where, src_table=TABLE, dst_table=TABLE, dst_where=None, limit=15):
    """A short key-level description of how the target differs from the source."""
    try:
        cols = ", ".join(MD5_COLS)
        a = dict((r[0], r[1:]) for r in L.execute(
            src_url, "SELECT id, version, status, md5(ROW(%s)::text) FROM %s%s" % (
                cols, _q(src_table + "_md5"), " WHERE " + where if where else "")))
        b = dict((r[0], r[1:]) for r in L.execute(
            dst_url, "SELECT id, version, status, md5(ROW(%s)::text) FROM %s%s" % (
                cols, _q(dst_table + "_md5"), " WHERE " + dst_where if dst_where else "")))
    except Exception as e:  # noqa: BLE001 - only a failure message
        return "(diff failed: %s)" % e
    out = []
    only_src = sorted(set(a) - set(b))
    only_dst = sorted(set(b) - set(a))
    changed = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    out.append("%d keys only in the source, %d only in the target, %d differ" % (
        len(only_src), len(only_dst), len(changed)))
    for k in only_src[:limit]:
        out.append("  key %d missing in the target (source version %d, %s)" % (k, a[k][0], a[k][1]))
    for k in only_dst[:limit]:
        out.append("  key %d only in the target (target version %d, %s)" % (k, b[k][0], b[k][1]))
    for k in changed[:limit]:
        out.append("  key %d: source version %d %s, target version %d %s" % (k, a[k][0], a[k][1], b[k][0],
                                                                              b[k][1]))
    return "\n".join(out)


# ---------------------------------------------------------------------------
# the writers


class Writers:
    """N writer threads plus one long-transaction holder on the source `table`.

    start() starts them; stop() stops and joins them. holding.wait() returns once the
    holder has made its first update (its transaction is open). truncate() runs one
    TRUNCATE from the calling thread. run(seconds, truncate_at=None) does all of it.
    counts: committed / failed transactions and statements by kind; errors: the first
    unexpected errors (anything but deadlocks, serialization failures, lost connections)."""

    WEIGHTS = (("insert", 28), ("status", 22), ("doc", 14), ("body", 7), ("rekey", 10), ("delete", 19))

    def __init__(self, url, n=8, seed=None, table=TABLE, hold_s=(2.0, 5.0), hold_gap_s=(0.05, 0.3),
                 pause_s=(0.0, 0.01), sleep_share=0.25, body_kb=(20, 200), log=None):
        self.url = url
        self.n = n
        self.seed = random.randrange(1 << 30) if seed is None else seed
        self.table = table
        self.seq = table + "_id_seq"
        self.hold_s = hold_s
        self.hold_gap_s = hold_gap_s
        self.pause_s = pause_s
        self.sleep_share = sleep_share
        self.body_kb = body_kb
        self.log = log or (lambda msg: None)
        self.stop_ev = threading.Event()
        self.holding = threading.Event()
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.errors = []
        self.threads = []
        self.truncated_at = None
        self.holds = []  # [xid, monotonic start, monotonic end or None] of each hold
        kinds = []
        for k, w in self.WEIGHTS:
            kinds += [k] * w
        self.kinds = kinds

    # -- bookkeeping

    def add(self, **kw):
        with self.lock:
            self.counts.update(kw)

    def _error(self, msg):
        with self.lock:
            self.counts["unexpected error"] += 1
            if len(self.errors) < 10:
                self.errors.append(msg)

    def summary(self):
        with self.lock:
            return ", ".join("%s %d" % (k, v) for k, v in sorted(self.counts.items()))

    # -- connections

    def _connect(self):
        """A fresh connection (autocommit off); retries while the source is down."""
        while not self.stop_ev.is_set():
            try:
                c = L.psycopg2.connect(self.url, connect_timeout=5)
                c.autocommit = False
                with c.cursor() as cur:
                    cur.execute("SET TimeZone = 'UTC'")
                c.commit()
                return c
            except L.psycopg2.Error:
                self.add(**{"connect retry": 1})
                self.stop_ev.wait(0.3)
        return None

    def _expected(self, e):
        if isinstance(e, (L.psycopg2.OperationalError, L.psycopg2.InterfaceError)) and not e.pgcode:
            return True
        code = getattr(e, "pgcode", None) or ""
        return code in EXPECTED_STATES or code.startswith("08")

    def _lost(self, c, e):
        """True when the connection is unusable after error e (reconnect)."""
        return c is None or c.closed or isinstance(e, L.psycopg2.InterfaceError) or (
            isinstance(e, L.psycopg2.OperationalError) and (not e.pgcode or e.pgcode.startswith("08")
                                                            or e.pgcode.startswith("57P")))

    def _loop(self, name, body, pause_s=None):
        """Runs body(cur, rnd) as one transaction again and again until stop."""
        rnd = random.Random("%s/%s" % (self.seed, name))
        c = None
        while not self.stop_ev.is_set():
            if c is None:
                c = self._connect()
                if c is None:
                    break
            try:
                with c.cursor() as cur:
                    kinds = body(cur, rnd)
                c.commit()
                self.add(committed=1, **kinds)
            except L.psycopg2.Error as e:
                self.add(failed=1)
                if not self._expected(e):
                    self._error("%s: %s %s" % (name, e.pgcode, str(e).strip()))
                if self._lost(c, e):
                    self.add(reconnects=1)
                    try:
                        c.close()
                    except L.psycopg2.Error:
                        pass
                    c = None
                    self.stop_ev.wait(rnd.uniform(0.1, 0.5))
                    continue
                try:
                    c.rollback()
                except L.psycopg2.Error:
                    try:
                        c.close()
                    except L.psycopg2.Error:
                        pass
                    c = None
            except Exception as e:  # noqa: BLE001 - a bug in the workload itself
                self._error("%s: %r" % (name, e))
                try:
                    c.close()
                except Exception:  # noqa: BLE001
                    pass
                c = None
                self.stop_ev.wait(0.5)
            lo, hi = pause_s or self.pause_s
            if hi > 0:
                self.stop_ev.wait(rnd.uniform(lo, hi))
        if c is not None:
            try:
                c.close()
            except L.psycopg2.Error:
                pass

    def _range(self, cur):
        cur.execute("SELECT (SELECT min(id) FROM %s), (SELECT last_value FROM %s)"
                    % (_q(self.table), _q(self.seq)))
        return cur.fetchone()

    def _pick(self, rnd, lo, hi):
        """SQL picking an existing key at or after a random point, and its parameter. Keys
        below 1 are the test's own (RESERVED_BELOW): writers never update or delete them."""
        return ("(SELECT id FROM %s WHERE id >= %%s AND id >= %d ORDER BY id LIMIT 1)"
                % (_q(self.table), RESERVED_BELOW), rnd.randint(lo, max(lo, hi)))

    def _statement(self, cur, rnd, kind, lo, hi):
        t = _q(self.table)
        if lo is None and kind != "insert":
            kind = "insert"  # an empty table (just truncated): nothing to update
        if kind == "insert":
            k = rnd.choice((1, 1, 1, 2, 3))
            status = "active" if rnd.random() < 0.6 else "inactive"
            frag = rnd.choice(L.FRAGMENTS)
            small = None if rnd.random() < 0.5 else "%08x" % rnd.getrandbits(32) * rnd.randint(1, 50)
            cur.execute("INSERT INTO %s (id, status, version, name, body, doc) "
                        "SELECT nextval('%s'), %%s, 1, %%s || ' #' || g, %%s, "
                        "jsonb_build_object('w', %%s, 'g', g, 'tags', jsonb_build_array(%%s, g, null)) "
                        "FROM generate_series(1, %%s) g" % (t, self.seq),
                        (status, frag, small, rnd.randint(0, 10 ** 9), frag, k))
            return kind
        pick, r = self._pick(rnd, lo, hi)
        if kind == "status":
            cur.execute("UPDATE %s SET status = CASE WHEN status = 'active' THEN 'inactive' "
                        "ELSE 'active' END, version = version + 1, updated_at = now() WHERE id = %s"
                        % (t, pick), (r,))
        elif kind == "doc":
            cur.execute("UPDATE %s SET doc = jsonb_build_object('v', version + 1, 'n', %%s::numeric, "
                        "'s', %%s, 'deep', jsonb_build_object('a', jsonb_build_array(1, 2.5, %%s))), "
                        "version = version + 1, updated_at = now() WHERE id = %s" % (t, pick),
                        ("%d.%d" % (rnd.randint(-10 ** 6, 10 ** 6), rnd.randint(0, 999)),
                         rnd.choice(L.FRAGMENTS), rnd.random() < 0.5, r))
        elif kind == "body":
            n32 = rnd.randint(self.body_kb[0] * 1024, self.body_kb[1] * 1024) // 32
            cur.execute("UPDATE %s SET body = (SELECT string_agg(md5(%%s || g), '') "
                        "FROM generate_series(1, %%s) g), version = version + 1, updated_at = now() "
                        "WHERE id = %s" % (t, pick),
                        (str(rnd.random()), n32, r))
        elif kind == "rekey":
            cur.execute("UPDATE %s SET id = nextval('%s'), version = version + 1, updated_at = now() "
                        "WHERE id = %s" % (t, self.seq, pick), (r,))
        elif kind == "delete":
            cur.execute("DELETE FROM %s WHERE id = %s" % (t, pick), (r,))
        else:
            raise ValueError(kind)
        return kind

    def _writer_txn(self, cur, rnd):
        lo, hi = self._range(cur)
        done = collections.Counter()
        for _ in range(rnd.randint(1, 5)):
            done[self._statement(cur, rnd, rnd.choice(self.kinds), lo, hi)] += 1
        if rnd.random() < self.sleep_share:
            time.sleep(rnd.uniform(0, 0.2))
            done["slept before commit"] += 1
        return done

    def _holder_txn(self, cur, rnd):
        lo, hi = self._range(cur)
        if lo is None:
            self._statement(cur, rnd, "insert", lo, hi)
        else:
            pick, r = self._pick(rnd, lo, hi)
            cur.execute("UPDATE %s SET version = version + 1, name = 'held ' || %%s, updated_at = now() "
                        "WHERE id = %s" % (_q(self.table), pick), (rnd.randint(0, 10 ** 6), r))
        cur.execute("SELECT pg_current_xact_id()::text::bigint")
        hold = [cur.fetchone()[0], time.monotonic(), None]
        with self.lock:
            self.holds.append(hold)
        self.holding.set()
        try:
            self.stop_ev.wait(rnd.uniform(*self.hold_s))
        finally:
            hold[2] = time.monotonic()  # about when it commits (or fails)
        return {"held open": 1}

    def _holder(self):
        # A short gap between holds: the horizon moves now and then.
        self._loop("holder", self._holder_txn, pause_s=self.hold_gap_s)

    def start(self):
        self.stop_ev.clear()
        for i in range(self.n):
            th = threading.Thread(target=self._loop, args=("w%d" % i, self._writer_txn), daemon=True)
            th.start()
            self.threads.append(th)
        th = threading.Thread(target=self._holder, daemon=True)
        th.start()
        self.threads.append(th)
        self.log("writers: %d threads + 1 holder on %s (seed %d)" % (self.n, self.table, self.seed))
        return self

    def truncate(self):
        """TRUNCATE the table once, now (waits for the transactions holding it)."""
        c = L.connect(self.url)
        try:
            with c.cursor() as cur:
                cur.execute("TRUNCATE %s" % _q(self.table))
        finally:
            c.close()
        self.truncated_at = time.monotonic()
        self.add(truncate=1)
        self.log("writers: TRUNCATE %s done" % self.table)

    def stop(self, timeout=60):
        self.stop_ev.set()
        for th in self.threads:
            th.join(timeout)
        alive = [th for th in self.threads if th.is_alive()]
        self.threads = []
        self.log("writers stopped: %s" % self.summary())
        return not alive

    def run(self, seconds, truncate_at=None):
        """Starts, runs for `seconds` (TRUNCATE once after truncate_at s), stops."""
        self.start()
        t0 = time.monotonic()
        if truncate_at is not None:
            time.sleep(max(0.0, truncate_at))
            self.truncate()
        time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
        return self.stop()


# ---------------------------------------------------------------------------
# lockstep run in the background


_running = []  # every Popen of Daemon, killed at exit if still alive


@atexit.register
def _kill_leftovers():
    for p in _running:
        if p.poll() is None:
            p.kill()
            p.wait()


class Daemon:
    """`lockstep -c CFG run` with stdout and stderr appended to LOGFILE. A process still
    running when the test exits (a failed check, an exception) is killed then."""

    def __init__(self, cfg, logfile, env=None):
        self.cfg = cfg
        self.logfile = logfile
        self.env = env
        self.p = None
        self.offset = 0

    def start(self, env=None):
        if self.alive():
            raise RuntimeError("lockstep run (pid %d) is still running" % self.p.pid)
        e = dict(os.environ)
        e.pop("LK_FAILPOINT", None)
        e.setdefault("NO_COLOR", "1")
        for k, v in list((self.env or {}).items()) + list((env or {}).items()):
            if v is None:
                e.pop(k, None)
            else:
                e[k] = str(v)
        with open(self.logfile, "a") as f:
            self.offset = f.tell()
            f.write("==== lockstep run%s\n" % (" (LK_FAILPOINT=%s)" % e["LK_FAILPOINT"]
                                               if "LK_FAILPOINT" in e else ""))
            f.flush()
            self.p = subprocess.Popen([L.lk_bin(), "-c", str(self.cfg), "run"], env=e, stdout=f,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _running.append(self.p)
        return self

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def wait(self, timeout):
        """The exit code, or None when it is still running after timeout s."""
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        """SIGKILL; returns the exit code (-9; None when never started)."""
        if self.p is None:
            return None
        if self.alive():
            self.p.kill()
        return self.p.wait()

    def term(self, timeout=60):
        """SIGTERM; the exit code, or None (then SIGKILL) when it did not stop in time."""
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            self.p.kill()
            self.p.wait()
        return rc

    def output(self):
        """What this process (since its start) wrote."""
        with open(self.logfile, errors="replace") as f:
            f.seek(self.offset)
            return f.read()

    def tail(self, limit=4000):
        s = self.output()
        return s if len(s) <= limit else "..." + s[-limit:]
