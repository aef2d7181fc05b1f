"""No database password reaches any output, for malformed URLs too (issue 20, item 6).

libpq echoes a malformed URL's password in its error ("invalid percent-encoded token:
"pa%ss""; a URI it cannot parse, whole). For each URL shape below, pointing at a closed
port, the real binary runs `check-config`, `sync` (which records the run's error in the
state store) and `status --json`: the password, raw and percent-decoded, and the pieces
libpq cuts it into, appear nowhere in stdout, stderr or the state store's files. One
password comes from a ${VAR}. No PostgreSQL server is needed: the port is closed.
"""
import os
import socket

import lktest as L

t = L.Suite("test_secret_redaction")


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


P = closed_port()
# (name, url, secrets that must appear nowhere, env)
CASES = [
    ("raw_percent", "postgresql://u:pa%%ss@127.0.0.1:%d/db" % P, ["pa%ss"], None),
    ("bad_escape", "postgresql://u:Zq%%zSecret@127.0.0.1:%d/db" % P, ["Zq%zSecret", "zSecret"], None),
    ("trailing_pct", "postgresql://u:Pw9%%2@127.0.0.1:%d/db" % P, ["Pw9%2"], None),
    ("at_colon_slash", "postgresql://u:Hunter@ss:wq/rd@127.0.0.1:%d/db" % P,
     ["Hunter@ss:wq/rd", "Hunter", "wq/rd", "\"wq\""], None),
    ("ipv6_broken", "postgresql://u:Sec[ret77@[::1:%d/db" % P, ["Sec[ret77"], None),
    ("query_password", "postgresql://u@127.0.0.1:%d/db?password=Qu%%eryPw" % P, ["Qu%eryPw"], None),
    ("encoded", "postgresql://u:Enc%%41ded99@127.0.0.1:%d/db" % P, ["Enc%41ded99", "EncAded99"], None),
    ("keyword", "host=127.0.0.1 port=%d password=Kw%%Secret9 dbname=x" % P, ["Kw%Secret9"], None),
    ("keyword_bad", "host=127.0.0.1 port=%d password=KwPass77 bogus=1" % P, ["KwPass77"], None),
    ("env_var", "postgresql://u:${LK_TEST_DB_PW}@127.0.0.1:%d/db" % P, ["Env%PwXy"],
     {"LK_TEST_DB_PW": "Env%PwXy"}),
]


def state_bytes(wd):
    data = b""
    for name in os.listdir(str(wd)):
        if name.startswith("state.db"):
            with open(os.path.join(str(wd), name), "rb") as f:
                data += f.read()
    return data.decode("latin-1")


def one(name, url, secrets, env):
    wd = L.Workdir("redact_" + name)
    job = {"source": {"db": "src", "table": "users", "key": ["id"]},
           "target": {"db": "dst", "table": "users", "create": True},
           "mode": "snapshot", "retry": {"attempts": 1, "initial": "100ms"}}
    cfg = L.sync_config(wd, {"src": url, "dst": "sqlite:" + wd.file("dst.db")}, {"users": job})
    full_env = dict(os.environ, **(env or {}))
    outputs = []
    for args in (["check-config"], ["sync", "users"], ["status", "--json"]):
        rc, out, err = L.run_lockstep(args, cfg, env=full_env, timeout=60)
        outputs.append(("%s stdout" % args[0], out))
        outputs.append(("%s stderr" % args[0], err))
        if args[0] == "sync":
            t.check(rc != 0, "%s: sync fails (the port is closed)" % name, L.show(rc, out, err))
            t.check("cannot connect" in err or "unreachable" in err,
                    "%s: sync still says why it failed" % name, L.show(rc, out, err))
    outputs.append(("state store", state_bytes(wd)))
    for where, text in outputs:
        leaked = [s for s in secrets if s in text]
        t.check(not leaked, "%s: %s shows no password" % (name, where),
                "leaked %r in:\n%s" % (leaked, text[-2000:]))


for c in CASES:
    t.case(lambda c=c: one(*c))
t.finish()
