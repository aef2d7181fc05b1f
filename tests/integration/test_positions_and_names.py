"""Regressions from review: what a position means, where names resolve, odd column types.

- json, xml and point columns (no "=" operator) survive the upsert path of a second run;
- a table named without a schema is read and written in public even when search_path
  finds a same-named table first;
- changing the job's target table starts over instead of resuming a foreign position;
- a role without CREATE can run once an admin created lockstep_sync.position for it;
- verify (PG->PG) sees a jsonb number difference beyond double precision;
- a unique index with INCLUDE columns is a usable key; a deferrable unique constraint is not
  (ON CONFLICT cannot use it), and the refusal names the table;
- with a PostgreSQL state store the job's writer holds its lease: a live lease of another
  holder -> exit 75 naming it, released -> the run goes ahead and the epoch grows;
- two jobs whose long names share their first 56 bytes have distinct session tags: one
  job's new run does not end the other's open target transaction.
"""
import os
import signal

import lktest as L

L.require_pg()
t = L.Suite("test_positions_and_names")


def job(src_table, dst_table, **more):
    j = {"source": {"db": "src", "table": src_table}, "target": {"db": "dst", "table": dst_table,
                                                                  "create": True}}
    j.update(more)
    return j


def test_types_without_equality():
    src, dst = L.new_db("noeq_src"), L.new_db("noeq_dst")
    L.execute(src, "CREATE TABLE g (id int PRIMARY KEY, j json, x xml, p point, updated_at timestamptz)")
    L.execute(src, "INSERT INTO g SELECT i, json_build_object('i', i), ('<a>' || i || '</a>')::xml,"
                   " point(i, i), now() FROM generate_series(1, 200) i")
    cfg = L.sync_config(L.Workdir("noeq"), {"src": src, "dst": dst},
                        {"snap": job("g", "g"), "poll": job("g", "g2", mode="poll", cursor="updated_at")})
    for j in ("snap", "snap", "poll"):
        L.sync(t, cfg, j)
    L.execute(src, "UPDATE g SET j = '{\"changed\": true}', updated_at = now() + interval '1 hour' WHERE id = 5")
    for j in ("snap", "poll"):
        L.sync(t, cfg, j)
    for tbl in ("g", "g2"):
        got = L.execute(dst, "SELECT j::text FROM %s WHERE id = 5" % tbl)
        t.eq(got, [('{"changed": true}',)], "the json change reached %s through the upsert path" % tbl)


