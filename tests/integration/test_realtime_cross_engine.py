"""Real-time mode across engines under concurrent writers: PostgreSQL -> SQLite and
SQLite -> PostgreSQL.

(a) PG -> SQLite. `lockstep run` starts on an empty SQLite target (it creates the
table). As soon as change capture is installed, one statement updates a quarter
of the table (one transaction whose changelog entries span many pages of
`batch` entries); then 4 psycopg2 writer threads insert, update, delete, move
rows in and out of `where "status = 'active'"`, change primary keys, update key
ranges of 5 and 40 rows, and sometimes sleep before COMMIT, for 10 s * LK_SCALE
(at least 3 s), while lockstep snapshots and streams.

(b) SQLite -> PG. The source is an SQLite file in WAL mode. A first `lockstep
sync` installs change capture (lockstep_cdc_changelog and the row triggers are
checked in sqlite_master) and snapshots; one statement updates a quarter of the
table; then `lockstep run` streams while 3 writer threads, each with its own
sqlite3 connection and a busy timeout, make the same kinds of changes in short
BEGIN IMMEDIATE transactions.

Jobs use batch 100, so the applier reads full pages whenever it is behind, and
pages end inside the bulk transaction and the 40-row ones.

After the writers stop, each case waits (polling, generous deadline) until an
oracle independent of lockstep finds both sides equal: every row of the source
that matches `where` and every row of the target, read with psycopg2 / sqlite3
and compared as canonical Python values (lktest.rows_canonical, compare_rows).
Then: a trigger on the target logged (key, version) on every write, and no key's
version ever went backwards (no stale overwrite); writers never saw an error
other than deadlocks / busy (the capture triggers never break a writer); `status
--json` reports the job registered with 0 changes pending; SIGTERM stops `run`
with exit 0; `lockstep verify` exits 0; `uninstall` removes every lockstep_cdc
object from the source (sqlite_master / the lockstep_cdc schema and the table's
triggers), and the source still accepts writes afterwards.
"""
import collections
import datetime
import decimal
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time

import lktest as L

L.require_pg()
t = L.Suite("test_realtime_cross_engine")

try:
    _SCALE = float(os.environ.get("LK_SCALE") or 1)
except ValueError:
    _SCALE = 1.0
DURATION = max(3.0, 10.0 * _SCALE)   # seconds of concurrent writes per case
N0 = L.scale(20000)                  # rows in the source before lockstep starts
DEADLINE = 180                       # seconds to wait for convergence (never a timing assertion)
WHERE = "status = 'active'"
BATCH = 100                          # small: the applier reads many full pages while it catches up
BULK = N0 // 4                       # rows one early statement changes (one transaction, many entries)
COLS = ["id", "status", "version", "name", "amount", "ts", "data"]
KINDS = ("insert", "update", "flip", "delete", "rekey", "range", "bulk")

PG_DDL = ("CREATE TABLE items (id bigint PRIMARY KEY, status text NOT NULL, version bigint NOT NULL, "
          "name text, amount numeric(12,2), ts timestamptz, data bytea)")
SQLITE_DDL = ("CREATE TABLE items (id INTEGER PRIMARY KEY, status TEXT NOT NULL, version INTEGER NOT NULL, "
              "name TEXT, amount NUMERIC TEXT, ts TIMESTAMPTZ TEXT, data BLOB)")


# ---------------------------------------------------------------------------
# the workload: the same operations on either engine


