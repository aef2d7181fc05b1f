"""The cross-engine oracle's own tests (lktest.canonical, rows_canonical, compare_rows,
describe_diff): it must compare exactly what docs/types.md's "What crosses exactly"
promises, no more and no less.

For each logical type, pairs of values as psycopg2 ("pg") or the sqlite3 module
("sqlite") return them: each pair that must differ (among them the pairs an older,
lax oracle took as equal: JSON true, 1 and 1.0; numeric 1.50 and 1.5; timetz
offsets; a column present on one side only) and each pair that must be equal (what
the doc says is the same value: a JSON object's key order, numeric 1e3 and 1000,
float -0 and 0, ...), judged by compare_rows on one-row tables. Then whole tables
read by rows_canonical from SQLite files (duplicate keys, key columns left out of
`cols`, text that is not UTF-8) and from PostgreSQL (types read as lockstep's pinned
session prints them: interval, arrays; a domain by its base type; jsonb; timetz).
"""
import datetime
import decimal
import sqlite3

import lktest as L

L.require_pg()
t = L.Suite("test_oracle")

D = decimal.Decimal
UTC = L.UTC
TZ2 = datetime.timezone(datetime.timedelta(hours=2))
U1 = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
U2 = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12"

# (logical type, (value, engine), (value, engine), why). pg values are what psycopg2 returns
# (json as text: rows_canonical reads it so); sqlite values what the sqlite3 module returns.
MUST_DIFFER = [
    ("int", (42, "pg"), (43, "sqlite"), "another integer"),
    ("int", (2 ** 63 - 1, "pg"), (2 ** 63 - 2, "sqlite"), "int8 extremes one apart (not through a double)"),
    ("int", (1, "pg"), (1.0, "sqlite"), "an integer and a REAL"),
    ("int", (1, "pg"), ("1", "sqlite"), "an integer and its text"),
    ("float", (0.1, "pg"), (0.10000000000000002, "sqlite"), "doubles one ulp apart"),
    ("float", (1.5, "pg"), ("1.5", "sqlite"), "a double and its text"),
    ("float", (float("inf"), "pg"), (float("-inf"), "sqlite"), "Infinity and -Infinity"),
    ("numeric", (D("1.50"), "pg"), ("1.5", "sqlite"), "numeric scale: 1.50 and 1.5"),
    ("numeric", (D("1.5"), "pg"), ("1.50", "sqlite"), "numeric scale: 1.5 and 1.50"),
    ("numeric", (D("0"), "pg"), ("0.0", "sqlite"), "numeric scale of zero"),
    ("numeric", (D("1000"), "pg"), ("1000.0", "sqlite"), "numeric 1000 and 1000.0"),
    ("numeric", (D("9999999999999999.9999"), "pg"), ("9999999999999999.9998", "sqlite"),
     "numeric digits beyond a double"),
    ("numeric", (D("1.51"), "pg"), (1.5, "sqlite"), "numeric held as a REAL, another value"),
    ("numeric", (D("0.1000000000000000000001"), "pg"), (0.1, "sqlite"),
     "numeric held as a REAL that lost digits"),
    ("numeric", (D("NaN"), "pg"), ("0", "sqlite"), "NaN and 0"),
    ("numeric", (D("1.5"), "pg"), ("1.5x", "sqlite"), "numeric and text that is no number"),
    ("numeric", (D("12"), "pg"), ("\u0661\u0662", "sqlite"), "numeric and digits PostgreSQL does not read"),
    ("bool", (True, "pg"), (0, "sqlite"), "true and 0"),
    ("bool", (False, "pg"), (1, "sqlite"), "false and 1"),
    ("bool", (True, "pg"), (2, "sqlite"), "true and 2"),
    ("bool", (True, "pg"), ("t", "sqlite"), "true and the text t"),
    ("text", ("abc", "pg"), ("ABC", "sqlite"), "text case"),
    ("text", ("a", "pg"), ("a ", "sqlite"), "a trailing blank"),
    ("text", ("\u00e9", "pg"), ("e\u0301", "sqlite"), "NFC and NFD spellings"),
    ("text", ("1", "pg"), (1, "sqlite"), "text and an integer"),
    ("text", ("", "pg"), (None, "sqlite"), "empty text and NULL"),
    ("uuid", (U1, "pg"), (U2, "sqlite"), "another uuid"),
    ("uuid", (U1, "pg"), ("not-a-uuid", "sqlite"), "a uuid and text that is none"),
    ("json", ("true", "pg"), ("1", "sqlite"), "JSON true and 1"),
    ("json", ("1", "pg"), ("1.0", "sqlite"), "JSON 1 and 1.0"),
    ("json", ("true", "pg"), ("1.0", "sqlite"), "JSON true and 1.0"),
    ("json", ("false", "pg"), ("0", "sqlite"), "JSON false and 0"),
    ("json", ('{"a": true}', "pg"), ('{"a": 1}', "sqlite"), "JSON true and 1 inside an object"),
    ("json", ('{"a": 1}', "pg"), ('{"a": 1.0}', "sqlite"), "JSON 1 and 1.0 inside an object"),
    ("json", ("[1, 2]", "pg"), ("[1.0, 2]", "sqlite"), "JSON 1 and 1.0 inside an array"),
    ("json", ("[true]", "pg"), ("[1]", "sqlite"), "JSON true and 1 inside an array"),
    ("json", ("1.50", "pg"), ("1.5", "sqlite"), "JSON number scale: 1.50 and 1.5"),
    ("json", ('{"x": [0.5, {"y": 2.25}]}', "pg"), ('{"x": [0.5, {"y": 2.250}]}', "sqlite"),
     "JSON number scale deep inside"),
    ("json", ('"1"', "pg"), ("1", "sqlite"), "JSON string and number"),
    ("json", ("null", "pg"), (None, "sqlite"), "JSON null and SQL NULL"),
    ("json", ("[1, 2]", "pg"), ("[2, 1]", "sqlite"), "JSON array order"),
    ("json", ('{"a": 1}', "pg"), ('{"a": 1, "b": null}', "sqlite"), "a JSON key on one side only"),
    ("json", ("{}", "pg"), ("[]", "sqlite"), "JSON {} and []"),
    ("json", ('{"a": 1}', "pg"), ("{a: 1}", "sqlite"), "JSON and text that is none"),
    ("bytes", (b"\x00\xff", "pg"), (b"\x00\xfe", "sqlite"), "other bytes"),
    ("bytes", (b"", "pg"), (None, "sqlite"), "empty bytes and NULL"),
    ("bytes", (b"a", "pg"), ("a", "sqlite"), "bytes and text"),
    ("timestamptz", (datetime.datetime(2020, 1, 1, 0, 0, 0, 123457, UTC), "pg"),
     ("2020-01-01 00:00:00.123458+00", "sqlite"), "timestamptz one microsecond apart"),
    ("timestamptz", (datetime.datetime(2020, 1, 1, tzinfo=UTC), "pg"),
     ("2020-01-01 00:00:00", "sqlite"), "timestamptz and text without a zone"),
    ("timestamp", (datetime.datetime(2023, 1, 1, 0, 0, 0, 1000), "pg"),
     ("2023-01-01 00:00:00.002", "sqlite"), "timestamp one millisecond apart"),
    ("timestamp", (datetime.datetime(2023, 1, 1), "pg"), ("2023-01-01 00:00:00+00", "sqlite"),
     "timestamp and text with a zone"),
    ("date", (datetime.date(2020, 1, 5), "pg"), ("2020-01-06", "sqlite"), "another day"),
    ("date", (datetime.date(2020, 1, 5), "pg"), ("20200105", "sqlite"), "a date and other text"),
    ("date", (datetime.date(2020, 1, 5), "pg"), ("2020-01-0\u0665", "sqlite"), "a date with a digit of another script"),
    ("time", (datetime.time(12, 0, tzinfo=TZ2), "pg"), ("10:00:00+00", "sqlite"),
     "timetz: same instant, another offset"),
    ("time", (datetime.time(12, 0), "pg"), ("12:00:00+00", "sqlite"), "time and timetz"),
    ("time", (datetime.time(12, 0, 0, 500000), "pg"), ("12:00:00.4", "sqlite"), "a fraction apart"),
    ("time", (datetime.time(12, 0, 0, 500000), "pg"), ("12:00:00.50", "sqlite"),
     "a time spelled otherwise than PostgreSQL prints it"),
    ("time", (datetime.time(12, 0, tzinfo=TZ2), "pg"), ("12:00:00+02:00", "sqlite"),
     "a timetz offset spelled otherwise than PostgreSQL prints it"),
    ("other", ("P1D", "pg"), ("PT24H", "sqlite"), "other: another text"),
]

