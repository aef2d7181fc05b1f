"""lktest - helpers for lockstep's integration tests.

Every integration test is a script run by CTest with Debian's /usr/bin/python3
(python3-psycopg2) and these variables:

  LK_BIN    the lockstep binary under test
  LK_PGDIR  the cluster folder written by pg-test-env.sh (holds `env`)
  LK_SCALE  optional table-size multiplier (CI's sanitizer build uses 0.1)

The oracles here never use lockstep: PostgreSQL-to-PostgreSQL equality is an
md5 over `t::text` computed by each server, and cross-engine equality fetches
rows with psycopg2 / sqlite3 and converts every value to one canonical Python
form. A test reports with `Suite`, whose last printed line is
"N passed, M failed"; the exit status is 0 only when nothing failed. Exit 77 is
a skip (no PostgreSQL), turned into a failure under CI or LK_REQUIRE_PG (strict()).
"""

import datetime
import decimal
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

try:
    import psycopg2
    import psycopg2.errors
    import psycopg2.extensions
    import psycopg2.extras
    from psycopg2 import sql as pgsql
except ImportError:  # reported by require_pg()
    psycopg2 = None

SKIP = 77
UTC = datetime.timezone.utc
POSITION_TABLES = ("lockstep_sync.position", "lockstep_sync_position")

# ---------------------------------------------------------------------------
# environment, skipping, scale


def env_on(name):
    """True when variable name is set to anything but "", 0, false, no or off."""
    return os.environ.get(name, "").lower() not in ("", "0", "false", "no", "off")


def strict():
    """True when a missing requirement (PostgreSQL, a tool) must fail rather than skip:
    under CI (CI=true, CI=1, CI=yes, ...) or LK_REQUIRE_PG=1. pg-test-env.sh's
    require_pg_strict and tools/ctest-run.sh apply the same rule."""
    return env_on("CI") or env_on("LK_REQUIRE_PG")


def skip_or_fail(reason):
    """Skips the test (exit 77), or fails it (exit 1) under CI."""
    if strict():
        print("FAIL: %s (CI or LK_REQUIRE_PG is set: PostgreSQL is required)" % reason)
        print("0 passed, 1 failed")
        sys.exit(1)
    print("SKIP: %s" % reason)
    sys.exit(SKIP)


def scale(n):
    """n multiplied by LK_SCALE (default 1), at least 1."""
    try:
        f = float(os.environ.get("LK_SCALE") or 1)
    except ValueError:
        f = 1.0
    return max(1, int(n * f))


def lk_bin():
    b = os.environ.get("LK_BIN")
    if not b:
        here = os.path.dirname(os.path.abspath(__file__))
        b = os.path.join(here, "..", "..", "build", "lockstep")
    return os.path.abspath(b)


# The cluster script beside this file (what CTest's pg_start/pg_stop run).
PGENV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pg-test-env.sh")


def _read_env(d):
    """{name: value} from the `env` file pg-test-env.sh writes into cluster folder d."""
    vals = {}
    with open(os.path.join(d, "env")) as f:
        for line in f:
            line = line.strip()
            if "=" in line:
                k, v = line.split("=", 1)
                vals[k] = v
    return vals


_pg_info = None


def pg():
    """The test cluster's connection info: dict host, port, user, sockdir, bindir."""
    global _pg_info
    if _pg_info is None:
        d = os.environ.get("LK_PGDIR")
        if not d:
            raise RuntimeError("LK_PGDIR is not set")
        vals = _read_env(d)
        _pg_info = {
            "host": vals.get("PGHOST", "127.0.0.1"),
            "port": int(vals["PGPORT"]),
            "user": vals.get("PGUSER", "postgres"),
            "sockdir": vals.get("PGSOCKDIR"),
            "bindir": vals.get("PGBINDIR"),
            "dir": d,
        }
    return _pg_info


def pg_url(db="postgres"):
    i = pg()
    return "postgresql://%s@%s:%d/%s" % (i["user"], i["host"], i["port"], db)


def require_pg():
    """Skips (77), or fails under CI, unless psycopg2, LK_BIN and the cluster are usable."""
    if psycopg2 is None:
        skip_or_fail("python3-psycopg2 is not installed for %s" % sys.executable)
    d = os.environ.get("LK_PGDIR")
    if not d or not os.path.exists(os.path.join(d, "env")):
        skip_or_fail("no PostgreSQL test cluster (LK_PGDIR=%r has no env file)" % d)
    last = None
    for _ in range(20):
        try:
            c = psycopg2.connect(pg_url(), connect_timeout=5)
            c.close()
            break
        except psycopg2.OperationalError as e:
            last = e
            time.sleep(0.5)
    else:
        skip_or_fail("cannot connect to the test cluster: %s" % last)
    if not os.access(lk_bin(), os.X_OK):
        # The binary is ours to test: its absence is a failure, never a skip.
        print("FAIL: LK_BIN %s is not an executable" % lk_bin())
        print("0 passed, 1 failed")
        sys.exit(1)


def connect(url):
    """A psycopg2 connection in autocommit mode, session time zone UTC."""
    c = psycopg2.connect(url, connect_timeout=10)
    c.autocommit = True
    with c.cursor() as cur:
        cur.execute("SET TimeZone = 'UTC'")
    return c


_created_dbs = []


def _dbname(name):
    name = re.sub(r"[^a-z0-9_]", "_", name.lower())
    return "t_%s_%d" % (name, os.getpid())


def new_db(name):
    """Creates (after dropping) database t_<name>_<pid> and returns its URL."""
    db = _dbname(name)
    c = connect(pg_url())
    try:
        with c.cursor() as cur:
            cur.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(db)))
            cur.execute(pgsql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(
                pgsql.Identifier(db)))
    finally:
        c.close()
    _created_dbs.append(db)
    return pg_url(db)


def drop_dbs():
    """Drops the databases this process created (called when a suite passes)."""
    if not _created_dbs:
        return
    c = connect(pg_url())
    try:
        with c.cursor() as cur:
            for db in _created_dbs:
                cur.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(db)))
    finally:
        c.close()
    del _created_dbs[:]


def drop_one(url):
    """Drops one database made by new_db() (frees disk early in big tests)."""
    db = url.rsplit("/", 1)[1]
    c = connect(pg_url())
    try:
        with c.cursor() as cur:
            cur.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(db)))
    finally:
        c.close()
    if db in _created_dbs:
        _created_dbs.remove(db)


def execute(url, query, params=None):
    """Runs one statement; returns all rows when it returns any, else the rowcount."""
    c = connect(url)
    try:
        with c.cursor() as cur:
            cur.execute(query, params)
            if cur.description is not None:
                return cur.fetchall()
            return cur.rowcount
    finally:
        c.close()


def sql(url, *stmts):
    """Runs statements on one connection, each in its own transaction (autocommit)."""
    c = connect(url)
    try:
        with c.cursor() as cur:
            for s in stmts:
                cur.execute(s)
    finally:
        c.close()


