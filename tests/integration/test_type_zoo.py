"""Real-world column types with `target.create: true` (issue 18, docs/types.md).

The source table `zoo` holds an enum (labels with quotes, blanks, a comma and braces, a
backslash, unicode), an array of it, a domain over it, a domain over int and a domain over
that domain, int[] (one- and two-dimensional values, empty, with NULLs), int4range,
tstzrange, a user range with a subtype_diff function and its multirange, int4multirange,
hstore and hstore[], citext, ltree, text COLLATE "C", varchar(20), a composite type and a
range over a second enum (used nowhere else), a GENERATED ALWAYS ... STORED column and an
identity column. A writer thread inserts and updates rows with random values of every kind
(NULLs too) while each `lockstep sync` runs.

(a) PG -> PG, the target database has hstore (in another schema, `ext`), citext and ltree:
    three jobs (snapshot, poll, realtime) create their tables; each target equals the
    source by lktest.pg_md5 over every column, its column types are the source's (the enum
    by schema, name and labels in order; a domain by its base type; the extension types
    from the target's extension; plain columns for the generated and identity ones; the
    collation kept), `lockstep verify` exits 0. Then labels are added to the source's enum
    and to the second enum (ALTER TYPE ADD VALUE, in the middle too), the writer uses
    them, and a later `lockstep sync` of each job carries them: no dead letter, the oracle
    equal, the target's labels those of the source in order.
(b) PG -> PG, the target database has none of the extensions: `lockstep sync` fails once
    (exit 1, no retry loop) naming the extension, the database and CREATE EXTENSION, and
    makes nothing on the target (no type, no schema, no table); `lockstep check-config`
    says the same.
(c) PG -> SQLite: the table is created with every column by the one rule of docs/types.md,
    equal by lktest.rows_canonical + compare_rows, `lockstep verify` exits 0.
(d) A target the user made with its key GENERATED ALWAYS AS IDENTITY takes the source's
    keys (snapshot and realtime, under a writer), equal by pg_md5.
"""
import random
import sqlite3
import threading
import time

import lktest as L

L.require_pg()
t = L.Suite("test_type_zoo")

N0 = L.scale(1500)

LABELS = ["sad", "ok", "it's \"fine\"", "very happy", "ünïcødé 😀", " lead blank", "a,b {c}",
          "back\\slash"]
NEW_LABELS = [("brand new", "BEFORE", "ok"), ("zz last 🚀", None, None)]
# An enum used only inside a composite type and a range: its labels are followed too.
LEVELS = ["low", "mid", "high"]
NEW_LEVEL = ("mid+", "AFTER", "mid")

SOURCE_DDL = """
CREATE EXTENSION hstore; CREATE EXTENSION citext; CREATE EXTENSION ltree;
CREATE SCHEMA app;
CREATE TYPE app.mood AS ENUM ({labels});
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE DOMAIN app.small AS posint CHECK (VALUE < 1000000);
CREATE DOMAIN app.mood_d AS app.mood;
CREATE TYPE floatrange AS RANGE (subtype = float8, subtype_diff = float8mi);
CREATE TYPE app.level AS ENUM ('low', 'mid', 'high');
CREATE TYPE app.levels AS RANGE (subtype = app.level);
CREATE TYPE app.pair AS (a int, b text COLLATE "C", m app.level);
CREATE SEQUENCE zoo_id_seq START {start};
CREATE TABLE zoo (
  id bigint PRIMARY KEY, mood app.mood, moods app.mood[], dmood app.mood_d, score posint,
  small app.small, ints int[], grid int[], r4 int4range, rtz tstzrange, fr floatrange,
  fmr floatmultirange, m4 int4multirange, tags hstore, tagss hstore[], email citext,
  path ltree, name text COLLATE "C", note varchar(20), pair app.pair, lvr app.levels,
  total int GENERATED ALWAYS AS (coalesce(score, 0) * 2) STORED,
  seq bigint GENERATED ALWAYS AS IDENTITY,
  updated_at timestamptz NOT NULL DEFAULT now())
"""

