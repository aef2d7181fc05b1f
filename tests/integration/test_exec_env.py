"""exec jobs get a clean environment (docs/exec-jobs.md, "Environment"; docs/security.md).

Cases (each runs the real binary, `lockstep run`, with an SQLite state store; no database
is needed by the jobs themselves):

- clean: lockstep runs with secrets in its environment (LOCKSTEP_TOKEN, PGPASSWORD, a
  variable the config reads for `http.token` through ${VAR}, another one no one reads)
  and an exec job without `env:` that writes `env` to a file. The file has PATH, HOME,
  LANG, LC_ALL and TZ with lockstep's values, LOCKSTEP_RUN_ID and LOCKSTEP_FENCING_TOKEN,
  and nothing else: no secret's name or value.
- listed: `env:` as a mapping (a plain value and one ${VAR}-interpolated secret) and as a
  list of names passed through (one set, one unset). The command sees exactly those on
  top of the inherited five; the other secrets stay out. check-config names the
  variables but never prints their values.
- refused: an invalid name, a name lockstep sets, a non-scalar value, a wrong shape and
  `env:` on a sync job are config errors: exit 78 with FILE:LINE:COL.
"""
import os
import signal
import subprocess

import lktest as L

t = L.Suite("test_exec_env")

SECRETS = {
    "LOCKSTEP_TOKEN": "tok-LEAK-4b1f9c",
    "PGPASSWORD": "pgpw-LEAK-77d2e0",
    "LK_IT_HTTP_TOKEN": "http-LEAK-a8c3d1",  # read by the config as ${LK_IT_HTTP_TOKEN}
    "LK_IT_UNRELATED": "other-LEAK-19e5aa",
    "AWS_SECRET_ACCESS_KEY": "aws-LEAK-0c7b42",
}
INHERITED = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp/lk-exec-home",
             "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "Europe/Berlin"}


def lockstep_env(more=None):
    e = dict(SECRETS)
    e.update(INHERITED)
    e.update(more or {})
    return e


def read_env(path):
    """The NAME=VALUE lines `env` wrote, as a dict (a value may not hold a newline here)."""
    out = {}
    with open(path) as f:
        for line in f.read().splitlines():
            name, sep, value = line.partition("=")
            if sep:
                out[name] = value
    return out


def dump_job(path, **more):
    job = {"kind": "exec", "every": "1s", "command": ["/bin/sh", "-c", 'env > "$0.tmp" && mv "$0.tmp" "$0"', path]}
    job.update(more)
    return job