class Workload:
    """Hands out fresh keys, builds random operations, and counts what committed."""

    def __init__(self, engine, first_free_id):
        self.engine = engine            # "pg" or "sqlite"
        self.lock = threading.Lock()
        self.next_id = first_free_id
        self.stop = threading.Event()
        self.counts = collections.Counter()
        self.errors = []                # unexpected writer errors (first few)

    def new_id(self):
        with self.lock:
            v = self.next_id
            self.next_id += 1
            return v

    def any_id(self, rnd):
        with self.lock:
            hi = self.next_id - 1
        return rnd.randint(1, hi)

    def add(self, counter):
        with self.lock:
            self.counts.update(counter)

    def error(self, msg):
        with self.lock:
            if len(self.errors) < 10:
                self.errors.append(msg)
            self.counts["unexpected error"] += 1

    def values(self, rnd):
        """name, amount, ts, data in this engine's input form."""
        name = None if rnd.random() < 0.05 else "%s #%d" % (rnd.choice(L.FRAGMENTS), rnd.randint(0, 10 ** 6))
        amount = None
        if rnd.random() > 0.05:
            amount = decimal.Decimal(rnd.randint(-10 ** 11, 10 ** 11)).scaleb(-2)
        ts = None
        if rnd.random() > 0.05:
            ts = (datetime.datetime(2000, 1, 1, tzinfo=L.UTC)
                  + datetime.timedelta(microseconds=rnd.randint(0, 10 ** 15)))
        data = None
        if rnd.random() > 0.05:
            data = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 40)))
        if self.engine == "sqlite":
            amount = None if amount is None else str(amount)
            ts = None if ts is None else L.fmt_ts(ts, True)
        return name, amount, ts, data

    def op(self, rnd):
        """(kind, sql with %s placeholders, params) of one random operation."""
        r = rnd.random()
        if r < 0.25:
            status = "active" if rnd.random() < 0.6 else "inactive"
            return ("insert", "INSERT INTO items (id, status, version, name, amount, ts, data) "
                              "VALUES (%s, %s, 1, %s, %s, %s, %s)",
                    (self.new_id(), status) + self.values(rnd))
        if r < 0.55:
            return ("update", "UPDATE items SET version = version + 1, name = %s, amount = %s, ts = %s, "
                              "data = %s WHERE id = %s", self.values(rnd) + (self.any_id(rnd),))
        if r < 0.70:
            return ("flip", "UPDATE items SET version = version + 1, status = CASE WHEN status = 'active' "
                            "THEN 'inactive' ELSE 'active' END WHERE id = %s", (self.any_id(rnd),))
        if r < 0.78:
            return ("delete", "DELETE FROM items WHERE id = %s", (self.any_id(rnd),))
        if r < 0.91:
            # A primary-key change: the old key must vanish from the target, the new appear.
            return ("rekey", "UPDATE items SET id = %s, version = version + 1 WHERE id = %s",
                    (self.new_id(), self.any_id(rnd)))
        lo = self.any_id(rnd)
        if r < 0.975:
            return ("range", "UPDATE items SET version = version + 1, amount = %s WHERE id BETWEEN %s AND %s",
                    (self.values(rnd)[1], lo, lo + 4))
        # Many changelog entries from one statement: pages of BATCH entries end inside it.
        return ("bulk", "UPDATE items SET version = version + 1, ts = %s WHERE id BETWEEN %s AND %s",
                (self.values(rnd)[2], lo, lo + 39))


def pg_writer(wl, url, seed):
    rnd = random.Random(seed)
    c = L.psycopg2.connect(url, connect_timeout=10)
    try:
        cur = c.cursor()
        cur.execute("SET TimeZone = 'UTC'")
        c.commit()
        while not wl.stop.is_set():
            done = collections.Counter()
            try:
                for _ in range(rnd.choice((1, 1, 1, 2, 3))):
                    kind, q, p = wl.op(rnd)
                    cur.execute(q, p)
                    if cur.rowcount > 0:
                        done[kind] += 1
                if rnd.random() < 0.05:
                    time.sleep(rnd.uniform(0.01, 0.2))  # an open writing transaction holds the horizon
                c.commit()
                wl.add(done)
            except (L.psycopg2.errors.DeadlockDetected, L.psycopg2.errors.SerializationFailure):
                c.rollback()
                wl.add({"aborted (deadlock)": 1})
            except L.psycopg2.Error as e:
                c.rollback()
                wl.error("%s: %s" % (type(e).__name__, str(e).strip()))
    except Exception as e:  # noqa: BLE001 - reported by the test
        wl.error("writer died: %r" % e)
    finally:
        c.close()


