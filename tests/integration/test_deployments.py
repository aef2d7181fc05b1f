"""Several deployments of one job name (issue 17, case 2; docs/operations.md, "Several
deployments").

Two deployments are two configs, each with its own state store (so its own deployment
id), both with a real-time job `users` on one PostgreSQL source table. Every sync below
is `lockstep sync users` (a catch-up). A run "copies" when its log says it takes a
snapshot (its first run, a fresh snapshot, a position it cannot use). Equality is the md5
oracle (each server digests its own rows); registry and position facts are read from
lockstep_cdc.consumers and lockstep_sync.position directly.

- two_targets: the deployments write into two target databases. Alternating runs with
  source writes (inserts, updates, deletes) between them converge; each copies on its
  first run only; each has its own consumer row; once both ran, the changelog of the
  table is pruned to nothing.
- one_target: the same with one target database and two target tables: two position
  rows for job `users`, neither fences the other, no copy after the first run.
- upgrade: a registry row and a position as an older lockstep wrote them (no deployment:
  consumer named `users`, position table keyed by job alone), made by SQL from a first
  run. The upgraded lockstep resumes from them without copying (the position table gets
  its deployment column, the row and the consumer are taken over); a second deployment
  then copies once, and both converge without copying again.
- orphans: deployment green's state store is deleted (green is gone). After source
  writes, blue's run cannot prune what green never applied; `status --json` and
  check-config list green's consumer as an orphan (its deployment and job);
  `uninstall --orphans` removes it and blue's next run prunes the changelog to nothing.
- expiry: with `orphan_after: 2s`, a consumer whose deployment stopped running and that
  has held entries back for longer is removed by blue's run with one warning naming it,
  and the changelog is pruned; when that deployment runs again, it takes a fresh
  snapshot and converges.
- removed_mid_run: blue's orphan_after is shorter than green's first snapshot (held
  half-way by a gate), so blue removes green's live row and prunes; green's run notices
  (its row is read with every changelog page), re-snapshots and ends equal.
- sqlite: the same on an SQLite source file into two SQLite target files (judged by the
  cross-engine oracle, rows read with sqlite3): alternating runs converge without a copy
  after the first, a consumer row each; after one deployment's state store is deleted,
  `status --json` lists its consumer and `uninstall --orphans` removes it, and the next
  run prunes the changelog to nothing.
- config: `deployment` and `orphan_after` are validated (exit 78 with FILE:LINE:COL).
"""
import json
import os
import sqlite3

import lktest as L

L.require_pg()
t = L.Suite("test_deployments")

N = 2000
COPIED = ("snapshot first", "fresh snapshot", "starting from the beginning")


def create_users(url, table="users"):
    L.execute(url, "CREATE TABLE %s (id bigint PRIMARY KEY, name text NOT NULL, v bigint NOT NULL)"
              % table)
    L.execute(url, "INSERT INTO %s SELECT i, md5(i::text), 1 FROM generate_series(1, %d) i"
              % (table, N))


def write(src, k):
    """Round k of source writes: inserts, updates and deletes, each its own transaction."""
    base = N + 100 * k
    L.execute(src, "INSERT INTO users SELECT i, 'new', 1 FROM generate_series(%d, %d) i"
              % (base, base + 19))
    L.execute(src, "UPDATE users SET v = v + 1, name = 'u%d' WHERE id %% 97 = %d" % (k, k))
    L.execute(src, "DELETE FROM users WHERE id IN (%d, %d, %d)" % (10 * k + 1, 10 * k + 2, base))


def config(name, src, dst, table="users", extra=None):
    wd = L.Workdir(name)
    job = {"source": {"db": "src", "table": "users"},
           "target": {"db": "dst", "table": table, "create": True}, "mode": "realtime"}
    return L.sync_config(wd, {"src": src, "dst": dst}, {"users": job}, extra=extra), wd


def run(cfg, what):
    """One `sync users`; returns its stderr (the log)."""
    rc, out, err = L.run_lockstep(["sync", "users", "--json"], cfg)
    t.check(rc == 0, "%s: sync users exits 0" % what, L.show(rc, out, err))
    return err


