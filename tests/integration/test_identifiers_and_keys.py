"""Names that need quoting and keys lockstep finds by itself.

A PostgreSQL source in schema "Odd.Schema" (a dot inside), table "User Table", columns
with mixed case, spaces and a double quote, and a composite primary key whose column
order differs from the table's column order. No `key:` in the config: lockstep must
take the primary key, in key order. Copied to PostgreSQL (schema "Tgt", table
`Copy "Q"`) and to SQLite; judged by an md5 over both PostgreSQL tables and by a
direct Python comparison with SQLite, then by `lockstep verify`. check-config must
accept the config and say what it found.
"""
import json
import sqlite3

import lktest as L
from psycopg2 import sql as pgsql

L.require_pg()
t = L.Suite("test_identifiers_and_keys")
N = max(L.scale(3000), 1500)  # tenants 0..2 even at LK_SCALE=0.1

SRC_T = pgsql.SQL("{}.{}").format(pgsql.Identifier("Odd.Schema"), pgsql.Identifier("User Table"))
DST_T = pgsql.SQL("{}.{}").format(pgsql.Identifier("Tgt"), pgsql.Identifier('Copy "Q"'))
COLS = ["Id", "tenant id", 'Na"me', "Mixed Case"]
ORDER = pgsql.SQL(", ").join(pgsql.Identifier(c) for c in ("tenant id", "Id"))


def md5(url, table):
    q = pgsql.SQL("SELECT md5(string_agg(t::text, '|' ORDER BY {o})), count(*) FROM "
                  "(SELECT {c} FROM {t}) t").format(
        o=ORDER, c=pgsql.SQL(", ").join(pgsql.Identifier(c) for c in COLS), t=table)
    return tuple(L.execute(url, q)[0])


def setup(src):
    L.execute(src, 'CREATE SCHEMA "Odd.Schema"')
    L.execute(src, pgsql.SQL('CREATE TABLE {} ("Id" int NOT NULL, "tenant id" int NOT NULL, '
                             '"Na""me" text, "Mixed Case" jsonb, PRIMARY KEY ("tenant id", "Id"))')
              .format(SRC_T))
    # Ids repeat across tenants: only the composite key is unique.
    L.execute(src, pgsql.SQL("INSERT INTO {} SELECT i %% 500, i / 500, "
                             "'name \"' || i || E'\\t' || chr(955), "
                             "jsonb_build_object('i', i, 'Odd Key', 'x') "
                             "FROM generate_series(0, %s - 1) i").format(SRC_T), (N,))


def sqlite_rows(path):
    c = sqlite3.connect(path)
    try:
        rows = c.execute('SELECT "Id", "tenant id", "Na""me", "Mixed Case" FROM "User Table"').fetchall()
    finally:
        c.close()
    return {(r[1], r[0]): (r[2], json.loads(r[3])) for r in rows}


def pg_rows(url):
    rows = L.execute(url, pgsql.SQL('SELECT "Id", "tenant id", "Na""me", "Mixed Case" FROM {}')
                     .format(SRC_T))
    return {(r[1], r[0]): (r[2], r[3]) for r in rows}


def test_quoted_names_and_detected_composite_key():
    src, dst = L.new_db("ident_src"), L.new_db("ident_dst")
    setup(src)
    w = L.Workdir("ident")
    lite = w.file("edge.db")
    cfg = L.write_config(w, "\n".join([
        "state: sqlite:state.db",
        "databases:",
        "  src: %s" % src,
        "  dst: %s" % dst,
        "  edge: sqlite:%s" % lite,
        "jobs:",
        "  pgpg:",
        "    source: {db: src, table: '\"Odd.Schema\".\"User Table\"'}",
        "    target: {db: dst, table: 'Tgt.\"Copy \"\"Q\"\"\"', create: true}",
        "    batch: 700",
        "  pglite:",
        "    source: {db: src, table: '\"Odd.Schema\".\"User Table\"'}",
        "    target: {db: edge, table: 'User Table', create: true}",
        "    batch: 700",
        ""]))
    rc, out, err = L.run_lockstep(["check-config"], cfg)
    t.eq(rc, 0, "check-config accepts quoted names and a detected key", L.show(rc, out, err))
    t.check("target table will be created" in out, "check-config says the targets will be created",
            L.show(rc, out, err))

    for job in ("pgpg", "pglite"):
        rc, s, _ = L.sync(t, cfg, job)
        t.eq(s and (s.get("rowsRead"), s.get("rowsWritten")), (N, N), "%s copies every row once" % job)
    t.eq(md5(dst, DST_T), md5(src, SRC_T), "md5 oracle: PostgreSQL target equals the source")
    pk = L.execute(dst, "SELECT a.attname FROM generate_series(0, 1) k(n) CROSS JOIN pg_index i"
                        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k.n]"
                        " WHERE i.indrelid = '\"Tgt\".\"Copy \"\"Q\"\"\"'::regclass AND i.indisprimary"
                        " ORDER BY k.n")
    t.eq([r[0] for r in pk], ["tenant id", "Id"], "the created target's key is the source's, in key order")
    t.eq(sqlite_rows(lite), pg_rows(src), "Python oracle: SQLite target equals the source")
    for job in ("pgpg", "pglite"):
        L.verify(t, cfg, job, expect=0)

    # A change on a key that exists in several tenants touches exactly one row.
    L.execute(src, pgsql.SQL("UPDATE {} SET \"Na\"\"me\" = 'changed' WHERE \"Id\" = 7 AND \"tenant id\" = 1")
              .format(SRC_T))
    for job in ("pgpg", "pglite"):
        L.sync(t, cfg, job)
    t.eq(md5(dst, DST_T), md5(src, SRC_T), "md5 oracle: after a change to one composite key")
    t.eq(sqlite_rows(lite), pg_rows(src), "Python oracle: SQLite after the change")
    n = L.execute(dst, pgsql.SQL("SELECT count(*) FROM {} WHERE \"Na\"\"me\" = 'changed'").format(DST_T))
    t.eq(n[0][0], 1, "only the row with that composite key changed")


def test_table_without_primary_key_needs_key():
    src, dst = L.new_db("nokey_src"), L.new_db("nokey_dst")
    L.execute(src, "CREATE TABLE logs (id int, msg text)")
    L.execute(dst, "CREATE TABLE logs (id int PRIMARY KEY, msg text)")
    w = L.Workdir("nokey")
    cfg = L.sync_config(w, {"src": src, "dst": dst},
                        {"logs": {"source": {"db": "src", "table": "logs"}, "target": {"db": "dst"}}})
    rc, out, err = L.run_lockstep(["sync", "logs"], cfg)
    t.eq(rc, 1, "a source without a primary key and no key: exit 1", L.show(rc, out, err))
    t.check("no primary key" in err and "source.key" in err,
            "the message says to name the key with source.key", L.show(rc, out, err))
    cfg = L.sync_config(w, {"src": src, "dst": dst},
                        {"logs": {"source": {"db": "src", "table": "logs", "key": ["id"]},
                                  "target": {"db": "dst"}}})
    L.execute(src, "INSERT INTO logs SELECT i, 'm' || i FROM generate_series(1, 50) i")
    rc, s, _ = L.sync(t, cfg, "logs")
    t.eq(s and s.get("rowsWritten"), 50, "with source.key it syncs")


t.case(test_quoted_names_and_detected_composite_key)
t.case(test_table_without_primary_key_needs_key)
t.finish()
