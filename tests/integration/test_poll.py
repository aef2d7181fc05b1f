"""Poll mode: repeated `lockstep sync` runs follow a cursor column.

Cases: inserts and updates are picked up; rows sharing one cursor value across
page boundaries are neither lost nor read twice; a transaction that started
before a run and committed after it is caught by `lookback` (with and without
lockstep being able to read pg_stat_activity); rows leaving `where` are deleted,
kept or soft-deleted per `deletes`; a column subset leaves other target columns
alone; an integer cursor works. Every case is judged by the md5 oracle.
"""
import os
import time

import lktest as L

L.require_pg()
t = L.Suite("test_poll")
COLS = L.USERS_COLUMNS
NOT_UPDATED = ", ".join(c for c in COLS if c != "updated_at")


def poll_job(target_table="users", create=True, **more):
    j = {"source": {"db": "src", "table": "users", "key": ["id"]},
         "target": {"db": "dst", "table": target_table, "create": create},
         "mode": "poll", "cursor": "updated_at", "lookback": "1m", "batch": 500}
    for k, v in more.items():
        if k in ("where", "columns"):
            j["source"][k] = v
        elif k == "deletes":
            j["target"][k] = v
        else:
            j[k] = v
    return j


def insert_now(url, lo, hi, ts="now()"):
    """Inserts users rows lo..hi with updated_at = ts (default: the transaction's start)."""
    L.execute(url, "INSERT INTO users (%s) SELECT %s, %s FROM (%s) s(%s)" % (
        ", ".join(COLS), NOT_UPDATED, ts, L.users_select_sql(lo, hi), ", ".join(COLS)))


def same(src, dst, what, table="users", cols=COLS, src_where=None, dst_where=None):
    a = L.pg_md5(src, "users", ["id"], cols, where=src_where)
    b = L.pg_md5(dst, table, ["id"], cols, where=dst_where)
    return t.eq(b, a, "md5 oracle: %s" % what)


def test_inserts_and_updates():
    n = L.scale(5000)
    src, dst = L.new_db("poll_src"), L.new_db("poll_dst")
    L.create_users_pg(src, n, updated_at_type="timestamptz")
    # One row a minute: the 1-minute look-back window then holds only a row or two.
    L.execute(src, "UPDATE users SET updated_at = '2023-01-01 00:00:00+00'::timestamptz "
                   "+ id * interval '1 minute'")
    cfg = L.sync_config(L.Workdir("poll_basic"), {"src": src, "dst": dst}, {"users": poll_job()})
    rc, s, _ = L.sync(t, cfg, "users")
    if s:
        t.eq(s.get("rowsRead"), n, "first poll reads every row")
    same(src, dst, "first poll copies the table")

    insert_now(src, n + 1, n + 50)
    L.execute(src, "UPDATE users SET email = 'updated' || id || '@example.org', "
                   "metadata = jsonb_build_object('v', 2), updated_at = now() WHERE id <= 30")
    rc, s, _ = L.sync(t, cfg, "users")
    if s:
        t.check(80 <= s.get("rowsRead", -1) <= 85, "second poll reads the 80 changed rows (plus the "
                "1-minute look-back), not the whole table", repr(s))
    same(src, dst, "inserts and updates picked up")

    L.execute(src, "UPDATE users SET status = 'banned', updated_at = now() WHERE id = 7")
    L.sync(t, cfg, "users")
    L.sync(t, cfg, "users")
    same(src, dst, "after two more polls")
    L.verify(t, cfg, "users", expect=0)


def test_ties_across_page_boundaries():
    src, dst = L.new_db("poll_ties_src"), L.new_db("poll_ties_dst")
    L.create_users_pg(src, 100, updated_at_type="timestamptz")
    # No look-back: rowsRead then counts each row exactly once.
    job = poll_job(batch=10)
    del job["lookback"]
    cfg = L.sync_config(L.Workdir("poll_ties"), {"src": src, "dst": dst}, {"users": job})
    rc, s, _ = L.sync(t, cfg, "users")
    t.eq(s and s.get("rowsRead"), 100, "first poll reads 100 rows")
    tie = "'2024-06-01 12:00:00+00'::timestamptz"
    insert_now(src, 1001, 1025, tie)  # 25 rows, one cursor value, pages of 10
    rc, s, _ = L.sync(t, cfg, "users")
    t.eq(s and s.get("rowsRead"), 25, "25 tied rows read once each across pages of 10")
    same(src, dst, "25 tied rows, none lost")
    insert_now(src, 1026, 1032, tie)  # same value, larger keys: after (cursor, key)
    rc, s, _ = L.sync(t, cfg, "users")
    t.eq(s and s.get("rowsRead"), 7, "7 more rows with the same cursor value and larger keys read once")
    same(src, dst, "32 tied rows, none lost")
    rc, s, _ = L.sync(t, cfg, "users")
    t.eq(s and s.get("rowsRead"), 0, "a poll with nothing new reads nothing")
    t.eq(L.count_rows(dst, "users"), 132, "target holds 132 rows")


