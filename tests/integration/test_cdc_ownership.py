"""Who may run code with lockstep's rights through change capture, and tables capture cannot
follow (issue 20 items 4 and 5, required by issue 17: "The capture function is rewritten
once, here, for trust and for security together"; docs/realtime.md "What lockstep installs
on the source").

lockstep's role here is `lk`: LOGIN, not a superuser, no CREATEROLE, with CONNECT and
CREATE on the source database and SELECT and TRIGGER on the table (not its owner). Each
source database holds public.lk_proof, which only `lk` may INSERT into: code planted by
another role that ever runs as `lk` leaves a row there (the planted code swallows its own
permission errors, as an attacker's would), so an empty lk_proof proves nothing planted ran
as lockstep's role.

  1. Schema squatting: role `squatter` (CREATE on the database) makes schema lockstep_cdc
     first, with a consumers table carrying its trigger, before lockstep's first run.
     Before: check-config and the run exit 0, and registering the job runs the
     squatter's trigger as `lk`. After: both refuse, exit non-zero, with one message
     naming the schema, its owner and the fix; nothing planted runs; once the schema is
     dropped the job runs.
  2. An object squatted in a schema lockstep's role owns (a careless GRANT CREATE on it):
     the squatter's lockstep_cdc.consumers table with a trigger. Before: the same. After:
     refused, naming the table and its owner.
  3. A trigger on a lockstep_cdc table that lockstep did not make (added after install, by
     anyone able to): before, capture's own inserts run it as `lk`; after, the next run
     refuses naming it.
  4. Least privilege, and a table owner's casts: the table's owner (not a
     superuser) keys it by an enum and a domain it owns (and has a column of a composite
     type it owns). After the first sync it adds casts to and from text on them (implicit
     on the domain and the composite type, and from text to the enum); its writes (insert,
     key-changing updates, delete) are captured and the target equals the source (row
     oracle), and none of the casts' code ran as `lk`: capture prints keys with the
     types' output functions, never a cast (this holds on 449c650 too). An implicit cast
     from the enum to text makes `=` on it ambiguous: the run fails saying so (the owner
     stops its own table's sync, loudly), nothing runs as `lk`; once dropped, the job
     catches up.
  5. Inheritance children (INHERITS, not partitions): before, a write into a child is never
     captured and the target silently differs after exit 0; after, the run and
     check-config refuse mode realtime on a table with children, naming them and saying
     what to do, and a child created later stops the job: while `lockstep run` streams
     (the periodic capture check), and at its next run.
"""
import os

import lktest as L
import rtwriters as W

L.require_pg()
t = L.Suite("test_cdc_ownership")

PID = os.getpid()
LK = "lk_own_lk_%d" % PID
SQUATTER = "lk_own_squatter_%d" % PID
OWNER = "lk_own_owner_%d" % PID
ROLES = [LK, SQUATTER, OWNER]
MARK = "lk-planted-code-ran-as-lockstep"


def make_roles():
    for r in ROLES:
        L.execute(L.pg_url(), "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') "
                              "THEN CREATE ROLE \"%s\" LOGIN NOSUPERUSER NOCREATEROLE; END IF; END$$"
                  % (r, r))


def as_role(url, role):
    return url.replace("postgresql://postgres@", "postgresql://%s@" % role)


def source(name, owner="postgres"):
    """A source database with table `owner`-owned items (200 rows) and lk_proof; lk gets
    CONNECT and CREATE on the database, SELECT and TRIGGER on the table."""
    src = L.new_db(name)
    db = src.rsplit("/", 1)[1]
    for q in ('REVOKE CREATE ON DATABASE "%s" FROM PUBLIC' % db,
              'GRANT CONNECT, CREATE ON DATABASE "%s" TO "%s"' % (db, LK),
              "CREATE TABLE public.lk_proof (who text, what text)",
              "REVOKE ALL ON public.lk_proof FROM PUBLIC",
              'GRANT INSERT ON public.lk_proof TO "%s"' % LK):
        L.execute(src, q)
    if owner == "postgres":
        L.execute(src, "CREATE TABLE items (id int PRIMARY KEY, v text)")
        L.execute(src, "INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 200) g")
        L.execute(src, 'GRANT USAGE ON SCHEMA public TO "%s"' % LK)
        L.execute(src, 'GRANT SELECT, TRIGGER ON items TO "%s"' % LK)
    return src


