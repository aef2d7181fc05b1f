"""test_schema_changes_sqlite - DDL on an SQLite source while a job runs, into PostgreSQL
(issue 18, "SQLite sources: ALTER TABLE ADD/DROP/RENAME COLUMN and the 12-step table
rebuild"; the behaviour is docs/schema-changes.md).

The source is one SQLite file in WAL mode; every table has a writer thread of its own
(sqlite3, short BEGIN IMMEDIATE transactions of inserts, updates and, for real-time tables,
deletes) that goes on through the DDL: the test runs each change between two of the
writer's transactions and the writer uses the new columns at once. The targets are made by
lockstep (target.create: true, so the policy is follow). Each case is judged by an oracle
independent of lockstep over the SOURCE'S CURRENT columns (lktest.rows_canonical +
compare_rows), with that table's writer paused while it compares.

  *_add     ADD COLUMN c1 INTEGER DEFAULT 42 and c2 TEXT: the target gets both, every row
            has the source's values
  *_drop    DROP COLUMN gone (NOT NULL): the job goes on, the target keeps the column with
            its old values, rows inserted after it have NULL there
  *_ren     RENAME COLUMN note TO remark: followed as a drop and an add: remark is added
            and filled, note is kept with its old values
  *_key     the key column renamed (RENAME COLUMN id TO uid): followed as a rename (SQLite
            cannot drop a primary key column), the job takes a fresh copy
  *_rb      the 12-step rebuild (create a new table, copy, drop, rename) adding c3; for
            the real-time job it comes once the job has applied every change (its
            triggers go with the old table, so no batch brings the change to its notice)

r_* are real-time jobs streamed by one `lockstep run`; p_* are poll jobs (cursor rev, an
integer every write sets) run by `lockstep sync`, the DDL between two runs.
"""

import contextlib
import itertools
import random
import sqlite3
import threading
import time

import lktest as L
import rtwriters as W

L.require_pg()
t = L.Suite("test_schema_changes_sqlite")

N = L.scale(2000)  # rows in each source table before lockstep starts
DEADLINE = 90      # seconds to converge (waited for, never a timing assertion)
KINDS = ("add", "drop", "ren", "rb", "key")

DDL = {
    "add": "CREATE TABLE {t} (id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER{x})",
    "drop": "CREATE TABLE {t} (id INTEGER PRIMARY KEY, v TEXT NOT NULL, gone TEXT NOT NULL, n INTEGER{x})",
    "ren": "CREATE TABLE {t} (id INTEGER PRIMARY KEY, v TEXT NOT NULL, note TEXT NOT NULL, n INTEGER{x})",
    "rb": "CREATE TABLE {t} (id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER{x})",
    "key": "CREATE TABLE {t} (id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER{x})",
}


def txt(rnd, k):
    return "%s %d" % (rnd.choice(L.FRAGMENTS[:20]), rnd.randint(0, 10 ** 6))


def num(rnd, k):
    return rnd.randint(-10 ** 6, 10 ** 6)


