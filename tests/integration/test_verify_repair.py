"""`lockstep verify JOB --repair` from the command line (issue 19, docs/verify.md).

In every case drift is planted straight into the target, behind lockstep's back: some
rows updated (`changed`), some deleted (`missing`), some keys the source never had
inserted (`extra`). `verify` must exit 1 and list exactly those keys with their kind;
`verify --repair --json` must exit 0 with `repaired` = the number planted, and then an
oracle that is not lockstep says the two sides are equal: lktest.pg_md5 (an md5 over the
rows as text, computed by each server) PostgreSQL to PostgreSQL, lktest.rows_canonical +
compare_rows across engines. The repair is a recorded run of type `repair` in the state
store (read with Python's sqlite3).

Cases:
- poll_and_snapshot: PostgreSQL -> PostgreSQL, a poll job (deletes: delete), a snapshot
  job (deletes: delete), a poll job with deletes: ignore (the extra target rows are not
  differences and stay) and a snapshot job with deletes: soft:deleted_at (the extra rows
  are soft-deleted, the live rows equal the source). A poll or snapshot repair seals a new
  epoch: its run's epoch is above the sync's.
- realtime_alone: a real-time job with no daemon running: the repair queues the keys in
  the source's changelog and runs the job's catch-up itself; the target's version log
  (a trigger on the target) shows no key's version going backwards.
- beside_daemon: `lockstep run` holds a real-time job while 4 writer threads change the
  source (tests/harness/rtwriters.py); drift is planted on keys the writers never touch
  and on keys they do. `verify --repair` exits 0, lists no key that was not planted (no
  false alarm from writes in flight); once the writers stop the md5 oracle says equal and
  no key's version ever went backwards in the target. Beside the same daemon, a poll job
  it holds: `verify --repair` exits 75 naming POST /api/verify; that request (202) then
  repairs it.
- cross_engine: PostgreSQL -> SQLite (poll, the SQLite table made by lockstep) and
  SQLite -> PostgreSQL (real-time, no daemon), judged by rows_canonical + compare_rows.
"""
import http.client
import json
import os
import re
import sqlite3

import lktest as L
import rtwriters as W

L.require_pg()
t = L.Suite("test_verify_repair")

TOKEN = "verify-t0k3n"
N = max(400, L.scale(3000))   # rows in each source table


# ---------------------------------------------------------------------------
# helpers


def verify(cfg, job, *more, timeout=300):
    """`lockstep verify JOB --json MORE...` -> (rc, parsed object or {}, show text)."""
    rc, out, err = L.run_lockstep(["verify", job, "--json"] + list(more), cfg, timeout=timeout)
    obj = L.whole_json(out)
    return rc, obj if isinstance(obj, dict) else {}, L.show(rc, out, err)


def listed(obj):
    """{(key, kind)} of the differences a verify --json listed (single integer keys)."""
    out = set()
    for d in obj.get("differences") or []:
        k = d.get("key")
        out.add((int(k[0]) if isinstance(k, list) and len(k) == 1 else repr(k), d.get("kind")))
    return out