def in_flight(restricted):
    """A row written by a transaction that began before a poll and committed after it.

    restricted=False: lockstep connects as a superuser and has no look-back, so only
    its cap below the oldest open transaction (pg_stat_activity) can save the row.
    restricted=True: lockstep's role cannot see the writer's session, so only the
    1-minute look-back can."""
    tag = "r" if restricted else "s"
    src, dst = L.new_db("poll_flight_src_" + tag), L.new_db("poll_flight_dst_" + tag)
    L.create_users_pg(src, 20, updated_at_type="timestamptz")
    L.execute(src, "CREATE TABLE side (x int)")
    src_url = src
    if restricted:
        # A role that cannot see other roles' sessions in pg_stat_activity: only lookback helps.
        role = "lk_poll_reader_%d" % os.getpid()
        L.execute(L.pg_url(), "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') "
                              "THEN CREATE ROLE \"%s\" LOGIN; END IF; END$$" % (role, role))
        L.execute(src, 'GRANT SELECT ON users TO "%s"' % role)
        src_url = src.replace("postgresql://postgres@", "postgresql://%s@" % role)
    job = poll_job()
    if not restricted:
        del job["lookback"]
    cfg = L.sync_config(L.Workdir("poll_flight"), {"src": src_url, "dst": dst}, {"users": job})
    L.sync(t, cfg, "users")

    w = L.psycopg2.connect(src)  # not autocommit: one open transaction
    try:
        cur = w.cursor()
        cur.execute("INSERT INTO side VALUES (1)")  # a writing transaction from its start
        cur.execute("INSERT INTO users (%s) SELECT %s, now() FROM (%s) s(%s)" % (
            ", ".join(COLS), NOT_UPDATED, L.users_select_sql(5001, 5001), ", ".join(COLS)))
        time.sleep(1.2)
        insert_now(src, 5002, 5002)  # committed, with a later cursor value
        L.sync(t, cfg, "users")
        t.eq(L.count_rows(dst, "users", "id IN (5001, 5002)"), 1,
             "the poll during the open transaction sees only the committed row")
        w.commit()
    finally:
        w.close()
    L.sync(t, cfg, "users")
    t.eq(L.count_rows(dst, "users", "id = 5001"), 1,
         "the row committed after the poll is picked up by the next one (%s)"
         % ("look-back only" if restricted else "pg_stat_activity cap only"))
    same(src, dst, "in-flight transaction (%s)" % ("look-back only" if restricted else "cap only"))


def test_in_flight_transaction_cap_only():
    in_flight(False)


def test_in_flight_transaction_lookback_only():
    in_flight(True)


def test_where_and_deletes():
    n = 300
    src, dst = L.new_db("poll_where_src"), L.new_db("poll_where_dst")
    L.create_users_pg(src, n, updated_at_type="timestamptz")
    L.create_users_pg(dst, 0, table="users_soft", updated_at_type="timestamptz",
                      extra_cols=",\n    deleted_at timestamptz")
    where = "status = 'active'"
    jobs = {"j_del": poll_job("users_del", where=where, deletes="delete", batch=50),
            "j_ign": poll_job("users_ign", where=where, deletes="ignore", batch=50),
            "j_soft": poll_job("users_soft", create=False, where=where, deletes="soft:deleted_at",
                               batch=50)}
    cfg = L.sync_config(L.Workdir("poll_where"), {"src": src, "dst": dst}, jobs)

    def run_all():
        for j in jobs:
            L.sync(t, cfg, j)

    run_all()
    for tbl in ("users_del", "users_ign"):
        same(src, dst, "%s holds exactly the active rows" % tbl, tbl, src_where=where)
    same(src, dst, "users_soft: live rows are the active rows", "users_soft", src_where=where,
         dst_where="deleted_at IS NULL")

    a, b, c = 3, 4, 6  # active, inactive, active (status cycles by id % 3)
    L.execute(src, "UPDATE users SET status = 'inactive', updated_at = now() WHERE id = %s", (a,))
    L.execute(src, "UPDATE users SET status = 'active', updated_at = now() WHERE id = %s", (b,))
    L.execute(src, "UPDATE users SET email = 'changed@example.org', updated_at = now() WHERE id = %s", (c,))
    run_all()
    same(src, dst, "deletes: delete removes the row that left the filter", "users_del", src_where=where)
    same(src, dst, "deletes: ignore applies the other changes", "users_ign", src_where=where,
         dst_where="id <> %d" % a)
    t.eq(L.execute(dst, "SELECT status FROM users_ign WHERE id = %s", (a,)), [("active",)],
         "deletes: ignore keeps the row that left the filter, unchanged")
    t.eq(L.execute(dst, "SELECT deleted_at IS NOT NULL FROM users_soft WHERE id = %s", (a,)), [(True,)],
         "deletes: soft sets deleted_at on the row that left the filter")
    same(src, dst, "deletes: soft keeps the other rows live", "users_soft", src_where=where,
         dst_where="deleted_at IS NULL")

    L.execute(src, "UPDATE users SET status = 'active', first_name = 'back again', updated_at = now() "
                   "WHERE id = %s", (a,))
    run_all()
    t.eq(L.execute(dst, "SELECT deleted_at IS NULL, first_name FROM users_soft WHERE id = %s", (a,)),
         [(True, "back again")], "deletes: soft clears deleted_at when the row matches again")
    for tbl in ("users_del", "users_ign"):
        same(src, dst, "%s after the row came back" % tbl, tbl, src_where=where)
    same(src, dst, "users_soft after the row came back", "users_soft", src_where=where,
         dst_where="deleted_at IS NULL")