MUST_BE_EQUAL = [
    ("int", (42, "pg"), (42, "sqlite"), "the same integer"),
    ("int", (-2 ** 63, "pg"), (-2 ** 63, "sqlite"), "int8 minimum"),
    ("float", (0.1, "pg"), (0.1, "sqlite"), "the same double"),
    ("float", (-0.0, "pg"), (0.0, "sqlite"), "-0 and 0 (SQLite keeps no sign of zero)"),
    ("float", (float("nan"), "pg"), (float("nan"), "pg"), "NaN and NaN (PostgreSQL to PostgreSQL)"),
    ("float", (1e-300, "pg"), (1e-300, "sqlite"), "a tiny double"),
    ("numeric", (D("1.50"), "pg"), ("1.50", "sqlite"), "numeric 1.50 kept as text"),
    ("numeric", (D("0.0000"), "pg"), ("0.0000", "sqlite"), "zero at scale 4"),
    ("numeric", (D("0.00"), "pg"), ("-0.00", "sqlite"), "zero has no sign"),
    ("numeric", (D("1000"), "pg"), ("1e3", "sqlite"), "1e3 is 1000, as PostgreSQL reads it"),
    ("numeric", (D("15.0"), "pg"), ("1.50e1", "sqlite"), "1.50e1 is 15.0, as PostgreSQL reads it"),
    ("numeric", (D("-12.3456"), "pg"), ("-12.3456", "sqlite"), "a negative numeric"),
    ("numeric", (D("NaN"), "pg"), ("NaN", "sqlite"), "numeric NaN"),
    ("numeric", (D("1.50"), "pg"), (1.5, "sqlite"), "a numeric held as a REAL keeps the value only"),
    ("numeric", (D("100.00"), "pg"), (100, "sqlite"), "a numeric held as an INTEGER keeps the value only"),
    ("bool", (True, "pg"), (1, "sqlite"), "true and 1"),
    ("bool", (False, "pg"), (0, "sqlite"), "false and 0"),
    ("text", ("Jos\u00e9 \U0001f600 tab\there \\N", "pg"), ("Jos\u00e9 \U0001f600 tab\there \\N", "sqlite"),
     "the same characters"),
    ("uuid", (U1, "pg"), (U1.upper(), "sqlite"), "a uuid in upper case"),
    ("uuid", (U1, "pg"), ("{%s}" % U1, "sqlite"), "a uuid in braces"),
    ("json", ('{"b": 1, "a": [true, null, 1.0]}', "pg"), ('{"a":[true,null,1.0],"b":1}', "sqlite"),
     "JSON key order and blanks"),
    ("json", ("100", "pg"), ("1e2", "sqlite"), "JSON 1e2 is 100, as jsonb reads it"),
    ("json", ('{"a": 2}', "pg"), ('{"a": 1, "a": 2}', "sqlite"), "JSON duplicate keys: the last wins"),
    ('json', ('"\u00e9"', "pg"), ('"\\u00e9"', "sqlite"), "a JSON string escaped or not"),
    ("json", ("null", "pg"), ("null", "sqlite"), "JSON null"),
    ("json", ("1.50", "pg"), ("1.50", "sqlite"), "JSON 1.50"),
    ("bytes", (b"\x00\xff", "pg"), (memoryview(b"\x00\xff"), "sqlite"), "the same bytes"),
    ("bytes", (b"", "pg"), (b"", "sqlite"), "empty bytes"),
    ("timestamptz", (datetime.datetime(2020, 1, 1, 0, 0, 0, 123457, UTC), "pg"),
     ("2020-01-01 00:00:00.123457+00", "sqlite"), "the same instant"),
    ("timestamptz", (datetime.datetime(2020, 1, 1, 0, 0, 0, 0, UTC), "pg"),
     ("2020-01-01 02:00:00+02", "sqlite"), "the same instant written with another offset"),
    ("timestamp", (datetime.datetime(2023, 1, 1, 0, 0, 0, 1000), "pg"), ("2023-01-01 00:00:00.001", "sqlite"),
     "the same timestamp"),
    ("date", (datetime.date(2020, 1, 5), "pg"), ("2020-01-05", "sqlite"), "the same day"),
    ("time", (datetime.time(12, 0), "pg"), ("12:00:00", "sqlite"), "the same time"),
    ("time", (datetime.time(12, 0, 0, 500000, tzinfo=TZ2), "pg"), ("12:00:00.5+02", "sqlite"),
     "the same timetz"),
    ("time", (datetime.time(1, 2, 3, 450000, tzinfo=datetime.timezone(-datetime.timedelta(hours=3, minutes=30))),
              "pg"), ("01:02:03.45-03:30", "sqlite"), "a timetz with offset minutes"),
    ("other", ("P1D", "pg"), ("P1D", "sqlite"), "other: the same text"),
    ("int", (None, "pg"), (None, "sqlite"), "NULL and NULL"),
]