class Writer:
    """One thread writing to SQLite table `table` in short BEGIN IMMEDIATE transactions
    (1-3 statements: inserts of fresh keys, updates of random columns, deletes) until stop().

    cols: {column: gen(rnd, key)}; fixed: columns only inserts write; touch: a column set
    from a counter by every write (poll's cursor: it grows in commit order, since SQLite
    has one writer at a time and the value is taken inside the transaction). ddl() runs a
    script between two transactions; paused() holds the writer; errors: every error a
    write got other than a busy database."""

    counter = itertools.count(N + 1)

    def __init__(self, path, table, cols, fixed=(), deletes=True, touch=None):
        self.path, self.table, self.key = path, table, "id"
        self.cols = dict(cols)
        self.fixed = set(fixed)
        self.deletes, self.touch = deletes, touch
        self.next_id = N + 1
        self.gate = threading.Lock()
        self.stop_ev = threading.Event()
        self.txns = 0
        self.busy = 0
        self.errors = []
        self.mark = None
        self.rnd = random.Random(table)
        self.th = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self.th.start()
        return self

    def _touch(self, names, vals):
        if self.touch:
            names.append(self.touch)
            vals.append(next(Writer.counter))

    def _insert(self, c, rnd):
        k = self.next_id
        names = [self.key] + list(self.cols)
        vals = [k] + [self.cols[x](rnd, k) for x in self.cols]
        self._touch(names, vals)
        c.execute('INSERT INTO "%s" (%s) VALUES (%s)' % (self.table, ", ".join('"%s"' % x for x in names),
                                                         ", ".join("?" * len(vals))), vals)
        self.next_id += 1

    def _update(self, c, rnd):
        k = rnd.randint(1, self.next_id - 1)
        names = [x for x in self.cols if x not in self.fixed]
        pick = rnd.sample(names, rnd.randint(1, len(names)))
        vals = [self.cols[x](rnd, k) for x in pick]
        self._touch(pick, vals)
        c.execute('UPDATE "%s" SET %s WHERE "%s" = ?' % (self.table, ", ".join('"%s" = ?' % x for x in pick),
                                                        self.key),
                  vals + [k])

    def _txn(self, c):
        rnd = self.rnd
        c.execute("BEGIN IMMEDIATE")
        try:
            for _ in range(rnd.randint(1, 3)):
                r = rnd.random()
                if r < 0.4:
                    self._insert(c, rnd)
                elif r < 0.85 or not self.deletes:
                    self._update(c, rnd)
                else:
                    c.execute('DELETE FROM "%s" WHERE "%s" = ?' % (self.table, self.key),
                              (rnd.randint(1, self.next_id - 1),))
            c.execute("COMMIT")
            self.txns += 1
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def _loop(self):
        c = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        while not self.stop_ev.is_set():
            with self.gate:
                saved = self.next_id
                try:
                    self._txn(c)
                except sqlite3.Error as e:
                    self.next_id = saved
                    if "locked" in str(e) or "busy" in str(e):
                        self.busy += 1
                    elif len(self.errors) < 10:
                        self.errors.append("%s: %s" % (self.table, e))
            self.stop_ev.wait(self.rnd.uniform(0.01, 0.04))
        c.close()

    def ddl(self, script, change=None, before=None):
        """Runs script between two transactions; change(self) adjusts the columns.
        self.mark: the first key inserted after it; self.before: what before() returned
        just before it."""
        with self.gate:
            self.before = before() if before else None
            c = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                c.executescript(script)
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
        goal = self.txns + n
        return L.wait_for(lambda: self.txns >= goal or not self.th.is_alive(), deadline, 0.05)

    def stop(self):
        self.stop_ev.set()
        self.th.join(30)


def lite_cols(path, table):
    c = sqlite3.connect(path)
    try:
        return [r[1] for r in c.execute('PRAGMA table_info("%s")' % table)]
    finally:
        c.close()


def differs(path, dst, table, key="id"):
    """None when the target's rows equal the source's over the source's current columns."""
    cols = lite_cols(path, table)
    try:
        a = L.rows_canonical("sqlite:" + path, table, [key], cols)
        b = L.rows_canonical(dst, table, [key], cols)
    except (L.psycopg2.Error, sqlite3.Error, RuntimeError) as e:
        return "cannot compare: %s" % str(e).strip()
    keys = L.compare_rows(a, b)
    return None if not keys else "%d keys differ:\n%s" % (len(keys), L.describe_diff(a, b, keys))


def add_cols(w):
    w.cols["c1"] = lambda r, k: r.randint(0, 10 ** 6)
    w.cols["c2"] = txt


def ren(w):
    w.cols["remark"] = w.cols.pop("note")


REBUILD = """BEGIN IMMEDIATE;
CREATE TABLE "{t}_new" (id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER{x}, c3 TEXT DEFAULT 'rb');
INSERT INTO "{t}_new" (id, v, n{xc}) SELECT id, v, n{xc} FROM "{t}";
DROP TABLE "{t}";
ALTER TABLE "{t}_new" RENAME TO "{t}";
COMMIT;"""


def target_keys(dst, table, col):
    """The keys of the target's rows that have a value in col (before a change)."""
    return set(r[0] for r in L.execute(dst, 'SELECT id FROM "%s" WHERE "%s" IS NOT NULL' % (table, col)))


