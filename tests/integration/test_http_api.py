"""The HTTP API of `lockstep run` (SPEC §6): real requests to a real daemon.

Cases:

- endpoints: every endpoint's success answer field by field (/livez, /healthz, /readyz,
  /api/health, /api/jobs, POST /api/sync, /api/sync/status/{id}, /api/sync/events/{id},
  cancel, /api/runs, /api/errors, /metrics) and every error path: 400 (malformed JSON,
  unknown field, wrong type, bad query), 401 (missing or wrong token), 404 (unknown job,
  run, endpoint), 405, 409 (a run of that job is going: its id), the coalescing 202 (a
  run queued already: its id; overlap: queue), 413 (a body over 64 KiB). A full sync
  started over HTTP is followed over Server-Sent Events to its terminal event with a
  progress event at least every second; its stats match the rows copied (md5 oracle on
  the databases). A running sync is cancelled and ends `cancelled`. /metrics parses as
  the Prometheus text format and its rows counter matches what was synced. The source's
  `where` has a gate (lktest.Gate) that holds snap's read half-way while the test wants:
  the followed run, the 409 while it runs and the cancel are certainly mid-run, however
  fast the copy (at LK_SCALE=0.1 a whole run takes about 0.2 s).
- crash_restart: a sync started over HTTP, the daemon SIGKILLed mid-run (held at a gate
  half-way) and started again: /api/sync/status/{id} answers `interrupted`, and the
  resumed run shows in /api/runs and ends equal.
- security: a non-loopback http.listen without a token is refused (run and check-config,
  exit 78); a second daemon on a port in use exits 69 with a clear message.
- token_reload: SIGHUP with a new http.token: the old token gets 401 and the new one
  works at once; one log line names the changed keys only a start applies (http.listen,
  instance.name); a reload leaving a non-loopback listener without a token is refused.
- robustness: 2,000 malformed or hostile requests (random bytes, oversized headers,
  truncated bodies, slow clients, bad methods, cross-site forms, rebinding Hosts and
  forged session cookies); /livez still answers and the scheduled
  job keeps running.

The token is set, so every request but the probes carries it (GETs too) and every POST
is sent as application/json; the access rules themselves are test_http_security.py's.
"""
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import lktest as L
import rtwriters as W

L.require_pg()
t = L.Suite("test_http_api")

TOKEN = "t0k3n-for-tests"


class Api:
    """A daemon and an HTTP client to it (the port is read from its log)."""

    def __init__(self, cfg, wd, env=None):
        self.run = W.Daemon(cfg, wd.file("run.log"), env or {"LOCKSTEP_SHUTDOWN_GRACE": "10s"}).start()
        self.port = None
        self.find_port()

    def find_port(self):
        def port():
            m = re.search(r"HTTP API on http://[^:]+:(\d+)/", self.run.output())
            return m and int(m.group(1))
        self.port = L.wait_for(lambda: port() or not self.run.alive(), deadline=30, step=0.1) and port()
        t.check(bool(self.port), "the daemon logs the HTTP API's address", self.run.tail(2000))

    def req(self, method, path, body=None, token=TOKEN, headers=None, raw=None):
        """(status, parsed JSON or text, headers)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + token
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        if data is not None or method == "POST":
            h.setdefault("Content-Type", "application/json")  # every POST (CSRF rule)
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            text = r.read().decode("utf-8", "replace")
            ctype = r.getheader("Content-Type") or ""
            try:
                val = json.loads(text) if "json" in ctype else text
            except ValueError:
                val = text
            return r.status, val, dict(r.getheaders())
        finally:
            c.close()

    def get(self, path, token=TOKEN):
        return self.req("GET", path, token=token)  # with http.token set, GETs need it too

    def post(self, path, body=None, **kw):
        return self.req("POST", path, body, **kw)

    def status(self, rid):
        return self.get("/api/sync/status/" + rid)[1]

    def events(self, rid, last_id=None, limit_s=120, on_event=None):
        """[(monotonic time, event, id, data)] of the stream until it ends; a keep-alive comment
        is an entry ("keep-alive", None, None). on_event(entry) is called as each one arrives."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = {"Accept": "text/event-stream", "Authorization": "Bearer " + TOKEN}
        if last_id is not None:
            h["Last-Event-ID"] = str(last_id)
        out = []
        try:
            c.request("GET", "/api/sync/events/" + rid, headers=h)
            r = c.getresponse()
            if r.status != 200:
                return r.status, r.read().decode(), []
            ev, eid, data = None, None, None
            end = time.monotonic() + limit_s
            while time.monotonic() < end:
                line = r.readline()  # chunked transfer decoded; b"" at the end of the stream
                if not line:
                    break
                line = line.decode().rstrip("\n")
                if line.startswith("event: "):
                    ev = line[7:]
                elif line.startswith("id: "):
                    eid = int(line[4:])
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                elif line.startswith(":"):
                    ev = "keep-alive"
                elif line == "" and ev:
                    out.append((time.monotonic(), ev, eid, data))
                    if on_event:
                        on_event(out[-1])
                    ev, eid, data = None, None, None
            return 200, r.getheader("Content-Type"), out
        finally:
            c.close()


def config(wd, dbs, jobs, http=None, extra=None):
    h = {"listen": "127.0.0.1:0", "token": TOKEN}
    h.update(http or {})
    x = {"http": h, "instance": {"name": "http-it"}}
    x.update(extra or {})
    return L.sync_config(wd, dbs, jobs, extra=x)


def iso_ok(s):
    return isinstance(s, str) and re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", s) is not None


PROM_LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
                       r'(-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$')