def one_row(ltype, v, engine, col="v"):
    return {(1,): {col: L.canonical(ltype, v, engine)}}


def test_pairs():
    for want_equal, pairs in ((False, MUST_DIFFER), (True, MUST_BE_EQUAL)):
        for ltype, (va, ea), (vb, eb), why in pairs:
            a, b = one_row(ltype, va, ea), one_row(ltype, vb, eb)
            for x, y, order in ((a, b, ""), (b, a, " (swapped)")):
                got = L.compare_rows(x, y)
                t.eq(got, [] if want_equal else [(1,)],
                     "%s: %r %s %r: %s%s" % (ltype, va, "==" if want_equal else "!=", vb, why, order),
                     "canonical: %r / %r" % (x[(1,)]["v"], y[(1,)]["v"]))


def test_columns_and_keys():
    a = {(1,): {"id": 1, "v": "x", "extra": 5}}
    b = {(1,): {"id": 1, "v": "x"}}
    d = L.compare_rows(a, b)
    t.eq(d, [(1,)], "a column on the left only is a difference")
    t.eq(L.compare_rows(b, a), [(1,)], "a column on the right only is a difference")
    text = L.describe_diff(a, b, d)
    t.check("column extra missing on the right" in text, "describe_diff names the missing column", text)
    t.check("column extra missing on the left" in L.describe_diff(b, a, d),
            "describe_diff names the column missing on the left", L.describe_diff(b, a, d))
    t.eq(L.compare_rows(a, b, ignore_cols=("extra",)), [], "an ignored column is no difference")
    t.eq(L.compare_rows({(1,): {}}, {(1,): {}}), [], "two rows with no columns are equal")

    t.eq(L.compare_rows({(1,): {"v": 1}}, {(2,): {"v": 1}}), [(1,), (2,)],
         "a key on one side only is a difference, both ways")
    t.check("missing on the right" in L.describe_diff({(1,): {}}, {}, [(1,)]),
            "describe_diff says which side misses the row")
    t.eq(L.compare_rows({(1,): {"v": 1}}, {(True,): {"v": 1}}), [(1,)],
         "keys 1 and True differ (equal in Python)")
    k1, k2 = (L.canonical("numeric", D("1.5"), "pg"),), (L.canonical("numeric", "1.50", "sqlite"),)
    d = L.compare_rows({k1: {"v": 1}}, {k2: {"v": 1}})
    t.eq(len(d), 1, "numeric keys 1.5 and 1.50 differ (equal in Python)")
    text = L.describe_diff({k1: {"v": 1}}, {k2: {"v": 1}}, d)
    t.check("Decimal('1.5')" in text and "Decimal('1.50')" in text, "describe_diff shows both keys", text)
    va = L.canonical("json", '{"n": [1, {"m": true}]}', "pg")
    vb = L.canonical("json", '{"n": [1, {"m": 1}]}', "sqlite")
    text = L.describe_diff({(7,): {"j": va}}, {(7,): {"j": vb}}, [(7,)])
    t.check("key (7,) column j" in text and "True" in text,
            "describe_diff shows the differing column and both values", text)


