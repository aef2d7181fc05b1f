"""The SQLite state database and the job lock files are private (docs/security.md, issue 20).

The state database holds run errors and dead letters (row images of rejected rows); the
lock files sit beside it. Run by the real binary under umask 022 (the usual default, which
would make files 0644):

- fresh: `lockstep sync` of an SQLite -> SQLite job with a new SQLite state store: the
  state database, its -wal/-shm files (when there are any) and the job's lock file grant
  nothing to the group or to others (mode & 0o077 == 0); a dead letter's row image is in
  that file, so this is what keeps it from other local users.
- existing: a state database the operator made beforehand keeps its mode (lockstep
  does not chmod a file it did not create).
"""
import os
import sqlite3
import stat

import lktest as L

t = L.Suite("test_file_modes")


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def setup(wd):
    with sqlite3.connect(wd.file("a.db")) as c:
        c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        c.executemany("INSERT INTO t VALUES (?, ?)", [(i, "row %d" % i) for i in range(1, 101)])
    return L.sync_config(wd, {"a": "sqlite:a.db", "b": "sqlite:b.db"}, {
        "j": {"source": {"db": "a", "table": "t"}, "target": {"db": "b", "table": "t", "create": True}},
    })


def sync_with_umask(cfg):
    old = os.umask(0o022)
    try:
        return L.run_lockstep(["sync", "j"], cfg, timeout=120)
    finally:
        os.umask(old)


def test_fresh():
    wd = L.Workdir("modes_fresh")
    cfg = setup(wd)
    rc, out, err = sync_with_umask(cfg)
    t.eq(rc, 0, "the sync succeeds", L.show(rc, out, err))
    files = sorted(f for f in os.listdir(wd.path) if f.startswith("lockstep-state.db") or
                   f.startswith("state") or ".lock" in f)
    state = [f for f in files if not f.endswith(".lock")]
    locks = [f for f in files if f.endswith(".lock")]
    t.check(state, "the state database exists", files)
    t.check(locks, "a job lock file exists", files)
    for f in files:
        t.eq(oct(mode(wd.file(f)) & 0o077), oct(0), "%s grants nothing to group or others (mode %s)"
             % (f, oct(mode(wd.file(f)))))


def test_existing():
    wd = L.Workdir("modes_existing")
    cfg = setup(wd)
    rc, out, err = sync_with_umask(cfg)
    t.eq(rc, 0, "the first sync succeeds", L.show(rc, out, err))
    state = [f for f in os.listdir(wd.path) if f.endswith(".db") and f not in ("a.db", "b.db")]
    t.eq(len(state), 1, "one state database", state)
    path = wd.file(state[0]) if state else wd.file("none")
    os.chmod(path, 0o640)
    rc, out, err = sync_with_umask(cfg)
    t.eq(rc, 0, "a second sync succeeds", L.show(rc, out, err))
    t.eq(oct(mode(path)), oct(0o640), "a state database made beforehand keeps its mode")


t.case(test_fresh)
t.case(test_existing)
t.finish()