def plant(src, schema):
    """The squatter's trigger function sq.plant(): records who ran it in lk_proof."""
    db = src.rsplit("/", 1)[1]
    L.execute(src, 'GRANT CREATE ON DATABASE "%s" TO "%s"' % (db, SQUATTER))
    L.execute(as_role(src, SQUATTER), "CREATE SCHEMA %s" % schema)
    L.execute(as_role(src, SQUATTER), "GRANT USAGE ON SCHEMA %s TO PUBLIC" % schema)
    L.execute(as_role(src, SQUATTER),
              "CREATE FUNCTION %s.plant() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN "
              "BEGIN INSERT INTO public.lk_proof VALUES (current_user, TG_TABLE_NAME); "
              "EXCEPTION WHEN insufficient_privilege THEN NULL; END; "
              "RETURN NEW; END$$" % schema)


def proof(src):
    return L.execute(src, "SELECT who, what FROM public.lk_proof ORDER BY 1, 2")


def job_config(name, src, dst, table="items", key=None):
    wd = L.Workdir(name)
    job = {"source": {"db": "src", "table": table},
           "target": {"db": "dst", "table": table.split(".")[-1], "create": True},
           "mode": "realtime"}
    if key:
        job["key"] = key
    return L.sync_config(wd, {"src": as_role(src, LK), "dst": dst}, {"j": job})


def refused(cfg, what, words):
    """check-config and `lockstep sync j` both exit non-zero, each naming every word."""
    for args in (["check-config"], ["sync", "j", "--json"]):
        rc, out, err = L.run_lockstep(args, cfg)
        text = out + err
        t.check(rc != 0, "%s: `lockstep %s` exits non-zero (%d)" % (what, args[0], rc), L.show(rc, out, err))
        t.check(all(w in text for w in words), "%s: `lockstep %s` names %s" % (what, args[0], " / ".join(words)),
                L.show(rc, out, err))


def rows_text(url, table):
    """Each row as its text (record output: each column's type output, no cast), sorted:
    an enum key sorts apart from its text on the target, so no ORDER BY key."""
    return sorted(r[0] for r in L.execute(url, "SELECT r::text FROM (SELECT e, d, p, id, v FROM %s) r"
                                               % table))


def our_triggers(src, table="items"):
    return L.execute(src, "SELECT tgname::text FROM pg_trigger WHERE tgrelid = %s::regclass "
                          "AND tgname LIKE 'lockstep%%' ORDER BY 1", (table,))


def md5(url, table="items", key=("id",)):
    return L.pg_md5(url, table, list(key))


# lockstep's consumers table as lockstep would make it (CREATE TABLE IF NOT EXISTS skips it).
CONSUMERS = ("CREATE TABLE lockstep_cdc.consumers (job text PRIMARY KEY, relid oid NOT NULL,"
             " horizon xid8 NOT NULL, xid xid8, seq bigint,"
             " registered_at timestamptz NOT NULL DEFAULT now(),"
             " updated_at timestamptz NOT NULL DEFAULT now())")


def test_schema_squatted():
    src, dst = source("own_schema"), L.new_db("own_schema_dst")
    plant(src, "sq")
    sq = as_role(src, SQUATTER)
    for q in ("CREATE SCHEMA lockstep_cdc",
              "GRANT ALL ON SCHEMA lockstep_cdc TO PUBLIC",
              CONSUMERS,
              "GRANT ALL ON lockstep_cdc.consumers TO PUBLIC",
              "CREATE TRIGGER plant BEFORE INSERT OR UPDATE ON lockstep_cdc.consumers FOR EACH ROW "
              "EXECUTE FUNCTION sq.plant()"):
        L.execute(sq, q)
    cfg = job_config("own_schema", src, dst)
    refused(cfg, "schema lockstep_cdc made by the squatter",
            ["schema lockstep_cdc", "owned by role %s" % SQUATTER, LK, "DROP SCHEMA lockstep_cdc CASCADE"])
    L.execute(src, "INSERT INTO items VALUES (1001, 'after'); UPDATE items SET v = 'x' WHERE id = 5")
    t.eq(our_triggers(src), [], "squatted schema: no lockstep trigger was installed on items")
    t.eq(proof(src), [], "squatted schema: nothing the squatter planted ran as lockstep's role")
    L.execute(src, "DROP SCHEMA lockstep_cdc CASCADE")
    L.sync(t, cfg, "j")
    L.execute(src, "INSERT INTO items VALUES (1002, 'fixed'); DELETE FROM items WHERE id = 6")
    L.sync(t, cfg, "j")
    t.eq(md5(dst), md5(src), "md5 oracle: once the squatter's schema is dropped, the job runs")
    t.eq(proof(src), [], "squatted schema: lk_proof still empty at the end")