def prom_parse(text):
    """({(name, labels): value}, [bad lines]): the text exposition format, checked line by line."""
    vals, bad, types = {}, [], {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            types[parts[2]] = parts[3]
            continue
        if line.startswith("#") or not line:
            continue
        if not PROM_LINE.match(line):
            bad.append(line)
            continue
        name_labels, value = line.rsplit(" ", 1)
        vals[name_labels] = float(value)
    return vals, bad, types


def promtool():
    """Prometheus' promtool: on PATH, or fetched by `make deps` (tools/fetch-promtool.sh)."""
    here = os.path.dirname(os.path.abspath(__file__))
    local = os.path.join(here, "..", "..", ".deps", "bin", "promtool")
    return os.environ.get("LK_PROMTOOL") or shutil.which("promtool") or (local if os.access(local, os.X_OK) else None)


# ---------------------------------------------------------------------------


def test_endpoints():
    n = L.scale(200000)
    src, dst = L.new_db("http_src"), L.new_db("http_dst")
    W.create_source(src, n=n)
    W.create_target(dst, log_table=None)
    # snap's reads wait at key n/2 while the gate is closed: its runs are certainly mid-run
    # when the test looks at them, cancels them, or follows them over SSE
    gate = L.Gate(src, from_key=n // 2)
    aux = L.new_db("http_aux")
    L.execute(aux, "CREATE TABLE ticks (n serial PRIMARY KEY)")
    wd = L.Workdir("http_endpoints")
    jobs = {
        "snap": {"source": {"db": "src", "table": "items", "where": L.Gate.where_sql("id")},
                 "target": {"db": "dst", "table": "items", "create": False},
                 "mode": "snapshot", "batch": 500},
        "tick": {"kind": "sql", "db": "aux", "every": "1s", "sql": "INSERT INTO ticks DEFAULT VALUES"},
        "slowq": {"kind": "sql", "db": "aux", "overlap": "queue", "sql": "SELECT pg_sleep(2)"},
        "bad": {"kind": "sql", "db": "aux", "sql": "SELECT 1 / 0"},
    }
    cfg = config(wd, {"src": src, "dst": dst, "aux": aux}, jobs)
    api = Api(cfg, wd)
    try:
        # ---- liveness, readiness, health
        for path in ("/livez", "/healthz"):
            code, body, hdr = api.get(path)
            t.eq((code, body), (200, {"status": "ok"}), "%s: 200 {status: ok}" % path)
            t.check(hdr.get("Content-Type", "").startswith("application/json"), "%s: JSON content type" % path)
        code, body, _ = api.get("/readyz")
        t.eq(code, 200, "/readyz: 200 with the state store migrated", body)
        t.eq(body.get("status"), "ready", "/readyz: status ready", body)
        t.check(L.wait_for(lambda: api.get("/api/health")[1].get("checks", [{}])[0].get("status") == "ok", 10, 0.1),
                "/api/health: the state store check passes once the heartbeat ran")
        code, h, _ = api.get("/api/health")
        t.eq(code, 200, "/api/health: 200", h)
        t.eq(h.get("status"), "HEALTHY", "/api/health: HEALTHY", h)
        t.eq(h.get("instance"), "http-it", "/api/health: the instance name")
        t.check(isinstance(h.get("uptimeSeconds"), int) and h["uptimeSeconds"] >= 0, "/api/health: uptimeSeconds")
        t.eq(h.get("restarts"), 0, "/api/health: restarts 0 on the first start")
        t.check(h.get("memory", {}).get("rssBytes", 0) > 1 << 20, "/api/health: memory.rssBytes (%r)" % h.get("memory"))
        t.check("limitBytes" in h.get("memory", {}) and "batchDivisor" in h.get("memory", {}),
                "/api/health: memory.limitBytes and batchDivisor")
        names = [c.get("name") for c in h.get("checks", [])]
        t.eq(names, ["state_store", "memory", "databases", "jobs", "resnapshots", "schema", "verify"], "/api/health: each check named")
        t.check(all(c.get("status") == "ok" and c.get("recommendation") is None for c in h["checks"]),
                "/api/health: every check ok, no recommendation", h)
        t.check(isinstance(h.get("breakers"), list) and isinstance(h.get("leases"), list),
                "/api/health: breakers and leases are lists")

        # ---- jobs
        code, body, _ = api.get("/api/jobs")
        t.eq(code, 200, "/api/jobs: 200")
        js = dict((j["name"], j) for j in body.get("jobs", []))
        t.eq(sorted(js), ["bad", "slowq", "snap", "tick"], "/api/jobs: every job")
        t.eq((js["snap"]["kind"], js["snap"]["mode"], js["snap"]["schedule"], js["snap"]["nextRun"]),
             ("sync", "snapshot", None, None), "/api/jobs: snap is a sync snapshot without a schedule")
        t.check(js["tick"]["kind"] == "sql" and js["tick"]["mode"] is None and js["tick"]["schedule"]
                and iso_ok(js["tick"]["nextRun"]), "/api/jobs: tick is sql with a schedule and a next run",
                js["tick"])
        t.check(L.wait_for(lambda: (dict((j["name"], j) for j in api.get("/api/jobs")[1]["jobs"])["tick"]
                                    .get("lastRun") or {}).get("status") == "succeeded", 10, 0.1),
                "/api/jobs: tick's lastRun is a succeeded run")

        # ---- errors on POST /api/sync
        code, body, hdr = api.post("/api/sync", {"job": "snap"}, token=None)
        t.eq(code, 401, "POST without a token: 401", body)
        t.check("Bearer" in hdr.get("WWW-Authenticate", ""), "401 carries WWW-Authenticate: Bearer")
        t.eq(api.post("/api/sync", {"job": "snap"}, token="wrong")[0], 401, "POST with a wrong token: 401")
        t.eq(api.post("/api/sync", {"job": "snap"}, token=TOKEN + "x")[0], 401, "POST with a longer token: 401")
        code, body, _ = api.post("/api/sync", raw="{\"job\": ")
        t.check(code == 400 and body.get("error") == "malformed JSON" and "detail" in body,
                "malformed JSON: 400 {error, detail}", body)
        code, body, _ = api.post("/api/sync", {"job": "snap", "typo": 1})
        t.check(code == 400 and "typo" in (body.get("detail") or ""), "unknown field: 400 naming it", body)
        code, body, _ = api.post("/api/sync", {"job": 5})
        t.check(code == 400 and "job" in body.get("detail", ""), "job of the wrong type: 400", body)
        code, body, _ = api.post("/api/sync", {"job": "snap", "type": "bogus"})
        t.check(code == 400 and "type" in body.get("detail", ""), "a bad type: 400", body)
        code, body, _ = api.post("/api/sync", ["snap"])
        t.eq(code, 400, "a JSON array instead of an object: 400", body)
        code, body, _ = api.post("/api/sync", {"job": "nope"})
        t.check(code == 404 and body.get("error") == "unknown job", "unknown job: 404", body)
        code, body, _ = api.post("/api/sync", raw="{\"job\": \"snap\", \"pad\": \"%s\"}" % ("x" * 70000))
        t.eq(code, 413, "a body over 64 KiB: 413", body)
        code, body, hdr = api.get("/api/sync")
        t.check(code == 405 and "POST" in hdr.get("Allow", ""), "GET /api/sync: 405 with Allow: POST", body)
        t.eq(api.req("DELETE", "/livez", token=None)[0], 405, "DELETE /livez: 405")
        t.eq(api.get("/nope")[0], 404, "an unknown endpoint: 404")
        t.eq(api.get("/api/sync/status/01a20000-0000-7000-8000-000000000000")[0], 404, "an unknown run: 404")
        t.eq(api.get("/api/sync/events/01a20000-0000-7000-8000-000000000000")[0], 404,
             "events of an unknown run: 404")
        t.eq(api.get("/api/runs?limit=0")[0], 400, "/api/runs?limit=0: 400")
        t.eq(api.get("/api/runs?job=nope")[0], 404, "/api/runs?job=nope: 404")
        t.eq(api.get("/api/errors?resolved=maybe")[0], 400, "/api/errors?resolved=maybe: 400")

        # ---- POST /api/verify (docs/verify.md)
        t.eq(api.post("/api/verify", {"job": "snap"}, token=None)[0], 401, "POST /api/verify without a token: 401")
        code, body, _ = api.post("/api/verify", {"job": "snap", "repair": "yes"})
        t.check(code == 400 and "repair" in body.get("detail", ""), "/api/verify: repair not a bool: 400", body)
        code, body, _ = api.post("/api/verify", {"job": "snap", "full": True})
        t.check(code == 400 and "full" in body.get("detail", ""), "/api/verify: unknown field: 400", body)
        t.eq(api.post("/api/verify", {"job": "nope"})[0], 404, "/api/verify: unknown job: 404")
        code, body, _ = api.post("/api/verify", {"job": "tick"})
        t.check(code == 409 and body.get("error"), "/api/verify of an sql job: 409", body)
        code, body, _ = api.post("/api/verify", {"job": "snap"})
        t.check(code == 202 and body.get("id"), "/api/verify: 202 {id}", body)
        vid = body.get("id") or "x"
        t.check(L.wait_for(lambda: api.status(vid).get("status") in ("succeeded", "failed"), 60, 0.1),
                "the verify pass ends, recorded under its id", api.status(vid))
        t.eq(api.status(vid).get("type"), "verify", "/api/sync/status of the pass: type verify")

        # ---- a full sync over HTTP, followed over SSE
        gate.close()
        code, body, _ = api.post("/api/sync", {"job": "snap", "type": "full"})
        t.check(code == 202 and body.get("status") == "queued" and body.get("syncId"),
                "POST /api/sync: 202 {syncId, status: queued}", body)
        rid = body.get("syncId")
        code2, body2, _ = api.post("/api/sync", {"job": "snap", "type": "full"})
        t.check((code2 == 202 and body2.get("syncId") == rid and body2.get("coalesced"))
                or (code2 == 409 and body2.get("syncId") == rid),
                "a second POST while queued or running: the same run's id (202 coalesced or 409)", body2)
        result, seen = {}, []
        th = threading.Thread(target=lambda: result.update(ev=api.events(rid, on_event=seen.append)))
        th.start()
        t.check(L.wait_for(lambda: api.status(rid).get("status") == "running" and gate.waiters(), 30, 0.1),
                "the run is running (its read waits at the gate half-way)", api.status(rid))
        code3, body3, _ = api.post("/api/sync", {"job": "snap"})
        t.check(code3 == 409 and body3.get("syncId") == rid and body3.get("error"),
                "POST while it runs (overlap: skip): 409 with the running run's id", body3)
        t.check(L.wait_for(lambda: [e for e in seen if e[1] == "progress" and e[3]["status"] == "running"],
                           30, 0.05), "SSE: the stream sees the run running before the gate opens")
        gate.open()
        th.join(300)
        code, ctype, evs = result.get("ev", (0, "", []))
        t.eq(code, 200, "SSE: 200")
        t.check(ctype and ctype.startswith("text/event-stream"), "SSE: text/event-stream (%s)" % ctype)
        t.check(all(e[1] != "keep-alive" or (e[2] is None and e[3] is None) for e in evs),
                "SSE: a keep-alive is a comment line with no id and no data")
        evs = [e for e in evs if e[1] != "keep-alive"]
        kinds = [e[1] for e in evs]
        t.check(kinds and kinds[-1] == "done" and kinds.count("done") == 1 and all(k == "progress" for k in kinds[:-1]),
                "SSE: progress events, then one terminal event 'done' (%d events)" % len(evs), kinds[-10:])
        running = [e for e in evs if e[1] == "progress" and e[3]["status"] == "running"]
        t.check(len(running) >= 2, "SSE: several progress events while it runs (%d)" % len(running))
        ids = [e[2] for e in evs]
        t.eq(ids, sorted(set(ids)), "SSE: event ids strictly increase")
        reads = [e[3]["stats"]["rowsRead"] for e in running]
        t.check(reads == sorted(reads) and reads[-1] > reads[0],
                "SSE: rowsRead grows across the progress events (%s ... %s)" % (reads[:3], reads[-3:]))
        last = evs[-1][3] if evs else {}
        t.eq(last.get("status"), "succeeded", "SSE: the terminal event says succeeded", last)
        a, b = W.md5s(src, dst, None, cols=W.MD5_COLS)
        t.eq(b, a, "md5 oracle: the target equals the source after the HTTP-started sync")
        st = api.status(rid)
        t.eq((st.get("syncId"), st.get("job"), st.get("type"), st.get("status"), st.get("stage")),
             (rid, "snap", "full", "succeeded", "done"), "status: id, job, type, status, stage", st)
        t.eq((st["stats"]["rowsRead"], st["stats"]["rowsWritten"], st["stats"]["rowsFailed"]), (n, n, 0),
             "status: stats.rowsRead = rowsWritten = %d, rowsFailed 0" % n, st)
        t.check(st.get("progress") == 100 and st.get("error") is None, "status: progress 100, no error", st)
        t.check(iso_ok(st.get("startTime")) and iso_ok(st.get("lastUpdate")) and iso_ok(st.get("finishTime"))
                and st["startTime"] <= st["finishTime"], "status: startTime <= finishTime, ISO 8601 UTC", st)
        code, _, evs2 = api.events(rid, last_id=evs[-1][2] if evs else None)
        t.eq((code, evs2), (200, []), "SSE with Last-Event-ID of the terminal event: nothing more, stream ends")
        code, _, evs3 = api.events(rid)
        t.check(len(evs3) == 1 and evs3[0][1] == "done", "SSE of a finished run: one terminal event", evs3)

        # ---- runs
        code, body, _ = api.get("/api/runs?job=snap&limit=5")
        t.check(code == 200 and body["runs"] and body["runs"][0]["syncId"] == rid,
                "/api/runs?job=snap: newest first, the HTTP run", body)
        # tick runs every second: wait for more than 3 runs in all, then ask for 3
        t.check(L.wait_for(lambda: len(api.get("/api/runs?limit=10")[1].get("runs", [])) > 3, 10),
                "more than 3 runs recorded", api.get("/api/runs?limit=10")[1])
        code, body, _ = api.get("/api/runs?limit=3")
        t.check(code == 200 and len(body["runs"]) == 3, "/api/runs?limit=3: 3 runs", body)

        # ---- cancel a running sync: it reads up to the gate and waits there, so the
        # cancel certainly comes mid-run however fast the copy is
        gate.close()
        code, body, _ = api.post("/api/sync", {"job": "snap", "type": "full"})
        rid2 = body.get("syncId")
        t.check(code == 202 and rid2 and rid2 != rid, "a second full sync: a new run id", body)
        t.check(L.wait_for(lambda: api.status(rid2).get("status") == "running"
                           and api.status(rid2)["stats"]["rowsRead"] > 0 and gate.waiters(), 30, 0.1),
                "the second run is running: rows read, its read waiting at the gate half-way",
                (api.status(rid2), gate.waiters()))
        code, body, _ = api.post("/api/sync/%s/cancel" % rid2, token=None)
        t.eq(code, 401, "cancel without a token: 401")
        code, body, _ = api.post("/api/sync/%s/cancel" % rid2, {"why": 1})
        t.eq(code, 400, "cancel with an unknown field: 400", body)
        st2 = api.status(rid2)
        t.check(st2.get("status") == "running" and gate.waiters(),
                "just before the cancel the run is still running, held at the gate", (st2, gate.waiters()))
        code, body, _ = api.post("/api/sync/%s/cancel" % rid2)
        t.check(code == 202 and body.get("syncId") == rid2, "cancel a running run: 202", body)
        gate.open()
        t.check(L.wait_for(lambda: api.status(rid2).get("status") == "cancelled", 30, 0.1),
                "the cancelled run ends `cancelled`", api.status(rid2))
        st2 = api.status(rid2)
        t.check(0 < st2["stats"]["rowsRead"] < n, "the cancel cut the run: it read %d of the %d rows"
                % (st2["stats"]["rowsRead"], n), st2)
        code, body, _ = api.post("/api/sync/%s/cancel" % rid2)
        t.check(code == 409 and body.get("detail") == "cancelled", "cancel a finished run: 409", body)
        t.eq(api.post("/api/sync/01a20000-0000-7000-8000-000000000000/cancel")[0], 404, "cancel an unknown run: 404")

        # ---- overlap: queue: one waiting run, coalesced, cancellable
        code, body, _ = api.post("/api/sync", {"job": "slowq"})
        q1 = body.get("syncId")
        t.check(L.wait_for(lambda: api.status(q1).get("status") == "running", 10, 0.1), "slowq: the first run runs")
        code, body, _ = api.post("/api/sync", {"job": "slowq"})
        q2 = body.get("syncId")
        t.check(code == 202 and q2 and q2 != q1 and not body.get("coalesced"),
                "overlap: queue: a POST while it runs queues a new run: 202", body)
        code, body, _ = api.post("/api/sync", {"job": "slowq"})
        t.check(code == 202 and body.get("syncId") == q2 and body.get("coalesced"),
                "overlap: queue: another POST joins the queued run: 202 with its id", body)
        t.eq(api.status(q2).get("status"), "queued", "the queued run's status is queued")
        code, body, _ = api.post("/api/sync/%s/cancel" % q2)
        t.check(code == 202 and body.get("status") == "cancelled", "cancel a queued run: 202, cancelled", body)
        time.sleep(3)
        t.eq(api.status(q1).get("status"), "succeeded", "slowq: the first run succeeded")
        t.eq(api.status(q2).get("status"), "cancelled", "slowq: the cancelled run never ran")

        # ---- errors (dead letters)
        code, body, _ = api.get("/api/errors")
        t.eq((code, body), (200, {"errors": []}), "/api/errors: 200, none")
        code, body, _ = api.post("/api/errors/999/resolve")
        t.eq(code, 404, "resolve an unknown dead letter: 404", body)

        # ---- a failing statement (division by zero), for the error counts
        code, body, _ = api.post("/api/sync", {"job": "bad"})
        bad_id = body.get("syncId")
        t.check(L.wait_for(lambda: api.status(bad_id).get("status") == "failed", 20, 0.1),
                "bad: the run fails (division by zero)", api.status(bad_id))

        # ---- usage
        code, u, _ = api.get("/api/usage")
        today = time.strftime("%Y-%m-%d", time.gmtime())
        t.eq((code, u.get("days"), u.get("to")), (200, 7, today), "/api/usage: 200, 7 days to today (UTC)", u)
        t.eq(u.get("from"), time.strftime("%Y-%m-%d", time.gmtime(time.time() - 6 * 86400)),
             "/api/usage: from is 6 days back")
        uj = dict((e["job"], e) for e in u.get("jobs", []) if e.get("day") == today)
        snap_u = uj.get("snap", {})
        st2 = api.status(rid2)
        written = n + st2["stats"]["rowsWritten"]
        t.eq((snap_u.get("runs"), snap_u.get("rows")), (2, written),
             "/api/usage: snap ran twice today and wrote %d rows (the status stats)" % written, snap_u)
        sdb = snap_u.get("databases", {})
        t.eq(sorted(sdb), ["dst", "src"], "/api/usage: snap's databases are src and dst", snap_u)
        t.eq((sdb.get("src", {}).get("rows"), sdb.get("dst", {}).get("rows")),
             (n + st2["stats"]["rowsRead"], written), "/api/usage: rows read from src, written to dst", sdb)
        t.eq(sdb.get("src", {}).get("queries", 0) + sdb.get("dst", {}).get("queries", 0), snap_u.get("queries"),
             "/api/usage: the job's statements are its databases' sum", snap_u)
        # every committed batch of 500 is at least BEGIN, the fenced position, the write, COMMIT
        t.check(sdb.get("dst", {}).get("queries", 0) >= 4 * (written // 500),
                "/api/usage: at least 4 statements per committed batch on dst (%d for %d batches)"
                % (sdb.get("dst", {}).get("queries", 0), written // 500))
        tick_u = uj.get("tick", {})
        t.check(tick_u.get("runs", 0) >= 2 and tick_u.get("rows") == tick_u.get("runs")
                and tick_u.get("databases", {}).get("aux", {}).get("runs") == tick_u.get("runs"),
                "/api/usage: tick inserted one row per run, all on aux", tick_u)
        per_run = tick_u.get("queries", 0) / max(tick_u.get("runs", 1), 1)
        t.check(4 <= per_run <= 20, "/api/usage: a tick run takes 4 to 20 statements (%.1f)" % per_run)
        ud = dict((e["db"], e) for e in u.get("databases", []) if e.get("day") == today)
        aux_jobs = [e["databases"]["aux"] for e in uj.values() if "aux" in e.get("databases", {})]
        t.eq(ud.get("aux", {}).get("queries"), sum(e["queries"] for e in aux_jobs),
             "/api/usage: per database, aux's statements are the sum over its jobs", ud.get("aux"))
        t.eq(u.get("totals", {}).get("runs"), sum(e["runs"] for e in u.get("jobs", [])),
             "/api/usage: totals.runs sums the jobs", u.get("totals"))
        t.eq(api.get("/api/usage?days=0")[0], 400, "/api/usage?days=0: 400")
        t.eq(api.get("/api/usage?days=x")[0], 400, "/api/usage?days=x: 400")
        t.eq(api.get("/api/usage?days=366")[0], 200, "/api/usage?days=366: 200")
        t.eq(api.post("/api/usage")[0], 405, "POST /api/usage: 405")

        # ---- metrics
        code, text, hdr = api.get("/metrics")
        t.check(code == 200 and hdr.get("Content-Type", "").startswith("text/plain; version=0.0.4"),
                "/metrics: 200 text/plain; version=0.0.4")
        vals, bad, types = prom_parse(text)
        t.eq(bad, [], "/metrics: every line is in the Prometheus text format")
        tool = promtool()
        if tool:
            p = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
            t.eq((p.returncode, p.stdout + p.stderr), (0, ""), "/metrics passes `promtool check metrics`")
        else:
            t.check(not L.strict(), "promtool is there (make deps fetches it; missing is a failure in CI)")
            t.log("promtool not found: `promtool check metrics` skipped (run make deps)")
        read = vals.get('lockstep_rows_read_total{job="snap"}', 0)
        want = n + api.status(rid2)["stats"]["rowsRead"]
        t.eq(read, float(want), "/metrics: rows read by snap = both runs' rowsRead (%d)" % want)
        t.eq(vals.get('lockstep_runs_total{job="snap",status="succeeded"}'), 1.0, "/metrics: one succeeded snap run")
        t.eq(vals.get('lockstep_runs_total{job="snap",status="cancelled"}'), 1.0, "/metrics: one cancelled snap run")
        t.check(vals.get('lockstep_run_duration_seconds_count{job="snap"}') == 2.0
                and types.get("lockstep_run_duration_seconds") == "histogram",
                "/metrics: the duration histogram counts both runs")
        t.check(vals.get("process_resident_memory_bytes", 0) > 1 << 20, "/metrics: process_resident_memory_bytes")
        t.check('lockstep_next_run_timestamp_seconds{job="tick"}' in vals, "/metrics: the next fire of tick")
        t.check(vals.get('lockstep_last_success_timestamp_seconds{job="snap"}', 0) > time.time() - 600,
                "/metrics: snap's last success time")
        t.eq(vals.get('lockstep_dead_letters{job="snap"}'), 0.0, "/metrics: dead-letter depth 0")
        t.check(vals.get('lockstep_db_queries_total{db="dst"}', 0) >= sdb.get("dst", {}).get("queries", 1),
                "/metrics: statements on dst at least those usage counts")
        t.check(vals.get('lockstep_db_errors_total{db="aux"}', 0) >= 1 and vals.get('lockstep_db_errors_total{db="dst"}', 0) == 0,
                "/metrics: the failed statement is an error of aux; dst had none",
                dict((k, v) for k, v in vals.items() if "errors_total" in k))
        t.check(vals.get("lockstep_state_store_queries_total", 0) > 0, "/metrics: state store statements counted")
        t.check(all(k.split("{")[0].endswith("_total") or types.get(k.split("{")[0]) != "counter" for k in vals),
                "/metrics: counters end in _total", [k for k in vals if types.get(k.split("{")[0]) == "counter"][:5])
        rc = api.run.term(30)
        t.eq(rc, 0, "SIGTERM: exit 0", api.run.tail(2000))
    finally:
        gate.open()
        api.run.kill()


def test_crash_restart():
    n = L.scale(250000)
    src, dst = L.new_db("http_crash_src"), L.new_db("http_crash_dst")
    W.create_source(src, n=n)
    W.create_target(dst, log_table=None)
    gate = L.Gate(src, from_key=n // 2)  # the run waits half-way while the gate is closed
    wd = L.Workdir("http_crash")
    cfg = config(wd, {"src": src, "dst": dst}, {
        "snap": {"source": {"db": "src", "table": "items", "where": L.Gate.where_sql("id")},
                 "target": {"db": "dst", "table": "items", "create": False},
                 "mode": "snapshot", "batch": 500}})
    api = Api(cfg, wd)
    try:
        gate.close()
        code, body, _ = api.post("/api/sync", {"job": "snap", "type": "full"})
        rid = body.get("syncId")
        t.check(code == 202 and rid, "crash: the sync is queued", body)
        t.check(L.wait_for(lambda: api.status(rid)["stats"]["rowsRead"] > 0 and gate.waiters(), 60, 0.1),
                "crash: the run is copying (rows read, its read waiting at the gate half-way)",
                (api.status(rid), gate.waiters()))
        api.run.kill()
        gate.open()
        have = L.count_rows(dst, "items")
        t.check(have < n, "crash: SIGKILL mid-run (%d of %d rows in the target)" % (have, n))
        api.run.start()
        api.find_port()
        st = api.status(rid)
        t.eq(st.get("status"), "interrupted", "after the restart, the killed run reads interrupted", st)
        t.check(st.get("stats", {}).get("rowsRead", n) < n, "the killed run had not read every row", st)
        t.check(st.get("finishTime") and st.get("error"), "the interrupted run has a finish time and a reason", st)

        def resumed():
            runs = api.get("/api/runs?job=snap")[1].get("runs", [])
            return [r for r in runs if r["syncId"] != rid]

        t.check(L.wait_for(lambda: resumed(), 30, 0.1), "the resumed run shows in /api/runs", api.run.tail(2000))
        t.check(L.wait_for(lambda: resumed() and resumed()[0]["status"] == "succeeded", 300, 0.1),
                "the resumed run succeeds", resumed())
        a, b = W.md5s(src, dst, None)
        t.eq(b, a, "md5 oracle: equal after the resumed run")
        t.eq(api.run.term(30), 0, "crash: SIGTERM exit 0")
    finally:
        gate.open()
        api.run.kill()


def test_security():
    db = L.new_db("http_sec")
    wd = L.Workdir("http_sec")
    jobs = {"tick": {"kind": "sql", "db": "d", "every": "1s", "sql": "SELECT 1"}}
    cfg = L.sync_config(wd, {"d": db}, jobs, extra={"http": {"listen": "0.0.0.0:0"}})
    rc, out, err = L.run_lockstep(["run"], cfg, timeout=60)
    t.check(rc == 78 and "not a loopback address" in err and "token" in err,
            "run: a non-loopback listen without a token exits 78 with a hint", L.show(rc, out, err))
    rc, out, err = L.run_lockstep(["check-config"], cfg, timeout=60)
    t.check(rc == 78 and "not a loopback address" in err, "check-config: refused too (78)", L.show(rc, out, err))
    # a port in use
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        cfg = L.sync_config(wd, {"d": db}, jobs, extra={"http": {"listen": "127.0.0.1:%d" % s.getsockname()[1]}})
        rc, out, err = L.run_lockstep(["run"], cfg, timeout=60)
        t.check(rc == 69 and "cannot listen" in err and "hint: check the database" not in err,
                "run: a port in use exits 69 saying it cannot listen", L.show(rc, out, err))
    finally:
        s.close()


def test_robustness():
    db = L.new_db("http_robust")
    L.execute(db, "CREATE TABLE ticks (n serial PRIMARY KEY)")
    wd = L.Workdir("http_robust")
    cfg = config(wd, {"d": db}, {"tick": {"kind": "sql", "db": "d", "every": "1s",
                                          "sql": "INSERT INTO ticks DEFAULT VALUES"}})
    api = Api(cfg, wd)
    rnd = random.Random(42)
    sent = {"n": 0, "errors": 0, "4xx": 0}

    def one(i):
        kind = i % 10
        s = None
        try:
            s = socket.create_connection(("127.0.0.1", api.port), timeout=2)
            if kind == 0:
                s.sendall(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 400))))
            elif kind == 1:
                s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
            elif kind == 2:
                s.sendall(b"POST /api/sync HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"job\":")
                s.shutdown(socket.SHUT_WR)  # truncated body
            elif kind == 3:
                s.sendall(b"BREW /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            elif kind == 4:
                s.sendall(b"GET /api/sync/status/" + b"%00" * 50 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            elif kind == 5:
                s.sendall(b"POST /api/sync HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                          + b"\r\nContent-Length: 9\r\n\r\n\xff\xfe{\"job\"\x00")
            elif kind == 6:
                s.sendall(b"GET /livez HTTP/1.1\r\n")  # a slow client that never finishes
                time.sleep(0.05)
                return
            elif kind == 8:  # a cross-site form (CSRF): 415 or 403
                s.sendall(b"POST /api/sync HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n"
                          b"Content-Type: text/plain\r\nContent-Length: 16\r\n\r\n{\"job\":\"tick\"}")
            elif kind == 9:  # a rebinding Host, a forged session cookie: 421
                s.sendall(b"GET /api/errors HTTP/1.1\r\nHost: evil.example\r\nCookie: lockstep_session="
                          + bytes(rnd.choice(b"0123456789abcdef") for _ in range(64)) + b"\r\n\r\n")
            else:
                s.sendall(b"POST /api/errors/-1/replay HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                          + TOKEN.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            s.settimeout(0.3)  # many of these never get an answer: the server waits for more
            try:
                if s.recv(4096).startswith(b"HTTP/1.1 4"):
                    sent["4xx"] += 1
            except OSError:
                pass
        except OSError:
            sent["errors"] += 1
        finally:
            sent["n"] += 1
            if s:
                s.close()

    try:
        n0 = L.scalar(db, "SELECT count(*) FROM ticks")
        threads = []
        for k in range(16):
            th = threading.Thread(target=lambda k=k: [one(i) for i in range(k, 2000, 16)])
            th.start()
            threads.append(th)
        for th in threads:
            th.join(300)
        t.log("hostile requests: %d made, %d answered 4xx, %d refused or cut at connect or send"
              % (sent["n"], sent["4xx"], sent["errors"]))
        t.check(sent["4xx"] >= 500, "at least the well-formed bad requests got a 4xx (%d)" % sent["4xx"])
        t.eq(sent["n"], 2000, "2,000 hostile requests were made")
        t.check(api.run.alive(), "the daemon survived them", api.run.tail(2000))
        t.eq(api.get("/livez")[:2], (200, {"status": "ok"}), "/livez still answers")
        n1 = L.scalar(db, "SELECT count(*) FROM ticks")
        t.check(L.wait_for(lambda: L.scalar(db, "SELECT count(*) FROM ticks") >= n1 + 2, 10, 0.1),
                "the scheduled job keeps running (%d ticks before, %d after)" % (n0, n1))
        t.eq(api.run.term(30), 0, "robustness: SIGTERM exit 0")
    finally:
        api.run.kill()


def test_realtime_resnapshot():
    n = L.scale(5000)
    src, dst = L.new_db("http_rt_src"), L.new_db("http_rt_dst")
    W.create_source(src, n=n)
    W.create_target(dst)
    wd = L.Workdir("http_rt")
    cfg = config(wd, {"src": src, "dst": dst}, {
        "rt": {"source": {"db": "src", "table": "items"},
               "target": {"db": "dst", "table": "items", "create": False, "deletes": "delete"},
               "mode": "realtime", "batch": max(10, n // 10)}})  # the burst spans pages
    api = Api(cfg, wd)
    try:
        W.wait_equal(t, src, dst, None, 60, what="rt: the first snapshot is equal")
        code, body, _ = api.post("/api/sync", {"job": "rt"})
        t.check(code == 409 and "full" in (body.get("detail") or ""),
                "real-time job, incremental: 409 saying to ask for full", body)
        def streaming():
            return [r for r in api.get("/api/runs?job=rt")[1]["runs"] if r["status"] == "running"
                    and api.status(r["syncId"]).get("stage") == "stream"]
        first = L.wait_for(streaming, 30, 0.1)
        t.check(len(first) == 1, "rt's stream is one running run, streaming", first)
        code, body, _ = api.post("/api/sync", {"job": "rt", "type": "full"})
        rid = body.get("syncId")
        t.check(code == 202 and rid, "real-time job, full: 202 queued re-snapshot", body)
        code, body2, _ = api.post("/api/sync", {"job": "rt", "type": "full"})
        t.check(code in (202, 409) and body2.get("syncId") == rid,
                "a second full while it is pending: the same run's id", body2)
        t.check(L.wait_for(lambda: api.status(rid).get("status") == "running"
                           and api.status(rid).get("stage") == "stream", 60, 0.1),
                "the re-snapshot runs under that id and streams again", api.status(rid))
        st = api.status(rid)
        t.check(st.get("type") == "full" and st["stats"]["rowsRead"] >= n,
                "the re-snapshot is a full run that read every row (%d)" % st["stats"]["rowsRead"], st)
        t.eq(api.status(first[0]["syncId"] if first else "none").get("status"), "interrupted",
             "the stream it replaced is recorded interrupted")
        L.execute(src, "UPDATE items SET version = version + 1 WHERE id <= 10")
        W.wait_equal(t, src, dst, None, 60, what="rt: changes after the re-snapshot stream through")
        # lag: measured every 5 s between pages. A trigger slows the target's updates so a
        # burst of n changes takes about 10 s to apply: the lag must show, then drain.
        lags = []

        def lag():
            v = prom_parse(api.get("/metrics")[1])[0]
            lags.append((v.get('lockstep_replication_lag_rows{job="rt"}'),
                         v.get('lockstep_replication_lag_seconds{job="rt"}')))
            return lags[-1]
        t.check(L.wait_for(lambda: lag() == (0, 0), 30, 0.1), "/metrics: lag 0 rows, 0 s once caught up", lags[-5:])
        L.execute(dst, "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$BEGIN PERFORM pg_sleep(%f); RETURN NEW; END$$" % (10.0 / n))
        L.execute(dst, "CREATE TRIGGER slow BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION slow()")
        L.execute(src, "UPDATE items SET version = version + 1")  # one burst of n changes
        t.check(L.wait_for(lambda: (lag()[0] or 0) > 0 and (lag()[1] or 0) > 0, 30, 0.1),
                "/metrics: the burst of %d changes shows as lag (rows, seconds) %s"
                % (n, max(lags, key=lambda x: x[0] or 0)))
        t.check(L.wait_for(lambda: lag()[0] == 0, 60, 0.1), "/metrics: the lag drains to 0 rows", lags[-5:])
        W.wait_equal(t, src, dst, None, 60, what="rt: the burst is applied")
        rt_run = [r for r in api.get("/api/runs?job=rt")[1]["runs"] if r["status"] == "running"]
        t.check(rt_run and rt_run[0].get("lag", {}).get("rows") == 0 and "seconds" in rt_run[0]["lag"],
                "/api/runs: the streaming run shows lag {seconds, rows}", rt_run[:1])
        t.eq(W.versions_monotonic(dst), [], "rt: no key's version went backwards")
        t.eq(api.run.term(30), 0, "rt: SIGTERM exit 0")
    finally:
        api.run.kill()


def test_dead_letters():
    src, dst = L.new_db("http_dl_src"), L.new_db("http_dl_dst")
    L.execute(src, "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)")
    L.execute(src, "INSERT INTO t SELECT g, CASE WHEN g IN (3, 7) THEN -g ELSE g END FROM generate_series(1, 10) g")
    L.execute(dst, "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL CHECK (v >= 0))")
    wd = L.Workdir("http_dl")
    cfg = config(wd, {"src": src, "dst": dst}, {
        "dl": {"source": {"db": "src", "table": "t"}, "target": {"db": "dst", "table": "t", "create": False},
               "mode": "snapshot"}}, extra={"log": {"format": "json"}})
    api = Api(cfg, wd)
    try:
        code, body, _ = api.post("/api/sync", {"job": "dl"})
        rid = body.get("syncId")
        t.check(L.wait_for(lambda: api.status(rid).get("status") == "succeeded", 30, 0.1),
                "a sync with 2 rows the target rejects succeeds", api.status(rid))
        t.eq(api.status(rid)["stats"]["rowsFailed"], 2, "status: rowsFailed 2")
        code, body, _ = api.get("/api/errors?job=dl")
        errs = sorted(body.get("errors", []), key=lambda e: e["key"])
        t.eq((code, len(errs)), (200, 2), "/api/errors?job=dl: 2 open dead letters", body)
        t.check(all(e["sqlstate"] == "23514" and e["job"] == "dl" and e["resolved"] is None for e in errs),
                "/api/errors: SQLSTATE 23514 (check_violation), open", errs)
        t.eq([e["key"] for e in errs], [["3"], ["7"]], "/api/errors: the keys of the rejected rows (id 3 and 7)")
        vals = prom_parse(api.get("/metrics")[1])[0]
        t.eq(vals.get('lockstep_dead_letters{job="dl"}'), 2.0, "/metrics: dead-letter depth 2")
        e3, e7 = errs[0]["id"], errs[1]["id"]
        code, body, _ = api.post("/api/errors/%d/replay" % e3, token=None)
        t.eq(code, 401, "replay without a token: 401")
        code, body, _ = api.post("/api/errors/%d/replay" % e3)
        t.check(code == 409 and body.get("error") == "rejected again", "replay while the row is still bad: 409 rejected again", body)
        code, body, _ = api.get("/api/errors?job=dl")
        t.eq([e["attempts"] for e in body["errors"] if e["id"] == e3], [2], "the rejected replay counts an attempt")
        L.execute(src, "UPDATE t SET v = 30 WHERE id = 3")
        code, body, _ = api.post("/api/errors/%d/replay" % e3)
        t.check(code == 200 and body.get("id") == e3 and body.get("job") == "dl" and body.get("action") == "upserted",
                "replay after the source row was fixed: 200 {id, job, action: upserted}", body)
        t.eq(L.execute(dst, "SELECT v FROM t WHERE id = 3"), [(30,)], "the replayed row is in the target (independent read)")
        code, body, _ = api.post("/api/errors/%d/resolve" % e7)
        t.eq((code, body), (200, {"id": e7, "status": "resolved"}), "resolve: 200 {id, status: resolved}")
        t.eq(api.post("/api/errors/%d/resolve" % e7)[0], 404, "resolve it again: 404 (no open dead letter)")
        t.eq(api.get("/api/errors?job=dl")[1], {"errors": []}, "/api/errors: none open")
        code, body, _ = api.get("/api/errors?job=dl&resolved=true")
        t.eq(sorted(e["id"] for e in body.get("errors", [])), sorted([e3, e7]), "/api/errors?resolved=true: both")
        t.check(all(iso_ok(e["resolved"]) for e in body.get("errors", [])), "resolved carries an ISO time", body)
        vals = prom_parse(api.get("/metrics")[1])[0]
        t.eq(vals.get('lockstep_dead_letters{job="dl"}'), 0.0, "/metrics: dead-letter depth 0")
        t.eq(L.execute(dst, "SELECT count(*) FROM t"), [(9,)], "the target holds the 9 rows it accepts")
        t.eq(api.run.term(30), 0, "SIGTERM exit 0")
        # log.format: json: one object per line; a run's lines carry its job and run id
        lines = [x for x in api.run.output().splitlines() if x.strip() and not x.startswith("==== ")]
        objs, bad = [], []
        for x in lines:
            try:
                objs.append(json.loads(x))
            except ValueError:
                bad.append(x)
        t.eq(bad, [], "log.format json: every line is one JSON object (%d lines)" % len(lines))
        t.check(objs and all({"ts", "level", "comp", "msg"} <= set(o) and iso_ok(o["ts"]) for o in objs),
                "log.format json: each has ts, level, comp, msg", objs[:2])
        started = [o for o in objs if "started" in o.get("msg", "") and rid in o.get("msg", "")]
        t.check(started and started[0].get("job") == "dl" and started[0].get("run") == rid,
                "log.format json: the run's start line carries job and run", started)
        rej = [o for o in objs if o.get("comp") == "deadletter"]
        t.check(rej and all(o.get("job") == "dl" and o.get("run") == rid and o["level"] == "warn" for o in rej),
                "log.format json: the dead-letter warning carries job and run", rej[:1])
        done = [o for o in objs if "succeeded" in o.get("msg", "") and rid in o["msg"]]
        t.check(done and done[0].get("job") == "dl" and done[0].get("run") == rid,
                "log.format json: the daemon's report of the run carries job and run", done)
        after = [o for o in objs if o.get("msg", "").startswith("stopping")]
        t.check(after and "job" not in after[0], "log.format json: lines after the run carry no job", after)
    finally:
        api.run.kill()


def test_sse_resume():
    """SSE across a run that stalls mid-copy: a keep-alive comment (no id) while nothing changes,
    ids that strictly increase, and a second stream opened mid-run with Last-Event-ID that gets
    only later states, to the same terminal event. Also a chunked request body: over 64 KiB is
    413 (the cap holds without a Content-Length), under it is served."""
    src, dst = L.new_db("http_sse_src"), L.new_db("http_sse_dst")
    L.execute(src, "CREATE TABLE slow (id int PRIMARY KEY, v text NOT NULL)")
    L.execute(src, "INSERT INTO slow SELECT i, md5(i::text) FROM generate_series(1, 3000) i")
    # 20 ms every 100 rows read, and 3 s at row 1,500: the run is mid-copy and silent for 3 s
    L.execute(src, "CREATE FUNCTION lk_stall(int) RETURNS boolean LANGUAGE sql VOLATILE AS "
                   "$$ SELECT CASE WHEN $1 = 1500 THEN (SELECT true FROM pg_sleep(3)) "
                   "WHEN mod($1, 100) = 0 THEN (SELECT true FROM pg_sleep(0.02)) ELSE true END $$")
    wd = L.Workdir("http_sse")
    cfg = config(wd, {"src": src, "dst": dst}, {"slow": {
        "source": {"db": "src", "table": "slow", "where": "lk_stall(id)"},
        "target": {"db": "dst", "table": "slow", "create": True},
        "mode": "snapshot", "batch": 100}})
    api = Api(cfg, wd)
    try:
        code, body, _ = api.post("/api/sync", {"job": "slow", "type": "full"})
        t.eq(code, 202, "POST /api/sync: 202", body)
        rid = body.get("syncId") or "none"
        first, second = {}, {}
        seen = []
        lock = threading.Lock()

        def on_first(e):
            with lock:
                seen.append(e)

        ta = threading.Thread(target=lambda: first.update(ev=api.events(rid, on_event=on_first)))
        ta.start()

        def mid():
            with lock:
                run = [e for e in seen if e[1] == "progress" and e[3]["status"] == "running"]
            return run[1] if len(run) >= 2 else None

        m = L.wait_for(mid, deadline=60, step=0.05)
        t.check(m is not None, "a first stream sees two progress events of the running run")
        mid_id = m[2] if m else 0
        tb = threading.Thread(target=lambda: second.update(ev=api.events(rid, last_id=mid_id)))
        tb.start()
        ta.join(120)
        tb.join(120)
        a = first.get("ev", (0, "", []))[2]
        b = second.get("ev", (0, "", []))[2]
        keep = [e for e in a if e[1] == "keep-alive"]
        t.check(keep and all(e[2] is None and e[3] is None for e in keep),
                "a keep-alive comment (no id, no data) while the run is silent (%d)" % len(keep),
                [e[1:3] for e in a])
        ea = [e for e in a if e[1] != "keep-alive"]
        ids = [e[2] for e in ea]
        t.check(len(ids) >= 3 and all(x < y for x, y in zip(ids, ids[1:])),
                "first stream: event ids strictly increase (%d events)" % len(ids), ids)
        eb = [e for e in b if e[1] != "keep-alive"]
        t.check(eb and eb[0][1] == "progress" and eb[0][3]["status"] == "running",
                "Last-Event-ID mid-run: the second stream starts with a later state of the running run",
                [(e[1], e[2]) for e in eb[:3]])
        t.check(eb and all(e[2] > mid_id for e in eb),
                "Last-Event-ID mid-run: every event is later than the id it resumed after (%d)" % mid_id,
                [e[2] for e in eb])
        t.check(eb and ea and eb[-1][1] == "done" and [e[1] for e in eb].count("done") == 1
                and eb[-1][2] == ea[-1][2] and eb[-1][3]["status"] == "succeeded",
                "Last-Event-ID mid-run: the same terminal event (succeeded) ends both streams",
                (eb[-1:] , ea[-1:]))
        t.eq(L.scalar(dst, "SELECT count(*) FROM slow"), 3000, "the target holds every row")

        # a chunked body: no Content-Length, so the 64 KiB cap must hold as the chunks arrive
        def chunked(total):
            c = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
            pad = "x" * max(0, total - 40)
            body = ('{"job": "slow", "pad": "%s"}' % pad).encode()
            parts = (body[i:i + 4096] for i in range(0, len(body), 4096))
            try:
                c.request("POST", "/api/sync", body=parts, encode_chunked=True,
                          headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json",
                                   "Transfer-Encoding": "chunked"})
                r = c.getresponse()
                return r.status, r.read().decode("utf-8", "replace")
            except (ConnectionError, OSError) as e:
                return 0, repr(e)
            finally:
                c.close()

        code, text = chunked(70000)
        t.eq(code, 413, "a chunked body over 64 KiB: 413", text[:200])
        code, text = chunked(1000)
        t.check(code == 400 and "pad" in text, "a chunked body under 64 KiB is read whole (400 naming the "
                "unknown field)", text[:200])
        t.eq(api.get("/livez")[0], 200, "/livez answers after the chunked bodies")
    finally:
        api.run.kill()


def test_token_reload():
    """token_reload: SIGHUP applies a changed http.token at once (the old one is refused from
    then on) and names, in one line, the keys only a start applies; a reload that would
    leave a non-loopback listener without a token is refused and the token stays."""
    wd = L.Workdir("http_token")
    new = "n3w-t0k3n-after-reload"
    dbs = {"d": "sqlite:d.db"}
    jobs = {"tick": {"kind": "sql", "db": "d", "every": "1h", "sql": "SELECT 1"}}
    def write(http, name="http-it"):  # the whole http mapping: a token may be left out
        return L.sync_config(wd, dbs, jobs, extra={"http": http, "instance": {"name": name}})

    api = Api(write({"listen": "127.0.0.1:0", "token": TOKEN}), wd)
    try:
        def reloads(what):
            return api.run.output().count(what)

        def hup_and_wait(what):
            n = reloads(what)
            api.run.p.send_signal(signal.SIGHUP)
            return L.wait_for(lambda: reloads(what) > n or not api.run.alive(), deadline=30) and api.run.alive()

        nojob = {"job": "no_such_job"}  # the token is checked first: 401, or 404 past it
        t.eq(api.post("/api/sync", nojob)[0], 404, "token_reload: before: the configured token is accepted")
        t.eq(api.post("/api/sync", nojob, token=new)[0], 401, "token_reload: before: another token is refused")

        write({"listen": "127.0.0.1:1", "token": new}, name="http-it-2")
        t.check(hup_and_wait("config reloaded"), "token_reload: SIGHUP with a new token: config reloaded",
                api.run.tail(2000))
        t.eq(api.post("/api/sync", nojob)[0], 401, "token_reload: after SIGHUP the old token is refused")
        t.eq(api.post("/api/sync", nojob, token=new)[0], 404, "token_reload: after SIGHUP the new token is accepted")
        code, body, _ = api.post("/api/sync", {"job": "tick"}, token=new)
        t.eq(code, 202, "token_reload: a run is started with the new token", body)
        log = api.run.output()
        t.check("reload: http.token changed" in log, "token_reload: the log says the token changed", log[-2000:])
        t.check(TOKEN not in log and new not in log, "token_reload: neither token is in the log")
        t.check(re.search(r"reload: http\.listen, instance\.name changed; they apply at the next start", log),
                "token_reload: one log line names the keys only a start applies (http.listen, instance.name)",
                log[-2000:])
        t.eq(api.get("/livez")[0], 200, "token_reload: the API still listens where it started")

        write({"listen": "0.0.0.0:0"})
        t.check(hup_and_wait("reload refused"), "token_reload: a non-loopback listen without a token: reload refused",
                api.run.tail(2000))
        t.eq(api.post("/api/sync", nojob, token=None)[0], 401, "token_reload: refused reload: no token still gets 401")
        t.eq(api.post("/api/sync", nojob, token=new)[0], 404, "token_reload: refused reload: the token stays")

        write({"listen": "127.0.0.1:0"})
        t.check(hup_and_wait("config reloaded"), "token_reload: SIGHUP without a token on loopback: reloaded",
                api.run.tail(2000))
        t.eq(api.post("/api/sync", nojob, token=None)[0], 404, "token_reload: no token set: a POST needs none")
        t.eq(api.run.term(30), 0, "token_reload: SIGTERM exit 0", api.run.tail(2000))
    finally:
        api.run.kill()


CASES = (test_endpoints, test_dead_letters, test_crash_restart, test_security, test_robustness, test_realtime_resnapshot,
         test_sse_resume, test_token_reload)
for case in CASES:
    if len(sys.argv) < 2 or case.__name__[len("test_"):] in sys.argv[1:]:
        t.case(case)
t.finish()
