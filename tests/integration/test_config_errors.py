"""`lockstep check-config` refuses invalid configs with exit 78 and one stderr line
"FILE:LINE:COL: expected X, found Y", and accepts a valid SQLite-only config (exit 0).

- each invalid config is written to a temp dir and checked with `-c FILE check-config`;
  stderr must hold the exact FILE:LINE:COL and the key part of the message;
- a URL password or the HTTP token never appears in the output;
- a valid config with two SQLite files (table users in each) passes, SQLite paths being
  relative to the config file whatever the working directory.

Needs only the binary ($LK_BIN) and Python's standard library; no PostgreSQL.
"""
import os
import sqlite3
import subprocess
import sys
import tempfile

LK_BIN = os.environ.get("LK_BIN", "")

DBS = "databases:\n  a: sqlite:a.db\n  b: sqlite:b.db\n"  # lines 1-3
JOB = DBS + "jobs:\n  j:\n"                                # job body from line 6
SRC = "    source: {db: a, table: users}\n"
TGT = "    target: {db: b}\n"

# (name, yaml, "LINE:COL", fragment of the message)
CASES = [
    ("unknown key with hint", JOB + "    sorce: {db: a, table: users}\n", "6:5",
     "found unknown key 'sorce'; did you mean 'source'?"),
    ("unknown top-level key", "databses:\n  a: sqlite:a.db\n", "1:1",
     "did you mean 'databases'?"),
    ("wrong type", JOB + "    source:\n      db: a\n      table: [users]\n" + TGT, "8:14",
     "expected a table as name or schema.name, found a list"),
    ("bad duration", JOB + SRC + TGT + "    every: 5 minutes\n", "8:12",
     "expected a positive duration with a unit"),
    ("unknown database", DBS + "  chat: sqlite:c.db\njobs:\n  j:\n" + SRC +
     "    target: {db: chatt}\n", "8:18",
     "expected a database defined under databases, found 'chatt'; did you mean 'chat'?"),
    ("missing source.table", JOB + "    source: {db: a}\n" + TGT, "6:5",
     "expected key 'table' in source, found none"),
    ("mode logical", JOB + SRC + TGT + "    mode: logical\n", "8:11",
     "mode 'logical' is not supported yet"),
    ("kind exec with source", JOB + "    kind: exec\n" + SRC + TGT, "7:5",
     "expected no key 'source' in a job of kind exec, found it (it belongs to kind sync)"),
    ("bad run_on label", JOB + SRC + TGT + "    run_on: [eu west]\n", "8:14",
     "expected a label of letters, digits, '_', '-' and '.' (at most 63), found 'eu west'"),
    ("label listed twice", "instance:\n  labels: [eu, eu]\n", "2:16",
     "expected distinct names, found 'eu' twice"),
    ("empty label", "instance:\n  labels: ['']\n", "2:12", "expected a non-empty name"),
    ("bad cron hour", JOB + SRC + TGT + "    schedule: \"0 0 24 * * *\"\n", "8:15",
     "job 'j': schedule: field 'hour' (3rd): expected 0-23, found 24"),
    ("sql job that commits", JOB + "    kind: sql\n    db: a\n    every: 1m\n"
     "    sql: \"DELETE FROM t; COMMIT; DELETE FROM u\"\n", "5:3",
     "job 'j': sql: a statement starts with COMMIT; lockstep runs the script in its own transaction"),
    ("sql job that begins", JOB + "    kind: sql\n    db: a\n    every: 1m\n"
     "    sql: \"begin; DELETE FROM t; end\"\n", "5:3", "a statement starts with BEGIN"),
    ("unknown time zone", JOB + SRC + TGT + "    schedule: \"@daily\"\n    timezone: Mars/Olympus\n",
     "5:3", "job 'j': timezone:"),
    ("unset variable", "databases:\n  a: ${LK_IT_SURELY_UNSET}\n", "2:6",
     "environment variable 'LK_IT_SURELY_UNSET' is not set"),
    ("bad deletes", JOB + SRC + "    target: {db: b, deletes: remove}\n", "7:30",
     "expected delete | ignore | soft:COLUMN, found 'remove'"),
    ("batch 0", JOB + SRC + TGT + "    batch: 0\n", "8:12",
     "expected an integer from 1 to 100000, found '0'"),
    ("tab indentation", "log:\n\tlevel: info\n", "2:1",
     "invalid YAML: tab character may not be used as indentation"),
    ("duplicate key", JOB + SRC + TGT + "  j:\n" + SRC + TGT, "8:3",
     "expected each key once, found 'j' again (first at line 5)"),
    ("alias", "databases:\n  a: &x sqlite:a.db\n  b: *x\n", "2:6", "found an anchor '&x'"),
    ("poll without cursor", JOB + SRC + TGT + "    mode: poll\n", "8:11",
     "expected key 'cursor' (the monotonic column) with mode poll, found none"),
    ("key not in columns", JOB + "    source: {db: a, table: users, key: [id], columns: [name]}\n"
     + TGT, "6:41", "expected key column 'id' among source.columns"),
    ("bool yes", JOB + SRC + "    target: {db: b, create: yes}\n", "7:29",
     "expected true or false, found 'yes'"),
    ("three-part table", JOB + "    source: {db: a, table: a.b.c}\n" + TGT, "6:28",
     "more than two dot-separated parts"),
    ("bad url hides its password", "databases:\n  a: mysql://u:hunter2@h/db\n", "2:6",
     "found 'mysql://u:***@h/db'"),
    ("lookback without poll", JOB + SRC + TGT + "    lookback: 1m\n", "8:15",
     "expected lookback only with mode poll"),
]


