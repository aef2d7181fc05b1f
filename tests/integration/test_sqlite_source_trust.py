"""test_sqlite_source_trust - an SQLite source's own life never leaves a target silently
different (issue 17: cases 9, 10 and the SQLite half of case 3).

Every case runs on real SQLite files with two real-time jobs on the same source table, one
into a PostgreSQL database and one into an SQLite file, and judges the targets with the
cross-engine oracle (lktest.rows_canonical + compare_rows, read with psycopg2 / sqlite3,
never through lockstep):

- replace: INSERT OR REPLACE, REPLACE INTO, UPDATE OR REPLACE, a column's ON CONFLICT
  REPLACE and a multi-row REPLACE remove rows through a UNIQUE column other than the key
  (a plain, a partial and an expression unique index, a WITHOUT ROWID table, and a rowid
  conflict on a table keyed by another column). The writers keep SQLite's default
  recursive_triggers = OFF, so no DELETE trigger fires for those rows. Then `lockstep
  sync` catch-up runs.
- upgrade: capture installed by the previous version (no conflict triggers, a position
  without a stamp) is upgraded in place: the next run applies only the new changes, with
  no snapshot, and REPLACEs are captured from then on.
- rebuild (catch-up): SQLite's documented 12-step ALTER (create new, copy, drop old,
  rename) drops lockstep's triggers; writes follow. The first job's next run puts the
  triggers back and logs a gap; both jobs re-snapshot, each saying why.
- rebuild (streaming): the same while `lockstep run` streams both jobs; capture health is
  checked while streaming, so they converge without a restart.
- restore: the source file restored from an older copy, once with fewer new writes than
  were lost (its seq is behind the positions) and once with more (seqs handed out again).
  Both jobs re-snapshot, saying why, and converge.
- restored_target (case 4 with an SQLite source): both targets restored from a backup
  taken before their last runs, after the changelog was pruned past it; both jobs see their
  position behind the consumer registry, re-snapshot saying why, and converge.
"""

import os
import re
import shutil
import signal
import sqlite3
import subprocess

import lktest as L

L.require_pg()
t = L.Suite("test_sqlite_source_trust")

DEADLINE = 120  # seconds for a daemon to converge (waited for, never a timing assertion)


# ---------------------------------------------------------------------------
# helpers


def sql(path, script):
    """Runs script on the SQLite file with a default connection (recursive_triggers off)."""
    c = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        c.executescript(script)
    finally:
        c.close()


def one(path, query, params=()):
    c = sqlite3.connect(path, timeout=30)
    try:
        return c.execute(query, params).fetchall()
    finally:
        c.close()


class Setup:
    """A source file with `ddl`, a PostgreSQL database and an SQLite target file, and a
    config with jobs TABLE_pg and TABLE_lite (realtime) for each (table, key)."""

    def __init__(self, name, ddl, tables):
        self.w = L.Workdir(name)
        self.src = self.w.file("src.db")
        self.lite = self.w.file("dst.db")
        self.pg = L.new_db(name)
        self.tables = tables  # [(table, key columns)]
        sql(self.src, ddl)
        jobs = {}
        for table, key in tables:
            for kind in ("pg", "lite"):
                src = {"db": "src", "table": table}
                if key != ["id"]:
                    src["key"] = key
                jobs["%s_%s" % (table, kind)] = {
                    "source": src, "mode": "realtime", "batch": 50,
                    "target": {"db": kind, "table": table, "create": True}}
        self.cfg = L.sync_config(self.w, {"src": "sqlite:src.db", "pg": self.pg,
                                          "lite": "sqlite:dst.db"}, jobs)

    def url(self, kind):
        return self.pg if kind == "pg" else "sqlite:" + self.lite

    def sync(self, job, what):
        """`lockstep sync JOB`: (summary, stderr)."""
        rc, summary, err = L.sync(t, self.cfg, job)
        if rc != 0:
            t.log("%s: sync %s failed" % (what, job))
        return summary or {}, err

    def sync_all(self, what):
        errs = {}
        for table, _ in self.tables:
            for kind in ("pg", "lite"):
                errs["%s_%s" % (table, kind)] = self.sync("%s_%s" % (table, kind), what)[1]
        return errs

    def diff(self, table, key, kind):
        a = L.rows_canonical("sqlite:" + self.src, table, key)
        b = L.rows_canonical(self.url(kind), table, key)
        return a, b, L.compare_rows(a, b)

    def check_equal(self, what, kinds=("pg", "lite")):
        for table, key in self.tables:
            for kind in kinds:
                a, b, diff = self.diff(table, key, kind)
                t.check(len(a) > 0 and not diff,
                        "%s: %s's %s target equals the source (oracle, %d rows)"
                        % (what, table, "PostgreSQL" if kind == "pg" else "SQLite", len(a)),
                        "%d keys differ:\n%s" % (len(diff), L.describe_diff(a, b, diff)))