COLS = ["id", "mood", "moods", "dmood", "score", "small", "ints", "grid", "r4", "rtz", "fr", "fmr",
        "m4", "tags", "tagss", "email", "path", "name", "note", "pair", "lvr", "total", "seq", "updated_at"]
# What each column's type is on a PostgreSQL target (format_type there; hstore lives in
# schema ext on the target, which is not on its search_path).
PG_TYPES = {"id": "bigint", "mood": "app.mood", "moods": "app.mood[]", "dmood": "app.mood",
            "score": "integer", "small": "integer", "ints": "integer[]", "grid": "integer[]",
            "r4": "int4range", "rtz": "tstzrange", "fr": "floatrange", "fmr": "floatmultirange",
            "m4": "int4multirange", "tags": "ext.hstore", "tagss": "ext.hstore[]", "email": "citext",
            "path": "ltree", "name": "text", "note": "character varying(20)", "pair": "app.pair", "lvr": "app.levels",
            "total": "integer", "seq": "bigint", "updated_at": "timestamp with time zone"}
# The declared type lockstep gives each column in SQLite (docs/types.md).
SQLITE_DECL = dict((c, "TEXT") for c in COLS)
SQLITE_DECL.update({"id": "INTEGER", "score": "INTEGER", "small": "INTEGER", "total": "INTEGER",
                    "seq": "INTEGER", "updated_at": "TIMESTAMPTZ TEXT"})

# (column, SQL template) of a row's values, in COLS order (without the generated ones).
WRITTEN = [("id", "%s"), ("mood", "%s::app.mood"), ("moods", "%s::text[]::app.mood[]"),
           ("dmood", "%s::app.mood_d"), ("score", "%s"), ("small", "%s"), ("ints", "%s::int[]"),
           ("grid", "%s::int[]"), ("r4", "%s::int4range"), ("rtz", "%s::tstzrange"),
           ("fr", "%s::floatrange"), ("fmr", "%s::floatmultirange"), ("m4", "%s::int4multirange"),
           ("tags", "hstore(%s::text[], %s::text[])"), ("tagss", "%s::text[]::hstore[]"),
           ("email", "%s"), ("path", "%s::ltree"), ("name", "%s"), ("note", "%s"),
           ("pair", "%s::app.pair"), ("lvr", "%s::app.levels")]


def q_ident(s):
    return '"%s"' % s.replace('"', '""')


def q_lit(s):
    return "'%s'" % s.replace("'", "''")


def maybe(rnd, v, p=0.15):
    return None if rnd.random() < p else v


