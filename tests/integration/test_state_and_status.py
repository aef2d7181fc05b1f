"""The state store records runs, `status` and `migrate --status` show them, and one
job never runs twice at once.

- after syncs, `status --json` lists every job with its last run (runId from the
  sync's summary, status succeeded, counts); a failed run shows status failed and
  its error; a job never run has no last run;
- `migrate --status` lists the applied migrations (checked against the store's own
  table, read with sqlite3/psycopg2), with an SQLite and a PostgreSQL state store;
- a store whose applied migration has another checksum, or that a newer lockstep
  migrated (a migration this binary does not know), is refused by migrate, sync and run
  with a message that says what to do, and accepted again once restored;
- two concurrent `sync` of one job with an SQLite state store: the second exits 75
  while the first goes on and succeeds; `status` answers meanwhile.
"""
import re
import sqlite3
import time

import lktest as L

L.require_pg()
t = L.Suite("test_state_and_status")
N = 500

src, dst = L.new_db("state_src"), L.new_db("state_dst")
L.create_users_pg(src, N)
L.execute(src, "CREATE TABLE slow_src (id bigint PRIMARY KEY, v text)")
L.execute(src, "INSERT INTO slow_src SELECT i, md5(i::text) FROM generate_series(1, 2500) i")
# 2 ms per row read: a snapshot of slow_src takes about 5 s whatever the machine.
L.execute(src, "CREATE FUNCTION lk_slow(bigint) RETURNS boolean LANGUAGE sql VOLATILE "
               "AS $$ SELECT true FROM pg_sleep(0.002) $$")


def jobs():
    return {
        "users": {"source": {"db": "src", "table": "users", "key": ["id"]},
                  "target": {"db": "dst", "table": "users", "create": True}, "mode": "snapshot"},
        "broken": {"source": {"db": "src", "table": "missing_table_abc", "key": ["id"]},
                   "target": {"db": "dst", "table": "broken", "create": True}, "mode": "snapshot"},
        "slow": {"source": {"db": "src", "table": "slow_src", "key": ["id"], "where": "lk_slow(id)"},
                 "target": {"db": "dst", "table": "slow_dst", "create": True}, "mode": "snapshot",
                 "batch": 100},
    }


def status(cfg):
    rc, out, err = L.run_lockstep(["status", "--json"], cfg, timeout=60)
    obj = L.whole_json(out)
    t.check(rc == 0 and isinstance(obj, dict) and isinstance(obj.get("jobs"), list),
            "status --json exits 0 with a jobs list", L.show(rc, out, err))
    return dict((j.get("name"), j) for j in (obj or {}).get("jobs", []) if isinstance(j, dict))


def test_status_after_runs():
    w = L.Workdir("state_status")
    cfg = L.sync_config(w, {"src": src, "dst": dst}, jobs())
    rc, out, err = L.run_lockstep(["check-config"], L.sync_config(
        L.Workdir("state_cc"), {"src": src, "dst": dst}, dict((k, v) for k, v in jobs().items()
                                                              if k != "broken")), timeout=60)
    t.eq(rc, 0, "check-config accepts the valid jobs", L.show(rc, out, err))
    L.sync(t, cfg, "users")
    rc, s, _ = L.sync(t, cfg, "users")
    run_id = (s or {}).get("runId")
    t.check(isinstance(run_id, str) and len(run_id) >= 8, "sync --json gives a runId", repr(s))

    jobs_ = status(cfg)
    u = jobs_.get("users") or {}
    t.eq((u.get("kind"), u.get("mode")), ("sync", "snapshot"), "status: users is a snapshot sync job")
    lr = u.get("lastRun") or {}
    t.eq((lr.get("runId"), lr.get("status"), lr.get("rowsRead"), lr.get("rowsWritten")),
         (run_id, "succeeded", N, N), "status: users' last run is the second sync, succeeded, with counts")
    t.check(lr.get("startTime") and lr.get("finishTime"), "status: last run has start and finish times",
            repr(lr))
    t.check(not lr.get("error"), "status: a succeeded run has no error", repr(lr))
    t.check("slow" in jobs_ and not (jobs_["slow"] or {}).get("lastRun"),
            "status: a job never run is listed without a last run", repr(jobs_.get("slow")))

    rc, out, err = L.run_lockstep(["sync", "broken"], cfg, timeout=60)
    t.eq(rc, 1, "sync of a job with a missing table exits 1", L.show(rc, out, err))
    b = (status(cfg).get("broken") or {}).get("lastRun") or {}
    t.eq(b.get("status"), "failed", "status: the failed run is shown as failed", repr(b))
    t.check("missing_table_abc" in (b.get("error") or ""), "status: the failed run's error names the table",
            repr(b))

    rc, out, err = L.run_lockstep(["status"], cfg, timeout=60)
    t.check(rc == 0 and "users" in out and "broken" in out, "status (text) lists the jobs",
            L.show(rc, out, err))

    c = sqlite3.connect(w.file("state.db"))
    runs = c.execute("SELECT count(*) FROM lockstep_runs WHERE job = 'users' AND status = 'succeeded'"
                     ).fetchone()[0]
    c.close()
    t.eq(runs, 2, "the SQLite state store holds both succeeded runs")


