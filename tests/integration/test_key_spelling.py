"""Key spelling and key-column changes in real-time capture (issue 17, cases 1 and 11).

A real-time job decides which changed keys were deleted by asking the source (the ordinal
fetch, docs/realtime.md "How changes are applied"), and the capture function pins the
settings a key's text depends on; writers' session settings must never matter. Cases:

(a) every key type docs/types.md lists for keys ("Keys"): one table per type and one with
    a composite key mixing them, each the source of two real-time jobs, one into
    PostgreSQL and one into SQLite. Rows are written before the first `lockstep sync`
    (the snapshot), then by two writers with hostile session settings (TimeZone
    America/St_Johns and Asia/Kathmandu with keys before 1900, DateStyle 'SQL, DMY' and
    'German', IntervalStyle postgres_verbose and sql_standard, extra_float_digits -15 and
    0, bytea_output escape): inserts, non-key updates, key-changing updates, deletes, a
    delete and re-insert of one key, an insert and delete of a key in one transaction.
    After a second `lockstep sync` of each job the target must equal the source:
    md5 over the rows' text for PostgreSQL, the canonical cross-engine oracle for SQLite.
(b) the same under `lockstep run`: the daemon streams while the hostile writers write;
    each target converges (polled, generous deadline), then SIGTERM exits 0.
(c) an in-place upgrade: capture installed by the build before this change (version 1,
    a manual check: it runs only when LK_OLD_BIN names a build of an older lockstep
    (e.g. one built from 689fe3d in a git worktree); the suite does not build one),
    hostile writes, then this build: no re-copy (rowsRead is the changelog entries, not the
    table), the function is remade in place (meta version 2, proconfig pins TimeZone),
    targets equal.
(d) key columns changed under the job (case 11): RENAME COLUMN of the key, DROP of the key
    column (its primary key dropped first), ALTER COLUMN TYPE of the key (before a
    `lockstep sync`, and while `lockstep run` streams). Application INSERT, UPDATE and
    DELETE never fail; the changelog holds a gap entry where a key could not be read; the
    next `lockstep sync` either converges (target equal to the source's current columns)
    or fails with one message naming the table or the column, never exit 0 with another
    target.
"""
import os
import signal
import time

import lktest as L

L.require_pg()
t = L.Suite("test_key_spelling")

DEADLINE = 120  # seconds a daemon gets to converge (never a timing assertion)

# Hostile writer sessions: every setting a key's text could depend on, each far from
# lockstep's own (docs/types.md).
HOSTILE = [
    ["SET TimeZone = 'America/St_Johns'", "SET DateStyle = 'SQL, DMY'",
     "SET IntervalStyle = 'postgres_verbose'", "SET extra_float_digits = -15",
     "SET lc_monetary = 'C'", "SET bytea_output = 'escape'"],
    ["SET TimeZone = 'Asia/Kathmandu'", "SET DateStyle = 'German, DMY'",
     "SET IntervalStyle = 'sql_standard'", "SET extra_float_digits = 0",
     "SET bytea_output = 'escape'"],
]