def copied(err):
    return any(c in err for c in COPIED)


def same(src, dst, table, what):
    a = L.pg_md5(src, "users", ["id"])
    b = L.pg_md5(dst, table, ["id"])
    t.eq(b, a, "%s: the target equals the source (md5 oracle)" % what)


def consumers(src):
    return sorted(r[0] for r in L.execute(src, "SELECT job FROM lockstep_cdc.consumers"))


def entries(src):
    return L.scalar(src, "SELECT count(*) FROM lockstep_cdc.changelog "
                         "WHERE relid = 'public.users'::regclass")


def alternate(src, a, b, what, rounds=(1, 2, 3), a_new=True):
    """Runs a and b (cfg, dst, table) in turns with writes between: each copies on its first
    run here (a only when a_new), never after."""
    first_a, first_b = run(a[0], what + ": a's first run"), run(b[0], what + ": b's first run")
    t.check(copied(first_a) == a_new and copied(first_b),
            "%s: %s on its first run here" % (what, "each copies" if a_new else "only b copies"),
            (first_a + first_b)[-2000:])
    for k in rounds:
        write(src, k)
        for name, d in (("a", a), ("b", b)):
            err = run(d[0], "%s: %s's run %d" % (what, name, k + 1))
            t.check(not copied(err), "%s: %s's run %d resumes (no copy)" % (what, name, k + 1),
                    err[-2000:])
    for name, d in (("a", a), ("b", b)):
        same(src, d[1], d[2], "%s, %s" % (what, name))
    t.eq(len(consumers(src)), 2, "%s: one consumer row per deployment" % what, consumers(src))
    # b ran last, after a had applied everything: nobody needs an entry any more
    t.eq(entries(src), 0, "%s: the changelog is pruned once both applied it" % what)


def test_two_targets():
    src, d1, d2 = L.new_db("dep2_src"), L.new_db("dep2_d1"), L.new_db("dep2_d2")
    create_users(src)
    a, _ = config("dep2a", src, d1)
    b, _ = config("dep2b", src, d2)
    alternate(src, (a, d1, "users"), (b, d2, "users"), "two targets")


def test_one_target():
    src, dst = L.new_db("dep1_src"), L.new_db("dep1_dst")
    create_users(src)
    a, _ = config("dep1a", src, dst, table="users_a")
    b, _ = config("dep1b", src, dst, table="users_b")
    alternate(src, (a, dst, "users_a"), (b, dst, "users_b"), "one target")
    t.eq(L.scalar(dst, "SELECT count(*) FROM lockstep_sync.position WHERE job = 'users'"), 2,
         "one target: a position row per deployment for job users")


OLD_POSITION_TABLE = (
    "DO $$ DECLARE k name; BEGIN"
    " IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'lockstep_sync.position'::regclass"
    "  AND attname = 'deployment' AND NOT attisdropped) THEN"
    "  SELECT conname INTO k FROM pg_constraint WHERE conrelid = 'lockstep_sync.position'::regclass"
    "   AND contype = 'p';"
    "  EXECUTE format('ALTER TABLE lockstep_sync.position DROP CONSTRAINT %I', k);"
    "  ALTER TABLE lockstep_sync.position DROP COLUMN deployment;"
    "  ALTER TABLE lockstep_sync.position ADD PRIMARY KEY (job);"
    " END IF; END $$")


