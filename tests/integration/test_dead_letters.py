"""Rows a target rejects go to the dead-letter queue; the rest is applied.

Cases, each judged by oracles independent of lockstep (md5 over both PostgreSQL
tables, the state store's table read with sqlite3, psycopg2 + sqlite3 row
comparison across engines):

- a CHECK constraint on a PostgreSQL target rejects 3 of 10,000 rows (COPY into an
  empty target, then the upsert path of `sync --full`): 9,997 applied, 3 dead
  letters with SQLSTATE 23514 and their keys, `sync` exits 0 and says so, the run
  records rows_failed 3, a second run bumps attempts instead of adding rows; after
  the constraint is dropped `errors replay` applies the current source rows (a
  row deleted from the source meanwhile: its delete) and the tables are equal;
  `errors show`, `resolve`, an unknown ID and a usage error;
- crash points: LK_FAILPOINT=after_dead_letter_insert (the dead letters are in the
  store, the target batch is not committed) and mid_bisection: the re-run keeps
  each dead letter exactly once (attempts 2 for the one stored before the crash),
  loses nothing, and the target equals the source minus the rejected rows;
- poll: a rejected row's dead letter resolves itself when a later change of the
  key applies cleanly;
- real-time: a trigger on the target raising for some keys while `lockstep sync`
  catches up (snapshot, then the changelog): the rest applies; after the fix a
  later update of one key resolves its dead letters by itself, and `errors
  replay` of the other queues it for the applier, which resolves it;
- an SQLite target with CHECK and NOT NULL constraints (SQLSTATEs 23514, 23502),
  also with the state store inside the target's own file;
- an SQLite source whose text key holds a byte that is not UTF-8 (SQLite stores any
  bytes), into a PostgreSQL target that rejects it (22021): the rest applies, and the
  dead letter is listed with its key and row shown with U+FFFD (before, jansson refused
  the text and the key silently dropped out of the answer); every JSON log line parses.
"""
import json
import os
import sqlite3
import subprocess

import lktest as L

L.require_pg()
t = L.Suite("test_dead_letters")


def errors(cfg, *more):
    """`lockstep errors list --json MORE` -> the list of dead letters (checked to succeed)."""
    rc, out, err = L.run_lockstep(["errors", "list", "--json"] + list(more), cfg)
    obj = L.whole_json(out)
    if rc != 0 or not isinstance(obj, dict):
        t.check(False, "errors list --json succeeds", L.show(rc, out, err))
        return []
    return obj.get("errors", [])


def store_rows(wd, job):
    """(key, change, sqlstate, attempts, resolved) of the job's dead letters, read with sqlite3."""
    c = sqlite3.connect(wd.file("state.db"))
    try:
        return c.execute("SELECT key, change, sqlstate, attempts, resolved_ms IS NOT NULL "
                         "FROM lockstep_errors WHERE job = ? ORDER BY key", (job,)).fetchall()
    finally:
        c.close()


def keys_of(dls):
    return sorted(int(d["key"][0]) for d in dls)


def create_source(url, n, bad):
    L.execute(url, "CREATE TABLE m (id bigint PRIMARY KEY, v int NOT NULL, name text, "
                   "updated_at timestamptz NOT NULL DEFAULT now())")
    L.execute(url, "INSERT INTO m (id, v, name, updated_at) SELECT i, i, 'name ' || i, "
                   "'2024-01-01'::timestamptz + i * interval '1 second' "
                   "FROM generate_series(1, %d) i" % n)
    if bad:
        L.execute(url, "UPDATE m SET v = -1 WHERE id IN (%s)" % ", ".join(map(str, bad)))


def create_checked_target(url):
    L.execute(url, "CREATE TABLE m (id bigint PRIMARY KEY, v int NOT NULL CONSTRAINT v_positive "
                   "CHECK (v >= 0), name text, updated_at timestamptz NOT NULL)")


def same_minus(src, dst, bad, what, stale=()):
    """md5 oracle: the target equals the source without the rejected keys (`stale`: keys
    whose update was rejected, which the target keeps in their older version)."""
    where = "id NOT IN (%s)" % ", ".join(map(str, bad)) if bad else None
    skip = "id NOT IN (%s)" % ", ".join(map(str, stale)) if stale else None
    return t.eq(L.pg_md5(dst, "m", ["id"], where=skip), L.pg_md5(src, "m", ["id"], where=where),
                "md5 oracle: %s" % what)