# name -> (SQL type, values as text). Each list has at least 5 values: v0, v1, v2 exist
# before the snapshot; writers update v0, move v1 to v3, delete v2 and insert it again,
# insert v4. Values are written as typed literals ('text'::type) in ISO forms, which every
# DateStyle and IntervalStyle reads alike.
KEY_TYPES = {
    "int": ("bigint", ["1", "-9223372036854775808", "42", "9223372036854775807", "0"]),
    "text": ("text", ["a", " padded  ", "Zoë 北京", "", "back\\slash \"q\" 'q'"]),
    "varchar": ("varchar(20)", ["a", "trailing  ", "b", "Straße", "x"]),
    "char": ("char(6)", ["ab", "abcdef", "x y", "q", ""]),
    "uuid": ("uuid", ["A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "{00000000-0000-0000-0000-000000000001}",
                      "ffffffff-ffff-ffff-ffff-ffffffffffff", "12345678123456781234567812345678",
                      "00000000-0000-0000-0000-000000000000"]),
    "numeric": ("numeric", ["1.50", "-0.001", "1e20", "123456789012345678901234567890.123", "0"]),
    "float8": ("double precision", ["0.1", "1e-300", "-2.5", "3.141592653589793", "1e300"]),
    "float4": ("real", ["0.1", "1.5", "-3.4e38", "3.3333333", "16777216"]),
    "date": ("date", ["1850-03-01", "2020-02-29", "0500-01-01", "1899-12-31", "2038-01-19"]),
    "timestamp": ("timestamp", ["1850-03-01 12:34:56.789", "2020-02-29 00:00:00",
                                "1899-12-31 23:59:59.999999", "0500-01-01 00:00:00",
                                "2038-01-19 03:14:08"]),
    "timestamptz": ("timestamptz", ["1850-03-01 12:00:00+00", "1899-12-31 23:59:59.999999+00",
                                    "2020-06-01 00:00:00+00", "0500-01-01 00:00:00+00",
                                    "1986-01-01 00:00:00+05:45"]),
    "time": ("time", ["12:34:56.5", "00:00:00", "23:59:59.999999", "01:02:03", "13:00"]),
    "timetz": ("timetz", ["12:34:56.5+05:45", "00:00:00-03:30", "23:59:59+00", "01:02:03+14", "13:00-12"]),
    "interval": ("interval", ["1 day 2 hours", "-3 mons", "1 year 2 mons 3 days 04:05:06.789",
                              "-1 day +02:00:00", "0"]),
    "inet": ("inet", ["10.0.0.1", "::1", "192.168.0.0/16", "2001:db8::1/64", "127.0.0.1/32"]),
    "cidr": ("cidr", ["10.0.0.0/8", "2001:db8::/32", "192.168.1.0/24", "0.0.0.0/0", "10.1.2.3/32"]),
    "bytea": ("bytea", ["\\x00ff", "", "\\x5c2c22", "\\x0102", "\\xdeadbeef"]),
    "money": ("money", ["12.34", "-1000", "0", "1234567.89", "0.01"]),
    "jsonb": ("jsonb", ['{"b": 1, "a": [1, 2.50]}', '"s"', "[null, true]", "1.0", '{"k": "v"}']),
    "enum": ("mood", ["happy", "sad", "meh", "ok", "wow"]),
}


def lit(text, typ):
    return "'%s'::%s" % (text.replace("'", "''"), typ)


# A composite key mixing them: (timestamptz, char(4), inet, numeric, interval, boolean).
MIX_COLS = ["a", "b", "c", "d", "e", "f"]
MIX_TYPES = ["timestamptz", "char(4)", "inet", "numeric", "interval", "boolean"]
MIX_DDL = ("CREATE TABLE k_mix (a timestamptz, b char(4), c inet, d numeric, e interval, f boolean, "
           "v int NOT NULL, note text, PRIMARY KEY (a, b, c, d, e, f))")
MIX_VALUES = [
    ("1850-03-01 12:00:00+00", "ab", "10.0.0.1", "1.50", "1 day", "true"),
    ("1899-01-01 00:00:00+00", "x", "::1", "-0.001", "-3 mons", "false"),
    ("2020-01-01 00:00:00+00", "abcd", "192.168.0.0/16", "1e20", "1 year 2 mons", "true"),
    ("0500-01-01 00:00:00+00", "", "127.0.0.1", "0", "04:05:06.789", "false"),
    ("1986-01-01 00:00:00+05:45", "z z", "2001:db8::1/64", "7", "-1 day +02:00:00", "true"),
]


def tables():
    """[(table, key columns, [key value tuples as SQL])] for every keyed table."""
    out = [("k_%s" % n, ["k"], ["(%s)" % lit(v, typ) for v in vals]) for n, (typ, vals) in KEY_TYPES.items()]
    out.append(("k_mix", MIX_COLS, ["(%s)" % ", ".join(lit(v, typ) for v, typ in zip(row, MIX_TYPES))
                                    for row in MIX_VALUES]))
    return out