def sqlite_writer(wl, path, seed):
    rnd = random.Random(seed)
    c = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        c.execute("PRAGMA busy_timeout = 30000")
        while not wl.stop.is_set():
            done = collections.Counter()
            try:
                c.execute("BEGIN IMMEDIATE")
                for _ in range(rnd.choice((1, 1, 1, 2, 3))):
                    kind, q, p = wl.op(rnd)
                    cur = c.execute(q.replace("%s", "?"), p)
                    if cur.rowcount > 0:
                        done[kind] += 1
                if rnd.random() < 0.03:
                    time.sleep(rnd.uniform(0.005, 0.03))  # short: SQLite has one writer at a time
                c.execute("COMMIT")
                wl.add(done)
            except sqlite3.Error as e:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                msg = str(e)
                if isinstance(e, sqlite3.OperationalError) and ("locked" in msg or "busy" in msg):
                    wl.add({"busy": 1})
                else:
                    wl.error("%s: %s" % (type(e).__name__, msg))
            time.sleep(0.0005)  # let lockstep's source reader in now and then
    except Exception as e:  # noqa: BLE001 - reported by the test
        wl.error("writer died: %r" % e)
    finally:
        c.close()


def run_writers(wl, target, args_list, what):
    threads = [threading.Thread(target=target, args=(wl,) + a, daemon=True) for a in args_list]
    for th in threads:
        th.start()
    t.log("%s: %d writers for %.1f s" % (what, len(threads), DURATION))
    time.sleep(DURATION)
    wl.stop.set()
    for th in threads:
        th.join(60)
    t.check(not any(th.is_alive() for th in threads), "%s: writers stopped" % what)
    t.log("%s: committed operations %s" % (what, dict(wl.counts)))
    t.check(not wl.errors, "%s: writers saw no error but deadlocks/busy (capture triggers never "
                           "break a write)" % what, "\n".join(wl.errors))
    missing = [k for k in KINDS if wl.counts[k] == 0]
    t.check(not missing, "%s: every kind of change committed at least once (incl. key updates)" % what,
            "none of %s in %r" % (missing, dict(wl.counts)))


# ---------------------------------------------------------------------------
# lockstep run in the background, its output in files (a pipe could fill and block it)


class Runner:
    def __init__(self, cfg, w):
        self.out_path, self.err_path = w.file("run.out"), w.file("run.err")
        env = dict(os.environ)
        env.pop("LK_FAILPOINT", None)
        env["NO_COLOR"] = "1"
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.p = subprocess.Popen([L.lk_bin(), "-c", str(cfg), "run"], stdout=out, stderr=err,
                                      env=env)

    def alive(self):
        return self.p.poll() is None

    def logs(self, limit=4000):
        parts = []
        for name, path in (("stdout", self.out_path), ("stderr", self.err_path)):
            with open(path, errors="replace") as f:
                s = f.read()
            parts.append("--- run %s ---\n%s" % (name, s if len(s) <= limit else "..." + s[-limit:]))
        return "\n".join(parts)

    def stop(self):
        """SIGTERM, then the exit code (-999 when it had to be killed)."""
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(90)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            return -999


# ---------------------------------------------------------------------------
# the checks shared by both directions


def converge(src, dst, runner, what):
    """Polls the oracle until the target equals the source rows that match WHERE."""
    t0 = time.monotonic()
    while True:
        a = L.rows_canonical(src, "items", ["id"], COLS, where=WHERE)
        b = L.rows_canonical(dst, "items", ["id"], COLS)
        diff = L.compare_rows(a, b)
        if not diff or time.monotonic() - t0 > DEADLINE or not runner.alive():
            break
        time.sleep(0.5)
    t.log("%s: oracle settled after %.1f s (%d source rows match, %d target rows)"
          % (what, time.monotonic() - t0, len(a), len(b)))
    t.check(len(a) > 0, "%s: the source still has matching rows" % what)
    t.check(runner.alive(), "%s: lockstep run is still running" % what, runner.logs())
    t.check(not diff, "%s: oracle finds target == source rows matching where" % what,
            "%d keys differ:\n%s\n%s" % (len(diff), L.describe_diff(a, b, diff), runner.logs()))
    return a