def scalar(url, query, params=None):
    rows = execute(url, query, params)
    return rows[0][0]


def sqlite_path(url):
    return url[len("sqlite:"):] if url.startswith("sqlite:") else url


def is_sqlite(url):
    return url.startswith("sqlite:") or url.endswith(".db") or url.endswith(".sqlite")


def count_rows(url, table, where=None):
    """Row count of a table on either engine (0 when the table does not exist)."""
    if is_sqlite(url):
        c = sqlite3.connect(sqlite_path(url))
        try:
            q = 'SELECT count(*) FROM "%s"' % table.replace('"', '""')
            if where:
                q += " WHERE " + where
            try:
                return c.execute(q).fetchone()[0]
            except sqlite3.OperationalError:
                return 0
        finally:
            c.close()
    q = pgsql.SQL("SELECT count(*) FROM {}").format(_pg_ident(table))
    if where:
        q = q + pgsql.SQL(" WHERE " + where)
    try:
        return scalar(url, q)
    except psycopg2.errors.UndefinedTable:
        return 0


class Cluster:
    """A throw-away cluster of a test's own, from pg-test-env.sh, that it may crash,
    stop and start (doing that to the shared cluster would break the tests beside it).

    The folder is a new temporary one named PREFIX + name; the script skips (77) when
    it finds no PostgreSQL, which becomes skip_or_fail(). sync_commit=True sets
    synchronous_commit = on (the script's default is off), so that a commit
    acknowledged before a crash survives it. destroy() stops the server and removes
    the folder."""

    def __init__(self, name, prefix="lk_cl_", sync_commit=False):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="%s%s_" % (prefix, name))
        p = subprocess.run(["bash", PGENV, "start", self.dir], capture_output=True, text=True)
        if p.returncode == SKIP:
            skip_or_fail("pg-test-env.sh found no PostgreSQL")
        if p.returncode != 0:
            raise RuntimeError("cluster %s did not start:\n%s%s" % (name, p.stdout, p.stderr))
        env = _read_env(self.dir)
        self.port = int(env["PGPORT"])
        self.bindir = env["PGBINDIR"]
        if sync_commit:
            try:
                execute(self.url(), "ALTER SYSTEM SET synchronous_commit = on")
                execute(self.url(), "SELECT pg_reload_conf()")
            except Exception:
                self.destroy()
                raise

    def url(self, db="postgres"):
        return "postgresql://postgres@127.0.0.1:%d/%s" % (self.port, db)

    def _pg_ctl(self, *args):
        cmd = [os.path.join(self.bindir, "pg_ctl"), "-D", os.path.join(self.dir, "data")] + list(args)
        if os.geteuid() == 0:  # PostgreSQL refuses root: pg-test-env.sh runs it as `postgres`
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError("pg_ctl %s failed: %s%s" % (" ".join(args), p.stdout, p.stderr))

    def stop_immediate(self):
        """Crash-stops the server (pg_ctl -m immediate)."""
        self._pg_ctl("-m", "immediate", "-w", "-t", "60", "stop")

    def stop_fast(self):
        """Shuts the server down cleanly (pg_ctl -m fast)."""
        self._pg_ctl("-m", "fast", "-w", "-t", "60", "stop")

    def start(self):
        """Starts the server again after a stop_*(), on the same port."""
        self._pg_ctl("-l", os.path.join(self.dir, "pg.log"), "-w", "-t", "60", "start")

    def restart_immediate(self):
        """Crash-stops the server and starts it again, same port (pg-test-env.sh restart-immediate)."""
        p = subprocess.run(["bash", PGENV, "restart-immediate", self.dir], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError("restart-immediate %s failed:\n%s%s" % (self.name, p.stdout, p.stderr))

    def destroy(self):
        """Stops the server and removes its folder."""
        subprocess.run(["bash", PGENV, "stop", self.dir], capture_output=True, text=True)


# ---------------------------------------------------------------------------
# running lockstep


class Workdir:
    """A scratch folder for one test's config, state store and SQLite files.

    Removed at exit when the suite passed; kept (and named) when it failed."""

    def __init__(self, name):
        self.path = tempfile.mkdtemp(prefix="lk_%s_" % name)
        _workdirs.append(self.path)

    def file(self, name):
        return os.path.join(self.path, name)

    def __str__(self):
        return self.path


_workdirs = []


def write_config(dir, yaml_text, name="lockstep.yaml"):
    """Writes yaml_text to DIR/name and returns the path."""
    path = os.path.join(str(dir), name)
    with open(path, "w") as f:
        f.write(yaml_text)
    return path


def yaml(obj, indent=0):
    """A small YAML emitter for configs: dicts become block mappings, lists of
    scalars flow sequences, strings double-quoted (JSON escapes are valid YAML)."""
    pad = "  " * indent
    out = []
    for k, v in obj.items():
        if isinstance(v, dict):
            out.append("%s%s:\n%s" % (pad, k, yaml(v, indent + 1)))
        else:
            out.append("%s%s: %s\n" % (pad, k, _yaml_scalar(v)))
    return "".join(out)


def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_yaml_scalar(x) for x in v) + "]"
    if v is None:
        return "null"
    return json.dumps(str(v), ensure_ascii=False)


def sync_config(dir, databases, jobs, state="sqlite:state.db", extra=None):
    """Writes DIR/lockstep.yaml with `state`, `databases` ({name: url}) and `jobs`
    ({name: job dict}); returns its path."""
    doc = {"state": state, "http": {"listen": "127.0.0.1:0"}}  # any free port: tests run side by side
    doc.update(extra or {})
    doc["databases"] = databases
    doc["jobs"] = jobs
    return write_config(dir, yaml(doc))