def test_column_subset():
    src, dst = L.new_db("poll_cols_src"), L.new_db("poll_cols_dst")
    L.create_users_pg(src, 200, updated_at_type="timestamptz")
    L.execute(dst, "CREATE TABLE users (id bigint PRIMARY KEY, first_name text DEFAULT 'dflt', "
                   "email text, phone text, updated_at timestamptz)")
    L.execute(dst, "INSERT INTO users SELECT i, 'keep', 'old', 'keep-phone', '2000-01-01' "
                   "FROM generate_series(1, 100) i")
    sub = ["id", "email", "updated_at"]
    cfg = L.sync_config(L.Workdir("poll_cols"), {"src": src, "dst": dst},
                        {"users": poll_job(create=False, columns=sub)})
    L.sync(t, cfg, "users")
    same(src, dst, "the listed columns are copied", cols=sub)
    t.eq(L.execute(dst, "SELECT count(*) FROM users WHERE id <= 100 AND first_name = 'keep' "
                        "AND phone = 'keep-phone'"), [(100,)],
         "existing rows keep their other columns")
    t.eq(L.execute(dst, "SELECT count(*) FROM users WHERE id > 100 AND first_name = 'dflt' "
                        "AND phone IS NULL"), [(100,)],
         "new rows get the target's defaults in the other columns")
    L.execute(src, "UPDATE users SET first_name = 'src-change', phone = 'x', email = 'new1', "
                   "updated_at = now() WHERE id = 1")
    L.sync(t, cfg, "users")
    t.eq(L.execute(dst, "SELECT first_name, email, phone FROM users WHERE id = 1"),
         [("keep", "new1", "keep-phone")], "an update touches only the listed columns")
    L.verify(t, cfg, "users", expect=0)


def test_integer_cursor():
    src, dst = L.new_db("poll_int_src"), L.new_db("poll_int_dst")
    L.execute(src, "CREATE SEQUENCE ver")
    L.execute(src, "CREATE TABLE users (id bigint PRIMARY KEY, version bigint NOT NULL, "
                   "payload text, amount numeric(10,2))")
    L.execute(src, "INSERT INTO users SELECT i, nextval('ver'), md5(i::text), i / 7.0 "
                   "FROM generate_series(1, 200) i")
    job = poll_job(cursor="version", batch=50)
    del job["lookback"]
    cfg = L.sync_config(L.Workdir("poll_int"), {"src": src, "dst": dst}, {"users": job})
    rc, s, _ = L.sync(t, cfg, "users")
    t.eq(s and s.get("rowsRead"), 200, "integer cursor: first poll reads 200 rows")
    L.execute(src, "UPDATE users SET version = nextval('ver'), payload = 'changed' WHERE id % 10 = 0")
    L.execute(src, "INSERT INTO users SELECT i, nextval('ver'), 'new', 1 FROM generate_series(201, 210) i")
    rc, s, _ = L.sync(t, cfg, "users")
    t.eq(s and s.get("rowsRead"), 30, "integer cursor: next poll reads exactly the 30 changed rows")
    rc, s, _ = L.sync(t, cfg, "users")
    t.eq(s and s.get("rowsRead"), 0, "integer cursor: nothing new, nothing read")
    cols = ["id", "version", "payload", "amount"]
    t.eq(L.pg_md5(dst, "users", ["id"], cols), L.pg_md5(src, "users", ["id"], cols),
         "md5 oracle: integer cursor")


t.case(test_inserts_and_updates)
t.case(test_ties_across_page_boundaries)
t.case(test_in_flight_transaction_cap_only)
t.case(test_in_flight_transaction_lookback_only)
t.case(test_where_and_deletes)
t.case(test_column_subset)
t.case(test_integer_cursor)
t.finish()