def check_lag(cfg, runner, what):
    """status --json: the job is registered on its source and nothing is pending."""
    last = {}

    def ok():
        rc, out, err = L.run_lockstep(["status", "--json"], cfg, timeout=60)
        last["r"] = (rc, out, err)
        obj = L.whole_json(out)
        jobs = (obj or {}).get("jobs") or []
        lag = next((j.get("lag") for j in jobs if j.get("name") == "items"), None)
        last["lag"] = lag
        return rc == 0 and isinstance(lag, dict) and lag.get("registered") is True and lag.get("pending") == 0

    good = L.wait_for(ok, 60, 0.5)
    t.check(good, "%s: status --json lag: registered, 0 pending" % what,
            "lag %r\n%s" % (last.get("lag"), L.show(*last["r"])))
    lag = last.get("lag") or {}
    t.check(lag.get("installed") is True and lag.get("oldestPendingSeconds") is None,
            "%s: status --json lag: installed, no oldest pending change" % what, repr(lag))


def stop_and_verify(cfg, runner, what):
    rc = runner.stop()
    t.eq(rc, 0, "%s: SIGTERM stops lockstep run with exit 0" % what, runner.logs())
    with open(runner.err_path, errors="replace") as f:
        errs = [l for l in f if "level=error" in l]
    t.check(not errs, "%s: lockstep run logged no error" % what, "".join(errs[:10]))
    L.verify(t, cfg, "items", expect=0)


def versions_monotonic(rows, what):
    """rows: (id, version) in write order; no key's version may go backwards."""
    last, back = {}, []
    for k, v in rows:
        if k in last and v < last[k]:
            back.append((k, last[k], v))
        last[k] = v
    t.check(len(rows) > 0, "%s: the target's version log recorded writes (%d)" % (what, len(rows)))
    t.check(not back, "%s: no key's version went backwards on the target (no stale overwrite)" % what,
            "first (key, version, then older version): %r" % back[:10])


def sqlite_cdc_objects(path):
    c = sqlite3.connect(path, timeout=30)
    try:
        return sorted((r[0], r[1], r[2]) for r in c.execute(
            "SELECT type, name, tbl_name FROM sqlite_master WHERE name GLOB 'lockstep_cdc*'"))
    finally:
        c.close()


# ---------------------------------------------------------------------------
# (a) PostgreSQL -> SQLite