def picks(n, count, offset):
    """`count` keys spread over 1..n (distinct for distinct offsets < n / count)."""
    step = max(1, n // count)
    return [1 + offset + i * step for i in range(count)]


class Drift:
    """The keys planted: changed (updated in the target), missing (deleted from it), extra
    (inserted into it, absent from the source)."""

    def __init__(self, changed, missing, extra):
        self.changed, self.missing, self.extra = list(changed), list(missing), list(extra)
        keys = self.changed + self.missing + self.extra
        assert len(set(keys)) == len(keys), "drift keys overlap: %r" % keys

    def expected(self, extras_count=True):
        e = set((k, "changed") for k in self.changed) | set((k, "missing") for k in self.missing)
        if extras_count:
            e |= set((k, "extra") for k in self.extra)
        return e

    def plant_pg(self, url, table="items"):
        q = L._quote_pg(table)
        L.sql(url,
              "UPDATE %s SET name = 'drift ' || id, doc = '{\"drift\": true}' WHERE id IN (%s)"
              % (q, ",".join(map(str, self.changed))),
              "DELETE FROM %s WHERE id IN (%s)" % (q, ",".join(map(str, self.missing))),
              "INSERT INTO %s (id, status, version, name) VALUES %s" % (
                  q, ", ".join("(%d, 'active', 1, 'extra')" % k for k in self.extra)))


def state_runs(wd, job, kind, store=None):
    """Rows (dicts) of the runs of `job` and type `kind`: from the SQLite state store in
    WD (read with sqlite3), or from PostgreSQL state store `store` (psycopg2)."""
    q = "SELECT * FROM %s WHERE job = {p} AND type = {p} ORDER BY started_ms, id"
    if store:
        c = L.connect(store)
        try:
            with c.cursor() as cur:
                cur.execute((q % "lockstep.runs").format(p="%s"), (job, kind))
                names = [x[0] for x in cur.description]
                return [dict(zip(names, r)) for r in cur.fetchall()]
        except L.psycopg2.Error:
            return []
        finally:
            c.close()
    path = wd.file("state.db")
    if not os.path.exists(path):
        return []
    c = sqlite3.connect(path, timeout=30)
    try:
        c.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in c.execute((q % "lockstep_runs").format(p="?"), (job, kind))]
        except sqlite3.OperationalError:
            return []
    finally:
        c.close()


def check_repair_run(wd, job, repaired, what):
    rs = state_runs(wd, job, "repair")
    last = rs[-1] if rs else {}
    t.check(len(rs) == 1 and last.get("status") == "succeeded" and last.get("rows_written") == repaired
            and last.get("rows_failed") == 0,
            "%s: one run of type repair recorded, succeeded, rows_written %d, rows_failed 0"
            % (what, repaired), repr(rs))


def target_position(dst, job):
    """(epoch, position text) of the job in the target's lockstep_sync.position, or (None, None)."""
    try:
        rows = L.execute(dst, "SELECT epoch, pos::text FROM lockstep_sync.position WHERE job = %s", (job,))
    except L.psycopg2.Error:
        return (None, None)
    return rows[0] if rows else (None, None)


def find_then_repair(cfg, job, drift, what, extras_count=True):
    """verify (exit 1, the planted keys listed), then verify --repair --json (exit 0,
    repaired = planted); returns the repair's object."""
    want = drift.expected(extras_count)
    rc, obj, shown = verify(cfg, job)
    t.eq(rc, 1, "%s: verify finds the drift (exit 1)" % what, shown)
    t.eq(listed(obj), want, "%s: verify lists exactly the planted keys and kinds" % what, shown)
    t.eq(obj.get("differenceCount"), len(want), "%s: differenceCount %d" % (what, len(want)), shown)
    rc, obj, shown = verify(cfg, job, "--repair")
    t.eq(rc, 0, "%s: verify --repair exits 0" % what, shown)
    t.eq((obj.get("differenceCount"), obj.get("repaired"), obj.get("remaining")), (len(want), len(want), 0),
         "%s: verify --repair --json: differenceCount and repaired are %d, remaining 0" % (what, len(want)),
         shown)
    t.eq(listed(obj), want, "%s: verify --repair --json lists the planted keys" % what, shown)
    return obj


def md5_equal(src, dst, what, dst_where=None, deadline=0):
    ok, a, b = W.wait_equal(t, src, dst, None, deadline, dst_where=dst_where,
                            what="%s: md5 oracle, target == source" % what)
    return ok


# ---------------------------------------------------------------------------
# a. poll and snapshot jobs, PostgreSQL -> PostgreSQL