def warned(err, words):
    """True when a warn line of stderr holds every one of words."""
    return any("level=warn" in line and all(w in line for w in words) for line in err.splitlines())


# ---------------------------------------------------------------------------
# case 9: rows a REPLACE deletes through another uniqueness constraint


REPLACE_DDL = """
CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT UNIQUE, handle TEXT COLLATE NOCASE,
                    code TEXT, active INTEGER NOT NULL, name TEXT);
CREATE UNIQUE INDEX users_handle ON users (lower(handle));
CREATE UNIQUE INDEX "users code" ON users (code) WHERE active = 1;
CREATE TABLE tags (name TEXT PRIMARY KEY, code TEXT NOT NULL UNIQUE ON CONFLICT REPLACE,
                   n INTEGER) WITHOUT ROWID;
CREATE TABLE docs (id INTEGER PRIMARY KEY, uuid TEXT NOT NULL UNIQUE, body TEXT);
"""


def fill_replace(path):
    c = sqlite3.connect(path, isolation_level=None)
    try:
        c.execute("BEGIN")
        for i in range(1, 51):
            c.execute("INSERT INTO users VALUES (?, ?, ?, ?, 1, ?)",
                      (i, "u%d@x" % i, "H%d" % i, "c%d" % i, "user %d" % i))
        for i in range(1, 21):
            c.execute("INSERT INTO tags VALUES (?, ?, ?)", ("t%d" % i, "code%d" % i, i))
            c.execute("INSERT INTO docs VALUES (?, ?, ?)", (i, "d%d" % i, "doc %d" % i))
        c.execute("COMMIT")
    finally:
        c.close()


REPLACES = """
INSERT OR REPLACE INTO users VALUES (1001, 'u1@x', 'new1', 'n1', 1, 'took the email of 1');
REPLACE INTO users VALUES (1002, 'fresh@x', 'h2', 'c3', 1, 'took the handle of 2, the code of 3');
INSERT OR REPLACE INTO users VALUES (1003, 'x3@x', 'h4-new', 'c5', 0, 'inactive: c5 stays');
UPDATE OR REPLACE users SET email = 'u6@x' WHERE id = 7;
INSERT OR REPLACE INTO users SELECT id + 2000, email, handle || '+', 'm' || id, active, name
    FROM users WHERE id BETWEEN 20 AND 29;
INSERT INTO users VALUES (1004, 'u10@x', 'hh', 'cc', 1, 'upsert')
    ON CONFLICT (email) DO UPDATE SET id = excluded.id, name = 'upsert moved 10';
INSERT INTO tags VALUES ('new1', 'code1', 100);
UPDATE tags SET code = 'code3' WHERE name = 't2';
INSERT OR REPLACE INTO tags VALUES ('t4', 'code5', 400);
INSERT OR REPLACE INTO docs (id, uuid, body) VALUES (1, 'doc-new-1', 'took the id of d1');
UPDATE OR REPLACE docs SET id = 3 WHERE id = 2;
"""
REPLACE_TABLES = [("users", ["id"]), ("tags", ["name"]), ("docs", ["uuid"])]


def test_replace():
    s = Setup("sqtrust_replace", REPLACE_DDL, REPLACE_TABLES)
    fill_replace(s.src)
    s.sync_all("replace: first run")
    s.check_equal("replace: after the snapshot")
    sql(s.src, REPLACES)
    gone = one(s.src, "SELECT count(*) FROM users WHERE id IN (1, 2, 3, 6, 20, 29)")[0][0]
    t.eq(gone, 0, "replace: the writes removed users 1, 2, 3, 6, 20-29 through other columns")
    t.eq(one(s.src, "PRAGMA recursive_triggers")[0][0], 0,
         "replace: the writers ran with recursive_triggers off (no DELETE trigger fires)")
    s.sync_all("replace: catch-up")
    s.check_equal("replace: after REPLACEs through other unique columns")
    # The same again with recursive_triggers on: both paths log, nothing breaks.
    sql(s.src, "PRAGMA recursive_triggers = ON;"
               "INSERT OR REPLACE INTO users VALUES (3001, 'u30@x', 'r', 'r', 1, 'took 30');"
               "INSERT INTO tags VALUES ('new2', 'code6', 6);")
    s.sync_all("replace: recursive triggers")
    s.check_equal("replace: after REPLACEs with recursive_triggers on")