def migrations_listed(cfg, applied, what):
    rc, out, err = L.run_lockstep(["migrate"], cfg, timeout=60)
    t.eq(rc, 0, "%s: migrate exits 0" % what, L.show(rc, out, err))
    rc, out, err = L.run_lockstep(["migrate", "--status"], cfg, timeout=60)
    t.eq(rc, 0, "%s: migrate --status exits 0" % what, L.show(rc, out, err))
    versions, names = applied()
    t.check(len(versions) >= 1, "%s: the store records applied migrations" % what, repr(versions))
    for v, n in zip(versions, names):
        listed = any(re.search(r"\b%d\b" % v, line) and n in line for line in out.splitlines())
        t.check(listed, "%s: migrate --status lists migration %s %s on one line" % (what, v, n),
                L.show(rc, out, err))


def test_migrate_status_sqlite_store():
    w = L.Workdir("state_mig")
    cfg = L.sync_config(w, {"src": src, "dst": dst}, {"users": jobs()["users"]})

    def applied():
        c = sqlite3.connect(w.file("state.db"))
        rows = c.execute("SELECT version, name FROM lockstep_migrations WHERE applied_ms IS NOT NULL "
                         "ORDER BY version").fetchall()
        c.close()
        return [r[0] for r in rows], [r[1] for r in rows]
    migrations_listed(cfg, applied, "SQLite store")


def test_migrate_status_pg_store():
    store = L.new_db("state_store")
    cfg = L.sync_config(L.Workdir("state_mig_pg"), {"src": src, "dst": dst}, {"users": jobs()["users"]},
                        state=store)

    def applied():
        rows = L.execute(store, "SELECT version, name FROM lockstep.migrations "
                                "WHERE applied_ms IS NOT NULL ORDER BY version")
        return [r[0] for r in rows], [r[1] for r in rows]
    migrations_listed(cfg, applied, "PostgreSQL store")
    L.sync(t, cfg, "users")
    L.sync(t, cfg, "users")
    usage = L.execute(store, "SELECT db, runs, queries > 0 FROM lockstep.usage_daily "
                             "WHERE job = 'users' AND day = (now() AT TIME ZONE 'utc')::date ORDER BY db")
    t.eq([tuple(r) for r in usage], [("", 2, True), ("dst", 2, True), ("src", 2, True)],
         "PostgreSQL store: two syncs add up in today's usage (the job, src and dst)")


