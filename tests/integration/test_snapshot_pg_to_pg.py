"""A snapshot copies every row of every type from PostgreSQL to PostgreSQL exactly.

Judged by md5(string_agg(t::text ORDER BY id)) on both servers and by
`lockstep verify`; then planted differences (changed, missing, extra rows) must
make verify exit 1 and name each key, a re-sync must repair changed and missing
rows, and `snapshot_deletes: true` must remove the extra one.
"""
import lktest as L

L.require_pg()
t = L.Suite("test_snapshot_pg_to_pg")
N = L.scale(100000)
COLS = L.USERS_COLUMNS

src = L.new_db("snap_src")
L.create_users_pg(src, N)


def job(create, **more):
    j = {"source": {"db": "src", "table": "users", "key": ["id"]},
         "target": {"db": "dst", "table": "users", "create": create},
         "mode": "snapshot", "batch": 5000}
    j.update(more)
    return j


def md5_equal(dst, what):
    got = L.pg_md5(dst, "users", ["id"], COLS)
    want = L.pg_md5(src, "users", ["id"], COLS)
    return t.eq(got, want, "md5 oracle: target equals source (%s)" % what)


def test_into_empty_target_created_by_lockstep():
    dst = L.new_db("snap_dst_create")
    w = L.Workdir("snap_create")
    cfg = L.sync_config(w, {"src": src, "dst": dst}, {"users": job(True)})
    rc, s, err = L.sync(t, cfg, "users")
    t.check("copying in PostgreSQL's binary format" in err,
            "a target created with the source's types: the snapshot copies in binary", err[-2000:])
    if s:
        t.eq((s.get("rowsRead"), s.get("rowsWritten"), s.get("rowsFailed")), (N, N, 0),
             "summary counts every row once (rowsRead, rowsWritten, rowsFailed)")
    md5_equal(dst, "created target")
    types = dict(L.pg_columns(dst, "users"))
    want = {"id": "bigint", "score": "double precision", "is_admin": "boolean", "ext_id": "uuid",
            "metadata": "jsonb", "avatar": "bytea", "created_at": "timestamp with time zone",
            "birthday": "date", "updated_at": "timestamp without time zone", "first_name": "text"}
    t.eq(dict((k, types.get(k)) for k in want), want, "created target columns keep their types")
    t.check(types.get("balance", "").startswith("numeric"), "balance is numeric", repr(types))
    pk = L.execute(dst, "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'public.users'::regclass "
                        "AND i.indisprimary")
    t.eq([r[0] for r in pk], ["id"], "created target has the key as its primary key")
    t.check(L.count_rows(dst, "lockstep_sync.position") >= 1,
            "the position is kept in lockstep_sync.position on the target")
    verify_and_plant(cfg, dst)