class Runner:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, name, detail=""):
        if ok:
            self.passed += 1
            print("ok   %s" % name)
        else:
            self.failed += 1
            print("FAIL %s\n%s" % (name, detail))


def run(args, cwd=None, env_extra=None):
    env = dict(os.environ)
    env.pop("LK_IT_SURELY_UNSET", None)
    env.pop("LOCKSTEP_CONFIG", None)
    env.update(env_extra or {})
    p = subprocess.run([LK_BIN] + args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def show(rc, out, err):
    return "  exit %s\n  stdout: %s\n  stderr: %s" % (rc, out.strip()[:2000], err.strip()[:2000])


def test_invalid(r, tmp):
    for i, (name, text, pos, frag) in enumerate(CASES):
        path = os.path.join(tmp, "bad%02d.yaml" % i)
        with open(path, "w") as f:
            f.write(text)
        rc, out, err = run(["-c", path, "check-config"], cwd=tmp)
        where = "%s:%s: " % (path, pos)
        r.check(rc == 78 and err.startswith(where) and frag in err and "hunter2" not in out + err,
                "%s: exit 78 with '%s... %s'" % (name, where, frag), show(rc, out, err))


def test_missing_file(r, tmp):
    path = os.path.join(tmp, "no-such.yaml")
    rc, out, err = run(["-c", path, "check-config"], cwd=tmp)
    r.check(rc == 78 and ("cannot read config '%s'" % path) in err,
            "missing file: exit 78 with 'cannot read config'", show(rc, out, err))


def make_users_db(path):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (id integer PRIMARY KEY, name text)")
    con.execute("INSERT INTO users (name) VALUES ('ada'), ('grace')")
    con.commit()
    con.close()


def test_valid(r, tmp):
    conf = os.path.join(tmp, "conf")
    os.mkdir(conf)
    make_users_db(os.path.join(conf, "a.db"))
    make_users_db(os.path.join(conf, "b.db"))
    path = os.path.join(conf, "lockstep.yaml")
    with open(path, "w") as f:
        f.write("# valid, SQLite only\n"
                "http:\n  token: '${LK_IT_TOKEN}'\n"
                "databases:\n  a: sqlite:a.db\n  b: ${LK_IT_UNSET_DB:-sqlite:b.db}\n"
                "jobs:\n"
                "  users:\n"
                "    source: {db: a, table: users, key: [id]}\n"
                "    target: {db: b}\n")
    # Run from another folder: the SQLite paths are relative to the config file.
    rc, out, err = run(["-c", path, "check-config"], cwd=tmp,
                       env_extra={"LK_IT_TOKEN": "tok-6f1d2e"})
    r.check(rc == 0 and "valid" in out, "valid SQLite-only config: exit 0", show(rc, out, err))
    r.check("tok-6f1d2e" not in out + err and "token: ***" in out,
            "the HTTP token is not printed", show(rc, out, err))
    r.check(os.path.exists(os.path.join(conf, "lockstep-state.db")),
            "the default state store is created beside the config", show(rc, out, err))


def test_exec_command(r, tmp):
    """check-config looks for an exec job's command (issue 20): missing -> exit 78 with
    FILE:LINE:COL naming it; present (in PATH, or a path) -> the job is ok."""
    os.makedirs(os.path.join(tmp, "exec"), exist_ok=True)
    script = os.path.join(tmp, "exec", "ok.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(script, 0o755)
    with open(os.path.join(tmp, "exec", "plain.txt"), "w") as f:
        f.write("not a program\n")
    base = "state: sqlite:st.db\njobs:\n  j:\n    kind: exec\n    every: 1h\n"
    for name, cmd, want in (("a name not in PATH", "[no-such-cmd-lk-20]", "not found in the job's PATH"),
                            ("a file that is not executable", "[./plain.txt]", "is not an executable file"),
                            ("a path that does not exist", "[/nonexistent/lk/run]", "is not an executable file"),
                            ("a name outside the job's own PATH", "[sh]\n    env: {PATH: /nonexistent}",
                             "not found in the job's PATH")):
        path = os.path.join(tmp, "exec", "bad.yaml")
        with open(path, "w") as f:
            f.write(base + "    command: %s\n" % cmd)
        rc, out, err = run(["-c", path, "check-config"], cwd=tmp)
        r.check(rc == 78 and ("%s:3:3: job 'j': command" % path) in err and want in err,
                "exec command, %s: exit 78 at the job, '%s'" % (name, want), show(rc, out, err))
    for name, cmd in (("in PATH", "[sh, -c, 'exit 0']"), ("a relative path", "[./ok.sh]"),
                      ("an absolute path", "[%s]" % script)):
        path = os.path.join(tmp, "exec", "good.yaml")
        with open(path, "w") as f:
            f.write(base + "    command: %s\n" % cmd)
        rc, out, err = run(["-c", path, "check-config"], cwd=tmp)
        r.check(rc == 0 and "job j" in out and "ok: runs" in out,
                "exec command %s: check-config says ok" % name, show(rc, out, err))


def main():
    if not LK_BIN or not os.access(LK_BIN, os.X_OK):
        print("LK_BIN is not set to the lockstep binary (got %r)" % LK_BIN)
        print("0 passed, 1 failed")
        return 1
    r = Runner()
    with tempfile.TemporaryDirectory(prefix="lk_config_errors_") as tmp:
        test_invalid(r, tmp)
        test_missing_file(r, tmp)
        test_valid(r, tmp)
        test_exec_command(r, tmp)
    print("%d passed, %d failed" % (r.passed, r.failed))
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
