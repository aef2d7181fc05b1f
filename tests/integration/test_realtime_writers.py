"""Real-time mode, PostgreSQL -> PostgreSQL, under 8 concurrent writers.

(a) writers. The source `items` holds L.scale(20000) rows (at least 300) before
`lockstep run` starts, so the first start has a snapshot of many pages (batch 200,
where "status = 'active'", deletes: delete). 8 writer threads (tests/harness/
rtwriters.py) make random transactions of 1-5 statements: inserts of fresh keys,
updates of status (rows entering and leaving `where`), of a 20-200 KB body and of
a jsonb doc, key changes and deletes, some sleeping before COMMIT; one more thread
holds a transaction open for seconds at a time after an early update. `run` starts
while that transaction is open.
The snapshot overlaps an open writing transaction by construction: the job's `where`
also calls lk_gate(id) (lktest.Gate), which waits for an advisory lock the test holds,
so the snapshot's read stops at its first active row until the test lets it go. Before
`run` starts the test opens a transaction with an xid (and no lock on the table, so
the capture's install does not wait for it); once the snapshot's read is seen
waiting at the gate with the position in phase "snapshot", that transaction inserts
key -1, updates key -2 and deletes key -3 (keys the writers never touch: rtwriters
RESERVED_BELOW), commits, and the gate opens. Checked unconditionally: the horizon
lockstep took is not above that xid; the snapshot copied key -2 as it was before
(the target's version log starts at version 1); the three changes reach the target
(md5 oracle over keys < 0). Writers run 30 s * LK_SCALE (at least 5 s); half-way
(and after the first snapshot) the table is truncated once, and the writers go on
for at least half that time again.
Then, by oracles independent of lockstep:
  - the target equals the source rows matching `where` (md5 over the rows as text,
    computed by each server; bodies as md5) within a generous deadline;
  - a trigger on the target logged (key, version) on every insert and update, and
    no key's version ever went backwards (no stale overwrite);
  - the writers met no error other than deadlocks.
And of lockstep itself: `status --json` shows the job registered with 0 pending;
SIGTERM stops `run` with exit 0 and "stopped" in its log; a following `sync
--json` reads 0 changes (the position was committed); `verify` exits 0.

(b) stopped, then started again, with a second job on the same source table
(deletes: soft:deleted_at into another target table). Changes made while
lockstep is stopped (inserts, updates, a key change, a row leaving `where`, hard
deletes) are applied by the next `run`: the delete job removes the rows, the soft
job keeps them with deleted_at set; when the row comes back into `where` (live),
deleted_at is cleared. Both targets are judged by the md5 oracle (the soft one
over its rows with deleted_at IS NULL) and by their version logs.
"""
import json
import os
import time

import lktest as L
import rtwriters as W

L.require_pg()
t = L.Suite("test_realtime_writers")

try:
    _SCALE = float(os.environ.get("LK_SCALE") or 1)
except ValueError:
    _SCALE = 1.0
DURATION = max(5.0, 30.0 * _SCALE)  # seconds of concurrent writes
N0 = max(300, L.scale(20000))       # rows before the first start
BATCH = 200
WHERE = "status = 'active'"
DEADLINE = 180                      # seconds to wait for convergence (never a timing assertion)
HOLD_S = (max(1.0, 2.0 * _SCALE), max(2.0, 5.0 * _SCALE))  # how long the holder keeps its transaction
GATED = WHERE + " AND " + L.Gate.where_sql("id")  # the job's where in test_writers (the gate is always true)


def job(deletes, target_table="items", where=WHERE):
    return {"source": {"db": "src", "table": "items", "key": ["id"], "where": where},
            "target": {"db": "dst", "table": target_table, "create": False, "deletes": deletes},
            "mode": "realtime", "batch": BATCH}


def position(dst, name):
    """The job's position in the target (parsed JSON), or None."""
    try:
        rows = L.execute(dst, "SELECT pos FROM lockstep_sync.position WHERE job = %s", (name,))
    except L.psycopg2.Error:
        return None
    if not rows or rows[0][0] is None:
        return None
    v = rows[0][0]
    return v if isinstance(v, dict) else json.loads(v)