def test_upgrade():
    src, d1, d2 = L.new_db("depu_src"), L.new_db("depu_d1"), L.new_db("depu_d2")
    create_users(src)
    old, _ = config("depu_old", src, d1)
    run(old, "upgrade: the older deployment's first run")
    write(src, 1)
    run(old, "upgrade: the older deployment streams")
    # as an older lockstep left them: the consumer named by the job alone, a position
    # table keyed by job; its state store is replaced by the upgraded one's (a new id)
    L.execute(d1, OLD_POSITION_TABLE)
    L.execute(src, "UPDATE lockstep_cdc.consumers SET job = split_part(job, '@', 1)")
    t.eq(consumers(src), ["users"], "upgrade: the registry row has the older form")
    write(src, 2)
    up, _ = config("depu_new", src, d1)
    err = run(up, "upgrade: the upgraded lockstep's first run")
    t.check(not copied(err), "upgrade: it resumes from the older position and registry row",
            err[-2000:])
    same(src, d1, "users", "upgrade")
    t.check(all("@" in c for c in consumers(src)) and len(consumers(src)) == 1,
            "upgrade: the consumer row now names its deployment", consumers(src))
    second, _ = config("depu_second", src, d2)
    alternate(src, (up, d1, "users"), (second, d2, "users"), "upgrade + a second deployment",
              rounds=(3, 4, 5), a_new=False)


def status_json(cfg):
    rc, out, err = L.run_lockstep(["status", "--json"], cfg)
    t.check(rc == 0, "status --json exits 0", L.show(rc, out, err))
    return L.whole_json(out) or {}


def named(name, src, dst, table, extra=None):
    e = {"deployment": name}
    e.update(extra or {})
    return config(name, src, dst, table=table, extra=e)


def test_orphans():
    src, dst = L.new_db("depo_src"), L.new_db("depo_dst")
    create_users(src)
    blue, _ = named("blue", src, dst, "users_blue")
    green, gwd = named("green", src, dst, "users_green")
    run(blue, "orphans: blue")
    run(green, "orphans: green")
    t.eq(consumers(src), ["users@blue", "users@green"], "orphans: a consumer per deployment")
    os.remove(gwd.file("state.db"))  # green is gone
    write(src, 1)
    run(blue, "orphans: blue after green left")
    t.check(entries(src) > 0, "orphans: blue alone cannot prune what green never applied")
    st = status_json(blue)
    orph = st.get("orphans") or []
    t.check(st.get("deployment") == "blue" and len(orph) == 1
            and orph[0].get("consumer") == "users@green" and orph[0].get("deployment") == "green"
            and orph[0].get("job") == "users" and orph[0].get("heldBackSeconds") is not None,
            "orphans: status --json names green's consumer, its job and how long it holds entries",
            json.dumps(st)[:3000])
    rc, out, err = L.run_lockstep(["check-config"], blue)
    t.check("deployment: blue" in out and "orphan consumer 'users@green'" in out,
            "orphans: check-config names this deployment and the orphan", L.show(rc, out, err))
    rc, out, err = L.run_lockstep(["uninstall", "--orphans"], blue)
    t.check(rc == 0 and "users@green" in out, "orphans: uninstall --orphans removes it",
            L.show(rc, out, err))
    t.eq(consumers(src), ["users@blue"], "orphans: only blue's consumer is left")
    err = run(blue, "orphans: blue after the removal")
    t.check(not copied(err), "orphans: blue resumes", err[-2000:])
    t.eq(entries(src), 0, "orphans: the changelog is pruned")
    same(src, dst, "users_blue", "orphans")


def test_expiry():
    src, dst = L.new_db("depe_src"), L.new_db("depe_dst")
    create_users(src)
    blue, _ = named("blue", src, dst, "users_blue", {"orphan_after": "2s"})
    green, _ = named("green", src, dst, "users_green")
    run(blue, "expiry: blue")
    run(green, "expiry: green")
    write(src, 1)
    # green does not run: its oldest unapplied entry ages past orphan_after
    t.check(L.wait_for(lambda: L.scalar(src, "SELECT now() - min(at) > interval '2.5 s' FROM "
                                             "lockstep_cdc.changelog"), deadline=30),
            "expiry: green has held entries back for more than 2 s")
    err = run(blue, "expiry: blue's run")
    warned = [l for l in err.splitlines() if "removed consumer 'users@green'" in l]
    t.check(len(warned) == 1 and "deployment 'green'" in warned[0] and "orphan_after" in warned[0],
            "expiry: one warning names the removed consumer and its deployment", err[-2000:])
    t.eq(consumers(src), ["users@blue"], "expiry: green's consumer is gone")
    t.eq(entries(src), 0, "expiry: the changelog is pruned")
    err = run(green, "expiry: green returns")
    t.check("fresh snapshot" in err, "expiry: green takes a fresh snapshot", err[-2000:])
    same(src, dst, "users_green", "expiry, green")
    same(src, dst, "users_blue", "expiry, blue")