class Values:
    """Random values for every written column; `labels` grows when the test adds some."""

    def __init__(self):
        self.labels = list(LABELS)
        self.levels = list(LEVELS)  # in the enum's order
        self.lock = threading.Lock()

    def label(self, rnd):
        with self.lock:
            return rnd.choice(self.labels)

    def level_range(self, rnd):
        with self.lock:
            i, j = sorted(rnd.randrange(len(self.levels)) for _ in range(2))
            return "%s%s,%s%s" % (rnd.choice("[("), self.levels[i], self.levels[j], "]")

    def level(self, rnd):
        with self.lock:
            return rnd.choice(self.levels)

    def row(self, rnd, key):
        """[(column, template, params)] for a row with key `key`."""
        def rng(lo_hi, fmt):
            if rnd.random() < 0.1:
                return "empty"
            a, b = lo_hi
            return "%s%s,%s%s" % (rnd.choice("[("), fmt(a), fmt(b), rnd.choice("])"))

        n = rnd.randint(0, 4)
        grid = [[rnd.choice([None, rnd.randint(-9, 9)]) for _ in range(2)] for _ in range(rnd.randint(1, 3))]
        tag_keys = ["k%d" % i for i in range(rnd.randint(0, 3))] + (["odd \"key\" =>,"] if rnd.random() < 0.3 else [])
        tag_vals = [maybe(rnd, rnd.choice(["v", "ä ö", "", "x=>y", "\\"]), 0.2) for _ in tag_keys]
        lo = rnd.randint(-100, 100)
        flo = rnd.choice([0.1, -2.5, 1e-7, 3.0, 1 / 3.0])
        vals = {
            "id": [key],
            "mood": [maybe(rnd, self.label(rnd))],
            "moods": [maybe(rnd, [self.label(rnd) for _ in range(n)])],
            "dmood": [maybe(rnd, self.label(rnd))],
            "score": [maybe(rnd, rnd.randint(1, 10 ** 6))],
            "small": [maybe(rnd, rnd.randint(1, 999999))],
            "ints": [maybe(rnd, [rnd.choice([None, rnd.randint(-2 ** 31, 2 ** 31 - 1)]) for _ in range(n)])],
            "grid": [maybe(rnd, grid)],
            "r4": [maybe(rnd, rng((lo, lo + rnd.randint(1, 50)), str))],
            "rtz": [maybe(rnd, rng(("2020-01-0%d 10:00:00.5+02" % rnd.randint(1, 4), "2021-06-01 00:00:00+00"),
                                   lambda s: '"%s"' % s))],
            "fr": [maybe(rnd, rng((flo, flo + rnd.choice([0.2, 1.0, 1e10])), repr))],
            "fmr": [maybe(rnd, rnd.choice(["{}", "{[0.1,0.3),[1,2]}", "{(,-1]}", "{[%r,%r]}" % (flo, flo + 1)]))],
            "m4": [maybe(rnd, rnd.choice(["{}", "{[1,3),[7,9)}", "{[%d,%d)}" % (lo, lo + 5)]))],
            "tags": [tag_keys, tag_vals] if rnd.random() > 0.15 else [None, None],
            "tagss": [maybe(rnd, rnd.choice([[], ["a=>1"], ["\"x y\"=>NULL", ""]]))],
            "email": [maybe(rnd, rnd.choice(["Foo@Example.COM", "bär@bäz.de", "x"]) + str(rnd.randint(0, 99)))],
            "path": [maybe(rnd, rnd.choice(["", "a", "top.Sci_ence.b2", "x.y.z.%d" % rnd.randint(0, 99)]))],
            "name": [maybe(rnd, rnd.choice(["Zeta", "alpha", "Ärger", "日本語 テキスト", "tab\there", "line\nbreak"]))],
            "note": [maybe(rnd, "n%d" % rnd.randint(0, 10 ** 6))],
            "pair": [maybe(rnd, "(%d,%s,%s)" % (rnd.randint(-5, 5), rnd.choice(['"x y"', '""', "", "\"q\"\"uote\""]),
                                                self.level(rnd)))],
            "lvr": [maybe(rnd, self.level_range(rnd))],
        }
        return [(c, tpl, vals[c]) for c, tpl in WRITTEN]


VALUES = Values()


def insert_sql(rows):
    """One INSERT of rows ([(column, template, params)] each): (sql, params)."""
    cols = [c for c, _, _ in rows[0]]
    sql = "INSERT INTO zoo (%s) VALUES " % ", ".join(cols)
    parts, params = [], []
    for r in rows:
        parts.append("(%s)" % ", ".join(tpl for _, tpl, _ in r))
        for _, _, p in r:
            params += p
    return sql + ", ".join(parts), params