def test_pg_to_sqlite():
    what = "PG -> SQLite"
    src = L.new_db("rtxe_src")
    L.execute(src, PG_DDL)
    L.execute(src, "INSERT INTO items SELECT i, CASE WHEN i %% 3 = 0 THEN 'inactive' ELSE 'active' END, 1, "
                   "'row ' || i || ' ' || chr(1024 + i %% 200), (i %% 100000) / 7.0, "
                   "'2022-01-01 00:00:00+00'::timestamptz + i * interval '1.5 seconds', "
                   "CASE WHEN i %% 10 = 0 THEN NULL ELSE decode(md5(i::text) || '00', 'hex') END "
                   "FROM generate_series(1, %s) i", (N0,))
    w = L.Workdir("rtxe_pg_sqlite")
    dst_path = w.file("dst.db")
    dst = "sqlite:" + dst_path
    cfg = L.sync_config(w, {"src": src, "dst": "sqlite:dst.db"},
                        {"items": {"source": {"db": "src", "table": "items", "where": WHERE},
                                   "target": {"db": "dst", "table": "items", "create": True},
                                   "mode": "realtime", "batch": BATCH}})
    runner = Runner(cfg, w)
    try:
        def target_exists():
            if not os.path.exists(dst_path):
                return False
            c = sqlite3.connect(dst_path, timeout=30)
            try:
                return c.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                 "AND name = 'items'").fetchone()[0] == 1
            finally:
                c.close()

        t.check(L.wait_for(lambda: target_exists() or not runner.alive(), 60, 0.25) and runner.alive(),
                "%s: lockstep run creates the SQLite target table" % what, runner.logs())
        # The version log: every insert/update lockstep makes on the target, in order.
        c = sqlite3.connect(dst_path, timeout=60, isolation_level=None)
        c.execute("PRAGMA busy_timeout = 60000")
        c.executescript(
            "CREATE TABLE vlog (n INTEGER PRIMARY KEY AUTOINCREMENT, id INTEGER, version INTEGER);"
            "CREATE TRIGGER vlog_ins AFTER INSERT ON items BEGIN "
            "INSERT INTO vlog (id, version) VALUES (NEW.id, NEW.version); END;"
            "CREATE TRIGGER vlog_upd AFTER UPDATE ON items BEGIN "
            "INSERT INTO vlog (id, version) VALUES (NEW.id, NEW.version); END;")
        c.close()

        # One statement changing many rows as soon as capture is installed: lockstep reads
        # that one transaction's entries in many full pages (its seqs cross 10, 100, 1000).
        t.check(L.wait_for(lambda: L.scalar(src, "SELECT count(*) FROM pg_trigger WHERE tgrelid = "
                                                 "'items'::regclass AND tgname = 'lockstep_cdc_capture'") == 1
                           or not runner.alive(), 60, 0.25) and runner.alive(),
                "%s: lockstep run installs change capture" % what, runner.logs())
        n = L.execute(src, "UPDATE items SET version = version + 1, name = name || ' (bulk)' WHERE id <= %s",
                      (BULK,))
        t.eq(n, BULK, "%s: one transaction updated %d rows" % (what, BULK))
        # The writers start while lockstep snapshots.
        wl = Workload("pg", N0 + 1)
        run_writers(wl, pg_writer, [(src, 1000 + i) for i in range(4)], what)
        t.eq(sorted(r[0] for r in L.execute(src, "SELECT tgname FROM pg_trigger WHERE tgrelid = "
                                                 "'items'::regclass AND NOT tgisinternal")),
             ["lockstep_cdc_capture", "lockstep_cdc_notify", "lockstep_cdc_truncate"],
             "%s: lockstep run installed its 3 triggers on the source table" % what)
        converge(src, dst, runner, what)
        c = sqlite3.connect(dst_path, timeout=60)
        vrows = c.execute("SELECT id, version FROM vlog ORDER BY n").fetchall()
        c.close()
        versions_monotonic(vrows, what)
        check_lag(cfg, runner, what)
    finally:
        stop_and_verify(cfg, runner, what)

    rc, out, err = L.run_lockstep(["uninstall", "items"], cfg, timeout=120)
    t.eq(rc, 0, "%s: uninstall exits 0" % what, L.show(rc, out, err))
    t.eq(L.scalar(src, "SELECT count(*) FROM pg_namespace WHERE nspname = 'lockstep_cdc'"), 0,
         "%s: uninstall drops schema lockstep_cdc" % what)
    t.eq(L.scalar(src, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass "
                       "AND NOT tgisinternal"), 0, "%s: uninstall drops the table's triggers" % what)
    L.execute(src, "UPDATE items SET version = version + 1 WHERE id IN (SELECT id FROM items LIMIT 5)")
    t.check(True, "%s: the source accepts writes after uninstall" % what)


# ---------------------------------------------------------------------------
# (b) SQLite -> PostgreSQL


