"""test_rewrite_race - an ALTER TABLE that rewrites the source table while a real-time job
streams never makes rows look deleted (issue 18, found in review).

PostgreSQL documents table-rewriting ALTER TABLE as not MVCC-safe: a snapshot taken before
the rewrite sees the rewritten table as empty. A changelog page takes its snapshot, then
reads the rows of the keys it found; an ALTER ... TYPE that committed in between made those
rows look gone, and the page deleted them from the target. lockstep now locks the table
(ACCESS SHARE) before it takes a read's snapshot.

The race is made, not waited for: session X updates three rows and holds its transaction;
session Y's ALTER TABLE ... TYPE bigint queues behind X; X commits, which wakes the job
(the changelog has X's entries) while Y rewrites the table. Judged by the md5 oracle
(lktest.pg_md5) once the job has caught up: no row may be missing, several rounds.
"""

import threading
import time

import lktest as L
import rtwriters as W

L.require_pg()
t = L.Suite("test_rewrite_race")

ROWS = L.scale(200000)
DEADLINE = 120


sql = L.sql  # lktest.sql: each statement in its own transaction


def test_rewrite_while_streaming():
    w = L.Workdir("rewrite_race")
    src, dst = L.new_db("rewrite_s"), L.new_db("rewrite_t")
    sql(src, "CREATE TABLE q (id int PRIMARY KEY, n smallint NOT NULL, v text)",
        "INSERT INTO q SELECT i, i %% 100, 'v ' || i FROM generate_series(1, %d) i" % ROWS)
    cfg = L.sync_config(w, {"src": src, "dst": dst}, {
        "q": {"source": {"db": "src", "table": "q"}, "mode": "realtime",
              "target": {"db": "dst", "table": "q", "create": True}}})
    d = W.Daemon(cfg, w.file("run.log")).start()
    try:
        same = lambda: L.pg_md5(dst, "q", ["id"]) == L.pg_md5(src, "q", ["id"])

        def caught_up():
            try:
                return same()
            except L.psycopg2.Error:
                return False
        t.check(L.wait_for(caught_up, DEADLINE, 0.5), "the first copy is whole")
        for r, typ in enumerate(("integer", "bigint")):  # widenings: followed
            ids = (5 + r, 6 + r, 7 + r)
            x = L.connect(src)
            x.autocommit = False
            with x.cursor() as cur:
                cur.execute("UPDATE q SET v = v || ' x' WHERE id IN %s", (ids,))
            alter = threading.Thread(
                target=sql, args=(src, "ALTER TABLE q ALTER COLUMN n TYPE %s" % typ))
            alter.start()
            time.sleep(0.3)  # lets the ALTER queue behind X (its order, not a result)
            x.commit()
            x.close()
            alter.join()
            ok = L.wait_for(caught_up, DEADLINE, 0.5)
            t.check(ok, "round %d (n to %s): the target equals the source (md5 oracle)"
                    % (r + 1, typ), "target rows %s of %d; %s" % (
                        L.scalar(dst, "SELECT count(*) FROM q"), ROWS, d.tail()))
    finally:
        d.term()


t.case(test_rewrite_while_streaming)
t.finish()
