"""test_schema_changes - DDL on a PostgreSQL source while a job runs (issue 18, "DDL on the
source while a job runs"; the behaviour is docs/schema-changes.md).

Every source table has a writer thread of its own (psycopg2, short transactions of inserts,
updates and deletes) that goes on through the DDL: the test runs each ALTER between two of
the writer's transactions and then lets the writer use the new columns at once. Each case is
judged by an oracle independent of lockstep over the SOURCE'S CURRENT columns: md5 over the
rows' text (lktest.pg_md5) for PostgreSQL targets, canonical rows (lktest.rows_canonical,
compare_rows) for SQLite targets; while it compares, that table's writer is paused.

Part 1, one `lockstep run` with real-time jobs (log level debug, to count the retries):
  add_rt, add_rl   ADD COLUMN c1 int DEFAULT 42 and c2 text while it streams, then updates
                   setting both (PG->PG and PG->SQLite, target.create: true)
  drop_rt          DROP COLUMN of a NOT NULL column: the job goes on, the target keeps the
                   column with its old values, new rows have NULL there (NOT NULL dropped)
  ren_rt           RENAME COLUMN: the target column is renamed
  wid_rt           int -> bigint, varchar(10) -> varchar(100): the target's types follow
  nar_rt           int -> text: the job stops ("changed type from integer to text"), status
                   shows it; the test alters the target column and the job resumes by itself
  key_rt           RENAME of the key column: followed, no application write fails
  cols_rt          source.columns [id, a, b]: an unlisted column added and another dropped
                   change nothing; dropping b stops the job ("has no column")
  stop_rt          a target the test made (policy stop): ADD COLUMN logs one error line,
                   status, /api/health (DEGRADED, check "schema") and /metrics
                   (lockstep_schema_blocked 1) show it; adding the column on the target
                   lets the job resume by itself and fill it; the metric goes back to 0
  enum_rt          a label added to an enum (ALTER TYPE ADD VALUE) and used at once: no
                   dead letter, target equal
Part 2, `lockstep sync` runs (another state store):
  cu_pg, cu_rl     real-time catch-ups, the ADD COLUMNs between two runs
  poll_pg, poll_rl mode poll (cursor updated_at), the ADD COLUMNs between two runs
  poll_key         mode poll, the key column renamed between two runs
"""

import contextlib
import http.client
import json
import random
import re
import sqlite3
import threading
import time

import lktest as L
import rtwriters as W

L.require_pg()
t = L.Suite("test_schema_changes")

N = L.scale(2000)  # rows in each source table before lockstep starts
DEADLINE = 90      # seconds to converge (waited for, never a timing assertion)
RESUME_S = 30      # a stopped job looks again every 10 s: resumed within this


# ---------------------------------------------------------------------------
# a writer per source table