def make_source(url):
    L.execute(url, SOURCE_DDL.format(labels=", ".join(q_lit(x) for x in LABELS), start=N0 + 1))
    rnd = random.Random(18)
    c = L.connect(url)
    try:
        with c.cursor() as cur:
            for lo in range(1, N0 + 1, 250):
                sql, params = insert_sql([VALUES.row(rnd, k) for k in range(lo, min(lo + 250, N0 + 1))])
                cur.execute(sql, params)
            # the odd ones for sure: every label, empty and NULL everything
            for i, lab in enumerate(LABELS):
                cur.execute("UPDATE zoo SET mood = %s, dmood = %s, moods = %s::text[]::app.mood[] WHERE id = %s",
                            (lab, lab, LABELS, i + 1))
            cur.execute("UPDATE zoo SET mood = NULL, moods = '{}', dmood = NULL, score = NULL, small = NULL,"
                        " ints = '{}', grid = '{{1,NULL},{3,4}}', r4 = 'empty', rtz = NULL, fr = 'empty',"
                        " fmr = '{}', m4 = '{}', tags = '', tagss = '{}', email = NULL, path = '',"
                        " name = NULL, note = NULL, pair = '(,,)' WHERE id = %s", (len(LABELS) + 1,))
            cur.execute("ANALYZE zoo")
    finally:
        c.close()


class Writer:
    """One thread inserting (fresh keys from zoo_id_seq) and updating rows with random values
    of every column, in short transactions, until stop(). Errors are collected."""

    def __init__(self, url, seed, txn=None):
        self.url, self.seed = url, seed
        if txn:
            self._txn = txn
        self.stop_ev = threading.Event()
        self.errors, self.commits = [], 0
        self.th = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.th.start()
        return self

    def _txn(self, cur, rnd):
        if rnd.random() < 0.4:
            cur.execute("SELECT nextval('zoo_id_seq') FROM generate_series(1, %s)", (rnd.randint(1, 3),))
            sql, params = insert_sql([VALUES.row(rnd, k) for (k,) in cur.fetchall()])
            cur.execute(sql, params)
            return
        cur.execute("SELECT last_value FROM zoo_id_seq")
        key = rnd.randint(1, cur.fetchone()[0])
        row = [x for x in VALUES.row(rnd, key) if x[0] != "id"]
        row = rnd.sample(row, rnd.randint(1, 6))
        sets = ", ".join("%s = %s" % (c, tpl) for c, tpl, _ in row)
        params = [p for _, _, ps in row for p in ps]
        cur.execute("UPDATE zoo SET %s, updated_at = now() WHERE id = (SELECT id FROM zoo WHERE id >= %%s "
                    "ORDER BY id LIMIT 1)" % sets, params + [key])

    def _run(self):
        rnd = random.Random(self.seed)
        c = L.psycopg2.connect(self.url, connect_timeout=10)
        try:
            while not self.stop_ev.is_set():
                try:
                    with c.cursor() as cur:
                        self._txn(cur, rnd)
                    c.commit()
                    self.commits += 1
                except L.psycopg2.Error as e:
                    c.rollback()
                    if len(self.errors) < 5:
                        self.errors.append("%s %s" % (e.pgcode, str(e).strip()))
                self.stop_ev.wait(rnd.uniform(0, 0.01))
        finally:
            c.close()

    def stop(self, what):
        self.stop_ev.set()
        self.th.join(60)
        t.check(not self.th.is_alive(), "%s: the writer stopped" % what)
        t.check(self.commits > 0 and not self.errors, "%s: the writer committed %d transactions, no error"
                % (what, self.commits), "\n".join(self.errors))


def sync_under_writer(cfg, jobs, src, what, seed, txn=None):
    """Each job synced once while the writer runs, then once more after it stopped."""
    w = Writer(src, seed, txn).start()
    for job in jobs:
        n0 = w.commits
        L.wait_for(lambda: w.commits > n0 + 10 or w.errors, deadline=60)
        n1 = w.commits
        L.sync(t, cfg, job)
        t.check(w.commits > n1, "%s: the writer committed while sync %s ran (%d)" % (what, job, w.commits - n1))
    w.stop(what)
    for job in jobs:
        rc, s, _ = L.sync(t, cfg, job)
        t.eq((s or {}).get("rowsFailed"), 0, "%s: sync %s: no row failed" % (what, job))


def dead_letters(cfg):
    rc, out, err = L.run_lockstep(["errors", "list", "--json"], cfg)
    obj = L.whole_json(out) or {}
    return obj.get("errors", []) if rc == 0 else ["errors list: " + L.show(rc, out, err)]


