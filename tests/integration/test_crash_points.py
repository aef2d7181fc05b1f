"""A snapshot that crashes mid-way resumes from its committed position.

For each crash point (LK_FAILPOINT=name@K makes lockstep exit 134 the K-th time
it passes `name`): after the target commit, in the middle of a COPY, and between
two source pages, with K half of the batches. The target must then hold exactly
the batches committed before the crash; a re-run without the failpoint exits 0,
reads no more than the rows not yet committed plus one batch, and leaves the
target equal to the source (md5 oracle, then `lockstep verify`).
"""
import lktest as L

L.require_pg()
t = L.Suite("test_crash_points")
N = L.scale(1000000)
BATCH = 1000 if N >= 20000 else max(10, N // 20)
BATCHES = (N + BATCH - 1) // BATCH
K = max(2, BATCHES // 2)
COLS = ["id", "name", "amount", "flag", "ts", "payload"]

src = L.new_db("crash_src")
L.execute(src, "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2), "
               "flag boolean, ts timestamptz NOT NULL, payload text)")
L.execute(src, "INSERT INTO users SELECT i, 'name ' || i || ' ' || chr(1024 + i % 200), "
               "CASE WHEN i % 10 = 0 THEN NULL ELSE (i % 100000) / 7.0 END, i % 3 = 0, "
               "'2022-01-01 00:00:00+00'::timestamptz + i * interval '1 millisecond', "
               "CASE WHEN i % 4 = 0 THEN NULL ELSE md5(i::text) END "
               "FROM generate_series(1, " + str(N) + ") i")
L.execute(src, "ANALYZE users")
SRC_MD5 = L.pg_md5(src, "users", ["id"], COLS)
t.log("source: %d rows, batch %d, crash at pass %d of about %d" % (N, BATCH, K, BATCHES))

# Rows in the target right after the crash, per point: K batches committed when the
# crash follows a commit or precedes the next page; K - 1 when it interrupts batch K.
COMMITTED = {"after_target_commit": K * BATCH, "between_pages": K * BATCH, "mid_copy": (K - 1) * BATCH}


def crash_and_resume(point):
    dst = L.new_db("crash_dst_" + point)
    cfg = L.sync_config(L.Workdir("crash_" + point), {"src": src, "dst": dst},
                        {"users": {"source": {"db": "src", "table": "users", "key": ["id"]},
                                   "target": {"db": "dst", "table": "users", "create": True},
                                   "mode": "snapshot", "batch": BATCH}})
    rc, out, err = L.run_lockstep(["sync", "users", "--json"], cfg,
                                  env={"LK_FAILPOINT": "%s@%d" % (point, K)}, timeout=600)
    t.eq(rc, 134, "%s@%d: lockstep aborts with 134" % (point, K), L.show(rc, out, err))
    t.check("failpoint %s" % point in err, "%s: the abort is the failpoint's" % point, L.show(rc, out, err))
    committed = L.count_rows(dst, "users")
    t.eq(committed, COMMITTED[point], "%s: the target holds exactly the committed batches" % point)
    t.check(0 < committed < N, "%s: the crash happened mid-way (%d of %d rows)" % (point, committed, N))

    rc, s, err = L.sync(t, cfg, "users")
    if s:
        limit = N - committed + BATCH
        t.check(s.get("rowsRead", 1 << 62) <= limit,
                "%s: the resumed run reads %s rows <= %d (not yet committed + one batch)"
                % (point, s.get("rowsRead"), limit), repr(s))
    t.eq(L.pg_md5(dst, "users", ["id"], COLS), SRC_MD5, "%s: md5 oracle after resume" % point)
    L.verify(t, cfg, "users", expect=0)
    L.drop_one(dst)


def misspelt_point():
    """A failpoint name no code passes is reported, not silently ignored."""
    cfg = L.sync_config(L.Workdir("crash_misspelt"), {"src": src, "dst": L.new_db("crash_dst_misspelt")},
                        {"users": {"source": {"db": "src", "table": "users"},
                                   "target": {"db": "dst", "table": "users", "create": True}}})
    rc, out, err = L.run_lockstep(["sync", "users", "--json"], cfg, env={"LK_FAILPOINT": "after_comit@2"})
    t.eq(rc, 0, "LK_FAILPOINT=after_comit@2: the run is not crashed", L.show(rc, out, err))
    t.check("names no known point: 'after_comit'" in err, "the misspelt name is reported",
            L.show(rc, out, err))


for p in ("after_target_commit", "mid_copy", "between_pages"):
    t.case(crash_and_resume, p)
t.case(misspelt_point)
t.finish()
