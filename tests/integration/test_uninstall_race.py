"""test_uninstall_race - `lockstep uninstall` of a table's last consumer racing another
job's first start on the same table never leaves that job streaming a table whose capture
is gone (issue 17, "less certain": uninstall racing a first start).

On a real PostgreSQL source, job `b` starts for the first time and is frozen
(LK_FAILPOINT=before_register:stop) after it installed capture and before it registers as a
consumer; `lockstep uninstall a` then removes the table's last consumer, and with it the
table's triggers (another table, captured for job `c`, keeps the schema). `b` goes on. Its
registration must not succeed against a table with no capture: it is refused, and the next
run installs capture again. Writes made after `b` resumed reach its target (md5 oracle).
"""

import os
import signal
import subprocess

import lktest as L

L.require_pg()
t = L.Suite("test_uninstall_race")


sql = L.sql  # lktest.sql: each statement in its own transaction


def stopped(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


def test_race():
    w = L.Workdir("uninstall_race")
    src, da, db, dc = (L.new_db("ur_" + n) for n in ("s", "a", "b", "c"))
    sql(src, "CREATE TABLE items (id int PRIMARY KEY, v text)",
        "INSERT INTO items SELECT i, 'v' || i FROM generate_series(1, 100) i",
        "CREATE TABLE other (id int PRIMARY KEY)", "INSERT INTO other VALUES (1)")
    jobs = {}
    for name, table in (("a", "items"), ("b", "items"), ("c", "other")):
        jobs[name] = {"source": {"db": "src", "table": table}, "mode": "realtime",
                      "target": {"db": name, "table": table, "create": True}}
    cfg = L.sync_config(w, {"src": src, "a": da, "b": db, "c": dc}, jobs)
    L.sync(t, cfg, "a")
    L.sync(t, cfg, "c")
    env = dict(os.environ, LK_FAILPOINT="before_register:stop", NO_COLOR="1")
    with open(w.file("b.err"), "w") as errf:
        p = subprocess.Popen([L.lk_bin(), "-c", str(cfg), "sync", "b"], env=env,
                             stdout=subprocess.DEVNULL, stderr=errf)
    try:
        t.check(L.wait_for(lambda: stopped(p.pid) or p.poll() is not None, 60, 0.1) and
                p.poll() is None, "b stops after installing, before registering")
        rc, out, err = L.run_lockstep(["uninstall", "a"], cfg)
        t.eq(rc, 0, "uninstall a (the table's last registered consumer) exits 0", out + err)
        n = L.scalar(src, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass"
                          " AND tgname LIKE 'lockstep%%'")
        t.eq(n, 0, "uninstall a dropped the table's triggers (b was not registered yet)")
    finally:
        os.kill(p.pid, signal.SIGCONT)
    rc = p.wait(120)
    with open(w.file("b.err")) as f:
        berr = f.read()
    t.check(rc != 0 and "change capture of its table was removed since it was installed" in berr,
            "b's registration is refused, saying why", berr[-3000:])
    sql(src, "UPDATE items SET v = 'after' WHERE id <= 20", "DELETE FROM items WHERE id > 90",
        "INSERT INTO items VALUES (500, 'new')")
    L.sync(t, cfg, "b")
    sql(src, "UPDATE items SET v = 'later' WHERE id BETWEEN 30 AND 40")
    L.sync(t, cfg, "b")
    t.eq(L.pg_md5(db, "items", ["id"]), L.pg_md5(src, "items", ["id"]),
         "md5 oracle: b's target equals the source")


t.case(test_race)
t.finish()