def create_tables(url):
    L.execute(url, "CREATE TYPE mood AS ENUM ('sad', 'meh', 'ok', 'happy', 'wow')")
    for n, (typ, _) in KEY_TYPES.items():
        L.execute(url, "CREATE TABLE k_%s (k %s PRIMARY KEY, v int NOT NULL, note text)" % (n, typ))
    L.execute(url, MIX_DDL)


def col_list(cols):
    """k, or (a, b, ...): the left side of a key comparison or of SET."""
    return cols[0] if len(cols) == 1 else "(%s)" % ", ".join(cols)


def cond(cols, val):
    return "%s = %s" % (col_list(cols), val)


def insert(cur, table, cols, val, v, note="n"):
    cur.execute("INSERT INTO %s (%s, v, note) VALUES (%s, %d, '%s')"
                % (table, ", ".join(cols), val[1:-1], v, note))


def before_snapshot(url):
    c = L.connect(url)
    c.autocommit = True
    try:
        with c.cursor() as cur:
            for table, cols, vals in tables():
                for i in range(3):
                    insert(cur, table, cols, vals[i], 1, "before")
    finally:
        c.close()


def session(url, settings):
    """An autocommit connection with the given SET statements run."""
    c = L.connect(url)
    c.autocommit = True
    with c.cursor() as cur:
        for s in settings:
            cur.execute(s)
    return c


def write_hostile(url, round_=0, sessions=HOSTILE):
    """Every kind of write on every keyed table, from two sessions (default: hostile) in
    turn. round_ > 0 writes again over what the first round left (the daemon case)."""
    conns = [session(url, sessions[0]), session(url, sessions[1])]
    try:
        for n, (table, cols, vals) in enumerate(tables()):
            a = conns[n % 2].cursor()
            b = conns[(n + 1) % 2].cursor()
            if round_ > 0:
                a.execute("UPDATE %s SET v = v + 10, note = 'round %d' WHERE %s"
                          % (table, round_, cond(cols, vals[0])))
                b.execute("DELETE FROM %s WHERE %s" % (table, cond(cols, vals[3])))
                insert(a, table, cols, vals[1], round_, "round")
                continue
            a.execute("UPDATE %s SET v = v + 1, note = 'updated' WHERE %s" % (table, cond(cols, vals[0])))
            # a key-changing update: the old key is gone, the new one is there
            b.execute("UPDATE %s SET %s = %s, v = v + 1 WHERE %s"
                      % (table, col_list(cols), vals[3], cond(cols, vals[1])))
            a.execute("DELETE FROM %s WHERE %s" % (table, cond(cols, vals[2])))
            insert(b, table, cols, vals[4], 1, "inserted")
            # one transaction: a key deleted and inserted again with other values
            a.execute("BEGIN")
            a.execute("DELETE FROM %s WHERE %s" % (table, cond(cols, vals[4])))
            insert(a, table, cols, vals[4], 7, "again")
            a.execute("COMMIT")
            # one transaction: a key inserted and deleted (never visible)
            b.execute("BEGIN")
            insert(b, table, cols, vals[2], 9, "ghost")
            b.execute("DELETE FROM %s WHERE %s" % (table, cond(cols, vals[2])))
            b.execute("COMMIT")
            insert(a, table, cols, vals[2], 5, "back")
    finally:
        for c in conns:
            c.close()


def jobs():
    """Two real-time jobs per keyed table: into PostgreSQL (pg) and into SQLite (sq)."""
    jobs = {}
    for table, _, _ in tables():
        for tgt in ("pg", "sq"):
            jobs["%s_%s" % (table, tgt)] = {
                "source": {"db": "src", "table": table},
                "target": {"db": tgt, "table": table, "create": True},
                "mode": "realtime", "batch": 3}
    return jobs


# Tables the cross-engine oracle cannot key or type alike on both sides: JSON keys (a dict
# is no key) and timetz (lockstep moves it as text: see docs/types.md). For them the SQLite
# target must hold exactly the text PostgreSQL prints with lockstep's settings.
TEXT_ORACLE = ("k_jsonb", "k_timetz")