def pg_oracle(src, dst, table, what):
    a = L.pg_md5(src, "zoo", ["id"], COLS)
    b = L.pg_md5(dst, table, ["id"], COLS)
    t.check(a == b and a[1] > N0, "%s: target %s equals the source over every column (md5 oracle)"
            % (what, table), "source %r, target %r" % (a, b))


def enum_labels(url, qname="app.mood"):
    return [r[0] for r in L.execute(url, "SELECT enumlabel FROM pg_enum WHERE enumtypid = %s::regtype "
                                         "ORDER BY enumsortorder", (qname,))]


def pg_target_shape(src, dst, table, what):
    """Column types, collation, no generated/identity, enum labels, composite attributes."""
    got = dict(L.pg_columns(dst, table))
    t.eq(got, PG_TYPES, "%s: %s has the source's column types (domains as their base type)" % (what, table))
    extra = L.execute(dst, "SELECT a.attname, a.attgenerated, a.attidentity, coalesce(co.collname, '') "
                           "FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation "
                           "AND a.attcollation <> 100 WHERE a.attrelid = %s::regclass AND a.attnum > 0 "
                           "AND a.attname IN ('total', 'seq', 'name') ORDER BY 1", (table,))
    t.eq(extra, [("name", "", "", "C"), ("seq", "", "", ""), ("total", "", "", "")],
         "%s: %s: generated and identity columns are plain, the collation is kept" % (what, table))
    t.eq(enum_labels(dst), enum_labels(src), "%s: the target's enum has the source's labels in order" % what)
    t.eq(enum_labels(dst, "app.level"), enum_labels(src, "app.level"),
         "%s: the enum under the composite and the range has the source's labels" % what)
    attrs = "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = " \
            "'app.pair'::regclass AND attnum > 0 ORDER BY attnum"
    t.eq(L.execute(dst, attrs), L.execute(src, attrs), "%s: composite app.pair has the source's attributes" % what)
    ext = L.execute(dst, "SELECT n.nspname FROM pg_type ty JOIN pg_namespace n ON n.oid = ty.typnamespace "
                         "WHERE ty.oid = (SELECT atttypid FROM pg_attribute WHERE attrelid = %s::regclass "
                         "AND attname = 'tags')", (table,))
    t.eq(ext, [("ext",)], "%s: tags uses the target's hstore, in the schema of the target's extension" % what)


PG_JOBS = {
    "zs": {"source": {"db": "src", "table": "zoo"}, "target": {"db": "dst", "table": "zoo_s", "create": True},
           "mode": "snapshot", "batch": 300},
    "zp": {"source": {"db": "src", "table": "zoo"}, "target": {"db": "dst", "table": "zoo_p", "create": True},
           "mode": "poll", "cursor": "updated_at", "batch": 300},
    "zr": {"source": {"db": "src", "table": "zoo"}, "target": {"db": "dst", "table": "zoo_r", "create": True},
           "mode": "realtime", "batch": 300},
}


SRC = None  # the source database, made once (each case syncs it into another target)


def source():
    global SRC
    if SRC is None:
        SRC = L.new_db("zoo_src")
        make_source(SRC)
    return SRC