def test_poll_and_snapshot():
    src = L.new_db("vr_ps_src")
    dst = L.new_db("vr_ps_dst")
    tables = {"p_del": ("poll", "delete"), "s_del": ("snapshot", "delete"),
              "p_ign": ("poll", "ignore"), "s_soft": ("snapshot", "soft:deleted_at")}
    jobs = {}
    for name, (mode, deletes) in tables.items():
        W.create_source(src, N, table=name)
        W.create_target(dst, table=name, log_table=None,
                        extra_cols=", deleted_at timestamptz" if deletes.startswith("soft") else "")
        j = {"source": {"db": "src", "table": name},
             "target": {"db": "dst", "table": name, "create": False, "deletes": deletes},
             "mode": mode, "batch": 500}
        if mode == "poll":
            j["cursor"] = "updated_at"
        jobs[name] = j
    wd = L.Workdir("vr_ps")
    cfg = L.sync_config(wd, {"src": src, "dst": dst}, jobs)
    for i, name in enumerate(sorted(tables)):
        mode, deletes = tables[name]
        what = "%s (%s, deletes: %s)" % (name, mode, deletes)
        L.sync(t, cfg, name)
        rc, obj, shown = verify(cfg, name)
        t.eq(rc, 0, "%s: equal after the sync (verify exits 0)" % what, shown)
        epoch, pos = target_position(dst, name)
        d = Drift(picks(N, 5, 3 + i), picks(N, 4, 40 + i), [-101, -102, -103])
        d.plant_pg(dst, name)
        live = "deleted_at IS NULL" if deletes.startswith("soft") else None
        ignore = deletes == "ignore"
        find_then_repair(cfg, name, d, what, extras_count=not ignore)
        planted = len(d.expected(not ignore))
        if ignore:
            W.wait_equal(t, src, dst, None, 0, src_table=name, dst_table=name, dst_where="id > 0",
                         what="%s: md5 oracle, target rows of the source's keys == source" % what)
            t.eq(L.count_rows(dst, name, "id < 0"), 3,
                 "%s: the 3 extra target rows are left alone (deletes: ignore)" % what)
            rc, obj, shown = verify(cfg, name)
            t.eq(rc, 0, "%s: verify exits 0 afterwards: kept extra rows are no difference" % what, shown)
        elif live:
            W.wait_equal(t, src, dst, None, 0, src_table=name, dst_table=name, dst_where=live,
                         what="%s: md5 oracle, live target rows == source" % what)
            t.eq(L.count_rows(dst, name, "id < 0 AND deleted_at IS NOT NULL"), 3,
                 "%s: the 3 extra target rows are soft-deleted (deleted_at set)" % what)
        else:
            W.wait_equal(t, src, dst, None, 0, src_table=name, dst_table=name,
                         what="%s: md5 oracle, target == source" % what)
        check_repair_run(wd, name, planted, what)
        epoch2, pos2 = target_position(dst, name)
        t.check(epoch is not None and epoch2 is not None and epoch2 > epoch and pos2 == pos,
                "%s: the repair sealed a new epoch (%r -> %r in the target's position) and left the "
                "job's position as it was" % (what, epoch, epoch2), "%s\n%s" % (pos, pos2))
        rc, obj, shown = verify(cfg, name)
        t.eq(rc, 0, "%s: verify exits 0 after the repair" % what, shown)


# ---------------------------------------------------------------------------
# b. a real-time job with no daemon


def rt_job(table="items", deletes="delete"):
    return {"source": {"db": "src", "table": table},
            "target": {"db": "dst", "table": table, "create": False, "deletes": deletes},
            "mode": "realtime", "batch": 200}