class Writer:
    """One thread writing to `table` in short transactions (1-3 statements: inserts of fresh
    keys, updates of random columns, deletes) until stop().

    cols: {column: gen(rnd, key) -> value} written by inserts and updates (fixed: columns
    only inserts write); touch: a column set to clock_timestamp() by every write (poll's
    cursor). ddl() runs statements between two transactions and lets change(self) adjust
    the columns before the next one; paused() holds the writer. errors: every error a
    write got (none is expected: nothing else writes or locks these tables)."""

    def __init__(self, url, table, cols, key="id", first=None, deletes=True, touch=None,
                 fixed=()):
        self.url, self.table, self.key = url, table, key
        self.cols = dict(cols)
        self.fixed = set(fixed)
        self.next_id = first or N + 1
        self.deletes, self.touch = deletes, touch
        self.gate = threading.Lock()
        self.stop_ev = threading.Event()
        self.txns = 0
        self.errors = []
        self.mark = None
        self.rnd = random.Random(table)
        self.th = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self.th.start()
        return self

    def _q(self, name):
        return '"%s"' % name.replace('"', '""')

    def _insert(self, cur, rnd):
        k = self.next_id
        self.next_id += 1
        names = [self.key] + [c for c in self.cols if c != self.key]
        vals = [k] + [self.cols[c](rnd, k) for c in names[1:]]
        extra = (", " + self._q(self.touch)) if self.touch else ""
        cur.execute("INSERT INTO %s (%s%s) VALUES (%s%s)" % (
            self._q(self.table), ", ".join(self._q(c) for c in names), extra,
            ", ".join(["%s"] * len(vals)), ", clock_timestamp()" if self.touch else ""), vals)

    def _update(self, cur, rnd):
        k = rnd.randint(1, self.next_id - 1)
        names = [c for c in self.cols if c != self.key and c not in self.fixed]
        pick = rnd.sample(names, rnd.randint(1, len(names)))
        sets = ["%s = %%s" % self._q(c) for c in pick]
        if self.touch:
            sets.append("%s = clock_timestamp()" % self._q(self.touch))
        cur.execute("UPDATE %s SET %s WHERE %s = %%s" % (self._q(self.table), ", ".join(sets),
                                                       self._q(self.key)),
                    [self.cols[c](rnd, k) for c in pick] + [k])

    def _txn(self, c):
        rnd = self.rnd
        with c.cursor() as cur:
            for _ in range(rnd.randint(1, 3)):
                r = rnd.random()
                if r < 0.4:
                    self._insert(cur, rnd)
                elif r < 0.85 or not self.deletes:
                    self._update(cur, rnd)
                else:
                    cur.execute("DELETE FROM %s WHERE %s = %%s" % (self._q(self.table), self._q(self.key)),
                                (rnd.randint(1, self.next_id - 1),))
        c.commit()
        self.txns += 1

    def _loop(self):
        c = None
        while not self.stop_ev.is_set():
            with self.gate:
                try:
                    if c is None:
                        c = L.psycopg2.connect(self.url, connect_timeout=10)
                    self._txn(c)
                except L.psycopg2.Error as e:
                    if len(self.errors) < 10:
                        self.errors.append("%s: %s %s" % (self.table, e.pgcode, str(e).strip()))
                    else:
                        self.errors.append("...")
                    try:
                        c.close()
                    except Exception:  # noqa: BLE001
                        pass
                    c = None
            self.stop_ev.wait(self.rnd.uniform(0.02, 0.06))
        if c is not None:
            c.close()

    def ddl(self, *stmts, change=None, before=None):
        """Runs stmts between two transactions; change(self) then adjusts the columns.
        self.mark: the first key inserted after it; self.before: what before() returned
        just before it."""
        with self.gate:
            self.before = before() if before else None
            c = L.connect(self.url)
            try:
                with c.cursor() as cur:
                    for s in stmts:
                        cur.execute(s)
            finally:
                c.close()
            if change:
                change(self)
            self.mark = self.next_id

    @contextlib.contextmanager
    def paused(self):
        with self.gate:
            yield

    def wait_txns(self, n, deadline=60):
        """Waits until n more transactions committed (writes went on)."""
        goal = self.txns + n
        return L.wait_for(lambda: self.txns >= goal or not self.th.is_alive(), deadline, 0.05)

    def stop(self):
        self.stop_ev.set()
        self.th.join(30)


def txt(rnd, k):
    return "%s %d" % (rnd.choice(L.FRAGMENTS[:20]), rnd.randint(0, 10 ** 6))


def num(rnd, k):
    return rnd.randint(-10 ** 6, 10 ** 6)


# ---------------------------------------------------------------------------
# the oracles


def pg_cols(url, table):
    return [c for c, _ in L.pg_columns(url, table)]


def sqlite_cols(path, table):
    c = sqlite3.connect(path)
    try:
        return [r[1] for r in c.execute('PRAGMA table_info("%s")' % table)]
    finally:
        c.close()


