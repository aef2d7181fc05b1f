"""SIGINT during a snapshot stops at a batch boundary and the next run resumes there.

The interrupted run exits 1, is recorded as `interrupted` with the rows it committed,
and the target holds exactly those rows (whole batches). The next run reads only the
rows after the last committed key; the md5 oracle and verify then find the tables equal.
"""
import json
import signal
import time

import lktest as L

L.require_pg()
t = L.Suite("test_interrupt_resume")
N = max(L.scale(400000), 60000)
BATCH = 1000


def test_sigint_then_resume():
    src, dst = L.new_db("int_src"), L.new_db("int_dst")
    L.execute(src, "CREATE TABLE u (id bigint PRIMARY KEY, name text, payload text)")
    L.execute(src, "INSERT INTO u SELECT i, 'n' || i, repeat('x', 200) FROM generate_series(1, %s) i", (N,))
    cfg = L.sync_config(L.Workdir("interrupt"), {"src": src, "dst": dst},
                        {"u": {"source": {"db": "src", "table": "u"},
                               "target": {"db": "dst", "create": True}, "batch": BATCH}})
    p = L.start_lockstep(["sync", "u", "--json"], cfg)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None:
        try:
            if L.count_rows(dst, "u") >= 5 * BATCH:
                break
        except Exception:  # noqa: BLE001 - the table appears with the first run
            pass
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    t.eq(p.returncode, 1, "an interrupted run exits 1", L.show(p.returncode, out, err))
    s = L.last_json(out) or {}
    t.eq(s.get("status"), "interrupted", "the run reports interrupted", out)
    committed = L.count_rows(dst, "u")
    t.check(0 < committed < N, "the interrupt came mid-way (%d of %d rows)" % (committed, N))
    t.eq(committed % BATCH, 0, "the target holds whole batches only")
    t.eq(s.get("rowsWritten"), committed, "rowsWritten counts exactly the committed rows")

    rc, out, err = L.run_lockstep(["status", "--json"], cfg)
    last = (json.loads(out)["jobs"][0] or {}).get("lastRun") or {}
    t.eq(last.get("status"), "interrupted", "status shows the run as interrupted", out)

    rc, s, _ = L.sync(t, cfg, "u")
    t.eq(s and s.get("rowsRead"), N - committed, "the next run reads only the rows after the last "
         "committed key")
    t.eq(L.pg_md5(dst, "u", ["id"]), L.pg_md5(src, "u", ["id"]), "md5 oracle: equal after the resume")
    L.verify(t, cfg, "u", expect=0)


t.case(test_sigint_then_resume)
t.finish()