def text_rows(url, table):
    """Sorted rows of k, v, note as text: PostgreSQL's output in lockstep's pinned session, or
    SQLite's stored text."""
    if L.is_sqlite(url):
        import sqlite3
        c = sqlite3.connect(L.sqlite_path(url))
        try:
            return sorted(tuple(None if x is None else str(x) for x in r)
                          for r in c.execute('SELECT k, v, note FROM "%s"' % table))
        finally:
            c.close()
    c = L.connect(url)
    try:
        with c.cursor() as cur:
            cur.execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'")
            cur.execute("SELECT pg_catalog.format('%s', k), v::text, note FROM " + table)
            return sorted(cur.fetchall())
    finally:
        c.close()


def differences(src, sqlite_path, table, cols):
    """'' when the table's two targets equal the source, else why not (independent oracles)."""
    a, b = L.pg_md5(src, table, cols), L.pg_md5(DST_PG, table, cols)
    if a != b or a[1] == 0:
        return "PostgreSQL target: source %r, target %r" % (a, b)
    if table in TEXT_ORACLE:
        ra, rb = text_rows(src, table), text_rows("sqlite:" + sqlite_path, table)
        return "" if ra == rb else "SQLite target: source %r\ntarget %r" % (ra, rb)
    ra = L.rows_canonical(src, table, cols)
    rb = L.rows_canonical("sqlite:" + sqlite_path, table, cols)
    diff = L.compare_rows(ra, rb)
    return "SQLite target:\n" + L.describe_diff(ra, rb, diff) if diff else ""


def check_equal(src, sqlite_path, what):
    """One check per table: the oracles find both targets equal to the source."""
    for table, cols, _ in tables():
        why = differences(src, sqlite_path, table, cols)
        t.check(not why, "%s: %s into PostgreSQL and into SQLite equals the source" % (what, table), why)


def converged(src, sqlite_path):
    return all(not differences(src, sqlite_path, table, cols) for table, cols, _ in tables())


DST_PG = None


def setup(name, sqlite_name):
    global DST_PG
    src = L.new_db(name + "_src")
    DST_PG = L.new_db(name + "_dst")
    create_tables(src)
    L.execute(DST_PG, "CREATE TYPE mood AS ENUM ('sad', 'meh', 'ok', 'happy', 'wow')")
    w = L.Workdir(name)
    path = w.file(sqlite_name)
    cfg = L.sync_config(w, {"src": src, "pg": DST_PG, "sq": "sqlite:" + path}, jobs())
    before_snapshot(src)
    return src, path, cfg


def sync_all(cfg, what, binary=None):
    """`lockstep sync JOB --json` of every job (by `binary`, default LK_BIN), each checked to
    exit 0; returns {job: summary}."""
    out = {}
    for job in jobs():
        rc, so, se = run_with(binary, ["sync", job, "--json"], cfg)
        summary = L.last_json(so)
        t.check(rc == 0 and summary is not None and summary.get("status") == "succeeded",
                "%s: %s exits 0" % (what, job), L.show(rc, so, se))
        out[job] = summary
    return out


def run_with(binary, args, cfg):
    """run_lockstep with another lockstep binary (None: LK_BIN)."""
    old = os.environ.get("LK_BIN")
    if binary:
        os.environ["LK_BIN"] = binary
    try:
        return L.run_lockstep(args, cfg)
    finally:
        if old is None:
            os.environ.pop("LK_BIN", None)
        else:
            os.environ["LK_BIN"] = old


# ---------------------------------------------------------------------------


def test_sync_catch_up():
    src, path, cfg = setup("keysp", "keysp.db")
    sync_all(cfg, "first sync (snapshot)")
    write_hostile(src)
    sync_all(cfg, "catch-up sync")
    check_equal(src, path, "sync")
    # The changelog holds keys in lockstep's own spelling, whatever the writer's settings.
    logged = L.execute(src, "SELECT DISTINCT key::text FROM lockstep_cdc.changelog l "
                            "WHERE l.relid = 'k_timestamptz'::regclass")
    t.check(logged and all(r[0].endswith('+00"]') for r in logged),
            "timestamptz keys are logged in UTC and ISO, whatever the writer's TimeZone and DateStyle",
            repr(logged))
    char = L.execute(src, "SELECT DISTINCT key::text FROM lockstep_cdc.changelog l "
                          "WHERE l.relid = 'k_char'::regclass")
    t.check(char and all(len(r[0]) == len('["abcdef"]') for r in char),
            "char(6) keys are logged as the type prints them (padded)", repr(char))