def test_removed_mid_run():
    """A live deployment whose consumer row is removed while it runs (here: blue's
    orphan_after is shorter than green's first snapshot) never ends with its target
    different: its stream reads its row in the same snapshot as each page, and re-snapshots
    when the row is gone instead of trusting a changelog that was pruned without it."""
    src, dst = L.new_db("depm_src"), L.new_db("depm_dst")
    create_users(src)
    gate = L.Gate(src, from_key=N // 2)
    blue, _ = named("blue", src, dst, "users_blue", {"orphan_after": "2s"})
    wd = L.Workdir("depm_green")
    green = L.sync_config(wd, {"src": src, "dst": dst}, {"users": {
        "source": {"db": "src", "table": "users", "where": L.Gate.where_sql()},
        "target": {"db": "dst", "table": "users_green", "create": True}, "mode": "realtime",
        "batch": 100}}, extra={"deployment": "green"})
    run(blue, "mid-run: blue")
    gate.close()
    p = L.start_lockstep(["sync", "users"], green)
    try:
        t.check(L.wait_for(lambda: len(gate.waiters()) > 0 or p.poll() is not None, 60, 0.1)
                and p.poll() is None, "mid-run: green's first snapshot waits half-way")
        write(src, 1)
        t.check(L.wait_for(lambda: L.scalar(
            src, "SELECT now() - min(l.at) > interval '2.5 s' AND bool_and(now() - k.updated_at"
                 " > interval '2.5 s') FROM lockstep_cdc.changelog l, lockstep_cdc.consumers k"
                 " WHERE k.job = 'users@green'"), deadline=30),
                "mid-run: green has held entries back, and not advanced, for over 2 s")
        err = run(blue, "mid-run: blue removes green's row")
        t.check("removed consumer 'users@green'" in err, "mid-run: blue removed green's row",
                err[-2000:])
    finally:
        gate.open()
    out, err = p.communicate(timeout=300)
    t.eq(p.returncode, 0, "mid-run: green's run exits 0", err[-3000:])
    t.check("its consumer row on the source was removed while it ran" in err,
            "mid-run: green says its row was removed, and re-snapshots", err[-3000:])
    same(src, dst, "users_green", "mid-run, green's run that lost its row")
    write(src, 2)
    err = run(green, "mid-run: green again")
    t.check(not copied(err), "mid-run: green's next run streams", err[-2000:])
    same(src, dst, "users_green", "mid-run, green")


def sq(path, *stmts):
    c = sqlite3.connect(path, timeout=30)
    try:
        rows = None
        for q in stmts:
            rows = c.execute(q).fetchall()
        c.commit()
        return rows
    finally:
        c.close()


def sq_same(src, dst, what):
    a = L.rows_canonical("sqlite:" + src, "users", ["id"])
    b = L.rows_canonical("sqlite:" + dst, "users", ["id"])
    t.check(len(a) > 0 and not L.compare_rows(a, b),
            "%s: the target equals the source (row oracle)" % what, L.describe_diff(a, b, ["id"]))


def sq_write(src, k):
    base = N + 100 * k
    sq(src, *["INSERT INTO users VALUES (%d, 'new', 1)" % i for i in range(base, base + 20)])
    sq(src, "UPDATE users SET v = v + 1, name = 'u%d' WHERE id %% 97 = %d" % (k, k))
    sq(src, "DELETE FROM users WHERE id IN (%d, %d, %d)" % (10 * k + 1, 10 * k + 2, base))


def test_sqlite():
    wd = L.Workdir("deps")
    src = wd.file("src.db")
    sq(src, "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, v INTEGER NOT NULL)",
       *["INSERT INTO users VALUES (%d, '%d', 1)" % (i, i * 7) for i in range(1, 501)])
    cfgs = []
    for name in ("a", "b"):
        d = L.Workdir("deps_" + name)
        job = {"source": {"db": "src", "table": "users"},
               "target": {"db": "dst", "table": "users", "create": True}, "mode": "realtime"}
        cfgs.append((L.sync_config(d, {"src": "sqlite:" + src, "dst": "sqlite:" + d.file("dst.db")},
                                   {"users": job}), d))
    for k in range(4):
        if k:
            sq_write(src, k)
        for name, (cfg, d) in zip("ab", cfgs):
            err = run(cfg, "sqlite: %s's run %d" % (name, k + 1))
            t.check(copied(err) == (k == 0), "sqlite: %s's run %d %s" % (
                name, k + 1, "copies" if k == 0 else "resumes (no copy)"), err[-2000:])
    for name, (cfg, d) in zip("ab", cfgs):
        sq_same(src, d.file("dst.db"), "sqlite, " + name)
    names = sorted(r[0] for r in sq(src, "SELECT job FROM lockstep_cdc_consumers"))
    t.check(len(names) == 2 and all(n.startswith("users@") for n in names),
            "sqlite: one consumer row per deployment", names)
    os.remove(cfgs[1][1].file("state.db"))  # b is gone
    sq_write(src, 4)
    run(cfgs[0][0], "sqlite: a after b left")
    orph = status_json(cfgs[0][0]).get("orphans") or []
    t.check(len(orph) == 1 and orph[0].get("job") == "users"
            and orph[0].get("consumer") in names and orph[0].get("heldBackSeconds") is not None,
            "sqlite: status --json lists b's consumer as an orphan holding entries back", orph)
    rc, out, err = L.run_lockstep(["uninstall", "--orphans"], cfgs[0][0])
    t.check(rc == 0 and "removed consumer" in out, "sqlite: uninstall --orphans removes it",
            L.show(rc, out, err))
    run(cfgs[0][0], "sqlite: a after the removal")
    t.eq(sq(src, "SELECT count(*) FROM lockstep_cdc_changelog")[0][0], 0,
         "sqlite: the changelog is pruned")
    sq_same(src, cfgs[0][1].file("dst.db"), "sqlite, a at the end")


CONFIG_ERRORS = [
    ("deployment: \"blue green\"\n", "1:13", "expected a deployment name of 1 to 40 letters"),
    ("deployment: %s\n" % ("x" * 41), "1:13", "expected a deployment name"),
    ("orphan_after: soon\n", "1:15", "expected a duration of at least 1s (12h, 7d) or off"),
    ("databases:\n  a: sqlite:a.db\n  b: sqlite:b.db\njobs:\n  j:\n"
     "    source: {db: a, table: users}\n    target: {db: b}\n    resnapshot: manual\n",
     "8:17", "expected resnapshot only with mode realtime, found it with mode snapshot"),
]


def test_config():
    wd = L.Workdir("depc")
    for i, (text, pos, frag) in enumerate(CONFIG_ERRORS):
        path = L.write_config(wd, text, "bad%d.yaml" % i)
        rc, out, err = L.run_lockstep(["check-config"], path)
        t.check(rc == 78 and err.startswith("%s:%s: " % (path, pos)) and frag in err,
                "config: %r is refused at %s" % (text.splitlines()[-1], pos), L.show(rc, out, err))
    path = L.write_config(wd, "deployment: blue-1.eu\norphan_after: off\n", "good.yaml")
    rc, out, err = L.run_lockstep(["check-config"], path)
    t.check(rc == 0 and "deployment: blue-1.eu" in out and "orphan_after: off" in out,
            "config: a named deployment and orphan_after off are shown", L.show(rc, out, err))


t.case(test_config)
t.case(test_two_targets)
t.case(test_one_target)
t.case(test_upgrade)
t.case(test_orphans)
t.case(test_expiry)
t.case(test_removed_mid_run)
t.case(test_sqlite)
t.finish()