def differs(src, dst, table, key, cols=None, dst_table=None):
    """None when the target's rows equal the source's over `cols` (default: the source's
    current columns), else a description of the difference."""
    cols = cols or pg_cols(src, table)
    dst_table = dst_table or table
    try:
        if L.is_sqlite(dst):
            a = L.rows_canonical(src, table, [key], cols)
            b = L.rows_canonical(dst, dst_table, [key], cols)
            keys = L.compare_rows(a, b)
            return None if not keys else "%d keys differ:\n%s" % (len(keys), L.describe_diff(a, b, keys))
        a = L.pg_md5(src, table, [key], cols)
        b = L.pg_md5(dst, dst_table, [key], cols)
        return None if a == b else "source %r, target %r" % (a, b)
    except (L.psycopg2.Error, sqlite3.Error, RuntimeError) as e:
        return "cannot compare: %s" % str(e).strip()


def converge(w, src, dst, table, key, what, cols=None, deadline=DEADLINE):
    """Pauses writer w and waits until the target equals the source (one check)."""
    t0 = time.monotonic()
    with w.paused():
        key = w.key if key is None else key
        L.wait_for(lambda: differs(src, dst, table, key, cols) is None, deadline, 0.3)
        last = differs(src, dst, table, key, cols)
    return t.check(last is None, "%s: target equals the source over its current columns (oracle, %.1f s)"
                   % (what, time.monotonic() - t0), last)


def status_json(cfg):
    rc, out, err = L.run_lockstep(["status", "--json"], cfg)
    obj = L.whole_json(out) or {}
    return dict((j.get("name"), j) for j in obj.get("jobs", []))


def last_error(cfg, job):
    j = status_json(cfg).get(job) or {}
    return ((j.get("lastRun") or {}).get("error")) or ""


def job_lines(log, job, level):
    return [l for l in log.splitlines() if "level=%s " % level in l and 'job="%s"' % job in l]


class Http:
    def __init__(self, d):
        self.d = d
        m = L.wait_for(lambda: re.search(r"HTTP API on http://[^:]+:(\d+)/", d.output()), 30, 0.1)
        self.port = int(m.group(1)) if m else None

    def get(self, path):
        if not self.port:
            return None, ""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request("GET", path)
            r = c.getresponse()
            body = r.read().decode("utf-8", "replace")
            try:
                return r.status, json.loads(body)
            except ValueError:
                return r.status, body
        finally:
            c.close()

    def metric(self, name, job):
        """The value of metric name{job="job"}, or None."""
        _, text = self.get("/metrics")
        m = re.search(r'^%s\{job="%s"\} (\S+)$' % (re.escape(name), re.escape(job)), str(text), re.M)
        return float(m.group(1)) if m else None

    def schema_check(self):
        _, h = self.get("/api/health")
        h = h if isinstance(h, dict) else {}
        checks = [c for c in h.get("checks", []) if c.get("name") == "schema"]
        return h.get("status"), (checks[0] if checks else None)


# ---------------------------------------------------------------------------
# part 1: one daemon, real-time jobs


def rt_job(table, dst="dst", create=True, **more):
    j = {"source": {"db": "src", "table": table}, "mode": "realtime", "batch": 200,
         "target": {"db": dst, "table": table}}
    if create:
        j["target"]["create"] = True
    j.update(more)
    return j