def verify_and_plant(cfg, dst):
    v = L.verify(t, cfg, "users", expect=0)
    t.eq((v.get("sourceRows"), v.get("targetRows"), v.get("differences")), (N, N, []),
         "verify --json: counts equal, no differences")

    # A second snapshot into the now non-empty target upserts: still equal.
    rc, s, _ = L.sync(t, cfg, "users")
    md5_equal(dst, "second snapshot (upsert path)")

    changed, extra, missing = 3 * (N // 4) + 1, N // 2 + 1, N // 4 + 1
    L.execute(dst, "UPDATE users SET email = 'planted@example.com', score = 42 WHERE id = %s", (changed,))
    L.execute(src, "DELETE FROM users WHERE id = %s", (extra,))
    L.execute(dst, "DELETE FROM users WHERE id = %s", (missing,))

    rc, out, err = L.run_lockstep(["verify", "users"], cfg)
    t.eq(rc, 1, "verify (text) exits 1 on differences", L.show(rc, out, err))
    for k in (changed, extra, missing):
        t.check(str(k) in out + err, "verify (text) names key %d" % k, L.show(rc, out, err))

    v = L.verify(t, cfg, "users", expect=1)
    diffs = v.get("differences") or []
    t.eq((v.get("sourceRows"), v.get("targetRows")), (N - 1, N - 1),
         "verify --json: sourceRows and targetRows count the planted rows")
    for k, kind in ((changed, "changed"), (extra, "extra"), (missing, "missing")):
        t.check(any(L.key_matches(d.get("key"), [k]) and d.get("kind") == kind for d in diffs),
                "verify --json reports key %d as %s" % (k, kind), repr(diffs[:10]))
    t.eq(len(diffs), 3, "verify --json reports exactly the 3 planted differences", repr(diffs[:10]))

    # A snapshot repairs changed and missing rows; the extra one stays without snapshot_deletes.
    L.sync(t, cfg, "users")
    t.eq(L.pg_md5(dst, "users", ["id"], COLS, where="id <> %d" % extra), L.pg_md5(src, "users", ["id"], COLS),
         "re-sync repairs the changed and the missing row")
    t.eq(L.count_rows(dst, "users", "id = %d" % extra), 1,
         "without snapshot_deletes the extra target row is kept")
    v = L.verify(t, cfg, "users", expect=1)
    t.check([(d.get("kind")) for d in v.get("differences") or []] == ["extra"],
            "verify then reports only the extra row", repr(v))

    # snapshot_deletes: true removes what the source lacks.
    cfg2 = L.sync_config(L.Workdir("snap_deletes"), {"src": src, "dst": dst},
                         {"users": job(False, snapshot_deletes=True)})
    L.sync(t, cfg2, "users")
    md5_equal(dst, "after snapshot_deletes")
    L.verify(t, cfg2, "users", expect=0)
    # Put the source back for the next case.
    L.execute(src, "INSERT INTO users (%s) %s" % (", ".join(COLS), L.users_select_sql(extra, extra)))


def test_into_precreated_target():
    dst = L.new_db("snap_dst_pre")
    # Same columns in reverse order: lockstep must map by name, not by position.
    ddl = L.USERS_PG_DDL.format(table="users", updated_at_type="timestamp", updated_at_extra="")
    lines = [l.strip().rstrip(",") for l in ddl.splitlines()[1:-1]]
    L.execute(dst, "CREATE TABLE users (%s)" % ", ".join(reversed(lines)))
    w = L.Workdir("snap_pre")
    cfg = L.sync_config(w, {"src": src, "dst": dst}, {"users": job(False)})
    L.sync(t, cfg, "users")
    md5_equal(dst, "pre-created target, columns in another order")
    L.verify(t, cfg, "users", expect=0)


def test_binary_path_sets_rejected_rows_aside():
    """With the same column types on both sides the snapshot copies in PostgreSQL's binary
    COPY format; a row the target rejects makes it go on row by row after the last
    committed batch, and only that row is dead-lettered."""
    dst = L.new_db("snap_dst_check")
    batch = max(10, N // 10)
    bad = [N // 3 + 7, 2 * N // 3 + 3]
    L.execute(dst, L.USERS_PG_DDL.format(table="users", updated_at_type="timestamp", updated_at_extra=""))
    L.execute(dst, "ALTER TABLE users ADD CONSTRAINT no_bad CHECK (id NOT IN (%d, %d))" % tuple(bad))
    w = L.Workdir("snap_binary_check")
    cfg = L.sync_config(w, {"src": src, "dst": dst}, {"users": job(False, batch=batch)})
    rc, s, err = L.sync(t, cfg, "users")
    t.check("copying in PostgreSQL's binary format" in err, "the snapshot takes the binary path", err[-3000:])
    t.check("going on row by row from the last committed batch" in err,
            "the rejected row sends it on by the text path", err[-3000:])
    if s:
        t.eq((s.get("rowsRead"), s.get("rowsWritten"), s.get("rowsFailed")), (N, N - 2, 2),
             "summary: every row read once, all but the 2 rejected written, 2 dead-lettered")
    rc, out, e2 = L.run_lockstep(["errors", "list", "--json"], cfg)
    obj = L.whole_json(out) or {}
    keys = sorted(int(d.get("key", [0])[0]) for d in obj.get("errors", []))
    t.eq(keys, bad, "the 2 rejected rows are the dead letters", L.show(rc, out, e2))
    where = "id NOT IN (%d, %d)" % tuple(bad)
    t.eq(L.pg_md5(dst, "users", ["id"], COLS), L.pg_md5(src, "users", ["id"], COLS, where=where),
         "md5 oracle: the target equals the source but the 2 rejected rows")

    # Another type on one side (first_name varchar here, text in the source): the text path.
    dst2 = L.new_db("snap_dst_text")
    ddl = L.USERS_PG_DDL.format(table="users", updated_at_type="timestamp", updated_at_extra="")
    L.execute(dst2, ddl.replace("first_name text", "first_name varchar"))
    cfg2 = L.sync_config(L.Workdir("snap_text_path"), {"src": src, "dst": dst2}, {"users": job(False)})
    rc, s, err = L.sync(t, cfg2, "users")
    t.check("binary format" not in err, "a column of another type keeps the text path", err[-2000:])
    md5_equal(dst2, "text path")
    L.verify(t, cfg2, "users", expect=0)


t.case(test_into_empty_target_created_by_lockstep)
t.case(test_into_precreated_target)
t.case(test_binary_path_sets_rejected_rows_aside)
t.finish()