def test_realtime_alone():
    src, dst = L.new_db("vr_rt_src"), L.new_db("vr_rt_dst")
    W.create_source(src, N)
    W.create_target(dst)
    wd = L.Workdir("vr_rt")
    cfg = L.sync_config(wd, {"src": src, "dst": dst}, {"items": rt_job()})
    L.sync(t, cfg, "items")
    # a few source changes the catch-up has not applied yet: the repair's catch-up takes them too
    L.sql(src, "UPDATE items SET version = version + 1, name = 'later' WHERE id IN (2, 4, 6)")
    L.sync(t, cfg, "items")
    md5_equal(src, dst, "realtime, before the drift")
    d = Drift(picks(N, 5, 3), picks(N, 4, 40), [-101, -102, -103])
    d.plant_pg(dst)
    find_then_repair(cfg, "items", d, "realtime, no daemon")
    md5_equal(src, dst, "realtime, no daemon, after verify --repair")
    bad = W.versions_monotonic(dst)
    t.eq(bad, [], "realtime, no daemon: no key's version went backwards in the target")
    check_repair_run(wd, "items", len(d.expected()), "realtime, no daemon")
    rc, obj, shown = verify(cfg, "items")
    t.eq(rc, 0, "realtime, no daemon: verify exits 0 after the repair", shown)


# ---------------------------------------------------------------------------
# c. beside a running daemon


def http_port(d):
    m = L.wait_for(lambda: re.search(r"HTTP API on http://[^:]+:(\d+)/", d.output()) or not d.alive(), 30, 0.1)
    return int(m.group(1)) if m and m is not True else None