def lag_of(cfg, name):
    """(lag dict or None, raw output) from `status --json`."""
    rc, out, err = L.run_lockstep(["status", "--json"], cfg, timeout=60)
    obj = L.whole_json(out)
    for j in (obj or {}).get("jobs", []):
        if j.get("name") == name:
            return j.get("lag"), L.show(rc, out, err)
    return None, L.show(rc, out, err)


def wait_no_pending(cfg, name, deadline_s=60):
    """Polls `status --json` until the job's lag says registered with 0 pending."""
    t0 = time.monotonic()
    while True:
        lag, raw = lag_of(cfg, name)
        if (lag and lag.get("registered") is True and lag.get("pending") == 0) or \
                time.monotonic() - t0 > deadline_s:
            return lag, raw
        time.sleep(0.5)


def stop_daemon(d, what):
    rc = d.term(60)
    out = d.output()
    t.eq(rc, 0, "%s: SIGTERM stops `run` with exit 0" % what, d.tail())
    t.check("stopped" in out, "%s: the log says the job stopped" % what, d.tail())
    return rc


def test_writers():
    src, dst = L.new_db("rtw_src"), L.new_db("rtw_dst")
    W.create_source(src, N0)
    W.create_target(dst)
    gate = L.Gate(src)  # every row waits while the gate is closed
    # keys the writers never touch (below rtwriters.RESERVED_BELOW): -2 and -3 exist
    # before the snapshot; the transaction held across it updates -2, deletes -3, adds -1
    L.execute(src, "INSERT INTO items (id, status, version, name, doc) VALUES "
                   "(-2, 'active', 1, 'before the snapshot', '{\"k\": -2}'), "
                   "(-3, 'active', 1, 'before the snapshot', '{\"k\": -3}')")
    wd = L.Workdir("rt_writers")
    cfg = L.sync_config(wd, {"src": src, "dst": dst}, {"items": job("delete", where=GATED)})
    t.log("source: %d rows (%d active), batch %d, writers for %.0f s" % (
        N0, L.count_rows(src, "items", WHERE), BATCH, DURATION))

    w = W.Writers(src, n=8, log=t.log, hold_s=HOLD_S)
    d = W.Daemon(cfg, wd.file("run.log"))
    w.start()
    try:
        t.check(w.holding.wait(30), "the holder's transaction is open before `run` starts")
        watch_first_start(w, d, src, dst, gate)
    except BaseException:
        d.kill()
        raise
    finally:
        t.check(w.stop(), "the writer threads stop")
    try:
        converge_and_stop(w, d, src, dst, cfg)
    finally:
        d.kill()  # when a check raised before the SIGTERM