def test_check_constraint_pg_to_pg():
    n = max(200, L.scale(10000))
    bad = [17, n // 2, n - 1]
    src, dst = L.new_db("dl_src"), L.new_db("dl_dst")
    create_source(src, n, bad)
    create_checked_target(dst)
    wd = L.Workdir("dl_check")
    cfg = L.sync_config(wd, {"src": src, "dst": dst},
                        {"m": {"source": {"db": "src", "table": "m"},
                               "target": {"db": "dst", "table": "m"}}})
    rc, out, err = L.run_lockstep(["sync", "m"], cfg)
    t.eq(rc, 0, "a run with rejected rows exits 0", L.show(rc, out, err))
    t.check("Failing row" not in out + err and "name %d" % bad[0] not in out + err,
            "no rejected row's values in the output or the log (issue 20: the key and the "
            "SQLSTATE only)", L.show(rc, out, err))
    t.check("3 rows were dead-lettered (lockstep errors list)" in out,
            "sync says 3 rows were dead-lettered", L.show(rc, out, err))
    t.eq(L.count_rows(dst, "m"), n - 3, "%d of %d rows applied" % (n - 3, n))
    same_minus(src, dst, bad, "the target is the source minus the 3 rejected rows")
    c = sqlite3.connect(wd.file("state.db"))
    failed = c.execute("SELECT rows_failed FROM lockstep_runs ORDER BY started_ms DESC "
                       "LIMIT 1").fetchone()
    c.close()
    t.eq(failed and failed[0], 3, "the run record counts 3 failed rows")
    dls = errors(cfg)
    t.eq(keys_of(dls), bad, "errors list --json: the 3 rejected keys")
    t.check(all(d["sqlstate"] == "23514" and d["op"] == "upsert" and d["job"] == "m"
                and d["attempts"] == 1 and d["open"] and "v_positive" in d["message"]
                and "Failing row" not in d["message"] and "name " not in d["message"]
                for d in dls), "each has SQLSTATE 23514, op upsert, the constraint's name, and "
            "no row values in its message", json.dumps(dls, indent=1))

    # The upsert path (a non-empty target): the same rows fail, nothing is duplicated.
    rc, s, _ = L.sync(t, cfg, "m", "--full")
    if s:
        t.eq((s.get("rowsFailed"), s.get("rowsWritten")), (3, n - 3),
             "sync --full --json: 3 failed, the rest written")
    rows = store_rows(wd, "m")
    t.eq([(r[3], r[4]) for r in rows], [(2, 0)] * 3,
         "the same (job, key, change) again: 3 dead letters, attempts 2, still open")
    same_minus(src, dst, bad, "after the upsert run")

    rc, out, err = L.run_lockstep(["errors", "show", str(dls[0]["id"]), "--json"], cfg)
    obj = L.whole_json(out) or {}
    t.check(rc == 0 and obj.get("row", {}).get("v") == "-1" and obj.get("change") == "snapshot",
            "errors show --json: the row image and the change", L.show(rc, out, err))
    rc, out, err = L.run_lockstep(["errors", "replay", str(dls[0]["id"])], cfg)
    t.eq(rc, 1, "replay while the constraint still rejects the row exits 1", L.show(rc, out, err))

    L.execute(dst, "ALTER TABLE m DROP CONSTRAINT v_positive")
    L.execute(src, "DELETE FROM m WHERE id = %d" % bad[2])
    for d in dls:
        rc, out, err = L.run_lockstep(["errors", "replay", str(d["id"])], cfg)
        t.eq(rc, 0, "errors replay %s exits 0" % d["id"], L.show(rc, out, err))
    t.eq(L.pg_md5(dst, "m", ["id"]), L.pg_md5(src, "m", ["id"]),
         "md5 oracle: after the replays the tables are equal (a deleted key replayed as its delete)")
    t.eq(errors(cfg), [], "no open dead letters are left")
    t.eq(len(errors(cfg, "--all")), 3, "errors list --all still shows the 3, resolved")
    L.verify(t, cfg, "m", expect=0)
    rc, out, err = L.run_lockstep(["errors", "resolve", "9999999"], cfg)
    t.eq(rc, 1, "errors resolve of an unknown ID exits 1", L.show(rc, out, err))
    rc, out, err = L.run_lockstep(["errors", "replay", "x"], cfg)
    t.eq(rc, 2, "errors replay without a numeric ID is a usage error", L.show(rc, out, err))
    L.drop_one(src)
    L.drop_one(dst)


def crash(point):
    n = max(200, L.scale(5000))
    batch = max(10, n // 10)
    bad = [5, n // 2, n - 3]
    src, dst = L.new_db("dl_crash_src_" + point), L.new_db("dl_crash_dst_" + point)
    create_source(src, n, bad)
    create_checked_target(dst)
    wd = L.Workdir("dl_crash_" + point)
    cfg = L.sync_config(wd, {"src": src, "dst": dst},
                        {"m": {"source": {"db": "src", "table": "m"},
                               "target": {"db": "dst", "table": "m"}, "batch": batch}})
    rc, out, err = L.run_lockstep(["sync", "m"], cfg, env={"LK_FAILPOINT": point})
    t.eq(rc, 134, "%s: lockstep aborts with 134" % point, L.show(rc, out, err))
    before = store_rows(wd, "m")
    want = 1 if point == "after_dead_letter_insert" else 0
    t.eq(len(before), want, "%s: %d dead letter stored before the crash" % (point, want))
    committed = L.count_rows(dst, "m")
    t.check(committed < n - 3, "%s: the batch holding the dead letter did not commit (%d rows)"
            % (point, committed))
    rc, s, _ = L.sync(t, cfg, "m")
    rows = store_rows(wd, "m")
    t.eq(sorted(int(json.loads(r[0])[0]) for r in rows), bad,
         "%s: each rejected key is dead-lettered exactly once" % point)
    attempts = sorted(r[3] for r in rows)
    t.eq(attempts, [1, 1, 2] if want else [1, 1, 1],
         "%s: attempts count the stored failure again" % point)
    same_minus(src, dst, bad, "%s: nothing lost" % point)
    L.drop_one(src)
    L.drop_one(dst)


def test_poll_resolves_itself():
    src, dst = L.new_db("dl_poll_src"), L.new_db("dl_poll_dst")
    create_source(src, 300, [42])
    create_checked_target(dst)
    wd = L.Workdir("dl_poll")
    cfg = L.sync_config(wd, {"src": src, "dst": dst},
                        {"m": {"source": {"db": "src", "table": "m"},
                               "target": {"db": "dst", "table": "m"},
                               "mode": "poll", "cursor": "updated_at", "batch": 50}})
    rc, s, _ = L.sync(t, cfg, "m")
    dls = errors(cfg)
    t.eq(keys_of(dls), [42], "poll: key 42 is dead-lettered")
    t.check(dls and dls[0]["change"].startswith("poll:2024-01-01"),
            "poll: its change is the row's cursor value", json.dumps(dls))
    L.execute(src, "UPDATE m SET v = 42, updated_at = now() WHERE id = 42")
    L.execute(src, "UPDATE m SET v = -5, updated_at = now() WHERE id = 43")
    rc, s, _ = L.sync(t, cfg, "m")
    t.eq(keys_of(errors(cfg)), [43], "poll: 42 applied cleanly resolved itself; 43 is new")
    same_minus(src, dst, [43], "poll: everything but key 43", stale=[43])
    t.eq(L.scalar(dst, "SELECT v FROM m WHERE id = 43"), 43, "poll: key 43 keeps its older row")


def rt_job():
    return {"m": {"source": {"db": "src", "table": "m"}, "target": {"db": "dst", "table": "m"},
                  "mode": "realtime", "batch": 20}}


def test_realtime_trigger():
    src, dst = L.new_db("dl_rt_src"), L.new_db("dl_rt_dst")
    create_source(src, 100, [])
    L.execute(dst, "CREATE TABLE m (id bigint PRIMARY KEY, v int NOT NULL, name text, "
                   "updated_at timestamptz NOT NULL)")
    L.execute(dst, "CREATE TABLE blocked (id bigint PRIMARY KEY)")
    L.execute(dst, "INSERT INTO blocked VALUES (3), (77)")
    L.execute(dst, "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   "IF EXISTS (SELECT 1 FROM blocked WHERE id = NEW.id) THEN "
                   "RAISE EXCEPTION 'key % is blocked', NEW.id; END IF; RETURN NEW; END $$")
    L.execute(dst, "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON m FOR EACH ROW "
                   "EXECUTE FUNCTION refuse()")
    wd = L.Workdir("dl_rt")
    cfg = L.sync_config(wd, {"src": src, "dst": dst}, rt_job())
    rc, s, _ = L.sync(t, cfg, "m")
    dls = errors(cfg)
    t.eq(keys_of(dls), [3, 77], "realtime snapshot: the trigger's keys are dead-lettered")
    t.check(all(d["sqlstate"] == "P0001" and "is blocked" in d["message"] for d in dls),
            "SQLSTATE P0001 and the trigger's message", json.dumps(dls))
    same_minus(src, dst, [3, 77], "realtime snapshot: the rest applied")

    L.execute(src, "UPDATE m SET name = 'changed', v = v + 1 WHERE id IN (3, 10, 77, 90)")
    L.execute(src, "INSERT INTO m (id, v, name) VALUES (101, 1, 'new')")
    L.execute(src, "DELETE FROM m WHERE id = 50")
    rc, s, _ = L.sync(t, cfg, "m")
    if s:
        t.eq(s.get("rowsFailed"), 2, "stream: the 2 blocked keys fail again", repr(s))
    rows = store_rows(wd, "m")
    t.eq(sorted((json.loads(r[0])[0], r[1].split(":")[0]) for r in rows),
         [("3", "rt"), ("3", "snapshot"), ("77", "rt"), ("77", "snapshot")],
         "stream: one more dead letter per blocked key (change rt:...)")
    same_minus(src, dst, [3, 77], "stream: the other changes applied, the delete too")

    L.execute(dst, "DELETE FROM blocked")
    L.execute(src, "UPDATE m SET name = 'fixed' WHERE id = 3")
    rc, s, _ = L.sync(t, cfg, "m")
    t.eq(keys_of(errors(cfg)), [77, 77], "key 3 applied cleanly: its dead letters resolved themselves")
    rc, out, err = L.run_lockstep(["errors", "replay", str(errors(cfg)[0]["id"])], cfg)
    t.check(rc == 0 and "queued" in out, "errors replay of a real-time job queues the key",
            L.show(rc, out, err))
    rc, s, _ = L.sync(t, cfg, "m")
    t.eq(errors(cfg), [], "the applier applied key 77 and resolved its dead letters")
    t.eq(L.pg_md5(dst, "m", ["id"]), L.pg_md5(src, "m", ["id"]), "md5 oracle: tables equal")


def sqlite_target(same_file):
    src = L.new_db("dl_lite_src_%d" % same_file)
    create_source(src, 200, [8, 9])
    L.execute(src, "ALTER TABLE m ALTER COLUMN name DROP NOT NULL")
    L.execute(src, "UPDATE m SET name = NULL WHERE id = 150")
    wd = L.Workdir("dl_lite")
    lite = wd.file("t.db")
    c = sqlite3.connect(lite)
    c.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, v INTEGER CHECK (v >= 0), "
              "name TEXT NOT NULL, updated_at TIMESTAMPTZ TEXT)")
    c.commit()
    c.close()
    state = "sqlite:t.db" if same_file else "sqlite:state.db"
    cfg = L.sync_config(wd, {"src": src, "lite": "sqlite:" + lite},
                        {"m": {"source": {"db": "src", "table": "m"},
                               "target": {"db": "lite", "table": "m"}, "batch": 50}}, state=state)
    what = "SQLite target%s" % (" (state store in its file)" if same_file else "")
    rc, s, _ = L.sync(t, cfg, "m", timeout=120)
    dls = errors(cfg)
    t.eq(sorted((int(d["key"][0]), d["sqlstate"]) for d in dls),
         [(8, "23514"), (9, "23514"), (150, "23502")], "%s: CHECK and NOT NULL dead letters" % what)
    diff = L.compare_rows(L.rows_canonical(src, "m", ["id"], where="id NOT IN (8, 9, 150)"),
                          L.rows_canonical("sqlite:" + lite, "m", ["id"]))
    t.eq(diff, [], "%s: the rest equals the source" % what)
    L.execute(src, "UPDATE m SET v = 1, name = coalesce(name, 'x') WHERE id IN (8, 9, 150)")
    rc, s, _ = L.sync(t, cfg, "m", timeout=120)
    t.eq(errors(cfg), [], "%s: the next snapshot applied them cleanly and resolved them" % what)
    diff = L.compare_rows(L.rows_canonical(src, "m", ["id"]),
                          L.rows_canonical("sqlite:" + lite, "m", ["id"]))
    t.eq(diff, [], "%s: tables equal" % what)


def test_not_utf8_key():
    wd = L.Workdir("dl_utf8")
    lite = wd.file("s.db")
    c = sqlite3.connect(lite)
    c.execute("CREATE TABLE m (name TEXT PRIMARY KEY, v INTEGER NOT NULL)")
    c.executemany("INSERT INTO m VALUES (?, ?)", [("n%03d" % i, i) for i in range(100)])
    c.execute("UPDATE m SET name = CAST(X'41FF42' AS TEXT) WHERE v = 7")  # 'A', 0xff, 'B'
    c.commit()
    c.close()
    dst = L.new_db("dl_utf8_dst")
    L.execute(dst, "CREATE TABLE m (name text PRIMARY KEY, v bigint NOT NULL)")
    cfg = L.sync_config(wd, {"lite": "sqlite:" + lite, "dst": dst},
                        {"m": {"source": {"db": "lite", "table": "m"},
                               "target": {"db": "dst", "table": "m", "create": False}}},
                        extra={"log": {"format": "json"}})
    env = dict(os.environ, NO_COLOR="1")
    env.pop("LK_FAILPOINT", None)
    p = subprocess.run([L.lk_bin(), "-c", cfg, "sync", "m"], capture_output=True, env=env, timeout=120)
    t.eq(p.returncode, 0, "sync exits 0 with one row dead-lettered", p.stderr[-2000:])
    t.eq(L.scalar(dst, "SELECT count(*) FROM m"), 99, "the 99 other rows are in the target")
    msgs, bad_lines = [], []
    for line in p.stderr.splitlines():  # bytes: strict UTF-8 and JSON, line by line
        try:
            msgs.append(json.loads(line.decode("utf-8")).get("msg", ""))
        except ValueError:
            bad_lines.append(line)
    t.eq(bad_lines, [], "every log line is valid UTF-8 JSON (the key's bad byte logged as U+FFFD)")
    t.check(any("A\ufffdB" in m for m in msgs), "the dead-letter warning names the key with U+FFFD", msgs)
    dls = errors(cfg)
    t.eq([(d.get("key"), d.get("sqlstate")) for d in dls], [(["A\ufffdB"], "22021")],
         "errors list --json: the dead letter with its key, the bad byte as U+FFFD")
    rc, out, err = L.run_lockstep(["errors", "show", str(dls[0]["id"]) if dls else "1", "--json"], cfg)
    obj = L.whole_json(out) or {}
    t.check(rc == 0 and obj.get("key") == ["A\ufffdB"] and (obj.get("row") or {}).get("name") == "A\ufffdB",
            "errors show --json: key and row image", L.show(rc, out, err))


def test_deferred_fk_with_rejected_row():
    """A batch with a CHECK-rejected row and a violated deferred foreign key: COMMIT would
    refuse it, so it fails whole and leaves no dead letter for a row it never applied; once
    the parent exists, the rejected row is dead-lettered once and the rest commits."""
    src, dst = L.new_db("df_src"), L.new_db("df_dst")
    L.execute(src, "CREATE TABLE m (id bigint PRIMARY KEY, v int NOT NULL, p int)")
    L.execute(src, "INSERT INTO m SELECT i, i, 1 FROM generate_series(1, 50) i")
    L.execute(src, "UPDATE m SET v = -1 WHERE id = 17")
    L.execute(src, "UPDATE m SET p = 999 WHERE id = 30")
    L.execute(dst, "CREATE TABLE parent (id int PRIMARY KEY)")
    L.execute(dst, "INSERT INTO parent VALUES (1)")
    L.execute(dst, "CREATE TABLE m (id bigint PRIMARY KEY, v int NOT NULL CONSTRAINT v_ok "
                   "CHECK (v >= 0), p int REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)")
    wd = L.Workdir("df")
    cfg = L.sync_config(wd, {"src": src, "dst": dst},
                        {"m": {"source": {"db": "src", "table": "m"},
                               "target": {"db": "dst", "table": "m"}}})
    rc, out, err = L.run_lockstep(["sync", "m"], cfg)
    t.eq(rc, 1, "the batch fails", L.show(rc, out, err))
    t.check("23503" in err or "foreign key" in err, "the error is the foreign key's", err[-2000:])
    t.eq(L.count_rows(dst, "m"), 0, "nothing applied")
    c = sqlite3.connect(wd.file("state.db"))
    dl = c.execute("SELECT key, sqlstate, attempts FROM lockstep_errors").fetchall()
    c.close()
    t.eq(dl, [], "no dead letter of the rolled-back batch")
    L.execute(dst, "INSERT INTO parent VALUES (999)")
    rc, out, err = L.run_lockstep(["sync", "m"], cfg)
    t.eq(rc, 0, "fixed: the batch commits", L.show(rc, out, err))
    t.eq(L.count_rows(dst, "m"), 49, "49 rows applied")
    c = sqlite3.connect(wd.file("state.db"))
    dl = c.execute("SELECT key, sqlstate, attempts FROM lockstep_errors").fetchall()
    c.close()
    t.eq(dl, [('["17"]', "23514", 1)], "one dead letter, once")


t.case(test_check_constraint_pg_to_pg)
t.case(crash, "after_dead_letter_insert")
t.case(crash, "mid_bisection")
t.case(test_poll_resolves_itself)
t.case(test_realtime_trigger)
t.case(sqlite_target, False)
t.case(sqlite_target, True)
t.case(test_not_utf8_key)
t.case(test_deferred_fk_with_rejected_row)
t.finish()