class Part1:
    def __init__(self):
        self.w = L.Workdir("schema_rt")
        self.src, self.dst = L.new_db("sc_rt_s"), L.new_db("sc_rt_t")
        self.lite = self.w.file("target.db")
        self.writers = {}
        self.make_tables()
        jobs = {n: rt_job(n) for n in ("add_rt", "drop_rt", "ren_rt", "wid_rt", "nar_rt", "key_rt", "enum_rt")}
        jobs["add_rl"] = rt_job("add_rl", dst="lite")
        jobs["cols_rt"] = rt_job("cols_rt")
        jobs["cols_rt"]["source"]["columns"] = ["id", "a", "b"]
        jobs["stop_rt"] = rt_job("stop_rt", create=False)
        self.cfg = L.sync_config(self.w, {"src": self.src, "dst": self.dst, "lite": "sqlite:" + self.lite},
                                 jobs, extra={"log": {"level": "debug"}})
        self.d = W.Daemon(self.cfg, self.w.file("run.log"), {"LOCKSTEP_SHUTDOWN_GRACE": "10s"})

    def sql(self, url, *stmts):
        for s in stmts:
            L.execute(url, s)

    def make_tables(self):
        s = self.src
        gen = "FROM generate_series(1, %d) i" % N
        for tb in ("add_rt", "add_rl", "key_rt"):
            self.sql(s, "CREATE TABLE %s (id bigint PRIMARY KEY, v text NOT NULL, n int)" % tb,
                     "INSERT INTO %s SELECT i, 'v' || i, i %s" % (tb, gen))
            self.writers[tb] = Writer(s, tb, {"v": txt, "n": num})
        self.sql(s, "CREATE TABLE drop_rt (id bigint PRIMARY KEY, v text, must int NOT NULL, n int)",
                 "INSERT INTO drop_rt SELECT i, 'v' || i, i * 3, i %s" % gen)
        self.writers["drop_rt"] = Writer(s, "drop_rt", {"v": txt, "must": lambda r, k: k * 3, "n": num},
                                         fixed=("must",))
        self.sql(s, "CREATE TABLE ren_rt (id bigint PRIMARY KEY, v text, note text, n int)",
                 "INSERT INTO ren_rt SELECT i, 'v' || i, 'note ' || i, i %s" % gen)
        self.writers["ren_rt"] = Writer(s, "ren_rt", {"v": txt, "note": txt, "n": num})
        self.sql(s, "CREATE TABLE wid_rt (id bigint PRIMARY KEY, qty int, label varchar(10), n int)",
                 "INSERT INTO wid_rt SELECT i, i, 'l' || i, i %s" % gen)
        self.writers["wid_rt"] = Writer(s, "wid_rt", {"qty": num, "label": lambda r, k: "w%d" % r.randint(0, 99999),
                                                      "n": num})
        self.sql(s, "CREATE TABLE nar_rt (id bigint PRIMARY KEY, v text, code int)",
                 "INSERT INTO nar_rt SELECT i, 'v' || i, i %s" % gen)
        self.writers["nar_rt"] = Writer(s, "nar_rt", {"v": txt, "code": num})
        self.sql(s, "CREATE TABLE cols_rt (id bigint PRIMARY KEY, a text, b int, x text)",
                 "INSERT INTO cols_rt SELECT i, 'a' || i, i, 'x' || i %s" % gen)
        self.writers["cols_rt"] = Writer(s, "cols_rt", {"a": txt, "b": num, "x": txt})
        self.sql(s, "CREATE TABLE stop_rt (id bigint PRIMARY KEY, v text, n int)",
                 "INSERT INTO stop_rt SELECT i, 'v' || i, i %s" % gen)
        self.sql(self.dst, "CREATE TABLE stop_rt (id bigint PRIMARY KEY, v text, n int)")
        self.writers["stop_rt"] = Writer(s, "stop_rt", {"v": txt, "n": num})
        self.labels = ["sad", "ok", "happy"]
        self.sql(s, "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
                 "CREATE TABLE enum_rt (id bigint PRIMARY KEY, m mood, n int)",
                 "INSERT INTO enum_rt SELECT i, (ARRAY['sad','ok','happy'])[1 + i %% 3]::mood, i %s" % gen)
        self.writers["enum_rt"] = Writer(s, "enum_rt", {"m": lambda r, k: r.choice(self.labels), "n": num})

    def streaming(self, table, w):
        """True once the target has a row the writer inserted after the start."""
        try:
            if table == "add_rl":
                c = sqlite3.connect(self.lite)
                try:
                    return c.execute("SELECT count(*) FROM add_rl WHERE id > ?", (N,)).fetchone()[0] > 0
                finally:
                    c.close()
            return L.scalar(self.dst, 'SELECT count(*) FROM "%s" WHERE %s > %d' % (table, w.key, N)) > 0
        except (L.psycopg2.Error, sqlite3.Error):
            return False