def test_sqlite_to_pg():
    what = "SQLite -> PG"
    w = L.Workdir("rtxe_sqlite_pg")
    src_path = w.file("src.db")
    src = "sqlite:" + src_path
    c = sqlite3.connect(src_path, isolation_level=None)
    mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    t.eq(mode, "wal", "%s: the source is in WAL mode" % what)
    c.execute(SQLITE_DDL)
    c.execute("BEGIN")
    for i in range(1, N0 + 1):
        c.execute("INSERT INTO items VALUES (?, ?, 1, ?, ?, ?, ?)",
                  (i, "inactive" if i % 3 == 0 else "active", "row %d %s" % (i, chr(1024 + i % 200)),
                   "%d.%02d" % (i % 100000, i % 100),
                   L.fmt_ts(datetime.datetime(2022, 1, 1, tzinfo=L.UTC)
                            + datetime.timedelta(seconds=i * 1.5), True),
                   None if i % 10 == 0 else bytes([i % 256, 0, 255])))
    c.execute("COMMIT")
    c.close()
    dst = L.new_db("rtxe_dst")
    cfg = L.sync_config(w, {"src": "sqlite:src.db", "dst": dst},
                        {"items": {"source": {"db": "src", "table": "items", "where": WHERE},
                                   "target": {"db": "dst", "table": "items", "create": True},
                                   "mode": "realtime", "batch": BATCH}})

    L.sync(t, cfg, "items")
    objs = sqlite_cdc_objects(src_path)
    names = dict((n, (ty, tbl)) for ty, n, tbl in objs)
    for tbl in ("lockstep_cdc_changelog", "lockstep_cdc_tables", "lockstep_cdc_consumers", "lockstep_cdc_meta"):
        t.eq(names.get(tbl, (None,))[0], "table", "%s: the first run created %s" % (what, tbl), repr(objs))
    trig = sorted(n for ty, n, tbl in objs if ty == "trigger" and tbl == "items")
    t.check(len(trig) == 3 and all(any(n.endswith(s) for n in trig) for s in ("_ins", "_upd", "_del")),
            "%s: the first run created the _ins/_upd/_del triggers on items" % what, repr(objs))

    L.execute(dst, "CREATE TABLE vlog (n bigserial PRIMARY KEY, id bigint, version bigint)")
    L.execute(dst, "CREATE FUNCTION vlog_f() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
                   "INSERT INTO vlog (id, version) VALUES (NEW.id, NEW.version); RETURN NULL; END$$")
    L.execute(dst, "CREATE TRIGGER vlog_t AFTER INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION vlog_f()")

    c = sqlite3.connect(src_path, timeout=30)
    n = c.execute("UPDATE items SET version = version + 1, name = name || ' (bulk)' WHERE id <= ?",
                  (BULK,)).rowcount
    c.commit()
    c.close()
    t.eq(n, BULK, "%s: one transaction updated %d rows" % (what, BULK))

    runner = Runner(cfg, w)
    try:
        wl = Workload("sqlite", N0 + 1)
        run_writers(wl, sqlite_writer, [(src_path, 2000 + i) for i in range(3)], what)
        converge(src, dst, runner, what)
        # Committed order on the target: n is handed out in commit order only within one
        # writer (lockstep applies with one connection), which is the case here.
        versions_monotonic([tuple(r) for r in L.execute(dst, "SELECT id, version FROM vlog ORDER BY n")], what)
        check_lag(cfg, runner, what)
    finally:
        stop_and_verify(cfg, runner, what)

    rc, out, err = L.run_lockstep(["uninstall", "items"], cfg, timeout=120)
    t.eq(rc, 0, "%s: uninstall exits 0" % what, L.show(rc, out, err))
    t.eq(sqlite_cdc_objects(src_path), [],
         "%s: uninstall removes every lockstep_cdc object from sqlite_master" % what)
    c = sqlite3.connect(src_path, timeout=30)
    try:
        seq = c.execute("SELECT name FROM sqlite_sequence WHERE name GLOB 'lockstep_cdc*'").fetchall()
        t.eq(seq, [], "%s: no sqlite_sequence entry of lockstep's is left" % what)
        c.execute("UPDATE items SET version = version + 1 WHERE id IN (SELECT id FROM items LIMIT 5)")
        c.execute("INSERT INTO items (id, status, version) VALUES (?, 'active', 1)", (10 ** 12,))
        c.commit()
        t.check(True, "%s: the source accepts writes after uninstall" % what)
    finally:
        c.close()


t.case(test_pg_to_sqlite)
t.case(test_sqlite_to_pg)
t.finish()