def test_daemon_stream():
    src, path, cfg = setup("keysd", "keysd.db")
    sync_all(cfg, "first sync (snapshot)")
    d = L.start_lockstep(["run"], cfg)
    try:
        write_hostile(src)
        write_hostile(src, round_=1)
        ok = L.wait_for(lambda: converged(src, path), deadline=DEADLINE, step=1)
        t.check(ok, "lockstep run: every target converges on its source under hostile writers")
        check_equal(src, path, "run")
        d.send_signal(signal.SIGTERM)
        try:
            rc = d.wait(timeout=60)
        except Exception:  # noqa: BLE001 - reported below
            rc = None
        out, err = d.communicate(timeout=10) if rc is not None else ("", "")
        t.check(rc == 0, "lockstep run: SIGTERM exits 0", L.show(rc, out, err))
    finally:
        if d.poll() is None:
            d.kill()


OLD_BIN = os.environ.get("LK_OLD_BIN", "")


# What version 1 supported: writers in any TimeZone, with ISO dates and default styles.
MILD = [["SET TimeZone = 'Europe/Paris'"], ["SET TimeZone = 'Asia/Kathmandu'"]]


def test_upgrade_in_place():
    t.check(os.access(OLD_BIN, os.X_OK), "the build before this change is at %s (LK_OLD_BIN)" % OLD_BIN)
    src, path, cfg = setup("keysu", "keysu.db")
    sync_all(cfg, "first sync by the old build", binary=OLD_BIN)
    t.eq(L.scalar(src, "SELECT max(version) FROM lockstep_cdc.meta"), 1,
         "the old build installed capture version 1")
    write_hostile(src, sessions=MILD)  # logged by version 1's function
    entries = dict(L.execute(src, "SELECT relid::regclass::text, count(*) FROM lockstep_cdc.changelog GROUP BY 1"))
    rows = dict((table, L.count_rows(src, table)) for table, _, _ in tables())
    res = sync_all(cfg, "sync by this build, over the old build's capture")
    # Tables keyed by char(n) re-snapshot once: version 1 logged those keys unpadded.
    padded = ("k_char", "k_mix")
    for job, s in res.items():
        table = job.rsplit("_", 1)[0]
        most = entries.get(table, 0) + (rows[table] if table in padded else 0)
        t.check(s is not None and 0 < s.get("rowsRead", 1 << 60) <= most,
                "%s: no re-copy after the upgrade (rowsRead %s, at most %d)"
                % (job, s and s.get("rowsRead"), most), repr(s))
    t.eq(L.scalar(src, "SELECT max(version) FROM lockstep_cdc.meta"), 2, "meta says version 2")
    cfgs = L.execute(src, "SELECT p.proconfig::text FROM pg_proc p JOIN pg_trigger g ON g.tgfoid = p.oid "
                          "WHERE g.tgrelid = 'k_timestamptz'::regclass AND g.tgname = 'lockstep_cdc_capture'")
    t.check(cfgs and "TimeZone=UTC" in (cfgs[0][0] or "") and "DateStyle" in (cfgs[0][0] or ""),
            "the table's capture function was remade in place and pins its settings", repr(cfgs))
    gaps = sorted(r[0] for r in L.execute(
        src, "SELECT relid::regclass::text FROM lockstep_cdc.changelog WHERE op = 'G'"))
    t.eq(gaps, sorted(padded), "the upgrade logs a gap for the char(n)-keyed tables only")
    check_equal(src, path, "upgrade")
    # Hostile writes, now through the new function.
    write_hostile(src, round_=1)
    sync_all(cfg, "sync after the upgrade")
    check_equal(src, path, "after the upgrade")
    rc, so, se = run_with(OLD_BIN, ["sync", "k_int_pg"], cfg)
    t.check(rc != 0 and "newer lockstep" in se, "the old build refuses capture made by this one",
            L.show(rc, so, se))