def part1():
    p = Part1()
    for w in p.writers.values():
        w.start()
    p.d.start()
    api = Http(p.d)
    try:
        for tb, w in sorted(p.writers.items()):
            t.check(L.wait_for(lambda: p.streaming(tb, w) or not p.d.alive(), DEADLINE, 0.3) and p.d.alive(),
                    "%s: the job copies the table and streams the writer's changes" % tb, p.d.tail())
        ddl_all(p)
        for w in p.writers.values():
            w.wait_txns(40)
        check_followed(p)
        check_narrow(p)
        check_stop(p, api)
        check_cols(p)
        check_enum(p)
        errs = [e for w in p.writers.values() for e in w.errors]
        t.check(not errs, "no application write failed (%d transactions)" % sum(w.txns for w in p.writers.values()),
                "\n".join(errs[:10]))
    finally:
        for w in p.writers.values():
            w.stop()
        rc = p.d.term()
    t.eq(rc, 0, "SIGTERM stops lockstep run with exit 0", p.d.tail())


def add_cols(w):
    w.cols["c1"] = lambda r, k: r.randint(0, 10 ** 6)
    w.cols["c2"] = txt


def ddl_all(p):
    W_ = p.writers
    for tb in ("add_rt", "add_rl"):
        W_[tb].ddl("ALTER TABLE %s ADD COLUMN c1 int DEFAULT 42" % tb, "ALTER TABLE %s ADD COLUMN c2 text" % tb,
                   change=add_cols)
    W_["drop_rt"].ddl("ALTER TABLE drop_rt DROP COLUMN must", change=lambda w: w.cols.pop("must"),
                      before=lambda: set(r[0] for r in L.execute(p.dst, "SELECT id FROM drop_rt")))

    def ren(w):
        w.cols["remark"] = w.cols.pop("note")
    W_["ren_rt"].ddl("ALTER TABLE ren_rt RENAME COLUMN note TO remark", change=ren)

    def wide(w):
        w.cols["qty"] = lambda r, k: r.randint(2 ** 31, 2 ** 40)
        w.cols["label"] = lambda r, k: "wide label %d %s" % (k, "y" * r.randint(20, 60))
    W_["wid_rt"].ddl("ALTER TABLE wid_rt ALTER COLUMN qty TYPE bigint",
                     "ALTER TABLE wid_rt ALTER COLUMN label TYPE varchar(100)", change=wide)

    def narrow(w):
        w.cols["code"] = lambda r, k: "code-%d" % r.randint(0, 999)
    W_["nar_rt"].ddl("ALTER TABLE nar_rt ALTER COLUMN code TYPE text", change=narrow)

    def rekey(w):
        w.key = "uid"
    W_["key_rt"].ddl("ALTER TABLE key_rt RENAME COLUMN id TO uid", change=rekey)

    def cols(w):
        w.cols.pop("x")
        w.cols["y"] = txt
    W_["cols_rt"].ddl("ALTER TABLE cols_rt ADD COLUMN y text DEFAULT 'yy'", "ALTER TABLE cols_rt DROP COLUMN x",
                      change=cols)

    def extra(w):
        w.cols["extra"] = num
    W_["stop_rt"].ddl("ALTER TABLE stop_rt ADD COLUMN extra int DEFAULT 5", change=extra)
    W_["enum_rt"].ddl("ALTER TYPE mood ADD VALUE 'ecstatic'", change=lambda w: p.labels.append("ecstatic"))


