"""`lockstep demo`: the embedded quickstart (SQLite only, no PostgreSQL needed).

- once: `lockstep demo --once` creates 100,000 sample users, syncs them, verifies equal,
  exits 0.
- live: `lockstep demo` does the same and then runs the daemon in real-time mode with the
  HTTP API (LOCKSTEP_DEMO_LISTEN) while it changes rows: it prints the URLs to try;
  /api/health answers HEALTHY, /api/jobs shows the real-time job running with its run,
  /metrics counts rows, the changes reach the target (read with Python's sqlite3); Ctrl-C
  (SIGINT) stops it cleanly: exit 0, and the final verify says equal.
"""
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.request

import lktest as L

t = L.Suite("test_demo")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        body = r.read().decode()
        return r.status, json.loads(body) if "json" in (r.headers.get("Content-Type") or "") else body


def test_once():
    wd = L.Workdir("demo_once")
    p = subprocess.run([L.lk_bin(), "demo", "--once"], cwd=str(wd), capture_output=True, text=True, timeout=300)
    t.eq(p.returncode, 0, "demo --once exits 0", p.stdout[-2000:] + p.stderr[-2000:])
    t.check("synced 100000 rows" in p.stdout and "target 100000 rows: equal" in p.stdout,
            "demo --once syncs 100,000 rows and verifies equal", p.stdout[-2000:])


def test_live():
    wd = L.Workdir("demo_live")
    port = free_port()
    env = dict(os.environ, LOCKSTEP_DEMO_LISTEN="127.0.0.1:%d" % port, NO_COLOR="1")
    out = open(wd.file("out.log"), "w")
    p = subprocess.Popen([L.lk_bin(), "demo"], cwd=str(wd), env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        def output():
            with open(wd.file("out.log"), errors="replace") as f:
                return f.read()

        end = time.monotonic() + 120
        while time.monotonic() < end and "HTTP API on" not in output() and p.poll() is None:
            time.sleep(0.2)
        t.check("curl http://127.0.0.1:%d/api/health" % port in output(), "demo prints the URLs to try",
                output()[-2000:])
        code, h = get(port, "/api/health")
        t.check(code == 200 and h.get("status") == "HEALTHY", "demo: /api/health is HEALTHY", h)
        seen = {}

        def named_run():  # the stream names its run a moment after its thread starts
            seen["job"] = (get(port, "/api/jobs")[1].get("jobs") or [{}])[0]
            return seen["job"].get("currentRun")

        L.wait_for(named_run, 30, 0.1)
        job = seen["job"]
        t.check(job.get("name") == "users" and job.get("mode") == "realtime" and job.get("running")
                and job.get("currentRun"), "demo: /api/jobs shows the real-time job running with its run", job)
        target = os.path.join(str(wd), "lockstep-demo", "target.db")

        def new_rows():
            c = sqlite3.connect(target, timeout=30)
            try:
                return c.execute("SELECT count(*) FROM users WHERE id > 100000").fetchone()[0]
            finally:
                c.close()

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and new_rows() < 10:
            time.sleep(0.5)
        t.check(new_rows() >= 10, "demo: rows inserted by the generator reach the target (%d)" % new_rows())
        code, m = get(port, "/metrics")
        t.check(code == 200 and 'lockstep_rows_read_total{job="users"}' in m, "demo: /metrics counts rows")
        p.send_signal(signal.SIGINT)
        rc = p.wait(120)
        t.eq(rc, 0, "demo: Ctrl-C stops it with exit 0", output()[-3000:])
        t.check("verify: source" in output() and "rows: equal" in output(),
                "demo: the final verify says equal", output()[-2000:])
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        out.close()


t.case(test_once)
t.case(test_live)
t.finish()