# ---------------------------------------------------------------------------
# case 11: key columns changed under the job


_app_keys = [1000]


def app_writes(url, table, cols, what):
    """INSERT, UPDATE (of a new row and of an old one) and DELETE as an application would;
    each must succeed."""
    errors = []
    _app_keys[0] += 1
    new, old = _app_keys[0], _app_keys[0] - 990
    c = L.connect(url)
    c.autocommit = True
    try:
        with c.cursor() as cur:
            for sql in ("INSERT INTO %s (%s, %s) VALUES ('%d', 'x')" % (table, cols[0], cols[1], new),
                        "UPDATE %s SET %s = 'y' WHERE %s = '%d'" % (table, cols[1], cols[0], new),
                        "UPDATE %s SET %s = 'z' WHERE %s = '%d'" % (table, cols[1], cols[0], old),
                        "DELETE FROM %s WHERE %s = '%d'" % (table, cols[0], old + 1)):
                try:
                    cur.execute(sql)
                except Exception as e:  # noqa: BLE001 - collected and reported
                    errors.append("%s: %s" % (sql, e))
    finally:
        c.close()
    t.eq(errors, [], "%s: the application's INSERT, UPDATE and DELETE all succeed" % what)


def schema_setup(name):
    src = L.new_db(name + "_src")
    dst = L.new_db(name + "_dst")
    L.execute(src, "CREATE TABLE s (id int PRIMARY KEY, note text)")
    L.execute(src, "INSERT INTO s SELECT g, 'n' || g FROM generate_series(1, 20) g")
    w = L.Workdir(name)
    cfg = L.sync_config(w, {"src": src, "dst": dst},
                        {"s": {"source": {"db": "src", "table": "s"},
                               "target": {"db": "dst", "create": True}, "mode": "realtime"}})
    L.sync(t, cfg, "s")
    app_writes(src, "s", ["id", "note"], "%s, before the change" % name)
    L.sync(t, cfg, "s")
    t.eq(L.pg_md5(src, "s", ["id"]), L.pg_md5(dst, "s", ["id"]), "%s: equal before the change" % name)
    return src, dst, cfg


def converge_or_say(cfg, src, dst, what, cols, key, words):
    """The next sync converges on the source's current columns, or fails naming the cause."""
    rc, out, err = L.run_lockstep(["sync", "s", "--json"], cfg)
    if rc == 0:
        a = L.pg_md5(src, "s", key, cols)
        b = L.pg_md5(dst, "s", key, cols)
        t.check(a == b, "%s: the next sync exits 0 and the target equals the source" % what,
                "source %r target %r\n%s" % (a, b, L.show(rc, out, err)))
        return rc
    msgs = [l for l in err.splitlines() if l.startswith("lockstep:")]
    t.check(len(msgs) == 1 and any(w in msgs[0] for w in words),
            "%s: the next sync fails with one message naming the cause (%s)" % (what, " or ".join(words)),
            L.show(rc, out, err))
    return rc


def gap_logged(src, what):
    n = L.scalar(src, "SELECT count(*) FROM lockstep_cdc.changelog WHERE op = 'G'")
    t.check(n > 0, "%s: capture logged a gap entry where it could not read a key" % what, "entries: %d" % n)


def test_rename_key_column():
    src, dst, cfg = schema_setup("keyren")
    L.execute(src, "ALTER TABLE s RENAME COLUMN id TO ident")
    app_writes(src, "s", ["ident", "note"], "rename")
    gap_logged(src, "rename")
    converge_or_say(cfg, src, dst, "rename", None, ["ident"], ["ident", '"id"', "'id'", "key column"])


