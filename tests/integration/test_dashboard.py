"""The dashboard at GET / (SPEC §6), in a real browser (headless Chromium via Selenium).

A daemon on two SQLite databases with three jobs: `users` (a snapshot on demand, 2,000
rows), `tick` (an `sql` job every second) and `broken` (an `sql` job whose error message
carries markup: `no such table: <b id=xss>nope</b>`). The HTTP token is set.

- plain HTTP: / and /dashboard.js answer with their types and the security headers (a
  Content-Security-Policy that allows scripts from this origin only, nosniff, no framing);
  POST / is a 405;
- in the browser: the page holds no data and the API answers 401 without the token, so
  the page asks for it and loads nothing; a wrong token is refused (401 shown); the
  token is traded for a session (POST /api/session) whose cookie is HttpOnly (not in
  document.cookie) and the token is in no URL; then the header's status is
  /api/health's; every job has a row and a "Sync now" button; the checks are listed;
  the broken job's error shows as text and no element `#xss` exists (values never
  become markup); "Sync now" (authenticated by the session cookie) queues a run that the
  page follows over its event stream (the row is drawn from SSE events, which carry the
  cookie) and the runs table shows succeeded, /api/sync/status/{id} agrees and the
  target holds the 2,000 rows (read with sqlite3, not through lockstep); the browser
  console has no error but the expected 401s (a CSP violation would be one);
- the daemon stopped: the page says the daemon does not answer.

Needs chromium, chromium-driver and python3-selenium (make deps); without them the test
is skipped, or fails under CI.
"""
import http.client
import json
import os
import re
import shutil
import sqlite3
import sys
import time
import urllib.request

import lktest as L
import rtwriters as W

t = L.Suite("test_dashboard")
TOKEN = "dash-t0ken"

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.common.exceptions import StaleElementReferenceException
except ImportError:
    webdriver = None
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def need_browser():
    if webdriver is not None and os.path.exists(CHROMEDRIVER) and shutil.which("chromium"):
        return
    reason = "chromium, chromium-driver and python3-selenium are needed (make deps)"
    if L.strict():
        print("FAIL: %s" % reason)
        print("0 passed, 1 failed")
        sys.exit(1)
    print("SKIP: %s" % reason)
    sys.exit(77)


def browser():
    o = Options()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1000"):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)


def fresh(fn, deadline=5):
    """fn() again while the page redraws under it (every 2 s) and an element goes stale."""
    end = time.monotonic() + deadline
    while True:
        try:
            return fn()
        except StaleElementReferenceException:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


AUTH = {"Authorization": "Bearer " + TOKEN}