def check_followed(p):
    s, d, W_ = p.src, p.dst, p.writers
    # 1. ADD COLUMN
    converge(W_["add_rt"], s, d, "add_rt", None, "add_rt (ADD COLUMN, PG->PG, streaming)")
    t.check({"c1", "c2"} <= set(pg_cols(d, "add_rt")), "add_rt: the target has c1 and c2", pg_cols(d, "add_rt"))
    converge(W_["add_rl"], s, "sqlite:" + p.lite, "add_rl", None, "add_rl (ADD COLUMN, PG->SQLite, streaming)")
    t.check({"c1", "c2"} <= set(sqlite_cols(p.lite, "add_rl")), "add_rl: the SQLite target has c1 and c2",
            sqlite_cols(p.lite, "add_rl"))
    # 2. DROP COLUMN of a NOT NULL column
    w = W_["drop_rt"]
    converge(w, s, d, "drop_rt", None, "drop_rt (DROP COLUMN must, NOT NULL)")
    t.check("must" in pg_cols(d, "drop_rt"), "drop_rt: the target keeps column must", pg_cols(d, "drop_rt"))
    nn = L.execute(d, "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'drop_rt'::regclass AND attname = 'must'")
    t.check(nn == [(False,)], "drop_rt: the target's must is no longer NOT NULL", nn)
    rows = dict(L.execute(d, "SELECT id, must FROM drop_rt"))
    kept = [k for k in w.before if k in rows]
    bad = [(k, rows[k]) for k in kept if rows[k] != k * 3]
    t.check(kept and not bad, "drop_rt: the %d rows in the target before the drop keep their values in must"
            % len(kept), bad[:10])
    wrong = [(k, v) for k, v in rows.items() if v is not None and v != k * 3]
    t.check(not wrong, "drop_rt: no row has a wrong value in must", wrong[:10])
    new = [rows[k] for k in rows if k >= w.mark]
    t.check(new and all(v is None for v in new),
            "drop_rt: rows inserted after the drop have NULL in must (%d rows)" % len(new), new[:10])
    # 3. RENAME COLUMN
    converge(W_["ren_rt"], s, d, "ren_rt", None, "ren_rt (RENAME COLUMN note TO remark)")
    cols = pg_cols(d, "ren_rt")
    t.check("remark" in cols and "note" not in cols, "ren_rt: the target column is renamed to remark", cols)
    # 4. widening
    converge(W_["wid_rt"], s, d, "wid_rt", None, "wid_rt (int -> bigint, varchar(10) -> varchar(100))")
    types = dict(L.pg_columns(d, "wid_rt"))
    t.check(types.get("qty") == "bigint" and types.get("label") == "character varying(100)",
            "wid_rt: the target's types follow (bigint, varchar(100))", types)
    # 6. key column renamed
    converge(W_["key_rt"], s, d, "key_rt", "uid", "key_rt (RENAME COLUMN id TO uid, the key)")
    cols = pg_cols(d, "key_rt")
    t.check("uid" in cols and "id" not in cols, "key_rt: the target's key column is renamed to uid", cols)


def check_narrow(p):
    # 5. int -> text under follow: stops; the user alters the target; it resumes by itself
    msg = L.wait_for(lambda: "changed type from integer to text" in last_error(p.cfg, "nar_rt")
                     and last_error(p.cfg, "nar_rt"), 60, 0.5)
    t.check(msg, "nar_rt: status shows the job stopped: changed type from integer to text",
            last_error(p.cfg, "nar_rt") or p.d.tail())
    t.check(any("changed type from integer to text" in l for l in job_lines(p.d.output(), "nar_rt", "error")),
            "nar_rt: the log has an error line saying so")
    L.execute(p.dst, "ALTER TABLE nar_rt ALTER COLUMN code TYPE text")
    converge(p.writers["nar_rt"], p.src, p.dst, "nar_rt", None,
             "nar_rt: after the target column is altered to text, the job resumes by itself")
    t.check(not last_error(p.cfg, "nar_rt"), "nar_rt: status shows no error any more", last_error(p.cfg, "nar_rt"))