def sqlite_table(path, rows, ddl="CREATE TABLE m (id INTEGER, n NUMERIC TEXT, j JSON TEXT, s TEXT, "
                                "b BOOLEAN, ts TIMESTAMPTZ TEXT, tm TIME TEXT)"):
    c = sqlite3.connect(path)
    c.execute(ddl)
    c.executemany("INSERT INTO m VALUES (%s)" % ", ".join("?" * len(rows[0])), rows)
    c.commit()
    c.close()
    return "sqlite:" + path


def test_sqlite_tables():
    w = L.Workdir("oracle_sqlite")
    base = [(1, "1.50", '{"a": 1.0, "b": [true]}', "x", 1, "2020-01-01 00:00:00+00", "12:00:00+02"),
            (2, "0.0000", "null", "y", 0, "2020-01-01 00:00:00.5+00", "10:00:00"),
            (3, None, None, None, None, None, None)]
    a = sqlite_table(w.file("a.db"), base)
    same = sqlite_table(w.file("same.db"), [(1, "1.50", '{"b":[true],"a":1.0}', "x", 1,
                                            "2020-01-01 02:00:00+02", "12:00:00+02")] + base[1:])
    ra, rs = L.rows_canonical(a, "m", ["id"]), L.rows_canonical(same, "m", ["id"])
    t.eq((len(ra), L.compare_rows(ra, rs)), (3, []), "SQLite: the same values in other spellings are equal",
         L.describe_diff(ra, rs, L.compare_rows(ra, rs)))
    changes = {"n": "1.5", "j": '{"a": 1, "b": [true]}', "s": "x ", "b": 2,
               "ts": "2020-01-01 00:00:00.000001+00", "tm": "10:00:00+00"}
    for col, v in sorted(changes.items()):
        p = w.file("chg_%s.db" % col)
        sqlite_table(p, base)
        c = sqlite3.connect(p)
        c.execute('UPDATE m SET "%s" = ? WHERE id = 1' % col, (v,))
        c.commit()
        c.close()
        rb = L.rows_canonical("sqlite:" + p, "m", ["id"])
        t.eq(L.compare_rows(ra, rb), [(1,)], "SQLite: column %s changed to %r is a difference" % (col, v))

    dup = sqlite_table(w.file("dup.db"), base + [(2, "0.0000", "null", "y", 0, "2020-01-01 00:00:00.5+00",
                                                  "10:00:00")])
    rd = L.rows_canonical(dup, "m", ["id"])
    d = L.compare_rows(ra, rd)
    t.eq(d, [(2,)], "SQLite: two rows of one key are a difference, even when identical")
    t.check("2 rows on the right" in L.describe_diff(ra, rd, d), "describe_diff counts the rows of the key",
            L.describe_diff(ra, rd, d))

    only = L.rows_canonical(a, "m", ["id"], cols=["s"])
    t.eq(sorted(only), [(1,), (2,), (3,)], "SQLite: key columns left out of cols still make the keys")
    t.eq(only[(1,)], {"s": "x"}, "SQLite: rows hold only the columns asked for")

    p = w.file("utf8.db")
    c = sqlite3.connect(p)
    c.execute("CREATE TABLE m (id INTEGER, s TEXT)")
    c.execute("INSERT INTO m VALUES (1, CAST(X'41FF42' AS TEXT)), (2, 'A\ufffdB')")
    c.commit()
    c.close()
    r = L.rows_canonical("sqlite:" + p, "m", ["id"])
    t.eq(L.compare_rows({(1,): r[(1,)]}, {(1,): r[(2,)]}), [(1,)],
         "SQLite: text that is not UTF-8 is read, and differs from its U+FFFD spelling")
    t.eq(L.compare_rows(r, L.rows_canonical("sqlite:" + p, "m", ["id"])), [],
         "SQLite: text that is not UTF-8 equals the same bytes")