def watch_first_start(w, d, src, dst, gate):
    """Starts `run` with a transaction held open across its first snapshot (see the module
    docstring), TRUNCATEs half-way, lets the writers go on."""
    gate.close()
    held = L.psycopg2.connect(src, connect_timeout=10)
    try:
        cur = held.cursor()  # autocommit off: one transaction until held.commit()
        cur.execute("SELECT pg_current_xact_id()::text::bigint")
        xid = cur.fetchone()[0]
        t0 = time.monotonic()
        d.start()
        # The position says "snapshot" (its h is the horizon taken before the snapshot began)
        # and the snapshot's read waits at the gate: the snapshot is running.
        waiting = L.wait_for(lambda: (gate.waiters() and (position(dst, "items") or {}).get("phase")
                                      == "snapshot") or not d.alive(), 120, 0.05)
        who = gate.waiters()
        p = position(dst, "items") or {}
        t.check(waiting is True and who and p.get("phase") == "snapshot",
                "the first snapshot runs (phase snapshot, its read waiting at the gate: %s) while a "
                "transaction (xid %d) is open" % ([q[:40] for _, q in who], xid),
                "position %r\n%s" % (p, d.tail()))
        t.check(who and all(q.startswith(("COPY", "FETCH", "DECLARE")) for _, q in who),
                "what waits at the gate is the snapshot's read of the source", repr(who))
        snap_h = int(p.get("h") or -1)
        t.check(0 < snap_h <= xid, "the horizon the snapshot took (%d) is not above the open "
                "transaction's xid (%d): its changes are left to the stream" % (snap_h, xid))
        cur.execute("INSERT INTO items (id, status, version, name, doc) VALUES "
                    "(-1, 'active', 1, 'inserted during the snapshot', '{\"k\": -1}')")
        cur.execute("UPDATE items SET version = version + 1, name = 'updated during the snapshot', "
                    "updated_at = now() WHERE id = -2")
        cur.execute("DELETE FROM items WHERE id = -3")
        held.commit()
        t.check(gate.waiters() == who, "that transaction committed while the snapshot's read still "
                "waited at the gate", repr(gate.waiters()))
    finally:
        held.close()
        gate.open()
    snap_end = L.wait_for(lambda: (position(dst, "items") or {}).get("phase") == "stream" or not d.alive(),
                          120, 0.05)
    t.check(snap_end is True and d.alive(), "the first start finishes its snapshot (%.1f s)" % (
        time.monotonic() - t0), d.tail())
    W.wait_equal(t, src, dst, "id < 0 AND " + WHERE, 60, dst_where="id < 0",
                 what="the insert, update and delete of the transaction held across the snapshot "
                      "reach the target (md5 oracle over keys < 0)")
    hist = dict((k, [v for _, v in W.version_history(dst, k)]) for k in (-1, -2, -3))
    t.eq((hist[-2][:1], hist[-3][:1]), ([1], [1]),
         "the snapshot copied keys -2 and -3 as they were before that transaction (version 1 "
         "first in the target's version log): it overlapped the open transaction", repr(hist))
    t.eq((hist[-1][-1:], hist[-2][-1:]), ([1], [2]),
         "the stream then applied the transaction's insert (-1) and update (-2, version 2)", repr(hist))
    # The TRUNCATE half-way, while streaming; then the writers go on.
    while time.monotonic() - t0 < DURATION / 2:
        time.sleep(0.1)
    t.check(d.alive(), "`run` is still running half-way", d.tail())
    w.truncate()
    t_trunc = time.monotonic()
    while time.monotonic() - t0 < DURATION or time.monotonic() - t_trunc < DURATION / 2:
        time.sleep(0.1)


def converge_and_stop(w, d, src, dst, cfg):
    t.check(not w.errors, "writers met no unexpected error", "\n".join(w.errors))
    t.check(w.counts["committed"] > 50 and w.counts["insert"] and w.counts["rekey"]
            and w.counts["delete"] and w.counts["body"] and w.counts["held open"] >= 1,
            "writers committed every kind of change (%s)" % w.summary())
    t.check(d.alive(), "`run` survived the workload and the TRUNCATE", d.tail())

    W.wait_equal(t, src, dst, WHERE, DEADLINE)
    bad = W.versions_monotonic(dst)
    t.eq(bad, [], "no key's version went backwards in the target (%d versions logged)" % W.log_count(dst),
         "\n".join("key %s: %r" % (k, W.version_history(dst, k)) for k in bad[:5]))
    t.check("truncated" in d.output(), "the log says the TRUNCATE was met (re-snapshot)", d.tail())

    lag, raw = wait_no_pending(cfg, "items")
    t.check(lag is not None and lag.get("installed") is True and lag.get("registered") is True
            and lag.get("pending") == 0,
            "status --json: lag shows the job registered with 0 pending", "%r\n%s" % (lag, raw))

    stop_daemon(d, "writers")
    rc, s, err = L.sync(t, cfg, "items")
    if s:
        t.eq(s.get("rowsRead"), 0, "after the stop, `sync --json` reads 0 changes: the position "
             "was committed", repr(s))
    W.wait_equal(t, src, dst, WHERE, 5, what="still equal after the stop and the catch-up sync")
    L.verify(t, cfg, "items", expect=0)