def api_req(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    h = {"Authorization": "Bearer " + TOKEN}
    data = None if body is None else json.dumps(body)
    if data is not None:
        h["Content-Type"] = "application/json"
    try:
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        text = r.read().decode("utf-8", "replace")
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text
    finally:
        c.close()


def position_phase(dst, job):
    try:
        rows = L.execute(dst, "SELECT pos FROM lockstep_sync.position WHERE job = %s", (job,))
    except L.psycopg2.Error:
        return None
    if not rows or rows[0][0] is None:
        return None
    v = rows[0][0]
    return (v if isinstance(v, dict) else json.loads(v)).get("phase")


def test_beside_daemon():
    src, dst = L.new_db("vr_dm_src"), L.new_db("vr_dm_dst")
    W.create_source(src, N)
    W.create_target(dst)
    # keys -1..-20: the writers never touch them (rtwriters.RESERVED_BELOW)
    L.execute(src, "INSERT INTO items (id, status, version, name, doc) SELECT -g, 'active', 1, "
                   "'reserved ' || g, jsonb_build_object('g', g) FROM generate_series(1, 20) g")
    W.create_source(src, N, table="pitems")
    W.create_target(dst, table="pitems", log_table=None)
    jobs = {"items": rt_job(),
            "pitems": {"source": {"db": "src", "table": "pitems"},
                       "target": {"db": "dst", "table": "pitems", "create": False},
                       "mode": "poll", "cursor": "updated_at", "every": "2s", "batch": 500}}
    wd = L.Workdir("vr_dm")
    # A PostgreSQL state store: the daemon holds each job's lease while it runs
    # (docs/verify.md, "Beside a daemon").
    store = L.new_db("vr_dm_state")
    cfg = L.sync_config(wd, {"src": src, "dst": dst}, jobs, state=store,
                        extra={"http": {"listen": "127.0.0.1:0", "token": TOKEN},
                               "instance": {"name": "vr-dm"}})
    d = W.Daemon(cfg, wd.file("run.log"), {"LOCKSTEP_SHUTDOWN_GRACE": "10s"}).start()
    w = W.Writers(src, n=4, hold_s=(0.5, 2.0), body_kb=(1, 8), log=t.log)
    try:
        port = http_port(d)
        if not t.check(port, "the daemon logs its HTTP API's address", d.tail()):
            raise RuntimeError("lockstep run did not start")
        t.check(L.wait_for(lambda: position_phase(dst, "items") == "stream" or not d.alive(), 120, 0.2)
                and d.alive(), "the real-time job streams", d.tail())
        md5_equal(src, dst, "beside a daemon, before the writers", deadline=120)
        W.wait_equal(t, src, dst, None, 120, src_table="pitems", dst_table="pitems",
                     what="beside a daemon: the poll job copied pitems (md5 oracle)")
        w.start()
        t.check(L.wait_for(lambda: w.counts["committed"] >= 50, 60, 0.1),
                "the writers are committing (%s)" % w.summary())
        live = [r[0] for r in L.execute(dst, "SELECT id FROM items WHERE id > 0 ORDER BY id")]
        step = max(1, len(live) // 12)
        busy = live[::step][:6]  # keys the writers may change at any moment
        # 18 keys: all of them fit in the 20 that verify --json lists
        d1 = Drift([-1, -2, -3, -4, -5] + busy[:3], [-6, -7, -8, -9] + busy[3:6], [-101, -102, -103])
        d1.plant_pg(dst)
        rc, obj, shown = verify(cfg, "items", "--repair")
        t.eq(rc, 0, "beside a daemon under writers: verify --repair exits 0", shown)
        planted = d1.expected()
        got = listed(obj)
        t.check(got and got <= planted,
                "beside a daemon under writers: every listed difference is a planted one (no false "
                "alarm from writes in flight; %d listed)" % len(got),
                "not planted: %r\n%s" % (sorted(got - planted), shown))
        reserved = set(x for x in planted if x[0] < 0)
        t.check(reserved <= got,
                "beside a daemon under writers: the drift on keys no writer touches is found", shown)
        t.check((obj.get("repaired") or 0) >= len(reserved),
                "beside a daemon under writers: repaired >= %d" % len(reserved), shown)
        rs = state_runs(wd, "items", "repair", store)
        t.check(len(rs) == 1 and rs[0].get("status") == "succeeded",
                "beside a daemon: the repair is a recorded run of type repair, succeeded", repr(rs))
    finally:
        t.check(w.stop(), "the writer threads stop")
    try:
        t.check(not w.errors, "the writers met no unexpected error", "\n".join(w.errors))
        t.check(d.alive(), "lockstep run is still running", d.tail())
        md5_equal(src, dst, "beside a daemon, once the writers stopped", deadline=120)
        bad = W.versions_monotonic(dst)
        t.eq(bad, [], "beside a daemon: no key's version went backwards in the target (%d logged)"
             % W.log_count(dst), "\n".join("key %s: %r" % (k, W.version_history(dst, k)) for k in bad[:5]))
        rc, obj, shown = verify(cfg, "items")
        t.eq(rc, 0, "beside a daemon: verify exits 0 at the end", shown)

        # a poll job the daemon holds: the CLI does not race it
        d2 = Drift(picks(N, 3, 7), picks(N, 2, 60), [-201, -202])
        d2.plant_pg(dst, "pitems")
        rc, out, err = L.run_lockstep(["verify", "pitems", "--repair"], cfg, timeout=120)
        t.eq(rc, 75, "beside a daemon holding a poll job: verify --repair exits 75",
             L.show(rc, out, err))
        t.check("/api/verify" in out + err, "the message names the command that asks the daemon "
                "(POST /api/verify)", L.show(rc, out, err))
        if port:
            code, body = api_req(port, "POST", "/api/verify", {"job": "pitems", "repair": True})
            t.check(code == 202 and isinstance(body, dict) and body.get("id"),
                    "POST /api/verify {job: pitems, repair: true}: 202 with a run id", (code, body))
            rid = body.get("id") if isinstance(body, dict) else None
            st = {}

            def final():
                st["v"] = api_req(port, "GET", "/api/sync/status/%s" % rid)[1]
                return isinstance(st["v"], dict) and st["v"].get("finishTime")
            t.check(rid and L.wait_for(final, 90, 0.3) and st["v"].get("status") == "succeeded"
                    and st["v"].get("type") == "verify"
                    and (st["v"].get("stats") or {}).get("rowsWritten") == len(d2.expected()),
                    "that run (GET /api/sync/status/ID) is a verify run that succeeded and repaired %d rows"
                    % len(d2.expected()), st.get("v"))
            W.wait_equal(t, src, dst, None, 90, src_table="pitems", dst_table="pitems",
                         what="the repair asked over HTTP heals pitems (md5 oracle)")
        t.eq(d.term(60), 0, "SIGTERM stops lockstep run with exit 0", d.tail())
    finally:
        d.kill()


# ---------------------------------------------------------------------------
# d. across engines

X_COLS = ["id", "status", "version", "name", "amount", "ts", "data", "updated_at"]
X_PG_DDL = ("CREATE TABLE items (id bigint PRIMARY KEY, status text NOT NULL, version bigint NOT NULL, "
            "name text, amount numeric(12,2), ts timestamptz, data bytea, "
            "updated_at timestamptz NOT NULL DEFAULT now())")
X_SQLITE_DDL = ("CREATE TABLE items (id INTEGER PRIMARY KEY, status TEXT NOT NULL, version INTEGER NOT NULL, "
                "name TEXT, amount NUMERIC TEXT, ts TIMESTAMPTZ TEXT, data BLOB, updated_at TIMESTAMPTZ TEXT)")


def x_fill_pg(url, n):
    L.sql(url, X_PG_DDL,
          "INSERT INTO items SELECT i, CASE WHEN i %% 3 = 0 THEN 'inactive' ELSE 'active' END, 1, "
          "CASE WHEN i %% 11 = 0 THEN NULL ELSE 'name ' || i || ' ' || chr(1024 + i %% 200) END, "
          "CASE WHEN i %% 13 = 0 THEN NULL ELSE (i * 1.25)::numeric(12,2) END, "
          "'2024-01-01 00:00:00+00'::timestamptz + i * interval '1 second 1 microsecond', "
          "CASE WHEN i %% 7 = 0 THEN NULL ELSE decode(md5(i::text), 'hex') END, "
          "'2024-01-01 00:00:00+00'::timestamptz + i * interval '1 second' "
          "FROM generate_series(1, %d) i" % n)


def x_row(i, name=None):
    import datetime
    import decimal
    import hashlib
    base = datetime.datetime(2024, 1, 1, tzinfo=L.UTC)
    return (i, "inactive" if i % 3 == 0 else "active", 1,
            name or (None if i % 11 == 0 else "name %d %s" % (i, chr(1024 + i % 200))),
            None if i % 13 == 0 else str((decimal.Decimal(i) * decimal.Decimal("1.25")).quantize(
                decimal.Decimal("0.01"))),
            L.fmt_ts(base + datetime.timedelta(seconds=i, microseconds=i), True),
            None if i % 7 == 0 else hashlib.md5(str(i).encode()).digest(),
            L.fmt_ts(base + datetime.timedelta(seconds=i), True))


def sqlite_exec(path, *stmts):
    c = sqlite3.connect(path, timeout=30)
    try:
        c.execute("PRAGMA busy_timeout = 30000")
        for s in stmts:
            if isinstance(s, tuple):
                c.executemany(s[0], s[1])
            else:
                c.execute(s)
        c.commit()
    finally:
        c.close()


def x_fill_sqlite(path, n):
    c = sqlite3.connect(path)
    try:
        c.execute("PRAGMA journal_mode = WAL")
        c.execute(X_SQLITE_DDL)
        c.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [x_row(i) for i in range(1, n + 1)])
        c.commit()
    finally:
        c.close()


def x_plant_sqlite(path, drift):
    sqlite_exec(path,
                "UPDATE items SET name = 'drift ' || id, amount = '0.01' WHERE id IN (%s)"
                % ",".join(map(str, drift.changed)),
                "DELETE FROM items WHERE id IN (%s)" % ",".join(map(str, drift.missing)),
                ("INSERT INTO items (id, status, version, name, amount, ts, data, updated_at) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [x_row(k, "extra") for k in drift.extra]))


def x_plant_pg(url, drift):
    L.sql(url,
          "UPDATE items SET name = 'drift ' || id, amount = 0.01 WHERE id IN (%s)"
          % ",".join(map(str, drift.changed)),
          "DELETE FROM items WHERE id IN (%s)" % ",".join(map(str, drift.missing)),
          "INSERT INTO items (id, status, version, name, ts, updated_at) VALUES %s" % ", ".join(
              "(%d, 'active', 1, 'extra', now(), now())" % k for k in drift.extra))


def x_equal(a_url, b_url, what, deadline=0):
    last = {}

    def same():
        a = L.rows_canonical(a_url, "items", ["id"], X_COLS)
        b = L.rows_canonical(b_url, "items", ["id"], X_COLS)
        last["v"] = (a, b, L.compare_rows(a, b))
        return not last["v"][2]
    ok = L.wait_for(same, deadline, 0.5)
    a, b, diff = last["v"]
    t.check(ok and len(a) > 0, "%s: canonical-row oracle, target == source (%d rows)" % (what, len(a)),
            "%d keys differ:\n%s" % (len(diff), L.describe_diff(a, b, diff)))
    return ok


def test_cross_engine():
    wd = L.Workdir("vr_x")
    pg_src, pg_dst = L.new_db("vr_x_src"), L.new_db("vr_x_dst")
    lite_dst, lite_src = wd.file("target.db"), wd.file("source.db")
    x_fill_pg(pg_src, N)
    x_fill_sqlite(lite_src, N)
    jobs = {"p2l": {"source": {"db": "pg", "table": "items"},
                    "target": {"db": "lite_t", "table": "items", "create": True},
                    "mode": "poll", "cursor": "updated_at", "batch": 500},
            "l2p": {"source": {"db": "lite_s", "table": "items"},
                    "target": {"db": "pgt", "table": "items", "create": True},
                    "mode": "realtime", "batch": 200}}
    cfg = L.sync_config(wd, {"pg": pg_src, "pgt": pg_dst, "lite_t": "sqlite:" + lite_dst,
                             "lite_s": "sqlite:" + lite_src}, jobs)

    # PostgreSQL -> SQLite, poll
    L.sync(t, cfg, "p2l")
    x_equal(pg_src, "sqlite:" + lite_dst, "PG -> SQLite poll, after the sync")
    d = Drift(picks(N, 5, 3), picks(N, 4, 40), [-101, -102, -103])
    x_plant_sqlite(lite_dst, d)
    find_then_repair(cfg, "p2l", d, "PG -> SQLite poll")
    x_equal(pg_src, "sqlite:" + lite_dst, "PG -> SQLite poll, after verify --repair")
    check_repair_run(wd, "p2l", len(d.expected()), "PG -> SQLite poll")

    # SQLite -> PostgreSQL, real-time (the keys are queued in the SQLite changelog)
    L.sync(t, cfg, "l2p")
    sqlite_exec(lite_src, "UPDATE items SET version = version + 1, name = 'later' WHERE id IN (2, 4)")
    L.sync(t, cfg, "l2p")
    x_equal("sqlite:" + lite_src, pg_dst, "SQLite -> PG realtime, after the sync")
    d = Drift(picks(N, 5, 5), picks(N, 4, 50), [-111, -112, -113])
    x_plant_pg(pg_dst, d)
    find_then_repair(cfg, "l2p", d, "SQLite -> PG realtime")
    x_equal("sqlite:" + lite_src, pg_dst, "SQLite -> PG realtime, after verify --repair")
    check_repair_run(wd, "l2p", len(d.expected()), "SQLite -> PG realtime")


t.case(test_poll_and_snapshot)
t.case(test_realtime_alone)
t.case(test_beside_daemon)
t.case(test_cross_engine)
t.finish()