def test_upgrade():
    s = Setup("sqtrust_upgrade", REPLACE_DDL, [("users", ["id"])])
    fill_replace(s.src)
    s.sync_all("upgrade: first run")
    # What the previous capture version left: no conflict triggers, no capture_version
    # column, meta version 1, and positions whose xid (now the entry's stamp) is 0.
    c = sqlite3.connect(s.src, isolation_level=None)
    try:
        for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"
                                 " AND name LIKE 'lockstep_cdc_%_rpl_%'").fetchall():
            c.execute('DROP TRIGGER "%s"' % name)
        cols = [r[1] for r in c.execute("PRAGMA table_info(lockstep_cdc_tables)")]
        if "capture_version" in cols:
            c.execute("ALTER TABLE lockstep_cdc_tables DROP COLUMN capture_version")
        c.execute("UPDATE lockstep_cdc_meta SET version = 1")
    finally:
        c.close()
    L.execute(s.pg, "UPDATE lockstep_sync.position SET pos = regexp_replace(pos, "
                    "'\"xid\":\"[0-9]*\"', '\"xid\":\"0\"')")
    c = sqlite3.connect(s.lite, isolation_level=None)
    try:
        for job, pos in c.execute("SELECT job, pos FROM lockstep_sync_position").fetchall():
            c.execute("UPDATE lockstep_sync_position SET pos = ? WHERE job = ?",
                      (re.sub(r'"xid":"[0-9]*"', '"xid":"0"', pos), job))
    finally:
        c.close()
    sql(s.src, "UPDATE users SET name = 'after upgrade' WHERE id IN (40, 41);")
    for job in ("users_pg", "users_lite"):
        summary, err = s.sync(job, "upgrade")
        t.check("snapshot" not in err and summary.get("rowsRead", 99) <= 2,
                "upgrade: %s applies only the 2 new changes, no snapshot" % job,
                "summary %r\n%s" % (summary, err[-3000:]))
    trig = [r[0] for r in one(s.src, "SELECT name FROM sqlite_master WHERE type = 'trigger'"
                                     " AND name LIKE 'lockstep_cdc_%_rpl_%'")]
    t.eq(len(trig), 2, "upgrade: the conflict triggers were added in place", repr(trig))
    t.eq(one(s.src, "SELECT version FROM lockstep_cdc_meta")[0][0], 2,
         "upgrade: the capture is at version 2")
    sql(s.src, "INSERT OR REPLACE INTO users VALUES (1001, 'u1@x', 'z', 'z', 1, 'took 1');")
    s.sync_all("upgrade: after a REPLACE")
    s.check_equal("upgrade: REPLACE captured after the upgrade")


# ---------------------------------------------------------------------------
# case 10: a table rebuilt with the 12-step ALTER loses its triggers


ITEMS_DDL = "CREATE TABLE items (id INTEGER PRIMARY KEY, sku TEXT NOT NULL, qty INTEGER, note TEXT);"
REBUILD = """
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE new_items (id INTEGER PRIMARY KEY, sku TEXT NOT NULL,
                        qty INTEGER NOT NULL DEFAULT 0 CHECK (qty >= 0), note TEXT);
INSERT INTO new_items SELECT id, sku, COALESCE(qty, 0), note FROM items;
DROP TABLE items;
ALTER TABLE new_items RENAME TO items;
COMMIT;
"""


def fill_items(path, n=300):
    c = sqlite3.connect(path, isolation_level=None)
    try:
        c.execute("BEGIN")
        for i in range(1, n + 1):
            c.execute("INSERT INTO items VALUES (?, ?, ?, ?)",
                      (i, "sku-%d" % i, None if i % 7 == 0 else i, "n%d" % i))
        c.execute("COMMIT")
    finally:
        c.close()


def writes(path, base, n=5):
    """n inserts from key base (a multiple of 1000), n updates and n deletes of older keys,
    other ones for each base."""
    j = base // 1000
    c = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        c.execute("BEGIN")
        for i in range(n):
            c.execute("INSERT INTO items VALUES (?, ?, ?, ?)", (base + i, "new-%d" % (base + i), i, "w"))
            c.execute("UPDATE items SET note = ?, qty = ? WHERE id = ?", ("upd %d" % base, i, 20 * j + i))
            c.execute("DELETE FROM items WHERE id = ?", (150 + 20 * j + i,))
        c.execute("COMMIT")
    finally:
        c.close()