def test_pg_to_pg_with_extensions():
    src = source()
    dst = L.new_db("zoo_dst")
    L.execute(dst, "CREATE SCHEMA ext; CREATE EXTENSION hstore SCHEMA ext; CREATE EXTENSION citext; "
                   "CREATE EXTENSION ltree")
    w = L.Workdir("zoo_pg_pg")
    cfg = L.sync_config(w, {"src": src, "dst": dst}, PG_JOBS)
    sync_under_writer(cfg, list(PG_JOBS), src, "PG -> PG", seed=1)
    for job, spec in sorted(PG_JOBS.items()):
        table = spec["target"]["table"]
        pg_target_shape(src, dst, table, "PG -> PG %s" % job)
        pg_oracle(src, dst, table, "PG -> PG %s" % job)
        L.verify(t, cfg, job, expect=0)

    # Labels added on the source (one in the middle), used by rows at once.
    for lab, where, other in NEW_LABELS:
        L.execute(src, "ALTER TYPE app.mood ADD VALUE %s%s" % (q_lit(lab), " %s %s" % (where, q_lit(other))
                                                              if where else ""))
    L.execute(src, "ALTER TYPE app.level ADD VALUE %s %s %s" % (q_lit(NEW_LEVEL[0]), NEW_LEVEL[1],
                                                                q_lit(NEW_LEVEL[2])))
    with VALUES.lock:
        VALUES.labels += [lab for lab, _, _ in NEW_LABELS]
        VALUES.levels.insert(VALUES.levels.index(NEW_LEVEL[2]) + 1, NEW_LEVEL[0])
    L.execute(src, "UPDATE zoo SET mood = %s, moods = ARRAY[%s, %s]::app.mood[], dmood = %s, "
                   "pair = ROW(1, 'n', %s)::app.pair, lvr = app.levels(%s, 'high'), updated_at = now() "
                   "WHERE id <= 3",
              (NEW_LABELS[0][0], NEW_LABELS[0][0], NEW_LABELS[1][0], NEW_LABELS[1][0], NEW_LEVEL[0], NEW_LEVEL[0]))
    # Needs prepare.c to call lk_pg_sync_enum_labels before each run (it does since 4c86ada).
    sync_under_writer(cfg, list(PG_JOBS), src, "PG -> PG, new enum labels", seed=2)
    t.eq(dead_letters(cfg), [], "new enum labels: no row was dead-lettered")
    t.eq(enum_labels(dst), enum_labels(src), "new enum labels reached the target's enum in the source's order")
    t.eq(enum_labels(dst, "app.level"), enum_labels(src, "app.level"),
         "a new label of the enum under the composite and the range reached the target")
    for job, spec in sorted(PG_JOBS.items()):
        pg_oracle(src, dst, spec["target"]["table"], "PG -> PG new labels %s" % job)
        L.verify(t, cfg, job, expect=0)


def test_pg_to_pg_without_extensions():
    src = source()
    dst = L.new_db("zoo_noext")
    w = L.Workdir("zoo_noext")
    job = {"source": {"db": "src", "table": "zoo"}, "target": {"db": "bare", "table": "zoo", "create": True},
           "mode": "snapshot"}
    cfg = L.sync_config(w, {"src": src, "bare": dst}, {"zx": job})
    t0 = time.monotonic()
    rc, out, err = L.run_lockstep(["sync", "zx"], cfg, timeout=120)
    took = time.monotonic() - t0
    t.eq(rc, 1, "no extension on the target: sync exits 1", L.show(rc, out, err))
    want = ['column "tags" of public.zoo has type hstore from extension "hstore"', "database 'bare'",
            "CREATE EXTENSION hstore"]
    t.check(all(s in err for s in want), "sync names the column, the extension, the database and what to run",
            L.show(rc, out, err))
    t.check(took < 60 and err.count("CREATE EXTENSION") <= 2, "sync fails once, without a retry loop (%.1f s)"
            % took, L.show(rc, out, err))
    made = L.execute(dst, "SELECT (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                          "WHERE n.nspname IN ('public', 'app') AND t.typtype IN ('e', 'r', 'c', 'm') "
                          "AND t.typrelid = 0), (SELECT count(*) FROM pg_namespace WHERE nspname = 'app'), "
                          "(SELECT count(*) FROM pg_class WHERE relname = 'zoo')")
    t.eq(made, [(0, 0, 0)], "a refused target makes nothing there: no type, schema or table")
    # check-config gives the same message (src/sync/check.c calls lk_pg_target_types with
    # natives NULL: checks only).
    rc, out, err = L.run_lockstep(["check-config"], cfg, timeout=120)
    t.check(rc != 0 and all(s in out + err for s in want),
            "check-config names the missing extension and database", L.show(rc, out, err))