def test_drop_key_column():
    src, dst, cfg = schema_setup("keydrop")
    L.execute(src, "ALTER TABLE s ADD COLUMN id2 int")
    L.execute(src, "UPDATE s SET id2 = id")
    # the application's writes go on between the two statements too
    L.execute(src, "ALTER TABLE s DROP CONSTRAINT s_pkey")
    app_writes(src, "s", ["id", "note"], "drop: primary key dropped")
    L.execute(src, "ALTER TABLE s DROP COLUMN id")
    app_writes(src, "s", ["id2", "note"], "drop: key column dropped")
    gap_logged(src, "drop")
    converge_or_say(cfg, src, dst, "drop", None, ["id2"], ["primary key", "key", "'id'", '"id"'])


def test_retype_key_column():
    src, dst, cfg = schema_setup("keytype")
    c = L.connect(src)  # a session that has run the trigger before the change
    c.autocommit = True
    with c.cursor() as cur:
        cur.execute("UPDATE s SET note = 'warm' WHERE id = 4")
        L.execute(src, "ALTER TABLE s ALTER COLUMN id TYPE bigint")
        cur.execute("UPDATE s SET note = 'after' WHERE id = 4")
        cur.execute("INSERT INTO s VALUES (5000, 'new')")
    c.close()
    app_writes(src, "s", ["id", "note"], "retype")
    rc = converge_or_say(cfg, src, dst, "retype", None, ["id"], ["id", "type"])
    t.eq(rc, 0, "retype: the next sync converges (capture is remade, the job re-snapshots)")
    L.execute(src, "ALTER TABLE s ALTER COLUMN id TYPE text")
    app_writes(src, "s", ["id", "note"], "retype to text")
    rc, out, err = L.run_lockstep(["sync", "s", "--json"], cfg)
    if rc == 0:
        a = [r[0] for r in L.execute(src, "SELECT id::text || '|' || coalesce(note, '') FROM s ORDER BY id::bigint")]
        b = [r[0] for r in L.execute(dst, "SELECT id::text || '|' || coalesce(note, '') FROM s ORDER BY id::bigint")]
        t.check(a == b, "retype to text: the next sync exits 0 and the target holds the source's rows",
                L.show(rc, out, err))
    else:
        t.check("id" in err or "type" in err, "retype to text: the next sync fails naming the cause",
                L.show(rc, out, err))


def test_retype_while_streaming():
    src, dst, cfg = schema_setup("keylive")
    d = L.start_lockstep(["run"], cfg, env={"LK_LOG": "info"})
    try:
        L.execute(src, "UPDATE s SET note = 'streamed' WHERE id = 5")
        t.check(L.wait_for(lambda: L.pg_md5(src, "s", ["id"]) == L.pg_md5(dst, "s", ["id"]), deadline=DEADLINE),
                "live: the daemon streams before the change")
        L.execute(src, "ALTER TABLE s ALTER COLUMN id TYPE bigint")
        app_writes(src, "s", ["id", "note"], "live retype")
        L.execute(src, "INSERT INTO s VALUES (7000, 'after the change')")
        ok = L.wait_for(lambda: L.pg_md5(src, "s", ["id"]) == L.pg_md5(dst, "s", ["id"]),
                        deadline=DEADLINE, step=0.5)
        t.check(ok, "live retype: the daemon stops the stream, remakes capture, re-snapshots and converges",
                "source %r target %r" % (L.pg_md5(src, "s", ["id"]), L.pg_md5(dst, "s", ["id"])))
        d.send_signal(signal.SIGTERM)
        rc = d.wait(timeout=60)
        out, err = d.communicate(timeout=10)
        t.check(rc == 0, "live retype: SIGTERM exits 0", L.show(rc, out, err))
        t.check("a key column of" in err and "re-snapshot" in err,
                "live retype: the log says why the stream stopped", L.show(rc, "", err))
    finally:
        if d.poll() is None:
            d.kill()


t.case(test_sync_catch_up)
t.case(test_daemon_stream)
if OLD_BIN:  # a manual check (see the docstring): the suite has no older build
    t.case(test_upgrade_in_place)
t.case(test_rename_key_column)
t.case(test_drop_key_column)
t.case(test_retype_key_column)
t.case(test_retype_while_streaming)
t.finish()