def test_rebuild_catch_up():
    s = Setup("sqtrust_rebuild", ITEMS_DDL, [("items", ["id"])])
    fill_items(s.src)
    s.sync_all("rebuild: first run")
    writes(s.src, 1000)
    s.sync_all("rebuild: changes before the rebuild")
    s.check_equal("rebuild: before the rebuild")
    sql(s.src, REBUILD)
    t.eq(one(s.src, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'")[0][0], 0,
         "rebuild: the 12-step ALTER dropped lockstep's triggers")
    writes(s.src, 2000)  # made while capture is off
    _, err = s.sync("items_pg", "rebuild")
    t.check(warned(err, ["items_pg", "triggers were missing"]),
            "rebuild: items_pg's run logs the gap and why", err[-3000:])
    s.check_equal("rebuild: writes made while the triggers were missing", kinds=("pg",))
    writes(s.src, 3000)  # logged again
    _, err = s.sync("items_lite", "rebuild")
    t.check(warned(err, ["items_lite", "triggers were missing"]),
            "rebuild: items_lite, another consumer of the table, learns of the gap too",
            err[-3000:])
    s.sync_all("rebuild: after")
    s.check_equal("rebuild: both targets after the rebuild")


class Daemon:
    """lockstep run in the background, its output in files (a pipe could fill and block it)."""

    def __init__(self, cfg, w):
        self.err_path = w.file("run.err")
        env = dict(os.environ)
        env.pop("LK_FAILPOINT", None)
        env["NO_COLOR"] = "1"
        with open(w.file("run.out"), "w") as out, open(self.err_path, "w") as err:
            self.p = subprocess.Popen([L.lk_bin(), "-c", str(cfg), "run"], stdout=out,
                                      stderr=err, env=env)

    def alive(self):
        return self.p.poll() is None

    def log(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(90)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            return -999


def converged(s, d, what):
    def same(kind):
        try:
            return not s.diff("items", ["id"], kind)[2]
        except (RuntimeError, sqlite3.Error, L.psycopg2.Error):
            return False  # the target table is not created yet

    def ok():
        return not d.alive() or all(same(k) for k in ("pg", "lite"))
    L.wait_for(ok, DEADLINE, 0.5)
    t.check(d.alive(), "%s: lockstep run is still running" % what, d.log()[-3000:])
    s.check_equal(what)


def test_rebuild_while_streaming():
    s = Setup("sqtrust_stream", ITEMS_DDL, [("items", ["id"])])
    fill_items(s.src)
    d = Daemon(s.cfg, s.w)
    try:
        converged(s, d, "streaming: the first snapshot")
        writes(s.src, 1000)
        converged(s, d, "streaming: changes before the rebuild")
        sql(s.src, REBUILD)
        writes(s.src, 2000)
        converged(s, d, "streaming: writes made after a rebuild while streaming")
        log = d.log()
        for job in ("items_pg", "items_lite"):
            t.check(warned(log, [job, "triggers were missing"]),
                    "streaming: %s logged the gap and why" % job, log[-3000:])
    finally:
        rc = d.stop()
    t.eq(rc, 0, "streaming: SIGTERM stops lockstep run with exit 0", d.log()[-3000:])


# ---------------------------------------------------------------------------
# case 3 (SQLite): the source file restored from an older copy


ACCT_DDL = "CREATE TABLE acct (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL);"


def acct_writes(path, base, n):
    """n changes from key base: inserts, updates and deletes in turn."""
    c = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        c.execute("BEGIN")
        for i in range(n):
            k = base + i
            if i % 3 == 0:
                c.execute("INSERT INTO acct VALUES (?, ?, ?)", (k, "o%d" % k, k))
            elif i % 3 == 1:
                c.execute("UPDATE acct SET balance = balance + ? WHERE id = ?", (k, 1 + k % 90))
            else:
                c.execute("DELETE FROM acct WHERE id = ?", (1 + (k * 7) % 90,))
        c.execute("COMMIT")
    finally:
        c.close()


def backup(src, dst):
    """A consistent copy with SQLite's online backup API."""
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()


def test_restored_source():
    s = Setup("sqtrust_restore", ACCT_DDL, [("acct", ["id"])])
    c = sqlite3.connect(s.src, isolation_level=None)
    c.executemany("INSERT INTO acct VALUES (?, ?, ?)", [(i, "o%d" % i, i) for i in range(1, 101)])
    c.close()
    s.sync_all("restore: first run")
    acct_writes(s.src, 1000, 12)
    s.sync_all("restore: changes")

    # A: the copy is restored by copying the file back; fewer writes follow than were lost.
    backup(s.src, s.w.file("copy1.db"))
    acct_writes(s.src, 2000, 30)
    s.sync_all("restore A: changes after the copy")
    s.check_equal("restore A: before the restore")
    shutil.copyfile(s.w.file("copy1.db"), s.src)
    for ext in ("-wal", "-shm", "-journal"):
        if os.path.exists(s.src + ext):
            os.remove(s.src + ext)
    acct_writes(s.src, 3000, 6)
    errs = s.sync_all("restore A: after the restore")
    for job, err in errs.items():
        t.check(warned(err, [job, "went back"]), "restore A: %s says the changelog went back" % job,
                err[-3000:])
    s.check_equal("restore A: restored from an older copy, fewer writes since")

    # B: restored with the backup API; more writes follow than were lost, so the old seqs
    # are handed out again to other changes.
    backup(s.src, s.w.file("copy2.db"))
    acct_writes(s.src, 4000, 30)
    s.sync_all("restore B: changes after the copy")
    s.check_equal("restore B: before the restore")
    backup(s.w.file("copy2.db"), s.src)
    acct_writes(s.src, 5000, 90)
    errs = s.sync_all("restore B: after the restore")
    for job, err in errs.items():
        t.check(warned(err, [job, "history was replaced"]),
                "restore B: %s says the source's history was replaced" % job, err[-3000:])
    s.check_equal("restore B: restored from an older copy, more writes since")
    errs = s.sync_all("restore: a run after")
    for job, err in errs.items():
        t.check("level=warn" not in err, "restore: %s's next run resumes with no warning" % job,
                err[-3000:])
    s.check_equal("restore: in the end")


def test_restored_target():
    """Case 4 with an SQLite source: each target restored from a backup taken before its
    last runs (the SQLite file copied back; the PostgreSQL database's rows put back as a
    logical restore would). Its position is behind the consumer registry, and entries it
    still needed were pruned: each job re-snapshots, saying why, and converges."""
    s = Setup("sqtrust_target", ACCT_DDL, [("acct", ["id"])])
    c = sqlite3.connect(s.src, isolation_level=None)
    c.executemany("INSERT INTO acct VALUES (?, ?, ?)", [(i, "o%d" % i, i) for i in range(1, 101)])
    c.close()
    s.sync_all("target: first run")
    acct_writes(s.src, 1000, 12)
    s.sync_all("target: changes")
    backup(s.lite, s.w.file("dst_copy.db"))
    L.execute(s.pg, "CREATE TABLE bk_acct AS SELECT * FROM acct;"
              " CREATE TABLE bk_pos AS SELECT * FROM lockstep_sync.position")
    acct_writes(s.src, 2000, 30)
    s.sync_all("target: changes after the backup")
    s.sync_all("target: a second run (the registry hears it; entries are pruned)")
    s.check_equal("target: before the restore")
    t.check(one(s.src, "SELECT count(*) FROM lockstep_cdc_changelog")[0][0] == 0,
            "target: the changelog was pruned up to what both jobs applied")
    backup(s.w.file("dst_copy.db"), s.lite)
    L.execute(s.pg, "DELETE FROM acct; INSERT INTO acct SELECT * FROM bk_acct;"
              " DELETE FROM lockstep_sync.position;"
              " INSERT INTO lockstep_sync.position SELECT * FROM bk_pos")
    acct_writes(s.src, 3000, 6)
    errs = s.sync_all("target: after the restore")
    for job, err in errs.items():
        t.check(warned(err, [job, "is behind what the source's consumer registry says"]),
                "target: %s says its target went back" % job, err[-3000:])
    s.check_equal("target: restored from a backup")
    errs = s.sync_all("target: a run after")
    for job, err in errs.items():
        t.check("level=warn" not in err, "target: %s's next run resumes with no warning" % job,
                err[-3000:])
    s.check_equal("target: in the end")


t.case(test_replace)
t.case(test_upgrade)
t.case(test_rebuild_catch_up)
t.case(test_rebuild_while_streaming)
t.case(test_restored_source)
t.case(test_restored_target)
t.finish()