def test_pg_to_sqlite():
    src = source()
    w = L.Workdir("zoo_sqlite")
    jobs = {"zl": {"source": {"db": "src", "table": "zoo"}, "target": {"db": "lite", "table": "zoo", "create": True},
                   "mode": "snapshot", "batch": 300}}
    cfg = L.sync_config(w, {"src": src, "lite": "sqlite:lite.db"}, jobs)
    sync_under_writer(cfg, ["zl"], src, "PG -> SQLite", seed=3)
    c = sqlite3.connect(w.file("lite.db"))
    decl = dict((r[1], r[2]) for r in c.execute('PRAGMA table_info("zoo")'))
    c.close()
    t.eq(decl, SQLITE_DECL, "PG -> SQLite: every column declared by the one rule of docs/types.md")
    a = L.rows_canonical(src, "zoo", ["id"], COLS)
    b = L.rows_canonical("sqlite:" + w.file("lite.db"), "zoo", ["id"], COLS)
    diff = L.compare_rows(a, b)
    t.check(len(a) > N0 and not diff, "PG -> SQLite: cross-engine oracle finds no difference (%d rows)" % len(a),
            "%d keys differ:\n%s" % (len(diff), L.describe_diff(a, b, diff)))
    L.verify(t, cfg, "zl", expect=0)


def idt_txn(cur, rnd):
    """The identity case's writer: new rows and updated values."""
    if rnd.random() < 0.3:
        cur.execute("INSERT INTO idt (id, v) SELECT nextval('idt_id_seq'), 'new ' || g FROM generate_series(1, 2) g")
    else:
        cur.execute("UPDATE idt SET v = %s WHERE id = (SELECT id FROM idt WHERE id >= %s ORDER BY id LIMIT 1)",
                    ("v%d" % rnd.randint(0, 10 ** 6), rnd.randint(1, 500)))


def test_identity_always_target():
    """A target the user made with its key GENERATED ALWAYS AS IDENTITY takes the source's
    keys: COPY into the empty table, then INSERT ... OVERRIDING SYSTEM VALUE ... ON CONFLICT."""
    src = L.new_db("zoo_idsrc")
    L.execute(src, "CREATE SEQUENCE idt_id_seq START 501; CREATE TABLE idt (id bigint PRIMARY KEY, v text); "
                   "INSERT INTO idt SELECT g * 1, 'v' || g FROM generate_series(1, 500) g")
    dst = L.new_db("zoo_iddst")
    for table in ("idt_s", "idt_r"):
        L.execute(dst, "CREATE TABLE %s (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text)" % table)
    w = L.Workdir("zoo_identity")
    jobs = dict((name, {"source": {"db": "src", "table": "idt"}, "target": {"db": "dst", "table": table},
                        "mode": mode, "batch": 100})
                for name, table, mode in (("is", "idt_s", "snapshot"), ("ir", "idt_r", "realtime")))
    cfg = L.sync_config(w, {"src": src, "dst": dst}, jobs)
    for job in sorted(jobs):  # into the empty tables
        L.sync(t, cfg, job)
    sync_under_writer(cfg, sorted(jobs), src, "identity ALWAYS key", seed=4, txn=idt_txn)
    for job in sorted(jobs):
        a = L.pg_md5(src, "idt", ["id"])
        b = L.pg_md5(dst, jobs[job]["target"]["table"], ["id"])
        t.check(a == b and a[1] > 500, "identity ALWAYS key, %s: target equals the source (md5 oracle)" % job,
                "source %r, target %r" % (a, b))
    t.eq(dead_letters(cfg), [], "identity ALWAYS key: no row was dead-lettered")


t.case(test_pg_to_pg_with_extensions)
t.case(test_identity_always_target)
t.case(test_pg_to_pg_without_extensions)
t.case(test_pg_to_sqlite)
t.finish()