def check_cols(p):
    # 7. explicit columns: unlisted changes are ignored, a listed column dropped stops the job
    w = p.writers["cols_rt"]
    converge(w, p.src, p.dst, "cols_rt", None, "cols_rt: after an unlisted column added and one dropped",
             cols=["id", "a", "b"])
    t.eq(pg_cols(p.dst, "cols_rt"), ["id", "a", "b"], "cols_rt: the target's columns are unchanged")
    t.eq(last_error(p.cfg, "cols_rt"), "", "cols_rt: the job did not stop")
    t.check(not job_lines(p.d.output(), "cols_rt", "error"), "cols_rt: no error line in the log",
            "\n".join(job_lines(p.d.output(), "cols_rt", "error")))
    w.ddl("ALTER TABLE cols_rt DROP COLUMN b", change=lambda w: w.cols.pop("b"))
    msg = L.wait_for(lambda: "has no column" in last_error(p.cfg, "cols_rt"), 60, 0.5)
    t.check(msg, "cols_rt: dropping listed column b stops the job: 'has no column'",
            last_error(p.cfg, "cols_rt") or p.d.tail())


def check_stop(p, api):
    # 8. policy stop
    job = "stop_rt"
    msg = L.wait_for(lambda: 'column "extra"' in last_error(p.cfg, job), 60, 0.5)
    t.check(msg, "stop_rt: status shows the job stopped on column extra", last_error(p.cfg, job) or p.d.tail())

    def retries():
        return [l for l in job_lines(p.d.output(), job, "debug") if "extra" in l and "fail" in l]
    t.check(L.wait_for(lambda: len(retries()) >= 2, 60, 0.5),
            "stop_rt: the job looked again at least twice (debug lines)", p.d.tail())
    errs = [l for l in job_lines(p.d.output(), job, "error") if "extra" in l]
    t.eq(len(errs), 1, "stop_rt: ONE error line for it in the log, not one per retry", "\n".join(errs))
    status, chk = api.schema_check()
    t.eq(status, "DEGRADED", "stop_rt: /api/health is DEGRADED")
    t.check(chk and chk.get("status") != "ok" and job in json.dumps(chk),
            "stop_rt: /api/health has a check 'schema' naming the job", chk)
    t.eq(api.metric("lockstep_schema_blocked", job), 1.0, 'stop_rt: /metrics lockstep_schema_blocked{job="stop_rt"} 1')
    L.execute(p.dst, "ALTER TABLE stop_rt ADD COLUMN extra int")
    t0 = time.monotonic()
    ok = L.wait_for(lambda: differs(p.src, p.dst, job, "id") is None, RESUME_S, 0.3)
    t.check(ok, "stop_rt: after the target gets the column the job resumes by itself within %d s (%.1f s)"
            % (RESUME_S, time.monotonic() - t0), differs(p.src, p.dst, job, "id"))
    converge(p.writers[job], p.src, p.dst, job, None, "stop_rt: column extra filled on every row")
    t.eq(api.metric("lockstep_schema_blocked", job), 0.0, 'stop_rt: /metrics lockstep_schema_blocked{job="stop_rt"} 0')
    status, chk = api.schema_check()
    t.check(chk and (chk.get("status") == "ok" or job not in json.dumps(chk)),
            "stop_rt: /api/health's schema check no longer names the job", chk)


def check_enum(p):
    # 9. a label added to an enum
    converge(p.writers["enum_rt"], p.src, p.dst, "enum_rt", None, "enum_rt (ALTER TYPE ADD VALUE 'ecstatic')")
    n = L.scalar(p.src, "SELECT count(*) FROM enum_rt WHERE m = 'ecstatic'")
    t.check(n > 0, "enum_rt: the writer used the new label (%d rows)" % n)
    rc, out, err = L.run_lockstep(["errors", "list", "--json"], p.cfg)
    obj = L.whole_json(out)
    dl = obj.get("errors") if isinstance(obj, dict) else None
    t.check(rc == 0 and dl == [], "enum_rt: no dead letter", L.show(rc, out, err))