def test_migration_refusals():
    for kind in ("sqlite", "pg"):
        w = L.Workdir("state_refuse_" + kind)
        store = L.new_db("state_refuse") if kind == "pg" else None
        cfg = L.sync_config(w, {"src": src, "dst": dst}, {"users": jobs()["users"]},
                            **({"state": store} if store else {}))
        table = "lockstep.migrations" if store else "lockstep_migrations"

        def sql(q):
            if store:
                L.execute(store, q)
                return
            c = sqlite3.connect(w.file("state.db"))
            c.execute(q)
            c.commit()
            c.close()

        rc, out, err = L.run_lockstep(["migrate"], cfg, timeout=60)
        t.eq(rc, 0, "%s: migrate exits 0" % kind, L.show(rc, out, err))
        # a store migrated by a newer build: a migration this binary does not know
        sql("INSERT INTO %s (version, name, checksum, applied_ms) VALUES (9999, 'from_the_future', "
            "'0000000000000000', 1)" % table)
        for cmd in (["migrate"], ["sync", "users"], ["run"]):
            rc, out, err = L.run_lockstep(cmd, cfg, timeout=60)
            t.check(rc not in (0, -999) and "migrated by a newer lockstep" in err and "9999" in err
                    and "from_the_future" in err,
                    "%s: %s refuses a store a newer lockstep migrated, naming its migration" % (kind, cmd[0]),
                    L.show(rc, out, err))
        sql("DELETE FROM %s WHERE version = 9999" % table)
        # an applied migration whose checksum is not this binary's
        sql("UPDATE %s SET checksum = 'ffffffffffffffff' WHERE version = 1" % table)
        for cmd in (["migrate"], ["status"]):
            rc, out, err = L.run_lockstep(cmd, cfg, timeout=60)
            t.check(rc not in (0, -999) and "was applied with checksum ffffffffffffffff" in err
                    and "different build" in err,
                    "%s: %s refuses a changed checksum, naming it" % (kind, cmd[0]), L.show(rc, out, err))
        rc, out, err = L.run_lockstep(["migrate", "--status"], cfg, timeout=60)
        sum1 = [ln.split()[2] for ln in out.splitlines() if ln.split()[:1] == ["1"]]
        t.check(rc == 0 and sum1, "%s: migrate --status lists migration 1's checksum" % kind, L.show(rc, out, err))
        sql("UPDATE %s SET checksum = '%s' WHERE version = 1" % (table, sum1[0] if sum1 else ""))
        rc, out, err = L.run_lockstep(["sync", "users"], cfg, timeout=120)
        t.eq(rc, 0, "%s: once restored, the store is accepted again" % kind, L.show(rc, out, err))


def test_concurrent_syncs_of_one_job():
    w = L.Workdir("state_lock")
    cfg = L.sync_config(w, {"src": src, "dst": dst}, jobs())
    L.run_lockstep(["migrate"], cfg, timeout=60)
    a = L.start_lockstep(["sync", "slow", "--json"], cfg)
    try:
        # Wait until the first run has its lock: its rows start to arrive in the target.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and a.poll() is None:
            if L.count_rows(dst, "slow_dst") > 0:
                break
            time.sleep(0.1)
        t.check(a.poll() is None, "the first sync is still running")
        jobs_ = status(cfg)
        t.eq(((jobs_.get("slow") or {}).get("lastRun") or {}).get("status"), "running",
             "status answers during the run and shows it running")
        rc, out, err = L.run_lockstep(["sync", "slow"], cfg, timeout=60)
        first_running = a.poll() is None
        t.eq(rc, 75, "a second sync of the same job exits 75 (EX_TEMPFAIL)", L.show(rc, out, err))
        t.check(first_running, "... while the first was still running")
        out_a, err_a = a.communicate(timeout=300)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
    t.eq(a.returncode, 0, "the first sync completes", L.show(a.returncode, out_a, err_a))
    t.eq(L.count_rows(dst, "slow_dst"), 2500, "the first sync copied every row")


t.case(test_status_after_runs)
t.case(test_migrate_status_sqlite_store)
t.case(test_migrate_status_pg_store)
t.case(test_migration_refusals)
t.case(test_concurrent_syncs_of_one_job)
t.finish()