def raw(port, method, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, headers={"Content-Type": "application/json"} if method == "POST" else {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), body


def main():
    need_browser()
    wd = L.Workdir("dashboard")
    src, dst = wd.file("a.db"), wd.file("b.db")
    with sqlite3.connect(src) as c:
        c.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        c.executemany("INSERT INTO users VALUES (?, ?)", [(i, "user %d" % i) for i in range(1, 2001)])
        c.execute("CREATE TABLE ticks (at TEXT)")
    with sqlite3.connect(dst) as c:
        c.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    cfg = L.sync_config(wd, {"a": "sqlite:a.db", "b": "sqlite:b.db"}, {
        "users": {"source": {"db": "a", "table": "users"}, "target": {"db": "b"},
                  "verify": {"every": "1s"}},
        "tick": {"kind": "sql", "db": "a", "every": "1s", "sql": "INSERT INTO ticks VALUES (datetime('now'))"},
        "broken": {"kind": "sql", "db": "a", "every": "2s", "sql": 'SELECT * FROM "<b id=xss>nope</b>"'},
    }, extra={"http": {"listen": "127.0.0.1:0", "token": TOKEN}})
    run = W.Daemon(cfg, wd.file("run.log")).start()
    drv = None
    try:
        port = L.wait_for(lambda: re.search(r"HTTP API on http://[^:]+:(\d+)/", run.output()) or not run.alive(), 30)
        port = int(port.group(1)) if port and port is not True else None
        t.check(bool(port), "the daemon serves its API", run.tail(1500))
        base = "http://127.0.0.1:%d" % port

        # ---- plain HTTP
        st, hdr, body = raw(port, "GET", "/")
        t.check(st == 200 and hdr.get("content-type", "").startswith("text/html") and b"<title>lockstep" in body,
                "GET /: 200, text/html, the page", (st, hdr))
        csp = hdr.get("content-security-policy", "")
        t.check("script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in
                csp.split("script-src")[1].split(";")[0], "GET /: a CSP with scripts from this origin only", csp)
        t.check(hdr.get("x-content-type-options") == "nosniff" and "frame-ancestors 'none'" in csp,
                "GET /: nosniff, no framing", hdr)
        st, hdr, body = raw(port, "GET", "/dashboard.js")
        t.check(st == 200 and "javascript" in hdr.get("content-type", "") and b"EventSource" in body,
                "GET /dashboard.js: 200, JavaScript", (st, hdr.get("content-type")))
        st, hdr, _ = raw(port, "HEAD", "/")
        t.eq(st, 200, "HEAD /: 200")
        st, hdr, body = raw(port, "POST", "/")
        t.check(st in (401, 405), "POST /: refused (%d)" % st, body)

        # ---- the browser: the token is asked for and traded for a session cookie
        drv = browser()
        drv.get(base + "/")
        body = lambda k: drv.find_element(By.TAG_NAME, "body").get_attribute("data-" + k)  # noqa: E731
        t.check(L.wait_for(lambda: body("auth") == "needed", 15) and drv.find_element(By.ID, "token").is_displayed(),
                "the page asks for the token (the API answers 401 without it)", drv.page_source[:2000])
        t.check(not body("loaded") and drv.find_elements(By.CSS_SELECTOR, "#jobs tr[data-job]") == [],
                "and shows no data")
        drv.find_element(By.ID, "token").send_keys("wrong-token")
        drv.find_element(By.ID, "signin").click()
        t.check(L.wait_for(lambda: "401" in drv.find_element(By.ID, "msg").text, 10),
                "a wrong token: the page shows the 401", drv.find_element(By.ID, "msg").text)
        t.check(not body("loaded"), "and still shows no data")
        drv.find_element(By.ID, "token").send_keys(TOKEN)
        drv.find_element(By.ID, "signin").click()
        t.check(L.wait_for(lambda: body("loaded"), 15), "with the token the page signs in and loads its data",
                drv.page_source[:2000])
        t.eq(body("auth"), "ok", "a session for everything (made with http.token)")
        t.check(not drv.find_element(By.ID, "token").is_displayed(), "the token field is gone")
        cookies = dict((c["name"], c) for c in drv.get_cookies())
        sess = cookies.get("lockstep_session") or {}
        t.check(sess.get("httpOnly") and sess.get("sameSite") == "Strict" and len(sess.get("value", "")) == 64,
                "the session cookie is HttpOnly and SameSite=Strict", sess)
        t.check("lockstep_session" not in drv.execute_script("return document.cookie"),
                "the page's script cannot read it (document.cookie)")
        t.check(TOKEN not in drv.current_url and TOKEN not in drv.page_source, "the token is in no URL nor the page")

        def health():
            req = urllib.request.Request(base + "/api/health", headers=AUTH)
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read().decode())
        # the status moves (the broken job's failures make it DEGRADED): page and API agree
        # within a refresh
        t.check(L.wait_for(lambda: drv.find_element(By.ID, "status").text == health()["status"], 10, 0.3),
                "the header shows /api/health's status", health()["status"])
        t.check(str(health()["pid"]) in drv.find_element(By.ID, "instance").text, "and the instance's pid")
        jobs = fresh(lambda: dict((tr.get_attribute("data-job"), len(tr.find_elements(By.TAG_NAME, "button")))
                                  for tr in drv.find_elements(By.CSS_SELECTOR, "#jobs tr[data-job]")))
        t.eq(sorted(jobs), ["broken", "tick", "users"], "a row per job")
        t.check(all(n == 1 for n in jobs.values()), "each with a Sync now button", jobs)
        checks = fresh(lambda: [tr.find_elements(By.TAG_NAME, "td")[0].text
                                for tr in drv.find_elements(By.CSS_SELECTOR, "#checks tr")])
        t.check("state_store" in checks and "memory" in checks, "the checks are listed", checks)

        # the broken job's error: text, never markup
        def broken_row():
            for tr in drv.find_elements(By.CSS_SELECTOR, "#runs tr[data-run]"):
                tds = tr.find_elements(By.TAG_NAME, "td")
                if len(tds) > 8 and tds[1].text == "broken" and "nope" in tds[8].text:
                    return tds[8].text
            return None
        text = L.wait_for(lambda: fresh(broken_row), 20, 0.5)
        t.check(text and "<b id=xss>nope</b>" in text, "the broken job's error shows its markup as text", text)
        t.eq(drv.find_elements(By.ID, "xss"), [], "no element #xss: a value never becomes markup")

        # the last verify pass (docs/verify.md): the empty target lacks every row
        def verify_cell():
            for tr in drv.find_elements(By.CSS_SELECTOR, "#jobs tr[data-job='users']"):
                return tr.find_elements(By.TAG_NAME, "td")[6].text
            return None
        t.check(L.wait_for(lambda: (fresh(verify_cell) or "").startswith("2000 differences"), 30, 0.5),
                "the users row shows its last verify: 2000 differences (the target is empty)",
                verify_cell())

        # Sync now: the session cookie authenticates the POST and the run's event stream
        users_button = "#jobs tr[data-job='users'] button"
        fresh(lambda: drv.find_element(By.CSS_SELECTOR, users_button).click())
        msg = L.wait_for(lambda: re.search(r"users: run (\S+) queued", drv.find_element(By.ID, "msg").text), 10)
        t.check(bool(msg), "Sync now (the session cookie): a run is queued", drv.find_element(By.ID, "msg").text)
        rid = msg.group(1) if msg else ""

        def live():
            for tr in drv.find_elements(By.CSS_SELECTOR, "#runs tr[data-run='%s']" % rid):
                return tr.get_attribute("data-live")
            return None
        t.check(L.wait_for(lambda: fresh(live) in ("progress", "done"), 30, 0.2),
                "the page follows the run over its event stream (SSE with the session cookie)", fresh(live))
        def run_status():
            for tr in drv.find_elements(By.CSS_SELECTOR, "#runs tr[data-run='%s']" % rid):
                return tr.find_elements(By.TAG_NAME, "td")[3].text
            return None
        t.check(L.wait_for(lambda: fresh(run_status) == "succeeded", 30, 0.5),
                "the runs table shows the run succeeded", run_status())
        req = urllib.request.Request(base + "/api/sync/status/" + rid, headers=AUTH)
        with urllib.request.urlopen(req, timeout=5) as r:
            st = json.loads(r.read().decode())
        t.eq((st["status"], st["stats"]["rowsWritten"]), ("succeeded", 2000), "/api/sync/status agrees: 2,000 rows")
        t.check(L.wait_for(lambda: (fresh(verify_cell) or "").startswith("0 differences"), 30, 0.5),
                "after the sync the next verify pass shows 0 differences", verify_cell())
        with sqlite3.connect(dst) as c:
            t.eq(c.execute("SELECT count(*), sum(id) FROM users").fetchone(), (2000, 2001000),
                 "the target holds the 2,000 rows (read with sqlite3)")
        # Chromium logs the 401 answers before the sign-in (and the wrong token's)
        errors = [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"
                  and not ("/api/" in e.get("message", "") and "401" in e.get("message", ""))]
        t.eq(errors, [], "no error in the browser console (no CSP violation, no script error)")

        # the daemon goes away
        t.eq(run.term(30), 0, "the daemon stops (exit 0)")
        t.check(L.wait_for(lambda: drv.find_element(By.ID, "offline").is_displayed(), 10),
                "the page says the daemon does not answer")
    finally:
        if drv:
            drv.quit()
        if run.alive():
            run.term(30)


t.case(main)
t.finish()