def test_object_squatted():
    src, dst = source("own_object"), L.new_db("own_object_dst")
    plant(src, "sq")
    # A DBA made the schema for lockstep's role, then granted CREATE on it too widely.
    L.execute(src, 'CREATE SCHEMA lockstep_cdc AUTHORIZATION "%s"' % LK)
    L.execute(src, "GRANT CREATE, USAGE ON SCHEMA lockstep_cdc TO PUBLIC")
    sq = as_role(src, SQUATTER)
    for q in (CONSUMERS,
              "GRANT ALL ON lockstep_cdc.consumers TO PUBLIC",
              "CREATE TRIGGER plant BEFORE INSERT OR UPDATE ON lockstep_cdc.consumers FOR EACH ROW "
              "EXECUTE FUNCTION sq.plant()"):
        L.execute(sq, q)
    cfg = job_config("own_object", src, dst)
    refused(cfg, "table lockstep_cdc.consumers made by the squatter",
            ["table lockstep_cdc.consumers", "owned by role %s" % SQUATTER, "OWNER TO"])
    L.execute(src, "INSERT INTO items VALUES (1001, 'after')")
    t.eq(proof(src), [], "squatted table: nothing the squatter planted ran as lockstep's role")


def test_foreign_trigger():
    src, dst = source("own_trigger"), L.new_db("own_trigger_dst")
    plant(src, "sq")
    cfg = job_config("own_trigger", src, dst)
    L.sync(t, cfg, "j")
    t.eq(md5(dst), md5(src), "md5 oracle: the first sync")
    # Anyone able to (here a superuser) adds a trigger to lockstep's changelog.
    L.execute(src, "CREATE TRIGGER audit BEFORE INSERT ON lockstep_cdc.changelog FOR EACH ROW "
                   "EXECUTE FUNCTION sq.plant()")
    refused(cfg, "a trigger on lockstep_cdc.changelog lockstep did not make",
            ["trigger audit on lockstep_cdc.changelog", "not made by lockstep", LK])
    L.execute(as_role(src, LK), "SELECT 1")  # lk can connect: the refusal is not a login failure
    t.eq([r for r in proof(src) if r[0] == LK], [], "foreign trigger: it never ran as lockstep's role")