# ---------------------------------------------------------------------------
# part 2: `lockstep sync` runs: real-time catch-ups and poll


class Part2:
    def __init__(self):
        self.w = L.Workdir("schema_sync")
        self.src, self.dst = L.new_db("sc_sy_s"), L.new_db("sc_sy_t")
        self.lite = self.w.file("target.db")
        s = self.src
        self.writers = {}
        gen = "FROM generate_series(1, %d) i" % N
        for tb in ("cu_pg", "cu_rl"):
            L.execute(s, "CREATE TABLE %s (id bigint PRIMARY KEY, v text NOT NULL, n int)" % tb)
            L.execute(s, "INSERT INTO %s SELECT i, 'v' || i, i %s" % (tb, gen))
            self.writers[tb] = Writer(s, tb, {"v": txt, "n": num})
        for tb in ("poll_pg", "poll_rl", "poll_key"):
            L.execute(s, "CREATE TABLE %s (id bigint PRIMARY KEY, v text NOT NULL, n int, "
                         "updated_at timestamptz NOT NULL DEFAULT clock_timestamp())" % tb)
            L.execute(s, "INSERT INTO %s (id, v, n) SELECT i, 'v' || i, i %s" % (tb, gen))
            self.writers[tb] = Writer(s, tb, {"v": txt, "n": num}, deletes=False, touch="updated_at")
        lite = "sqlite:" + self.lite
        jobs = {}
        for tb in ("cu_pg", "cu_rl"):
            jobs[tb] = rt_job(tb, dst="lite" if tb.endswith("rl") else "dst")
        for tb in ("poll_pg", "poll_rl", "poll_key"):
            jobs[tb] = {"source": {"db": "src", "table": tb}, "mode": "poll", "cursor": "updated_at",
                        "target": {"db": "lite" if tb.endswith("rl") else "dst", "table": tb, "create": True}}
        self.cfg = L.sync_config(self.w, {"src": s, "dst": self.dst, "lite": lite}, jobs)

    def target(self, tb):
        return "sqlite:" + self.lite if tb.endswith("rl") else self.dst

    def target_cols(self, tb):
        return sqlite_cols(self.lite, tb) if tb.endswith("rl") else pg_cols(self.dst, tb)


def part2():
    p = Part2()
    for w in p.writers.values():
        w.start()
    try:
        for tb in sorted(p.writers):
            L.sync(t, p.cfg, tb)
        for tb in ("cu_pg", "cu_rl", "poll_pg", "poll_rl"):
            p.writers[tb].ddl("ALTER TABLE %s ADD COLUMN c1 int DEFAULT 42" % tb,
                              "ALTER TABLE %s ADD COLUMN c2 text" % tb, change=add_cols)
        p.writers["poll_key"].ddl("ALTER TABLE poll_key RENAME COLUMN id TO uid",
                                  change=lambda w: setattr(w, "key", "uid"))
        for w in p.writers.values():
            w.wait_txns(30)
        for tb in sorted(p.writers):
            L.sync(t, p.cfg, tb)  # while the writer goes on
        for tb in sorted(p.writers):
            w = p.writers[tb]
            with w.paused():
                L.sync(t, p.cfg, tb)
                key = w.key
                diff = differs(p.src, p.target(tb), tb, key)
                t.check(diff is None, "%s: target equals the source over its current columns (oracle)" % tb, diff)
            cols = p.target_cols(tb)
            if tb == "poll_key":
                t.check("uid" in cols and "id" not in cols, "poll_key: the target's key column is renamed", cols)
            else:
                t.check({"c1", "c2"} <= set(cols), "%s: the target has c1 and c2" % tb, cols)
        errs = [e for w in p.writers.values() for e in w.errors]
        t.check(not errs, "part 2: no application write failed", "\n".join(errs[:10]))
    finally:
        for w in p.writers.values():
            w.stop()


t.case(part1)
t.case(part2)
t.finish()