def run_lockstep(args, config_path=None, env=None, timeout=300, input=None):
    """Runs `lockstep [-c config_path] ARGS...`; returns (exit code, stdout, stderr).

    env: extra variables on top of ours (a value of None removes one). LK_FAILPOINT
    is removed unless env sets it, so a leftover variable cannot crash a run."""
    cmd = [lk_bin()]
    if config_path:
        cmd += ["-c", str(config_path)]
    cmd += [str(a) for a in args]
    e = dict(os.environ)
    e.pop("LK_FAILPOINT", None)
    e.setdefault("NO_COLOR", "1")
    for k, v in (env or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = str(v)
    try:
        p = subprocess.run(cmd, env=e, input=input, capture_output=True, text=True,
                           timeout=timeout, errors="replace")
    except subprocess.TimeoutExpired as ex:
        out = ex.stdout.decode(errors="replace") if isinstance(ex.stdout, bytes) else (ex.stdout or "")
        err = ex.stderr.decode(errors="replace") if isinstance(ex.stderr, bytes) else (ex.stderr or "")
        return (-999, out, err + "\n[lktest: timed out after %ss: %s]" % (timeout, " ".join(cmd)))
    return (p.returncode, p.stdout, p.stderr)


def start_lockstep(args, config_path=None, env=None):
    """Starts lockstep in the background; returns the Popen (stdout/stderr piped)."""
    cmd = [lk_bin()]
    if config_path:
        cmd += ["-c", str(config_path)]
    cmd += [str(a) for a in args]
    e = dict(os.environ)
    e.pop("LK_FAILPOINT", None)
    for k, v in (env or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = str(v)
    return subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace")


def last_json(stdout):
    """The JSON object on the last non-empty line of stdout, or None."""
    lines = [l for l in stdout.splitlines() if l.strip()]
    if not lines:
        return None
    try:
        v = json.loads(lines[-1])
    except ValueError:
        return None
    return v if isinstance(v, dict) else None


def whole_json(stdout):
    """stdout parsed as one JSON value (falling back to its last line), or None."""
    try:
        return json.loads(stdout)
    except ValueError:
        return last_json(stdout)


def show(rc, out, err, limit=3000):
    """A short description of a lockstep run for failure messages."""
    def tail(s):
        return s if len(s) <= limit else "..." + s[-limit:]
    return "exit %s\n--- stdout ---\n%s\n--- stderr ---\n%s" % (rc, tail(out), tail(err))


def sync(t, cfg, job, *more, env=None, timeout=600, expect=0):
    """Runs `lockstep -c cfg sync JOB --json MORE...`, checks the exit code (and, on
    success, the summary line) with Suite t; returns (rc, summary dict or None, stderr)."""
    rc, out, err = run_lockstep(["sync", job, "--json"] + list(more), cfg, env=env, timeout=timeout)
    summary = last_json(out)
    t.check(rc == expect, "sync %s exits %d" % (" ".join((job,) + more), expect), show(rc, out, err))
    if rc == 0 and expect == 0:
        t.check(summary is not None and summary.get("status") == "succeeded"
                and summary.get("job") == job,
                "sync %s --json: last stdout line is a succeeded summary" % job, show(rc, out, err))
    return rc, summary, err


def verify(t, cfg, job, expect=0, timeout=600):
    """Runs `lockstep verify JOB --json`; checks the exit code and returns the parsed object."""
    rc, out, err = run_lockstep(["verify", job, "--json"], cfg, timeout=timeout)
    obj = whole_json(out)
    t.check(rc == expect, "verify %s exits %d" % (job, expect), show(rc, out, err))
    t.check(isinstance(obj, dict) and obj.get("equal") is (expect == 0),
            "verify %s --json: equal is %s" % (job, expect == 0), show(rc, out, err))
    return obj if isinstance(obj, dict) else {}


def key_matches(jkey, want):
    """True when a key from lockstep's JSON (list of values, maybe as text) equals `want`."""
    if not isinstance(jkey, list) or len(jkey) != len(want):
        return False
    return all(str(a) == str(b) for a, b in zip(jkey, want))


def wait_for(cond, deadline=60, step=0.2):
    """Calls cond() every `step` seconds until it returns a true value or `deadline`
    seconds have passed; returns its last value (so the caller can check or use it)."""
    end = time.monotonic() + deadline
    while True:
        v = cond()
        if v or time.monotonic() > end:
            return v
        time.sleep(step)


# ---------------------------------------------------------------------------
# oracle 1: md5 over t::text, computed by PostgreSQL on each side


def _pg_ident(name):
    """schema.table (or table) as a composable; names are taken literally."""
    if isinstance(name, pgsql.Composable):
        return name
    if "." in name and not name.startswith('"'):
        s, t = name.split(".", 1)
        return pgsql.SQL("{}.{}").format(pgsql.Identifier(s), pgsql.Identifier(t))
    return pgsql.Identifier(name.strip('"'))


def pg_md5(url, table, key_cols, cols=None, where=None):
    """(md5, count) of the rows of `table` as text, ordered by key, over `cols` (all when None).

    md5(string_agg(t::text, '|' ORDER BY key)) over a subquery selecting the columns:
    two PostgreSQL tables with the same columns (names may differ) and values give
    the same digest."""
    sel = pgsql.SQL("*") if not cols else pgsql.SQL(", ").join(pgsql.Identifier(c) for c in cols)
    # The subquery's alias is not a plausible column name: with a column named like the
    # alias, `alias::text` would be that column, and the digest would cover it alone.
    order = pgsql.SQL(", ").join(pgsql.SQL("lk_md5_row.{}").format(pgsql.Identifier(k)) for k in key_cols)
    q = pgsql.SQL("SELECT md5(coalesce(string_agg(lk_md5_row::text, '|' ORDER BY {order}), '')), count(*) "
                  "FROM (SELECT {sel} FROM {tbl}{where}) lk_md5_row").format(
        order=order, sel=sel, tbl=_pg_ident(table),
        where=pgsql.SQL(" WHERE " + where) if where else pgsql.SQL(""))
    r = execute(url, q)
    return (r[0][0], r[0][1])


def pg_columns(url, table):
    """[(name, format_type)] of a PostgreSQL table, in column order."""
    if "." in table and not table.startswith('"'):
        schema, name = table.split(".", 1)
    else:
        schema, name = "public", table.strip('"')
    return [(r[0], r[1]) for r in execute(
        url,
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum", (schema, name))]


# ---------------------------------------------------------------------------
# oracle 2: rows from either engine in one canonical Python form
#
# What each logical type must keep across engines is docs/types.md's "What crosses
# exactly"; canonical() turns a value read by psycopg2 or sqlite3 into a Python value
# that holds exactly that much, and _same() compares two of them without Python's
# laxness (True == 1 == 1.0, Decimal("1.5") == Decimal("1.50"), aware times equal
# across offsets, dicts and lists compared with those rules inside).

def logical_type_pg(t):
    """The logical type of a PostgreSQL column from format_type() of its (base) type."""
    t = t.lower()
    if t.endswith("]"):
        return "other"  # arrays travel as their text
    if t in ("bigint", "integer", "smallint", "oid"):
        return "int"
    if t in ("double precision", "real"):
        return "float"
    if t.startswith("numeric"):
        return "numeric"
    if t == "boolean":
        return "bool"
    if t == "uuid":
        return "uuid"
    if t in ("json", "jsonb"):
        return "json"
    if t == "bytea":
        return "bytes"
    if t.startswith("timestamp") and "with time zone" in t:
        return "timestamptz"
    if t.startswith("timestamp"):
        return "timestamp"
    if t == "date":
        return "date"
    if t.startswith("time"):
        return "time"
    if t in ("text", "name", "citext") or t.startswith("character"):
        return "text"
    return "other"


def logical_type_sqlite(decl):
    """The logical type of an SQLite column from its declared type (docs/types.md)."""
    d = (decl or "").upper()
    if "BOOL" in d:
        return "bool"
    if "TIMESTAMPTZ" in d or "TIMESTAMP WITH TIME ZONE" in d:
        return "timestamptz"
    if "TIMESTAMP" in d or "DATETIME" in d:
        return "timestamp"
    if "DATE" in d:
        return "date"
    if "TIME" in d:
        return "time"
    if "UUID" in d:
        return "uuid"
    if "JSON" in d:
        return "json"
    if "NUMERIC" in d or "DECIMAL" in d:
        return "numeric"
    if "BLOB" in d or "BYTEA" in d:
        return "bytes"
    if "INT" in d:
        return "int"
    if "CHAR" in d or "CLOB" in d or "TEXT" in d:
        return "text"
    if "REAL" in d or "FLOA" in d or "DOUB" in d:
        return "float"
    return "other"


class Odd:
    """A value that has not the canonical shape for its column: never equal to a good one,
    equal to another Odd only of the same kind and the same value (of the same type)."""

    def __init__(self, kind, value):
        self.kind, self.value = kind, value

    def __eq__(self, other):
        return (isinstance(other, Odd) and self.kind == other.kind
                and type(self.value) is type(other.value) and self.value == other.value)

    def __hash__(self):
        return hash((self.kind, repr(self.value)))

    def __repr__(self):
        return "Odd(%s: %r)" % (self.kind, self.value)


class NumberOnly:
    """A numeric that SQLite holds as a number (a column of INTEGER, REAL or NUMERIC
    affinity): its value is kept, its scale is not (docs/types.md). Same as a Decimal of
    the same value, whatever its scale."""

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return _same(self, other)

    def __hash__(self):
        return hash(self.value)

    def __repr__(self):
        return "NumberOnly(%s)" % self.value


# re.ASCII: \d and \s must not match other scripts' digits and blanks, which int() and
# Decimal() would read but PostgreSQL does not.
_TS_RE = re.compile(
    r"^(\d{4,})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?"
    r"(Z|[+-]\d\d(?::?\d\d)?)?$", re.ASCII)
_DATE_RE = re.compile(r"^\d{4}-\d\d-\d\d$", re.ASCII)
# time and timetz exactly as PostgreSQL prints them: no trailing zero in the fraction, an
# offset's minutes only when not zero (docs/types.md: the text).
_TIME_RE = re.compile(r"^(\d\d):(\d\d):(\d\d)(?:\.(\d{0,5}[1-9]))?([+-]\d\d(?::(?!00)\d\d)?)?$",
                      re.ASCII)
_NUMERIC_RE = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$", re.ASCII)
_NUMERIC_SPECIAL = {"nan": "NaN", "infinity": "Infinity", "+infinity": "Infinity",
                    "-infinity": "-Infinity", "inf": "Infinity", "+inf": "Infinity",
                    "-inf": "-Infinity"}


def _zone_minutes(zone):
    if zone == "Z":
        return 0
    sign = -1 if zone[0] == "-" else 1
    z = zone[1:].replace(":", "")
    return sign * (int(z[:2]) * 60 + (int(z[2:4]) if len(z) > 2 else 0))


def _parse_ts(s, want_tz):
    m = _TS_RE.match(s)
    if not m:
        return Odd("timestamp text", s)
    y, mo, d, h, mi, se, frac, zone = m.groups()
    us = int((frac or "0").ljust(6, "0"))
    try:
        dt = datetime.datetime(int(y), int(mo), int(d), int(h), int(mi), int(se), us)
    except ValueError:
        return Odd("timestamp text", s)
    if want_tz:
        if zone is None:
            return Odd("timestamptz without zone", s)
        return (dt - datetime.timedelta(minutes=_zone_minutes(zone))).replace(tzinfo=UTC)
    if zone is not None:
        return Odd("timestamp with zone", s)
    return dt


def _parse_time(s):
    """'HH:MM:SS[.ffffff][+HH[:MM]]' (PostgreSQL's time and timetz text) -> time, with a
    fixed-offset tzinfo when the text has an offset; an Odd for any other spelling."""
    m = _TIME_RE.match(s)
    if not m:
        return Odd("time text", s)
    h, mi, se, frac, zone = m.groups()
    tz = None if zone is None else datetime.timezone(datetime.timedelta(minutes=_zone_minutes(zone)))
    try:
        return datetime.time(int(h), int(mi), int(se), int((frac or "0").ljust(6, "0")), tzinfo=tz)
    except ValueError:
        return Odd("time text", s)


def _canon_decimal(d):
    """A Decimal with one spelling per (value, scale), the way PostgreSQL's numeric keeps
    it: the scale is the number of digits after the point, at least 0 (`1e3` is `1000`,
    `1.50e1` is `15.0`), zero has no sign, every NaN is NaN."""
    if d.is_nan():
        return decimal.Decimal("NaN")
    if d.is_infinite():
        return d
    sign, digits, exp = d.as_tuple()
    if exp > 0:
        digits, exp = digits + (0,) * exp, 0
    digits = tuple(digits)
    while len(digits) > 1 and digits[0] == 0:
        digits = digits[1:]
    if digits == (0,):
        sign = 0
    return decimal.Decimal((sign, digits, exp))


def _numeric_text(s):
    """Decimal text as PostgreSQL's numeric input reads it, or an Odd."""
    special = _NUMERIC_SPECIAL.get(s.strip(" \t\n\r\f\v").lower())
    if special:
        return decimal.Decimal(special)
    if not _NUMERIC_RE.match(s):
        return Odd("numeric text", s)
    return _canon_decimal(decimal.Decimal(s.strip(" \t\n\r\f\v")))


def _json_constant(name):
    raise ValueError("not JSON: %s" % name)


def _json_object(pairs):
    return dict(pairs)  # a duplicate key: the last one wins, as in jsonb and jansson


class _JsonNull:
    """A JSON document that is `null`: not SQL NULL (None)."""

    def __repr__(self):
        return "JSON_NULL"


JSON_NULL = _JsonNull()


def _json_text(s):
    """A JSON text parsed: objects as dicts, numbers as canonical Decimals (value and
    scale), strings, True/False/None (JSON_NULL for a whole document that is null); or an
    Odd when it is not JSON."""
    try:
        v = json.loads(s, parse_float=lambda x: _canon_decimal(decimal.Decimal(x)),
                       parse_int=lambda x: _canon_decimal(decimal.Decimal(x)),
                       parse_constant=_json_constant, object_pairs_hook=_json_object)
    except (ValueError, RecursionError):
        return Odd("json text", s)
    return JSON_NULL if v is None else v


def canonical(ltype, v, engine):
    """One canonical Python value for value `v` of logical type `ltype` read from `engine`
    ("pg": what psycopg2 returns, json as text; "sqlite": what the sqlite3 module returns).
    Compare two with _same(), never with ==."""
    if v is None:
        return None
    if isinstance(v, Odd):
        return v
    if ltype == "int":
        return v if isinstance(v, int) and not isinstance(v, bool) else Odd("int", v)
    if ltype == "float":
        if isinstance(v, float):
            return v
        if isinstance(v, int) and not isinstance(v, bool) and float(v) == v:
            return float(v)
        return Odd("float", v)
    if ltype == "numeric":
        if isinstance(v, decimal.Decimal):
            return _canon_decimal(v)
        if isinstance(v, str):
            return _numeric_text(v)
        if engine == "sqlite" and isinstance(v, int) and not isinstance(v, bool):
            return NumberOnly(decimal.Decimal(v))
        if engine == "sqlite" and isinstance(v, float) and v == v:
            # repr: the shortest text that reads back as this double, as lockstep reads it.
            return NumberOnly(_canon_decimal(decimal.Decimal(repr(v).replace("inf", "Infinity"))))
        return Odd("numeric %s" % type(v).__name__, v)
    if ltype == "bool":
        if isinstance(v, bool):
            return v
        if engine == "sqlite" and isinstance(v, int) and v in (0, 1):
            return bool(v)
        return Odd("bool", v)
    if ltype == "bytes":
        if isinstance(v, (bytes, bytearray, memoryview)):
            return bytes(v)
        return Odd("bytes %s" % type(v).__name__, v)
    if ltype == "uuid":
        if isinstance(v, uuid.UUID):
            return str(v)
        if isinstance(v, str):
            try:
                return str(uuid.UUID(v))
            except ValueError:
                return Odd("uuid", v)
        return Odd("uuid", v)
    if ltype == "json":
        if isinstance(v, str):
            return _json_text(v)
        if isinstance(v, (dict, list, int, float, bool)):
            try:  # a Python value given directly: as the JSON text it stands for
                return _json_text(json.dumps(v))
            except (TypeError, ValueError):
                return Odd("json", v)
        return Odd("json %s" % type(v).__name__, v)
    if ltype == "timestamptz":
        if isinstance(v, datetime.datetime):
            if v.tzinfo is None:
                return Odd("timestamptz naive", v)
            return v.astimezone(UTC)
        if isinstance(v, str):
            return _parse_ts(v, True)
        return Odd("timestamptz", v)
    if ltype == "timestamp":
        if isinstance(v, datetime.datetime):
            return v if v.tzinfo is None else Odd("timestamp aware", v)
        if isinstance(v, str):
            return _parse_ts(v, False)
        return Odd("timestamp", v)
    if ltype == "date":
        if isinstance(v, datetime.date) and not isinstance(v, datetime.datetime):
            return v
        if isinstance(v, str) and _DATE_RE.match(v):
            try:
                return datetime.date.fromisoformat(v)
            except ValueError:
                pass
        return Odd("date", v)
    if ltype == "time":
        if isinstance(v, datetime.time):
            off = v.utcoffset()
            return v.replace(tzinfo=None if off is None else datetime.timezone(off))
        if isinstance(v, str):
            return _parse_time(v)
        return Odd("time", v)
    # text, and other (its text as PostgreSQL prints it: _rows_pg reads it as text)
    if isinstance(v, str):
        return v
    return Odd("%s %s" % (ltype, type(v).__name__), v)


class Rows(dict):
    """rows_canonical()'s result: {key tuple: {column: canonical value}}; `dups` counts
    the rows of keys that occur more than once (a difference for compare_rows)."""

    def __init__(self):
        super().__init__()
        self.dups = {}

    def put(self, key, row):
        if key in self:
            self.dups[key] = self.dups.get(key, 1) + 1
        self[key] = row


def rows_canonical(url, table, key_cols, cols=None, where=None):
    """{key tuple: {column: canonical value}} for every row of `table` (a Rows).

    url: a PostgreSQL URL, or "sqlite:PATH" (or a path ending in .db). cols: the
    columns to compare (default: all); key columns are read for the key even when
    `cols` leaves them out. Values are read with psycopg2 or the sqlite3 module,
    never through lockstep."""
    if is_sqlite(url):
        return _rows_sqlite(sqlite_path(url), table, key_cols, cols, where)
    return _rows_pg(url, table, key_cols, cols, where)


# lockstep's pinned session settings (docs/types.md): "other" values are compared as the
# text PostgreSQL prints with them.
_PG_ORACLE_SESSION = ("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; "
                      "SET IntervalStyle = 'iso_8601'; SET extra_float_digits = 3; "
                      "SET bytea_output = 'hex'")


def _pg_oracle_types(url, table):
    """{column: logical type} of a PostgreSQL table; a domain's type is its base type's."""
    if "." in table and not table.startswith('"'):
        schema, name = table.split(".", 1)
    else:
        schema, name = "public", table.strip('"')
    cols = execute(
        url,
        "SELECT a.attname, a.atttypid, a.atttypmod "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum", (schema, name))
    out = {}
    c = connect(url)
    try:
        with c.cursor() as cur:
            for col, typ, mod in cols:
                while True:  # a domain, or a domain over a domain: down to the base type
                    cur.execute("SELECT typtype, typbasetype, typtypmod FROM pg_type "
                                "WHERE oid = %s", (typ,))
                    kind, base, basemod = cur.fetchone()
                    if kind != "d":
                        break
                    typ, mod = base, basemod
                cur.execute("SELECT format_type(%s, %s)", (typ, mod))
                out[col] = logical_type_pg(cur.fetchone()[0])
    finally:
        c.close()
    return out


def _read_cols(types, cols, key_cols, where_):
    cols = list(cols or list(types))
    for col in cols + list(key_cols):
        if col not in types:
            raise RuntimeError("%s: no column %s" % (where_, col))
    return cols, cols + [k for k in key_cols if k not in cols]


def _rows_pg(url, table, key_cols, cols, where):
    types = _pg_oracle_types(url, table)
    if not types:
        raise RuntimeError("%s: no table %s" % (url, table))
    cols, read = _read_cols(types, cols, key_cols, "%s: table %s" % (url, table))
    # "other" as the type prints it (format's %s), not `::text`: inet's cast to text adds
    # the /32 of a host, which no value lockstep moves ever has.
    sel = [pgsql.SQL("CASE WHEN pg_catalog.num_nulls({0}) = 1 THEN NULL ELSE pg_catalog.format('%s', {0}) END"
                     if types[c] == "other" else "{0}").format(pgsql.Identifier(c))
           for c in read]
    q = pgsql.SQL("SELECT {} FROM {}{}").format(
        pgsql.SQL(", ").join(sel), _pg_ident(table),
        pgsql.SQL(" WHERE " + where) if where else pgsql.SQL(""))
    c = connect(url)
    # json/jsonb as text, parsed by canonical() exactly like SQLite's JSON TEXT.
    psycopg2.extras.register_default_json(c, loads=lambda x: x)
    psycopg2.extras.register_default_jsonb(c, loads=lambda x: x)
    out = Rows()
    try:
        with c.cursor() as cur:
            cur.execute(_PG_ORACLE_SESSION)
            cur.execute(q)
            while True:
                batch = cur.fetchmany(5000)
                if not batch:
                    break
                for r in batch:
                    vals = dict((read[i], canonical(types[read[i]], r[i], "pg"))
                                for i in range(len(read)))
                    out.put(tuple(vals[k] for k in key_cols), dict((x, vals[x]) for x in cols))
    finally:
        c.close()
    return out


def _sqlite_text(b):
    """TEXT from SQLite: str, or an Odd holding the bytes when they are not UTF-8."""
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return Odd("text not UTF-8", bytes(b))


def _rows_sqlite(path, table, key_cols, cols, where):
    c = sqlite3.connect(path)
    c.text_factory = _sqlite_text
    try:
        info = c.execute('PRAGMA table_info("%s")' % table.replace('"', '""')).fetchall()
        if not info:
            raise RuntimeError("%s: no table %s" % (path, table))
        types = dict((r[1], logical_type_sqlite(r[2])) for r in info)
        cols, read = _read_cols(types, cols, key_cols, "%s: table %s" % (path, table))
        q = "SELECT %s FROM \"%s\"" % (", ".join('"%s"' % x.replace('"', '""') for x in read),
                                       table.replace('"', '""'))
        if where:
            q += " WHERE " + where
        out = Rows()
        for r in c.execute(q):
            vals = dict((read[i], canonical(types[read[i]], r[i], "sqlite")) for i in range(len(read)))
            out.put(tuple(vals[k] for k in key_cols), dict((x, vals[x]) for x in cols))
        return out
    finally:
        c.close()


def _row_diffs(a, b, k, kb, ignore_cols):
    """Why key k's rows differ ([] when they do not): (kind, detail) pairs."""
    out = []
    if not _same(k, kb):
        out.append(("key", "key %r != %r" % (k, kb)))
    for side, rows in (("left", a), ("right", b)):
        n = getattr(rows, "dups", {}).get(k)
        if n:
            out.append(("dup", "%d rows on the %s" % (n, side)))
    ra, rb = a[k], b[k]
    for col in list(ra) + [x for x in rb if x not in ra]:
        if col in ignore_cols:
            continue
        if col not in rb:
            out.append(("col", "column %s missing on the right" % col))
        elif col not in ra:
            out.append(("col", "column %s missing on the left" % col))
        elif not _same(ra[col], rb[col]):
            out.append(("value", "column %s: %r != %r" % (col, ra[col], rb[col])))
    return out


def compare_rows(a, b, ignore_cols=()):
    """Sorted list of the keys whose rows differ between two rows_canonical() results:
    present on one side only, more than one row for the key on a side, keys equal in
    Python but not exactly (1 and True, 1.5 and 1.50), a column on one side only, or a
    value that differs (_same) in a column that is not in ignore_cols."""
    kb = dict((k, k) for k in b)
    diff = []
    for k in set(a) | set(b):
        if k not in a or k not in b or _row_diffs(a, b, k, kb[k], ignore_cols):
            diff.append(k)
    return sorted(diff, key=repr)


def _same(x, y):
    """Exact equality of canonical values: kinds must match (True is not 1, 1 is not 1.0),
    Decimals must have the same digits and scale, floats compare as doubles (-0.0 equals
    0.0, NaN equals NaN), times compare their offsets too; dicts, lists and tuples are
    compared element by element with the same rules."""
    if isinstance(x, NumberOnly) or isinstance(y, NumberOnly):
        vx = x.value if isinstance(x, NumberOnly) else x
        vy = y.value if isinstance(y, NumberOnly) else y
        return (isinstance(vx, decimal.Decimal) and isinstance(vy, decimal.Decimal)
                and not vx.is_nan() and not vy.is_nan() and vx == vy)
    if type(x) is not type(y):
        return False
    if isinstance(x, float):
        return x == y or (x != x and y != y)
    if isinstance(x, decimal.Decimal):
        return x.as_tuple() == y.as_tuple()
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return len(x) == len(y) and all(_same(p, q) for p, q in zip(x, y))
    if isinstance(x, datetime.time):
        return x.replace(tzinfo=None) == y.replace(tzinfo=None) and x.utcoffset() == y.utcoffset()
    if isinstance(x, datetime.datetime):
        return x == y and x.utcoffset() == y.utcoffset()
    return x == y


def describe_diff(a, b, keys, limit=5, ignore_cols=()):
    """Text showing why the first `limit` of compare_rows()'s keys differ, for failure
    messages (one line per reason: a missing row, key, column or a differing value)."""
    kb = dict((k, k) for k in b)
    lines = []
    for k in keys[:limit]:
        if k not in a or k not in b:
            lines.append("key %r: %s" % (k, "missing on the left" if k not in a else "missing on the right"))
            continue
        for _, what in _row_diffs(a, b, k, kb[k], ignore_cols):
            lines.append("key %r %s" % (k, what))
    if len(keys) > limit:
        lines.append("... and %d more" % (len(keys) - limit))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# test data: a users-like table with every type

# Hostile text fragments: accents, CJK, emoji, quotes, backslashes, tabs and
# newlines, COPY's markers (\N, \.), the oracle's separator, NUL-free.
FRAGMENTS = [
    "José", "Zoë", "Ñandú", "北京", "東京都", "😀🎉", "O'Brien", "back\\slash", "tab\there",
    "new\nline", 'quote"dq', "plain", "", " spaces ", "Ελληνικά", "עברית", "Straße",
    "zero\u200bwidth", "\\N", "\\.", "a|b,c;d", "crlf\r\n", "%s%d", "null", "NULL",
    "🏳️‍🌈", "한국어", "ümlaut", "semi;colon", "{brace}", "[bracket]", "x" * 300,
]

USERS_COLUMNS = ["id", "first_name", "last_name", "email", "phone", "status", "score", "balance",
                 "is_admin", "ext_id", "metadata", "avatar", "created_at", "birthday", "updated_at"]

USERS_PG_DDL = """CREATE TABLE {table} (
    id bigint PRIMARY KEY,
    first_name text NOT NULL,
    last_name text,
    email text,
    phone text,
    status text NOT NULL,
    score double precision,
    balance numeric(20,4),
    is_admin boolean,
    ext_id uuid,
    metadata jsonb,
    avatar bytea,
    created_at timestamptz NOT NULL,
    birthday date,
    updated_at {updated_at_type}{updated_at_extra}
)"""

USERS_SQLITE_DDL = """CREATE TABLE "{table}" (
    id INTEGER PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT,
    email TEXT,
    phone TEXT,
    status TEXT NOT NULL,
    score REAL,
    balance NUMERIC TEXT,
    is_admin BOOLEAN,
    ext_id UUID TEXT,
    metadata JSON TEXT,
    avatar BLOB,
    created_at TIMESTAMPTZ TEXT NOT NULL,
    birthday DATE TEXT,
    updated_at TIMESTAMP TEXT
)"""


def _pg_text_array(values):
    return "ARRAY[%s]::text[]" % ", ".join("E'%s'" % _pg_escape(v) for v in values)


def _pg_escape(s):
    return s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace(
        "\r", "\\r").replace("\t", "\\t")


def users_select_sql(lo, hi, ts_base="2020-01-01 00:00:00+00"):
    """SELECT producing users rows lo..hi (inclusive) server-side; same rows as user_row(i)
    except where noted there. Every nullable column has NULLs."""
    frag = _pg_text_array(FRAGMENTS)
    nf = len(FRAGMENTS)
    return """
SELECT i,
  f[1 + i % {nf}] || ' ' || substr(md5(i::text), 1, 6),
  CASE WHEN i % 13 = 0 THEN NULL ELSE f[1 + (i * 7) % {nf}] || chr(192 + i % 64) || chr(19968 + i % 500) END,
  CASE WHEN i % 17 = 0 THEN NULL ELSE 'user' || i || '.' || substr(md5('e' || i), 1, 8) || '@example.com' END,
  CASE WHEN i % 5 = 0 THEN NULL ELSE '+1-555-' || lpad((i % 10000)::text, 4, '0') END,
  (ARRAY['active','inactive','banned'])[1 + i % 3],
  CASE i % 11 WHEN 0 THEN NULL WHEN 1 THEN 1e-300 WHEN 2 THEN 1.5e300 WHEN 3 THEN -i * 1.25::float8
       WHEN 4 THEN 0.1 WHEN 5 THEN -2.5e-10 WHEN 6 THEN 1.0::float8/3 WHEN 7 THEN '-0'::float8
       ELSE i * 3.14159265358979::float8 END,
  CASE i % 9 WHEN 0 THEN NULL WHEN 1 THEN 9999999999999999.9999 WHEN 2 THEN -(i * 12.3456)
       WHEN 3 THEN 0 ELSE (i * 12345.6789) % 1000000000000 END,
  CASE WHEN i % 19 = 0 THEN NULL ELSE i % 7 = 0 END,
  CASE WHEN i % 23 = 0 THEN NULL ELSE md5('u' || i)::uuid END,
  CASE i % 29 WHEN 0 THEN NULL WHEN 1 THEN '[]'::jsonb WHEN 2 THEN '{{}}'::jsonb
       WHEN 3 THEN to_jsonb(f[1 + i % {nf}]) WHEN 4 THEN '1.5'::jsonb
       ELSE jsonb_build_object('i', i, 'tags', jsonb_build_array('a', f[1 + i % {nf}], i % 3, true, null),
            'nested', jsonb_build_object('x', i * 0.5, 'ok', i % 2 = 0, 'none', null,
                                         'deep', jsonb_build_object('l', jsonb_build_array(1, 2.25, 'three')))) END,
  CASE i % 31 WHEN 0 THEN NULL WHEN 1 THEN ''::bytea
       ELSE decode(md5('a' || i) || '00ff00' || md5('b' || i), 'hex') END,
  '{ts_base}'::timestamptz + i * interval '1 second 123457 microseconds',
  CASE WHEN i % 37 = 0 THEN NULL ELSE '1950-01-01'::date + (i % 25000) END,
  '2023-01-01 00:00:00'::timestamp + i * interval '1 millisecond'
FROM generate_series({lo}, {hi}) AS i, (SELECT {frag} AS f) AS fr
""".format(nf=nf, frag=frag, lo=int(lo), hi=int(hi), ts_base=ts_base)


def create_users_pg(url, n, table="users", updated_at_type="timestamp", extra_cols="", start=1,
                    create=True):
    """Creates `table` (every type) in PostgreSQL and loads rows start..start+n-1 server-side.

    updated_at_type: "timestamp" (default) or "timestamptz" (poll tests). extra_cols:
    SQL appended to the column list (e.g. ", deleted_at timestamptz")."""
    c = connect(url)
    try:
        with c.cursor() as cur:
            if create:
                ddl = USERS_PG_DDL.format(table=_quote_pg(table), updated_at_type=updated_at_type,
                                          updated_at_extra=extra_cols)
                cur.execute(ddl)
            if n > 0:
                load_users_pg_cur(cur, table, start, start + n - 1, updated_at_type)
            cur.execute("ANALYZE " + _quote_pg(table))
    finally:
        c.close()


def load_users_pg_cur(cur, table, lo, hi, updated_at_type="timestamp", chunk=50000):
    cols = ", ".join(USERS_COLUMNS)
    for a in range(lo, hi + 1, chunk):
        b = min(hi, a + chunk - 1)
        sel = users_select_sql(a, b)
        if updated_at_type == "timestamptz":
            sel = sel.replace("'2023-01-01 00:00:00'::timestamp", "'2023-01-01 00:00:00+00'::timestamptz")
        cur.execute("INSERT INTO %s (%s) %s" % (_quote_pg(table), cols, sel))


def _quote_pg(table):
    if "." in table and not table.startswith('"'):
        s, t = table.split(".", 1)
        return '"%s"."%s"' % (s.replace('"', '""'), t.replace('"', '""'))
    return '"%s"' % table.strip('"').replace('"', '""')


def user_row(i):
    """Row i of the users table as Python values (what psycopg2 would return)."""
    nf = len(FRAGMENTS)
    h = lambda s: __import__("hashlib").md5(s.encode()).hexdigest()
    first = FRAGMENTS[i % nf] + " " + h(str(i))[:6]
    last = None if i % 13 == 0 else FRAGMENTS[(i * 7) % nf] + chr(192 + i % 64) + chr(19968 + i % 500)
    email = None if i % 17 == 0 else "user%d.%s@example.com" % (i, h("e%d" % i)[:8])
    phone = None if i % 5 == 0 else "+1-555-%04d" % (i % 10000)
    status = ["active", "inactive", "banned"][i % 3]
    score = {0: None, 1: 1e-300, 2: 1.5e300, 3: -i * 1.25, 4: 0.1, 5: -2.5e-10, 6: 1.0 / 3,
             7: -0.0}.get(i % 11, i * 3.14159265358979)
    m9 = i % 9
    if m9 == 0:
        balance = None
    elif m9 == 1:
        balance = decimal.Decimal("9999999999999999.9999")
    elif m9 == 2:
        balance = -(decimal.Decimal(i) * decimal.Decimal("12.3456"))
    elif m9 == 3:
        balance = decimal.Decimal("0.0000")
    else:
        balance = (decimal.Decimal(i) * decimal.Decimal("12345.6789")) % 1000000000000
    balance = None if balance is None else balance.quantize(decimal.Decimal("0.0001"))
    is_admin = None if i % 19 == 0 else i % 7 == 0
    ext_id = None if i % 23 == 0 else str(uuid.UUID(h("u%d" % i)))
    m29 = i % 29
    if m29 == 0:
        metadata = None
    elif m29 == 1:
        metadata = []
    elif m29 == 2:
        metadata = {}
    elif m29 == 3:
        metadata = FRAGMENTS[i % nf]
    elif m29 == 4:
        metadata = 1.5
    else:
        metadata = {"i": i, "tags": ["a", FRAGMENTS[i % nf], i % 3, True, None],
                    "nested": {"x": i * 0.5, "ok": i % 2 == 0, "none": None,
                               "deep": {"l": [1, 2.25, "three"]}}}
    m31 = i % 31
    avatar = None if m31 == 0 else (b"" if m31 == 1 else
                                    bytes.fromhex(h("a%d" % i) + "00ff00" + h("b%d" % i)))
    created = datetime.datetime(2020, 1, 1, tzinfo=UTC) + i * datetime.timedelta(seconds=1, microseconds=123457)
    birthday = None if i % 37 == 0 else datetime.date(1950, 1, 1) + datetime.timedelta(days=i % 25000)
    updated = datetime.datetime(2023, 1, 1) + i * datetime.timedelta(milliseconds=1)
    return (i, first, last, email, phone, status, score, balance, is_admin, ext_id, metadata,
            avatar, created, birthday, updated)


def fmt_ts(dt, tz):
    """PostgreSQL's ISO text of a datetime: fraction only when non-zero, +00 for UTC."""
    if tz:
        dt = dt.astimezone(UTC)
    s = dt.strftime("%Y-%m-%d %H:%M:%S")
    if dt.microsecond:
        s += (".%06d" % dt.microsecond).rstrip("0")
    return s + ("+00" if tz else "")


def sqlite_value(ltype, v):
    """Python value -> what lockstep keeps in SQLite for that logical type."""
    if v is None:
        return None
    if ltype == "bool":
        return 1 if v else 0
    if ltype == "numeric":
        return str(v)
    if ltype == "json":
        return json.dumps(v, ensure_ascii=False)
    if ltype == "timestamptz":
        return fmt_ts(v, True)
    if ltype == "timestamp":
        return fmt_ts(v, False)
    if ltype == "date":
        return v.isoformat()
    return v


USERS_SQLITE_TYPES = ["int", "text", "text", "text", "text", "text", "float", "numeric", "bool",
                      "uuid", "json", "bytes", "timestamptz", "date", "timestamp"]


def create_users_sqlite(path, n, table="users", start=1):
    """Creates `table` with lockstep's declared types in SQLite and fills rows start..start+n-1."""
    c = sqlite3.connect(sqlite_path(path))
    try:
        c.execute(USERS_SQLITE_DDL.format(table=table))
        insert_users_sqlite(c, table, range(start, start + n))
        c.commit()
    finally:
        c.close()


def insert_users_sqlite(c, table, ids):
    q = 'INSERT OR REPLACE INTO "%s" (%s) VALUES (%s)' % (table, ", ".join(USERS_COLUMNS),
                                                         ", ".join("?" * len(USERS_COLUMNS)))
    rows = []
    for i in ids:
        r = user_row(i)
        rows.append(tuple(sqlite_value(USERS_SQLITE_TYPES[j], r[j]) for j in range(len(r))))
        if len(rows) >= 5000:
            c.executemany(q, rows)
            rows = []
    if rows:
        c.executemany(q, rows)


# ---------------------------------------------------------------------------
# reporting


class Suite:
    """Counts checks; `finish()` prints "N passed, M failed" last and exits.

    Each check prints one line (ok / FAIL with details). `case(fn)` runs a sub-test
    and counts an exception in it as one failure, so one broken case does not hide
    the others."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        self.t0 = time.monotonic()
        sys.stdout.reconfigure(line_buffering=True)
        sys.excepthook = self._uncaught

    def _uncaught(self, kind, value, tb):
        """An error outside case() (in set-up) is one more failure; the summary still comes last."""
        traceback.print_exception(kind, value, tb, file=sys.stdout)
        self.failed += 1
        self.finish()

    def log(self, msg):
        print("[%6.1fs] %s" % (time.monotonic() - self.t0, msg))

    def check(self, cond, what, detail=""):
        if cond:
            self.passed += 1
            self.log("ok   %s" % what)
        else:
            self.failed += 1
            self.log("FAIL %s" % what)
            if detail:
                for line in str(detail).splitlines():
                    print("       " + line)
        return bool(cond)

    def eq(self, got, want, what, detail=""):
        ok = got == want
        extra = "got  %r\nwant %r" % (got, want)
        return self.check(ok, what, extra + ("\n" + str(detail) if detail else ""))

    def case(self, fn, *args, **kw):
        """Runs one sub-test; an exception is one failure with its traceback."""
        name = getattr(fn, "__name__", str(fn))
        self.log("---- %s" % name)
        try:
            fn(*args, **kw)
        except Exception:  # noqa: BLE001 - any error is a test failure
            self.failed += 1
            self.log("FAIL %s raised:" % name)
            for line in traceback.format_exc().splitlines():
                print("       " + line)

    def finish(self):
        ok = self.failed == 0 and self.passed > 0
        if ok:
            try:
                drop_dbs()
            except Exception:  # noqa: BLE001 - cleanup only
                pass
            for d in _workdirs:
                shutil.rmtree(d, ignore_errors=True)
        else:
            if _workdirs:
                print("kept for inspection: %s" % " ".join(_workdirs))
        print("%s: %.1fs" % (self.name, time.monotonic() - self.t0))
        print("%d passed, %d failed" % (self.passed, self.failed))
        sys.exit(0 if ok else 1)


# ---------------------------------------------------------------------------
# a gate in a source's rows: a run held mid-read for as long as the test wants


class Gate:
    """A gate that holds lockstep's read of a PostgreSQL source table where the test wants
    it, so "mid-run" or "while the snapshot runs" is certain however fast the machine.

    Gate(url, from_key) creates FUNCTION lk_gate(bigint) in the database: true for every
    key below from_key, and for a key at or above it true once it gets a shared advisory
    lock (GATE_KEY) that close() holds in the test's own session. A job whose `where`
    has `lk_gate(id)` (where_sql()) reads the keys below from_key, then waits at the
    first one at or above it while the gate is closed; open() lets it go on. waiters()
    lists the sessions waiting at the gate: proof the read is there, not finished.
    The function is always true, so the job copies the same rows as without it."""

    GATE_KEY = 7707

    def __init__(self, url, from_key=None):
        self.url = url
        self.session = None
        low = "false" if from_key is None else "$1 < %d" % int(from_key)
        execute(url, "CREATE OR REPLACE FUNCTION lk_gate(bigint) RETURNS boolean LANGUAGE sql VOLATILE AS "
                     "$$ SELECT CASE WHEN %s THEN true ELSE "
                     "(SELECT true FROM pg_advisory_xact_lock_shared(%d)) END $$" % (low, self.GATE_KEY))

    @staticmethod
    def where_sql(col="id"):
        return "lk_gate(%s)" % col

    def close(self):
        if self.session is None:
            self.session = connect(self.url)
            with self.session.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(%s)", (self.GATE_KEY,))
        return self

    def open(self):
        if self.session is not None:
            self.session.close()  # a session's advisory locks end with it
            self.session = None

    def waiters(self):
        """[(pid, query)] of the sessions waiting at the gate (of this database: advisory
        locks are per database, and other tests may use a gate in the same cluster)."""
        return execute(self.url, "SELECT a.pid, a.query FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                                 " WHERE l.locktype = 'advisory' AND NOT l.granted AND l.classid = 0"
                                 " AND l.objid = %s AND l.objsubid = 1 AND l.database ="
                                 " (SELECT oid FROM pg_database WHERE datname = current_database())",
                       (self.GATE_KEY,))