def test_unqualified_name_is_public():
    src, dst = L.new_db("sp_src"), L.new_db("sp_dst")
    for url in (src, dst):
        # search_path is "$user", public: a schema named after the user would win.
        L.execute(url, "CREATE SCHEMA postgres")
        L.execute(url, "CREATE TABLE postgres.t (id int PRIMARY KEY, v text)")
        L.execute(url, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
    L.execute(src, "INSERT INTO public.t SELECT i, 'p' || i FROM generate_series(1, 5) i")
    L.execute(src, "INSERT INTO postgres.t SELECT i, 'decoy' FROM generate_series(100, 102) i")
    cfg = L.sync_config(L.Workdir("sp"), {"src": src, "dst": dst}, {"t": job("t", "t")})
    L.sync(t, cfg, "t")
    t.eq(L.count_rows(dst, "public.t"), 5, "rows went to public.t")
    t.eq(L.count_rows(dst, "postgres.t"), 0, "nothing went to the search_path decoy")
    L.verify(t, cfg, "t", expect=0)


def test_changed_target_starts_over():
    src, dst = L.new_db("fp_src"), L.new_db("fp_dst")
    L.execute(src, "CREATE TABLE t (id int PRIMARY KEY, v text, updated_at timestamptz DEFAULT now())")
    L.execute(src, "INSERT INTO t (id, v) SELECT i, 'v' FROM generate_series(1, 10) i")
    w = L.Workdir("fp")
    cfg = L.sync_config(w, {"src": src, "dst": dst}, {"j": job("t", "t", mode="poll", cursor="updated_at")})
    L.sync(t, cfg, "j")
    cfg = L.sync_config(w, {"src": src, "dst": dst}, {"j": job("t", "t2", mode="poll", cursor="updated_at")})
    rc, s, _ = L.sync(t, cfg, "j")
    t.eq(L.count_rows(dst, "t2"), 10, "a new target table gets every row, not the old job's position")


def test_role_without_create():
    src, dst = L.new_db("role_src"), L.new_db("role_dst")
    role = "lk_syncer_%d" % __import__("os").getpid()
    L.execute(L.pg_url(), "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') "
                          "THEN CREATE ROLE \"%s\" LOGIN; END IF; END$$" % (role, role))
    L.execute(src, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    L.execute(src, "INSERT INTO t SELECT i, 'v' FROM generate_series(1, 20) i")
    L.execute(src, 'GRANT SELECT ON t TO "%s"' % role)
    L.execute(dst, "REVOKE CREATE ON DATABASE %s FROM PUBLIC" % dst.rsplit("/", 1)[1])
    L.execute(dst, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    L.execute(dst, "CREATE SCHEMA lockstep_sync; CREATE TABLE lockstep_sync.position (job text PRIMARY KEY,"
                   " epoch bigint NOT NULL, pos text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())")
    L.execute(dst, 'GRANT USAGE ON SCHEMA lockstep_sync TO "{r}"; GRANT SELECT, INSERT, UPDATE ON '
                   'lockstep_sync.position TO "{r}"; GRANT SELECT, INSERT, UPDATE, DELETE ON t TO "{r}"; '
                   'GRANT TEMPORARY ON DATABASE {d} TO "{r}"'.format(r=role, d=dst.rsplit("/", 1)[1]))
    as_role = lambda u: u.replace("postgresql://postgres@", "postgresql://%s@" % role)
    cfg = L.sync_config(L.Workdir("role"), {"src": as_role(src), "dst": as_role(dst)},
                        {"t": {"source": {"db": "src", "table": "t"}, "target": {"db": "dst"}}})
    rc, s, _ = L.sync(t, cfg, "t")
    t.eq(L.count_rows(dst, "t"), 20, "a role with only DML rights on a pre-created position table syncs")


def test_verify_sees_json_digits():
    src, dst = L.new_db("jd_src"), L.new_db("jd_dst")
    for url in (src, dst):
        L.execute(url, "CREATE TABLE t (id int PRIMARY KEY, doc jsonb)")
    L.execute(src, "INSERT INTO t VALUES (1, '{\"a\": 0.1000000000000000000001}')")
    L.execute(dst, "INSERT INTO t VALUES (1, '{\"a\": 0.1}')")
    cfg = L.sync_config(L.Workdir("jd"), {"src": src, "dst": dst}, {"t": job("t", "t")})
    v = L.verify(t, cfg, "t", expect=1)
    t.eq([d.get("kind") for d in (v.get("differences") or [])], ["changed"],
         "a jsonb number differing past double precision is a difference")


def test_unique_index_kinds():
    src, dst = L.new_db("uq_src"), L.new_db("uq_dst")
    L.execute(src, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    L.execute(src, "INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 30) i")
    L.execute(dst, "CREATE TABLE inc (id int NOT NULL, v text)")
    L.execute(dst, "CREATE UNIQUE INDEX inc_id ON inc (id) INCLUDE (v)")
    L.execute(dst, "CREATE TABLE defer (id int NOT NULL, v text,"
                   " CONSTRAINT defer_id UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)")
    cfg = L.sync_config(L.Workdir("uq"), {"src": src, "dst": dst},
                        {"inc": job("t", "inc"), "defer": job("t", "defer")})
    L.sync(t, cfg, "inc")
    t.eq(L.count_rows(dst, "inc"), 30, "a unique index with INCLUDE columns serves as the key")
    rc, out, err = L.run_lockstep(["sync", "defer"], cfg)
    t.eq(rc, 1, "a deferrable unique constraint is refused", L.show(rc, out, err))
    t.check("defer" in err and "unique" in err, "the refusal names the table and the missing "
            "unique key", L.show(rc, out, err))
    t.eq(L.count_rows(dst, "defer"), 0, "nothing was written to it")


def test_pg_store_job_lock():
    src, dst, store = L.new_db("lk_src"), L.new_db("lk_dst"), L.new_db("lk_store")
    L.execute(src, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    L.execute(src, "INSERT INTO t SELECT i, 'v' FROM generate_series(1, 10) i")
    cfg = L.sync_config(L.Workdir("pglock"), {"src": src, "dst": dst}, {"t": job("t", "t")},
                        state=store)
    rc, out, err = L.run_lockstep(["migrate"], cfg)
    t.eq(rc, 0, "migrate the PostgreSQL state store", L.show(rc, out, err))
    # an instance of `lockstep run` holds the job's lease (the row as it would write it)
    L.execute(store, "INSERT INTO lockstep.leases (job, holder, epoch, expires_at)"
                     " VALUES ('t', 'other#1a2b3c', 4, clock_timestamp() + interval '60 s')")
    rc, out, err = L.run_lockstep(["sync", "t"], cfg)
    t.eq(rc, 75, "sync of a job whose lease another holds exits 75", L.show(rc, out, err))
    t.check("held by other#1a2b3c" in err, "the message names the holder", err)
    t.eq(L.count_rows(dst, "t") if L.execute(dst, "SELECT to_regclass('t') IS NOT NULL")[0][0] else 0, 0,
         "nothing was written")
    # released: holder NULL, expired now (the row stays: epochs only grow)
    L.execute(store, "UPDATE lockstep.leases SET holder = NULL, expires_at = clock_timestamp()")
    L.sync(t, cfg, "t")
    t.eq(L.count_rows(dst, "t"), 10, "once released the run goes ahead")
    L.sync(t, cfg, "t")  # our own lease was released at the end of the first run
    t.eq(L.execute(store, "SELECT holder, epoch > 4 FROM lockstep.leases WHERE job = 't'"), [(None, True)],
         "the lease is free again and its epoch grew past the other holder's")


def test_long_names_do_not_fence_each_other():
    src, dst = L.new_db("tag_src"), L.new_db("tag_dst")
    L.execute(src, "CREATE TABLE a (id int PRIMARY KEY, v text)")
    L.execute(src, "INSERT INTO a SELECT i, md5(i::text) FROM generate_series(1, 2000) i")
    L.execute(src, "CREATE TABLE b (id int PRIMARY KEY, v text)")
    L.execute(src, "INSERT INTO b VALUES (1, 'x')")
    # job names have up to 64 bytes; application_name keeps 63, "lockstep:" included
    common = "nightly_copy_of_the_customer_accounts_from_the_main_db__"  # 56 bytes
    name_a, name_b = common + "_to_chat", common + "_to_edge"
    t.eq((len(name_a), len(name_b)), (64, 64), "two job names of 64 bytes")
    wd = L.Workdir("tag")
    cfg = L.sync_config(wd, {"src": src, "dst": dst}, {
        name_a: {"source": {"db": "src", "table": "a"}, "target": {"db": "dst", "table": "a", "create": True},
                 "mode": "snapshot", "batch": 500},
        name_b: {"source": {"db": "src", "table": "b"}, "target": {"db": "dst", "table": "b", "create": True},
                 "mode": "snapshot"}})
    # A freezes in the middle of its 2nd batch's COPY, inside its target transaction
    p = L.start_lockstep(["sync", name_a], cfg, env={"LK_FAILPOINT": "mid_copy@2:stop"})
    try:
        def frozen():
            try:
                with open("/proc/%d/stat" % p.pid) as f:
                    return f.read().rsplit(")", 1)[1].split()[0] == "T"
            except OSError:
                return False
        t.check(L.wait_for(frozen, deadline=120, step=0.05), "job A is frozen inside its target transaction")
        tags = L.execute(dst, "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
                              "AND application_name LIKE 'lockstep:%%' AND xact_start IS NOT NULL")
        t.eq(len(tags), 1, "A's target session is in a transaction", tags)
        rc, out, err = L.run_lockstep(["sync", name_b], cfg)
        t.eq(rc, 0, "job B, whose name shares A's first 56 bytes, runs", L.show(rc, out, err))
        t.check("ended" not in err, "B ended no open transaction", err[-1500:])
        p.send_signal(signal.SIGCONT)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait()
    t.eq(p.returncode, 0, "A's run goes on and succeeds (its transaction was not ended)", err[-2000:])
    t.eq(L.count_rows(dst, "a"), 2000, "A copied every row")


t.case(test_types_without_equality)
t.case(test_unqualified_name_is_public)
t.case(test_changed_target_starts_over)
t.case(test_role_without_create)
t.case(test_verify_sees_json_digits)
t.case(test_unique_index_kinds)
t.case(test_pg_store_job_lock)
t.case(test_long_names_do_not_fence_each_other)
t.finish()