def test_pg_tables():
    src = L.new_db("oracle_pg")
    L.execute(src, "CREATE DOMAIN money4 AS numeric(20,4)")
    L.execute(src, "CREATE TABLE m (id bigint PRIMARY KEY, n numeric, d money4, j jsonb, js json, "
                   "tz timetz, iv interval, arr int[], f float8, c char(4), ts timestamptz)")
    L.execute(src, "INSERT INTO m VALUES (1, 1.50, 1.5, '{\"b\": [true, 1.0], \"a\": 1}', "
                   "'{\"a\":1,  \"a\": 2.50}', '12:00:00+02', '1 day 2 hours', '{1,NULL,3}', '-0', 'ab', "
                   "'2020-01-01 02:00:00.5+02')")
    lite = L.Workdir("oracle_pg").file("t.db")
    row = (1, "1.50", "1.5000", '{"a":1,"b":[true,1.0]}', '{"a":2.50}', "12:00:00+02", "P1DT2H",
           "{1,NULL,3}", 0.0, "ab  ", "2020-01-01 00:00:00.5+00")
    ddl = ("CREATE TABLE m (id INTEGER PRIMARY KEY, n NUMERIC TEXT, d NUMERIC TEXT, j JSON TEXT, "
           "js JSON TEXT, tz TIME TEXT, iv TEXT, arr TEXT, f REAL, c TEXT, ts TIMESTAMPTZ TEXT)")
    url = sqlite_table(lite, [row], ddl)
    rp, rl = L.rows_canonical(src, "m", ["id"]), L.rows_canonical(url, "m", ["id"])
    d = L.compare_rows(rp, rl)
    t.eq(d, [], "PostgreSQL and SQLite: every column equal (interval and array as lockstep's session "
                "prints them, the domain by its base type numeric(20,4))", L.describe_diff(rp, rl, d))
    for col, v in (("n", "1.5"), ("d", "1.5"), ("j", '{"a":1,"b":[1,1.0]}'), ("js", '{"a":2.5}'),
                   ("tz", "10:00:00+00"), ("iv", "1 day 02:00:00"), ("arr", "{1,3}"), ("c", "ab"),
                   ("ts", "2020-01-01 00:00:00.4+00")):
        c = sqlite3.connect(lite)
        old = c.execute('SELECT "%s" FROM m' % col).fetchone()[0]
        c.execute('UPDATE m SET "%s" = ?' % col, (v,))
        c.commit()
        rl = L.rows_canonical(url, "m", ["id"])
        c.execute('UPDATE m SET "%s" = ?' % col, (old,))
        c.commit()
        c.close()
        t.eq(L.compare_rows(rp, rl), [(1,)], "PostgreSQL and SQLite: column %s %r differs from %r"
             % (col, v, old))
    only = L.rows_canonical(src, "m", ["id"], cols=["n"])
    t.eq(list(only), [(1,)], "PostgreSQL: key columns left out of cols still make the keys")


t.case(test_pairs)
t.case(test_columns_and_keys)
t.case(test_sqlite_tables)
t.case(test_pg_tables)
t.finish()