def run_ddl(w, kind, poll, dst):
    tb = w.table
    x, xc = (", rev INTEGER NOT NULL", ", rev") if poll else ("", "")
    if kind == "add":
        w.ddl('ALTER TABLE "%s" ADD COLUMN c1 INTEGER DEFAULT 42; ALTER TABLE "%s" ADD COLUMN c2 TEXT;' % (tb, tb),
              change=add_cols)
    elif kind == "drop":
        w.ddl('ALTER TABLE "%s" DROP COLUMN gone;' % tb, change=lambda w: w.cols.pop("gone"),
              before=lambda: target_keys(dst, tb, "gone"))
    elif kind == "ren":
        w.ddl('ALTER TABLE "%s" RENAME COLUMN note TO remark;' % tb, change=ren,
              before=lambda: target_keys(dst, tb, "note"))
    elif kind == "key":
        w.ddl('ALTER TABLE "%s" RENAME COLUMN id TO uid;' % tb, change=lambda w: setattr(w, "key", "uid"))
    else:
        # Real-time: the rebuild comes once the job has applied every change (nothing in
        # flight), as after a quiet moment: the job must see it without a batch to check.
        idle = None if poll else (lambda: L.wait_for(lambda: differs(w.path, dst, tb) is None, DEADLINE, 0.2))
        w.ddl(REBUILD.format(t=tb, x=x, xc=xc), change=lambda w: w.cols.update(c3=txt), before=idle)


def check_kind(w, kind, dst, what):
    """The target's columns after the change: kept columns with their old values."""
    tb = w.table
    cols = [c for c, _ in L.pg_columns(dst, tb)]
    if kind == "add":
        t.check({"c1", "c2"} <= set(cols), "%s: the target has c1 and c2" % what, cols)
    elif kind == "rb":
        t.check("c3" in cols, "%s: the target has c3" % what, cols)
    elif kind == "key":
        t.check("uid" in cols and "id" not in cols, "%s: the target's key column is renamed to uid" % what, cols)
    else:
        old, fill = ("gone", "g") if kind == "drop" else ("note", "note ")
        t.check(old in cols, "%s: the target keeps column %s" % (what, old), cols)
        if kind == "ren":
            t.check("remark" in cols, "%s: the target has the new column remark" % what, cols)
        if old not in cols:
            return
        rows = dict(L.execute(dst, 'SELECT id, "%s" FROM "%s"' % (old, tb)))
        kept = [k for k in w.before if k in rows]
        bad = [(k, rows[k]) for k in kept if rows[k] != fill + str(k)]
        t.check(kept and not bad, "%s: the %d rows that had a value in %s before the change keep it"
                % (what, len(kept), old), bad[:10])
        wrong = [(k, v) for k, v in rows.items() if v is not None and v != fill + str(k)]
        t.check(not wrong, "%s: no row has a wrong value in %s" % (what, old), wrong[:10])
        new = [rows[k] for k in rows if k >= w.mark]
        t.check(new and all(v is None for v in new), "%s: rows inserted after it have NULL in %s (%d rows)"
                % (what, old, len(new)), new[:10])


def make_source(path, poll):
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    writers = {}
    for kind in KINDS:
        tb = ("p_" if poll else "r_") + kind
        c.execute(DDL[kind].format(t=tb, x=", rev INTEGER NOT NULL" if poll else ""))
        names = ["id", "v", "n"] + (["gone"] if kind == "drop" else []) + (["note"] if kind == "ren" else [])
        if poll:
            names.append("rev")
        rows = []
        for i in range(1, N + 1):
            r = [i, "v%d" % i, i] + (["g%d" % i] if kind == "drop" else []) + (["note %d" % i] if kind == "ren" else [])
            rows.append(r + ([i] if poll else []))
        c.execute("BEGIN")
        c.executemany('INSERT INTO "%s" (%s) VALUES (%s)' % (tb, ", ".join(names), ", ".join("?" * len(names))), rows)
        c.execute("COMMIT")
        cols = {"v": txt, "n": num}
        fixed = ()
        if kind == "drop":
            cols["gone"], fixed = (lambda r, k: "g%d" % k), ("gone",)
        if kind == "ren":
            cols["note"], fixed = (lambda r, k: "note %d" % k), ("note",)
        writers[tb] = Writer(path, tb, cols, fixed=fixed, deletes=not poll, touch="rev" if poll else None)
    c.close()
    return writers