def test_owner_casts():
    src, dst = source("own_casts", owner=OWNER), L.new_db("own_casts_dst")
    db = src.rsplit("/", 1)[1]
    ow = as_role(src, OWNER)
    L.execute(src, 'GRANT CREATE ON DATABASE "%s" TO "%s"' % (db, OWNER))
    for q in ("CREATE SCHEMA ows",
              "CREATE TYPE ows.mood AS ENUM ('sad', 'ok', 'happy')",
              "CREATE DOMAIN ows.code AS int CHECK (VALUE > 0)",
              "CREATE TYPE ows.pair AS (a int, b text)",
              "CREATE TABLE ows.k (e ows.mood, d ows.code, p ows.pair, id int, v text,"
              " PRIMARY KEY (e, d, id))",
              "INSERT INTO ows.k SELECT (ARRAY['sad','ok','happy'])[1 + g % 3]::ows.mood, g,"
              " ROW(g, 'b' || g)::ows.pair, g, 'v' || g FROM generate_series(1, 120) g",
              'GRANT USAGE ON SCHEMA ows TO "%s"' % LK,
              'GRANT SELECT, TRIGGER ON ows.k TO "%s"' % LK):
        L.execute(ow, q)
    t.eq(L.execute(src, "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = %s", (LK,)),
         [(False, False)], "lockstep's role is neither a superuser nor CREATEROLE")
    t.eq(L.execute(src, "SELECT has_table_privilege(%s, 'ows.k', 'INSERT'), "
                        "pg_has_role(%s, %s, 'MEMBER')", (LK, LK, OWNER)),
         [(False, False)], "lockstep's role does not own ows.k and may not write it")
    L.execute(dst, "CREATE TABLE k (e text, d int, p text, id int, v text, PRIMARY KEY (e, d, id))")
    cfg = job_config("own_casts", src, dst, table="ows.k")
    L.sync(t, cfg, "j")
    t.eq(rows_text(dst, "k"), rows_text(src, "ows.k"), "row oracle: the first sync")
    # Planted code that runs as lk leaves a row in lk_proof, or, in a read-only
    # transaction, fails the statement with MARK in the message (so lockstep prints it).
    evil = ("BEGIN IF current_user = '" + LK + "' THEN "
            "IF current_setting('transaction_read_only') = 'on' THEN "
            "RAISE EXCEPTION '" + MARK + " (%%)', '%s'; END IF; "
            "INSERT INTO public.lk_proof VALUES (current_user, '%s'); END IF; RETURN %s; END")
    for q in ("CREATE FUNCTION ows.m2t(ows.mood) RETURNS text LANGUAGE plpgsql AS $$%s$$"
              % (evil % ("mood->text", "mood->text", "'evil'")),
              "CREATE FUNCTION ows.t2m(text) RETURNS ows.mood LANGUAGE plpgsql AS $$%s$$"
              % (evil % ("text->mood", "text->mood", "'ok'")),
              "CREATE FUNCTION ows.p2t(ows.pair) RETURNS text LANGUAGE plpgsql AS $$%s$$"
              % (evil % ("pair->text", "pair->text", "'evil'")),
              "CREATE FUNCTION ows.t2p(text) RETURNS ows.pair LANGUAGE plpgsql AS $$%s$$"
              % (evil % ("text->pair", "text->pair", "ROW(1, 'evil')::ows.pair")),
              "CREATE FUNCTION ows.d2t(ows.code) RETURNS text LANGUAGE plpgsql AS $$%s$$"
              % (evil % ("code->text", "code->text", "'evil'")),
              "CREATE CAST (ows.mood AS text) WITH FUNCTION ows.m2t(ows.mood)",
              "CREATE CAST (text AS ows.mood) WITH FUNCTION ows.t2m(text) AS IMPLICIT",
              "CREATE CAST (ows.pair AS text) WITH FUNCTION ows.p2t(ows.pair) AS IMPLICIT",
              "CREATE CAST (text AS ows.pair) WITH FUNCTION ows.t2p(text) AS IMPLICIT",
              "CREATE CAST (ows.code AS text) WITH FUNCTION ows.d2t(ows.code) AS IMPLICIT"):
        L.execute(ow, q)
    writes(ow, 0)
    synced(cfg, src, dst, "the owner's writes after its casts")
    # An implicit cast from the enum to text makes "mood = mood" ambiguous to PostgreSQL:
    # the owner stops its own table's sync, loudly; nothing runs as lk. Dropped: caught up.
    L.execute(ow, "DROP CAST (ows.mood AS text)")
    L.execute(ow, "CREATE CAST (ows.mood AS text) WITH FUNCTION ows.m2t(ows.mood) AS IMPLICIT")
    writes(ow, 1)
    rc, out, err = L.run_lockstep(["sync", "j", "--json"], cfg)
    t.check(rc != 0 and "is not unique" in err,
            "an implicit cast from the key's enum to text: the run fails, saying why", L.show(rc, out, err))
    t.check(MARK not in out + err and proof(src) == [],
            "an implicit cast from the key's enum to text: it never ran as lockstep's role",
            L.show(rc, out, err) + "\nlk_proof: %r" % proof(src))
    L.execute(ow, "DROP CAST (ows.mood AS text)")
    synced(cfg, src, dst, "the implicit cast dropped, the owner's writes")