def test_stopped_and_soft():
    src, dst = L.new_db("rts_src"), L.new_db("rts_dst")
    W.create_source(src, 300)
    W.create_target(dst)
    W.create_target(dst, "items_soft", extra_cols=", deleted_at timestamptz", log_table="version_log_soft")
    wd = L.Workdir("rt_stopped")
    cfg = L.sync_config(wd, {"src": src, "dst": dst},
                        {"items": job("delete"), "items_soft": job("soft:deleted_at", "items_soft")})

    def both_equal(what):
        W.wait_equal(t, src, dst, WHERE, DEADLINE, what="delete job: %s" % what)
        W.wait_equal(t, src, dst, WHERE, DEADLINE, dst_table="items_soft", dst_where="deleted_at IS NULL",
                     what="soft job (rows with deleted_at IS NULL): %s" % what)

    d = W.Daemon(cfg, wd.file("run.log")).start()
    try:
        both_equal("first start")
        stop_daemon(d, "first run")

        active = [r[0] for r in L.execute(src, "SELECT id FROM items WHERE status = 'active' ORDER BY id")]
        inactive = [r[0] for r in L.execute(src, "SELECT id FROM items WHERE status = 'inactive' "
                                                 "ORDER BY id")]
        leaver, gone, rekeyed, gone_inactive = active[0], active[1], active[2], inactive[0]
        # While lockstep is stopped: inserts, updates, a key change, a row leaving where, deletes.
        L.execute(src, "INSERT INTO items (id, status, version, name, doc) SELECT nextval('items_id_seq'), "
                       "CASE WHEN g % 2 = 0 THEN 'active' ELSE 'inactive' END, 1, 'new ' || g, "
                       "jsonb_build_object('g', g) FROM generate_series(1, 20) g")
        L.execute(src, "UPDATE items SET version = version + 1, updated_at = now(), doc = '{\"u\": 1}', "
                       "body = repeat('b', 30000) WHERE id = ANY(%s)", (active[3:13],))
        L.execute(src, "UPDATE items SET id = nextval('items_id_seq'), version = version + 1 WHERE id = %s",
                  (rekeyed,))
        L.execute(src, "UPDATE items SET status = 'inactive', version = version + 1 WHERE id = %s", (leaver,))
        L.execute(src, "DELETE FROM items WHERE id IN (%s, %s)", (gone, gone_inactive))

        d.start()
        both_equal("changes made while stopped")
        soft = dict((r[0], r[1]) for r in L.execute(
            dst, "SELECT id, deleted_at IS NOT NULL FROM items_soft WHERE id IN (%s, %s, %s)",
            (leaver, gone, rekeyed)))
        t.eq(soft, {leaver: True, gone: True, rekeyed: True},
             "soft job: the row that left where, the deleted row and the old key stay with deleted_at set")
        t.eq(L.count_rows(dst, "items", "id IN (%d, %d, %d)" % (leaver, gone, rekeyed)), 0,
             "delete job: the row that left where, the deleted row and the old key are gone")
        t.eq(L.count_rows(dst, "items_soft", "id = %d" % gone_inactive), 0,
             "soft job: a deleted row that never matched where is not in the target")

        # Live: the row comes back into where.
        L.execute(src, "UPDATE items SET status = 'active', version = version + 1 WHERE id = %s", (leaver,))
        both_equal("a row back in where")
        back = L.execute(dst, "SELECT deleted_at FROM items_soft WHERE id = %s", (leaver,))
        t.check(len(back) == 1 and back[0][0] is None, "soft job: deleted_at is cleared when the row is back",
                repr(back))
        t.eq(L.count_rows(dst, "items", "id = %d" % leaver), 1, "delete job: the row is back")
        for log in ("version_log", "version_log_soft"):
            bad = W.versions_monotonic(dst, log)
            t.eq(bad, [], "%s: no key's version went backwards" % log)
        stop_daemon(d, "second run")
        L.verify(t, cfg, "items", expect=0)
        # verify treats soft-deleted target rows as absent: equal now...
        L.verify(t, cfg, "items_soft", expect=0)
        # ...and a live source row marked deleted in the target is a difference.
        L.execute(dst, "UPDATE items_soft SET deleted_at = now() WHERE id = %s", (leaver,))
        obj = L.verify(t, cfg, "items_soft", expect=1)
        t.check(any(L.key_matches(x.get("key"), [leaver]) and x.get("kind") == "missing"
                    for x in obj.get("differences", [])),
                "verify: a source row soft-deleted in the target is reported missing", repr(obj))
    finally:
        d.kill()  # when a check raised before the SIGTERM


t.case(test_writers)
t.case(test_stopped_and_soft)
t.finish()