def job(tb, poll):
    j = {"source": {"db": "src", "table": tb}, "target": {"db": "dst", "table": tb, "create": True}}
    if poll:
        j.update({"mode": "poll", "cursor": "rev"})
    else:
        j.update({"mode": "realtime", "batch": 200})
    return j


def part_realtime():
    w = L.Workdir("schema_lite_rt")
    path, dst = w.file("src.db"), L.new_db("scl_rt_t")
    writers = make_source(path, False)
    cfg = L.sync_config(w, {"src": "sqlite:" + path, "dst": dst}, dict((tb, job(tb, False)) for tb in writers))
    d = W.Daemon(cfg, w.file("run.log"), {"LOCKSTEP_SHUTDOWN_GRACE": "10s"})
    for x in writers.values():
        x.start()
    d.start()
    try:
        for tb in sorted(writers):
            def streaming():
                try:
                    return L.scalar(dst, 'SELECT count(*) FROM "%s" WHERE id > %d' % (tb, N)) > 0
                except L.psycopg2.Error:
                    return False
            t.check(L.wait_for(lambda: streaming() or not d.alive(), DEADLINE, 0.3) and d.alive(),
                    "%s: the job copies the table and streams the writer's changes" % tb, d.tail())
        for kind in KINDS:
            run_ddl(writers["r_" + kind], kind, False, dst)
        for x in writers.values():
            x.wait_txns(40)
        for kind in KINDS:
            x = writers["r_" + kind]
            what = "%s (real-time, %s)" % (x.table, kind)
            t0 = time.monotonic()
            with x.paused():
                L.wait_for(lambda: differs(path, dst, x.table, x.key) is None, DEADLINE, 0.3)
                diff = differs(path, dst, x.table, x.key)
            t.check(diff is None, "%s: target equals the source over its current columns (oracle, %.1f s)"
                    % (what, time.monotonic() - t0), diff)
            check_kind(x, kind, dst, what)
        errs = [e for x in writers.values() for e in x.errors]
        t.check(not errs, "real-time: no application write failed (%d transactions, %d busy)" % (
            sum(x.txns for x in writers.values()), sum(x.busy for x in writers.values())), "\n".join(errs[:10]))
    finally:
        for x in writers.values():
            x.stop()
        rc = d.term()
    t.eq(rc, 0, "SIGTERM stops lockstep run with exit 0", d.tail())


def part_poll():
    w = L.Workdir("schema_lite_poll")
    path, dst = w.file("src.db"), L.new_db("scl_po_t")
    writers = make_source(path, True)
    cfg = L.sync_config(w, {"src": "sqlite:" + path, "dst": dst}, dict((tb, job(tb, True)) for tb in writers))
    for x in writers.values():
        x.start()
    try:
        for tb in sorted(writers):
            L.sync(t, cfg, tb)
        for kind in KINDS:
            run_ddl(writers["p_" + kind], kind, True, dst)
        for x in writers.values():
            x.wait_txns(30)
        for tb in sorted(writers):
            L.sync(t, cfg, tb)  # while the writer goes on
        for kind in KINDS:
            x = writers["p_" + kind]
            with x.paused():
                L.sync(t, cfg, x.table)
                diff = differs(path, dst, x.table, x.key)
            t.check(diff is None, "%s (poll, %s): target equals the source over its current columns (oracle)"
                    % (x.table, kind), diff)
            check_kind(x, kind, dst, "%s (poll, %s)" % (x.table, kind))
        errs = [e for x in writers.values() for e in x.errors]
        t.check(not errs, "poll: no application write failed", "\n".join(errs[:10]))
    finally:
        for x in writers.values():
            x.stop()


t.case(part_realtime)
t.case(part_poll)
t.finish()