def writes(ow, n):
    """The owner's own writes (its casts run as the owner there, which lk_proof ignores)."""
    L.execute(ow, "INSERT INTO ows.k VALUES ('happy', %d, ROW(500, 'new'), %d, 'new')" % (500 + n, 500 + n))
    L.execute(ow, "UPDATE ows.k SET v = 'changed%d' WHERE id %% 10 = 1" % n)
    L.execute(ow, "UPDATE ows.k SET id = id + 1000, p = ROW(7, 'moved') WHERE id %% 10 = %d" % (2 + n))
    L.execute(ow, "UPDATE ows.k SET d = d + 2000 WHERE id %% 10 = %d" % (4 + n))
    L.execute(ow, "UPDATE ows.k SET e = 'sad' WHERE id %% 10 = %d" % (6 + n))
    L.execute(ow, "DELETE FROM ows.k WHERE id %% 10 = 8 + %d" % n)


def synced(cfg, src, dst, what):
    rc, out, err = L.run_lockstep(["sync", "j", "--json"], cfg)
    t.eq(rc, 0, "%s: sync exits 0" % what, L.show(rc, out, err))
    t.check(MARK not in out + err, "%s: no planted code ran as lockstep's role in a read" % what,
            L.show(rc, out, err))
    t.eq(rows_text(dst, "k"), rows_text(src, "ows.k"), "row oracle: %s reach the target" % what)
    t.eq(proof(src), [], "%s: no planted code ran as lockstep's role (lk_proof empty)" % what)


def test_inheritance():
    src, dst = source("own_inherit"), L.new_db("own_inherit_dst")
    for q in ("CREATE TABLE kid () INHERITS (items)",
              "INSERT INTO kid VALUES (5001, 'kid')",
              'GRANT SELECT, TRIGGER ON kid TO "%s"' % LK):
        L.execute(src, q)
    cfg = job_config("own_inherit", src, dst)
    rc, out, err = L.run_lockstep(["sync", "j", "--json"], cfg)
    if rc == 0:  # the code before the change: the target follows until a child is written
        L.execute(src, "INSERT INTO kid VALUES (5002, 'kid2'); UPDATE kid SET v = 'k' WHERE id = 5001")
        L.run_lockstep(["sync", "j", "--json"], cfg)
        t.eq(md5(dst), md5(src), "inheritance: after writes into a child, the target equals the source")
    refused(cfg, "a table with an inheritance child",
            ["public.items has inheritance children (public.kid)", "its own job", "partitions"])
    t.eq(our_triggers(src), [], "inheritance: no trigger was installed")

    src2, dst2 = source("own_inherit_late"), L.new_db("own_inherit_late_dst")
    cfg2 = job_config("own_inherit_late", src2, dst2)
    L.sync(t, cfg2, "j")
    t.eq(md5(dst2), md5(src2), "md5 oracle: the first sync, no child yet")
    # While the job streams: the periodic capture check stops it.
    d = W.Daemon(cfg2, os.path.join(os.path.dirname(str(cfg2)), "run.log")).start()
    try:
        L.execute(src2, "INSERT INTO items VALUES (6001, 'streamed')")
        t.check(L.wait_for(lambda: md5(dst2) == md5(src2), 60, 0.3), "lockstep run streams", d.tail())
        L.execute(src2, "CREATE TABLE late () INHERITS (items)")
        L.execute(src2, "INSERT INTO late VALUES (7001, 'late')")
        t.check(L.wait_for(lambda: "public.items has inheritance children (public.late)" in d.output(), 90, 0.5),
                "a child created while the job streams: the periodic check stops it, saying why", d.tail())
    finally:
        d.term(60)
    refused(cfg2, "an inheritance child made after the first run",
            ["public.items has inheritance children (public.late)", "its own job"])


def cleanup():
    for r in ROLES:
        try:
            L.execute(L.pg_url(), 'DROP ROLE IF EXISTS "%s"' % r)
        except Exception as e:  # noqa: BLE001 - cleanup only: objects may still hold it
            t.log("cleanup of role %s: %s" % (r, e))


make_roles()
t.case(test_schema_squatted)
t.case(test_object_squatted)
t.case(test_foreign_trigger)
t.case(test_owner_casts)
t.case(test_inheritance)
if t.failed == 0:
    L.drop_dbs()  # the roles own objects in them
    cleanup()
t.finish()