def run_until(cfg, wd, files, env, drop=()):
    """`lockstep -c cfg run` with our environment plus env, minus drop, until every file
    exists; then SIGTERM. Returns the log text."""
    log = wd.file("run.log")
    e = {k: v for k, v in os.environ.items() if k not in drop and k != "LK_FAILPOINT"}
    e.update({k: v for k, v in env.items() if v is not None})
    with open(log, "a") as f:
        p = subprocess.Popen([L.lk_bin(), "-c", cfg, "run"], env=e, stdout=f, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
    try:
        L.wait_for(lambda: all(os.path.exists(x) for x in files) or p.poll() is not None, deadline=60)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        rc = p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    with open(log) as f:
        text = f.read()
    t.eq(rc, 0, "lockstep run exits 0 on SIGTERM", text[-3000:])
    for x in files:
        t.check(os.path.exists(x), "the command ran and wrote %s" % os.path.basename(x), text[-3000:])
    return text


def no_secrets(what, got, allowed=()):
    leaked = sorted(k for k in SECRETS if k in got and k not in allowed)
    t.eq(leaked, [], "%s: no secret variable is inherited" % what, sorted(got))
    values = sorted(k for k, v in SECRETS.items() if k not in allowed and any(v in x for x in got.values()))
    t.eq(values, [], "%s: no secret value appears in any variable" % what)


def test_clean():
    wd = L.Workdir("exec_clean")
    out = wd.file("env-bare.txt")
    cfg = L.sync_config(wd, {}, {"bare": dump_job(out)},
                        extra={"http": {"listen": "127.0.0.1:0", "token": "${LK_IT_HTTP_TOKEN}"}})
    run_until(cfg, wd, [out], lockstep_env())
    if not os.path.exists(out):
        return
    got = read_env(out)
    no_secrets("no env: key", got)
    for k, v in INHERITED.items():
        t.eq(got.get(k), v, "no env: key: %s is lockstep's" % k)
    t.check(len(got.get("LOCKSTEP_RUN_ID", "")) == 36 and got.get("LOCKSTEP_FENCING_TOKEN", "").isdigit(),
            "no env: key: LOCKSTEP_RUN_ID and LOCKSTEP_FENCING_TOKEN are set", repr(got))
    # sh itself adds PWD (and may add SHLVL, OLDPWD, _); anything else came from lockstep.
    extra = sorted(set(got) - set(INHERITED) - {"LOCKSTEP_RUN_ID", "LOCKSTEP_FENCING_TOKEN",
                                                "PWD", "OLDPWD", "SHLVL", "_"})
    t.eq(extra, [], "no env: key: nothing else reaches the command", repr(got))


def test_clean_unset_inherited():
    """A variable of the five that is not set in lockstep's environment stays unset."""
    wd = L.Workdir("exec_unset")
    out = wd.file("env-unset.txt")
    cfg = L.sync_config(wd, {}, {"bare": dump_job(out)})
    env = lockstep_env()
    for k in ("LC_ALL", "TZ", "HOME"):
        env.pop(k)
    run_until(cfg, wd, [out], env, drop=("LC_ALL", "TZ", "HOME"))
    if not os.path.exists(out):
        return
    got = read_env(out)
    t.eq(sorted(k for k in ("LC_ALL", "TZ", "HOME") if k in got), [],
         "unset: LC_ALL, TZ and HOME unset in lockstep stay unset for the command", repr(got))
    t.eq(got.get("PATH"), INHERITED["PATH"], "unset: PATH still lockstep's")


def test_listed():
    wd = L.Workdir("exec_listed")
    out_map, out_list = wd.file("env-map.txt"), wd.file("env-list.txt")
    jobs = {
        "mapped": dump_job(out_map, env={"FROM_MAP": "plain value", "API_KEY": "${LK_IT_API_KEY}",
                                         "PATH": "/bin:/usr/bin", "EMPTY": ""}),
        "listed": dump_job(out_list, env=["PGPASSWORD", "LK_IT_NOT_SET_ANYWHERE"]),
    }
    cfg = L.sync_config(wd, {}, jobs)
    env = lockstep_env({"LK_IT_API_KEY": "api-SECRET-5e2b"})
    rc, cout, cerr = L.run_lockstep(["check-config"], cfg, env=dict(env, LK_IT_NOT_SET_ANYWHERE=None))
    t.check(rc == 0 and "FROM_MAP" in cout and "API_KEY" in cout,
            "check-config: valid, names the env variables", L.show(rc, cout, cerr))
    t.check("api-SECRET-5e2b" not in cout + cerr and "plain value" not in cout + cerr
            and SECRETS["PGPASSWORD"] not in cout + cerr,
            "check-config: prints no env value", L.show(rc, cout, cerr))
    log = run_until(cfg, wd, [out_map, out_list], dict(env, LK_IT_NOT_SET_ANYWHERE=None))
    t.check("api-SECRET-5e2b" not in log and SECRETS["PGPASSWORD"] not in log, "the log holds no env value")
    if os.path.exists(out_map):
        got = read_env(out_map)
        t.eq((got.get("FROM_MAP"), got.get("API_KEY")), ("plain value", "api-SECRET-5e2b"),
             "mapping: FROM_MAP as written, API_KEY interpolated from ${LK_IT_API_KEY}")
        t.eq(got.get("PATH"), "/bin:/usr/bin", "mapping: a listed PATH replaces the inherited one")
        t.eq(got.get("EMPTY"), "", "mapping: an empty quoted value sets an empty variable")
        t.eq(got.get("HOME"), INHERITED["HOME"], "mapping: HOME still inherited")
        t.check("LK_IT_API_KEY" not in got, "mapping: the variable the value came from is not inherited")
        no_secrets("mapping", got)
    if os.path.exists(out_list):
        got = read_env(out_list)
        t.eq(got.get("PGPASSWORD"), SECRETS["PGPASSWORD"], "list: a listed name passes through")
        t.check("LK_IT_NOT_SET_ANYWHERE" not in got, "list: a listed name that is unset stays unset")
        no_secrets("list", got, allowed=("PGPASSWORD",))


JOB = "jobs:\n  j:\n    kind: exec\n    every: 1m\n    command: [/bin/true]\n"
REFUSALS = [
    ("bad name", JOB + "    env: {A-B: x}\n", "6:11", "expected an environment variable name"),
    ("digit first", JOB + "    env:\n      1X: x\n", "7:7", "found '1X'"),
    ("bad listed name", JOB + "    env: [OK, 'NO=PE']\n", "6:15", "found 'NO=PE'"),
    ("lockstep's own", JOB + "    env: {LOCKSTEP_RUN_ID: x}\n", "6:11",
     "expected a name lockstep does not set, found 'LOCKSTEP_RUN_ID'"),
    ("list value", JOB + "    env: {A: [1, 2]}\n", "6:14", "expected a string value for 'A', found a list"),
    ("null value", JOB + "    env:\n      A:\n", "7:7", "expected a string value for 'A', found an empty"),
    ("scalar", JOB + "    env: FOO\n", "6:10", "expected a mapping of NAME: VALUE or a list of names"),
    ("sync job", "databases:\n  a: sqlite:a.db\njobs:\n  j:\n    source: {db: a, table: t}\n"
     "    target: {db: a, table: u}\n    env: {A: b}\n", "7:5",
     "expected no key 'env' in a job of kind sync"),
]


def test_refused():
    wd = L.Workdir("exec_refused")
    for i, (name, text, pos, frag) in enumerate(REFUSALS):
        path = L.write_config(wd, text, "bad%02d.yaml" % i)
        rc, out, err = L.run_lockstep(["check-config"], path, env={"LOCKSTEP_CONFIG": None})
        where = "%s:%s: " % (path, pos)
        t.check(rc == 78 and err.startswith(where) and frag in err,
                "refused, %s: exit 78 with '%s... %s'" % (name, where, frag), L.show(rc, out, err))


t.case(test_clean)
t.case(test_clean_unset_inherited)
t.case(test_listed)
t.case(test_refused)
t.finish()
