#!/usr/bin/env python3
"""Chaos soak with a verdict (`make soak`; issue 7). See docs/soak.md.

Two `lockstep run` instances share one config (each its own instance name) and a
PostgreSQL state store; three throw-away PostgreSQL clusters (source, target, state
store) so that each can be crash-restarted alone. Every connection of an instance goes
through a loopback proxy of its own per cluster, so its connections can be cut.

Jobs: rt1, rt2, rtp (real-time, PG -> PG; rtp's source items4 is partitioned), pl (poll
every 2 s on updated_at, PG -> PG), s1, s2, s3 (`sql` every 1 s, each execution recording
its time range in an `execs` table with EXCLUDE USING gist (job WITH =, during WITH &&),
in the target cluster). Writers run on the four source tables the whole time (pl's
writers never delete or change a key: a poll job cannot see deletes).

A seeded fault injector picks one fault every 10-40 s (never two at once: the next one
waits for the recovery of the last): SIGKILL of an instance, SIGSTOP past its lease then
SIGCONT, `pg_ctl -m immediate` restart of the source, the target or the state store,
pg_terminate_backend of lockstep's sessions, connections cut by the proxy (a silent
partition, or a reset of every connection), SIGHUP with a changed config, a restart of
an instance with LK_FAILPOINT=POINT@N, and the faults of a database's life (issue 17): a
bulk load with the triggers disabled, an ATTACH PARTITION of a table holding rows, and
the source restored from a pg_basebackup taken earlier in the run. After each fault it measures the recovery
(instances answer /api/health, every job has a live lease, every sql job ran again,
sampled recent writes of every source table reached the target's version log), capped.

At the end the writers stop, lockstep catches up, and the verdict comes from checks
outside lockstep: every table equal (md5 and a canonical row comparison), no per-key
version went backwards (version logs), no job ran twice at once (the exclusion
constraint, failed runs blaming it, and an overlap query; after a restore of the source,
one step back per key to what the restored source held is allowed), RSS of each instance process
flat, no instance died on its own, every fault recovered within its cap.

Usage: test_chaos_soak.py [--quick] [--minutes M] [--seed S]
  env: LK_BIN, LK_SOAK_MINUTES (default 30), LK_SOAK_SEED, LK_SOAK_RECOVERY_CAP (s, 120),
       LK_SOAK_FAULTS (kinds to draw from, e.g. "cut,kill" or "-restart-store"; default all),
       LK_SOAK_KEEP=1 (keep the work dir and logs even on PASS)
Exit 0 on PASS, 1 on FAIL, 130 when interrupted.
"""
import argparse
import calendar
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import lkchaos as C
import lktest as L
import rtwriters as W

LEASE_S, RENEW_S = 4.0, 1.0
SQL_JOBS = ["s1", "s2", "s3"]
SYNC_JOBS = ["rt1", "rt2", "pl", "rtp"]
JOBS = SYNC_JOBS + SQL_JOBS
TABLES = {"rt1": "items1", "rt2": "items2", "pl": "items3", "rtp": "items4"}
LOGS = {"rt1": "version_log_1", "rt2": "version_log_2", "pl": "version_log_3", "rtp": "version_log_4"}
BULK_TABLES = ["items1", "items2"]  # the bulk-load fault's tables (real-time jobs rt1, rt2)

# items4 (job rtp) is partitioned by range of id: the writers' keys (from its sequence)
# live in items4_p0, below PART_BASE; each attach-partition fault attaches a table that
# already holds rows for the next range of PART_SPAN keys above it.
PART_BASE, PART_SPAN = 10 ** 9, 10 ** 6
# restore-source: the backup in hand is renewed when older than BACKUP_MAX_AGE_S, and is
# restored only once at least BACKUP_MIN_AGE_S old. A restore that loses only a few seconds
# of writes is re-filled, transaction id for transaction id, by the writers within
# lockstep's reconnect back-off: that is the limit docs/realtime.md ("Restores and
# failovers") names, not what this fault is for (see docs/soak.md).
BACKUP_MIN_AGE_S, BACKUP_MAX_AGE_S = 60.0, 300.0

# The crash points this workload passes (there are never bad rows, so mid_bisection and
# after_dead_letter_insert cannot fire here), with the range N of LK_FAILPOINT=POINT@N.
FAILPOINTS = [("after_target_commit", (1, 40)), ("mid_copy", (1, 40)), ("between_pages", (1, 40)),
              ("mid_prune", (1, 2)), ("after_seal", (1, 4))]
FAILPOINT_WAIT_S = 45.0

RSS_MIN_LIFETIME_S = 150.0  # lifetimes shorter than this are not judged
RSS_TOLERANCE = 0.15        # last-minute median <= (1 + this) x second-minute median ...
RSS_SLACK_KIB = 2048        # ... + this much (see docs/soak.md)

# Fault kinds and their weights: one weight per kind of the list (the three
# restarts count as three), split evenly over the variants of one kind.
FAULT_KINDS = [("kill", 1), ("freeze", 1), ("restart-source", 1), ("restart-target", 1), ("restart-store", 1),
               ("terminate-source", 1 / 3.0), ("terminate-target", 1 / 3.0), ("terminate-store", 1 / 3.0),
               ("cut-source", 0.25), ("cut-target", 0.25), ("cut-store", 0.25), ("cut-all", 0.25),
               ("hup", 1), ("failpoint", 1),
               ("bulk-load", 1 / 3.0), ("attach-partition", 1 / 3.0), ("restore-source", 1 / 3.0)]
SETTLE_S = 12.0  # every recovery criterion must then hold this long (see recovery())
# What lockstep logs when it holds a forced re-snapshot back (docs/realtime.md, "Throttle"):
# the recovery cap of that fault grows by the wait it announced.
THROTTLED = re.compile(r"ts=(\S+)Z [^\n]*re-snapshot \d+ within the hour: throttled, it starts in (\d+) s")


def fault_kinds(spec):
    """FAULT_KINDS filtered by LK_SOAK_FAULTS: a comma list of kinds (or prefixes, e.g.
    `cut`) to pick from, and/or `-KIND` to leave out; empty: all."""
    items = [x.strip() for x in (spec or "").split(",") if x.strip()]
    inc = [x for x in items if not x.startswith("-")]
    exc = [x[1:] for x in items if x.startswith("-")]
    m = lambda k, pats: any(k == p or k.startswith(p + "-") for p in pats)  # noqa: E731
    kinds = [(k, w) for k, w in FAULT_KINDS if (not inc or m(k, inc)) and not m(k, exc)]
    if not kinds:
        raise SystemExit("LK_SOAK_FAULTS=%r leaves no fault kind" % spec)
    return kinds


def create_partitioned_source(url, n, table):
    """`table` as rtwriters.create_source makes it (its view and key sequence), but
    partitioned by range of id: rows 1..n are loaded into a table of their own, which is
    then attached as TABLE_p0 for every key below PART_BASE (all the writers' keys)."""
    q, p0 = W._q, table + "_p0"
    W.create_source(url, n=n, table=p0)
    L.execute(url, "DROP VIEW %s" % q(p0 + "_md5"))
    L.execute(url, "DROP SEQUENCE %s" % q(p0 + "_id_seq"))
    L.execute(url, W.ITEMS_DDL.format(t=q(table), extra="") + " PARTITION BY RANGE (id)")
    L.execute(url, "ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (MINVALUE) TO (%d)"
              % (q(table), q(p0), PART_BASE))
    L.execute(url, W.VIEW_DDL.format(t=q(table), v=q(table + "_md5")))
    L.execute(url, "CREATE SEQUENCE %s START %d" % (q(table + "_id_seq"), n + 1))
    L.execute(url, "ANALYZE %s" % q(table))


def gone(src_url, dst_url, table, keys):
    """True when none of `keys` is in the target's table, except keys the source holds
    again (none here: deleted keys never come back, but a restore can bring them)."""
    if not keys:
        return True
    there = [r[0] for r in L.execute(dst_url, "SELECT id FROM %s WHERE id = ANY(%%s)" % W._q(table), (keys,))]
    if not there:
        return True
    back = set(r[0] for r in L.execute(src_url, "SELECT id FROM %s WHERE id = ANY(%%s)" % W._q(table), (there,)))
    return all(k in back for k in there)


def fmt_s(x):
    return "%.1fs" % x if x is not None else "-"


class Interrupted(BaseException):  # not caught by the soak's own `except Exception`
    pass


class Soak:
    def __init__(self, minutes, seed, quick):
        self.minutes = minutes
        self.seed = seed
        self.quick = quick
        self.rnd = random.Random(seed)
        self.cap = float(os.environ.get("LK_SOAK_RECOVERY_CAP") or 120)
        self.t0 = time.monotonic()
        self.soak_t0 = None
        self.wd = tempfile.mkdtemp(prefix="soak-work_")
        self.clusters = {}
        self.proxies = {}
        self.proxy_host = None
        self.insts = []
        self.writers = []
        self.timeline = []
        self.unexpected = []
        self.stop_ev = threading.Event()
        self.threads = []
        self.cfg_state = {"rt1_batch": 200, "rt2_batch": 200, "rtp_batch": 200, "pl_every": "2s",
                          "s1_every": "1s", "pl_batch": 500}
        self.verdict = []
        self.all_ok = True
        self.kinds = fault_kinds(os.environ.get("LK_SOAK_FAULTS"))
        self.extra = []  # [(criterion, fn)] the fault in progress adds to its recovery
        self.attached = 0  # attach-partition faults so far (each attaches the next range)
        self.backup = None  # restore-source: {"dir", "t", "marks": {log: max id}} of the backup in hand
        self.backups = 0
        self.restores = []  # restore-source: [{"t", "B": {log: max id}, "vb": {log: {key: version}}}]

    # -- output

    def clock(self):
        return time.monotonic() - (self.soak_t0 if self.soak_t0 is not None else self.t0)

    def log(self, msg):
        print("[%7.1fs] %s" % (time.monotonic() - self.t0, msg), flush=True)

    # -- set-up

    def setup(self):
        # Every start and restart runs a copy, so a rebuild during the soak cannot swap
        # the binary (or leave it half written) under a restart.
        copy = os.path.join(self.wd, "lockstep")
        shutil.copy2(L.lk_bin(), copy)
        self.log("work dir %s, lockstep %s (copied from %s)" % (self.wd, copy, L.lk_bin()))
        os.environ["LK_BIN"] = copy
        for name in ("source", "target", "store"):
            self.clusters[name] = C.PgCluster(name)
            self.log("cluster %s: port %d, %s" % (name, self.clusters[name].port, self.clusters[name].dir))
        src, dst, st = self.clusters["source"], self.clusters["target"], self.clusters["store"]
        self.src_url = src.create_db("soak")
        self.dst_url = dst.create_db("soak")
        self.aux_url = dst.create_db("aux")
        self.store_url = st.create_db("lockstep")
        rows = 2000 if self.quick else 5000
        for job in SYNC_JOBS:
            if job == "rtp":
                create_partitioned_source(self.src_url, rows, TABLES[job])
            else:
                W.create_source(self.src_url, n=rows, table=TABLES[job])
            W.create_target(self.dst_url, table=TABLES[job], log_table=LOGS[job])
            L.execute(self.dst_url, 'CREATE INDEX ON "%s" (key, version)' % LOGS[job])
        for q in C.EXECS_DDL:
            L.execute(self.aux_url, q)
        cl = {"source": src, "target": dst, "store": st}
        self.proxy_host = C.ProxyHost(dict(("%s-%s" % (inst, name), ("127.0.0.1", c.port))
                                           for inst in ("a", "b") for name, c in cl.items()))
        for inst in ("a", "b"):
            for name in cl:
                self.proxies[(inst, name)] = self.proxy_host.proxy("%s-%s" % (inst, name))
        env = {"LOCKSTEP_SHUTDOWN_GRACE": "10s"}
        for name in ("a", "b"):
            cfg = os.path.join(self.wd, "%s.yaml" % name)
            self.insts.append(C.Inst(name, cfg, os.path.join(self.wd, "%s.log" % name), self.clock, env))
        self.write_configs()
        for i in self.insts:
            if not i.start():
                raise RuntimeError("instance %s did not start:\n%s" % (i.name, i.tail()))
            self.log("instance %s: pid %d, HTTP port %d" % (i.name, i.pid(), i.port))
        ok = L.wait_for(lambda: self._safe(lambda: len(C.live_leases(self.store_url)) == len(JOBS)), 90, 0.5)
        if not ok:
            raise RuntimeError("the jobs did not all get a lease in 90 s:\n%s" % self.insts[0].tail())
        for job in SYNC_JOBS:
            eq, a, b = W.wait_equal(None, self.src_url, self.dst_url, None, 240, src_table=TABLES[job],
                                    dst_table=TABLES[job])
            if not eq:
                raise RuntimeError("%s: the initial snapshot is not equal after 240 s: %r %r" % (job, a, b))
        self.log("initial snapshots equal (%d rows per table); jobs held: %s" % (
            rows, self._safe(lambda: C.live_leases(self.store_url))))

    def write_configs(self):
        s = self.cfg_state
        for inst in self.insts:
            p = lambda c, db: self.proxies[(inst.name, c)].url(db)  # noqa: E731
            retry = {"initial": "500ms", "max": "5s"}
            breaker = {"cooldown": "5s"}
            dbs = {"src": {"url": p("source", "soak"), "breaker": breaker},
                   "dst": {"url": p("target", "soak"), "breaker": breaker},
                   "aux": {"url": p("target", "aux"), "breaker": breaker}}
            jobs = {}
            for job in ("rt1", "rt2", "rtp"):
                jobs[job] = {"source": {"db": "src", "table": TABLES[job]},
                             "target": {"db": "dst", "table": TABLES[job], "create": False, "deletes": "delete"},
                             "mode": "realtime", "batch": s[job + "_batch"], "retry": retry}
            jobs["pl"] = {"source": {"db": "src", "table": TABLES["pl"]},
                          "target": {"db": "dst", "table": TABLES["pl"], "create": False},
                          "mode": "poll", "cursor": "updated_at", "every": s["pl_every"], "batch": s["pl_batch"],
                          "retry": retry}
            for job in SQL_JOBS:
                jobs[job] = {"kind": "sql", "db": "aux", "every": s["s1_every"] if job == "s1" else "1s",
                             "sql": "SELECT work('%s')" % job, "retry": retry}
            # written whole (as WD/lockstep.yaml), then renamed: a reload never reads half a file
            path = L.sync_config(self.wd, dbs, jobs, state=p("store", "lockstep"),
                                 extra={"instance": {"name": "soak-" + inst.name},
                                        "cluster": {"lease": "%ds" % LEASE_S, "renew": "%ds" % RENEW_S}})
            os.replace(path, inst.cfg)

    def _safe(self, fn, default=None):
        try:
            return fn()
        except Exception:  # noqa: BLE001 - a database that is down right now
            return default

    # -- background: RSS samples, instances that die on their own

    def _sampler(self):
        while not self.stop_ev.wait(5.0):
            for i in self.insts:
                i.sample_rss()

    def _monitor(self):
        while not self.stop_ev.wait(0.5):
            for i in self.insts:
                with i.ctl:
                    if i.p is None or i.alive() or i.expect_exit:
                        continue
                    rc = i.reap("exited on its own")
                    tail = i.tail(2500)
                    self.unexpected.append((self.clock(), i.name, rc, tail))
                    self.log("!! instance %s exited on its own (exit %s); restarting it. Log tail:\n%s"
                             % (i.name, rc, tail))
                    i.start()

    def start_background(self):
        for fn in (self._sampler, self._monitor):
            th = threading.Thread(target=fn, daemon=True)
            th.start()
            self.threads.append(th)

    # -- faults

    def pick_victim(self):
        """The instance a process-ending fault (SIGKILL, crash point) hits: b three times as
        often as a, so that one process tends to live long enough for the RSS verdict to
        mean something; in the quick mode always b (3 minutes leave no room otherwise)."""
        if self.quick:
            return self.insts[1]
        return C.choose(self.rnd, [(self.insts[0], 1), (self.insts[1], 3)])

    def fault_kill(self):
        i = self.pick_victim()
        with i.ctl:
            i.expect_exit = True
            pid = i.pid()
            i.kill("SIGKILL (fault)")
        gap = self.rnd.uniform(0.5, 3.0)
        time.sleep(gap)
        with i.ctl:
            i.start()
            i.expect_exit = False
        return "instance %s" % i.name, "SIGKILL pid %d, restarted after %.1fs" % (pid, gap)

    def fault_freeze(self):
        i = self.rnd.choice(self.insts)
        d = LEASE_S + self.rnd.uniform(1.0, 4.0)
        with i.ctl:
            i.expect_exit = True
            i.signal(signal.SIGSTOP)
        time.sleep(d)
        with i.ctl:
            i.signal(signal.SIGCONT)
            i.expect_exit = False
        return "instance %s" % i.name, "SIGSTOP for %.1fs (lease %ds), SIGCONT" % (d, LEASE_S)

    def fault_restart(self, which):
        c = self.clusters[which]
        t = time.monotonic()
        c.restart_immediate()
        return "%s cluster" % which, "pg_ctl -m immediate restart, back after %.1fs" % (time.monotonic() - t)

    def fault_terminate(self, which):
        n = self.clusters[which].terminate_lockstep()
        return "%s cluster" % which, "pg_terminate_backend of %d lockstep sessions" % n

    def fault_cut(self, which):
        i = self.rnd.choice(self.insts)
        names = ["source", "target", "store"] if which == "all" else [which]
        ps = [self.proxies[(i.name, x)] for x in names]
        on = "instance %s -> %s" % (i.name, which)
        if self.rnd.random() < 0.5:
            n = sum(p.reset() for p in ps)
            return on, "proxy reset %d connections" % n
        d = self.rnd.uniform(2.0, 8.0)
        for p in ps:
            p.partition()
        time.sleep(d)
        for p in ps:
            p.heal()
        return on, "proxy partition (silent) for %.1fs, healed" % d

    def fault_hup(self):
        s = self.cfg_state
        key = self.rnd.choice(["rt1_batch", "rt2_batch", "pl_every", "s1_every", "pl_batch"])
        choices = {"rt1_batch": [100, 200, 300, 500], "rt2_batch": [100, 200, 300, 500],
                   "pl_every": ["1s", "2s", "3s"], "s1_every": ["1s", "2s"], "pl_batch": [200, 500, 1000]}[key]
        old = s[key]
        s[key] = self.rnd.choice([v for v in choices if v != old])
        self.write_configs()
        who = self.rnd.choice([[self.insts[0]], [self.insts[1]], self.insts])
        self._hup_expect = []
        for i in who:
            with i.ctl:
                self._hup_expect.append((i, i.output().count("config reloaded")))
                i.signal(signal.SIGHUP)
        return "instance%s %s" % ("s" if len(who) > 1 else "", "+".join(i.name for i in who)), \
            "SIGHUP, %s %s -> %s" % (key.replace("_", "."), old, s[key])

    def fault_failpoint(self):
        i = self.pick_victim()
        point, (lo, hi) = self.rnd.choice(FAILPOINTS)
        n = self.rnd.randint(lo, hi)
        spec = "%s@%d" % (point, n)
        with i.ctl:
            i.expect_exit = True
            i.term(40, "SIGTERM (restart with LK_FAILPOINT=%s)" % spec)
            i.start(failpoint=spec)
        t = time.monotonic()
        rc = None
        while time.monotonic() - t < FAILPOINT_WAIT_S:
            rc = i.p.poll()
            if rc is not None:
                break
            time.sleep(0.2)
        fired = time.monotonic() - t
        with i.ctl:
            if rc is None:
                i.term(40, "SIGTERM (LK_FAILPOINT=%s never fired)" % spec)
                what = "did not fire in %.0fs; restarted normally" % FAILPOINT_WAIT_S
            else:
                i.reap("crash point %s" % spec)
                crashed = "failpoint %s reached" % point in i.output()
                what = "%s after %.1fs (exit %d%s); restarted normally" % (
                    "fired" if crashed else "EXITED", fired, rc, "" if crashed else ", NOT at the point")
                if not crashed:
                    self.unexpected.append((self.clock(), i.name, rc, i.tail(2500)))
            i.start()
            i.expect_exit = False
        return "instance %s" % i.name, "LK_FAILPOINT=%s: %s" % (spec, what)

    # -- faults of a database's life: a bulk load with triggers off, an attached partition,
    #    the source restored from a backup (issue 17)

    def _txn(self, body, tries=5):
        """body(cur) in one transaction on the source, retried on a deadlock or a
        serialization failure (the writers hold row locks too); its result."""
        for n in range(tries):
            c = L.connect(self.src_url)
            try:
                c.autocommit = False
                with c.cursor() as cur:
                    out = body(cur)
                c.commit()
                return out
            except L.psycopg2.Error as e:
                if getattr(e, "pgcode", None) not in ("40P01", "40001") or n == tries - 1:
                    raise
            finally:
                c.close()

    def fault_bulk(self):
        """ALTER TABLE t DISABLE TRIGGER ALL; a bulk load (COPY or INSERT ... SELECT of new
        rows, plus updates and deletes of existing ones) while the writers go on; ENABLE
        TRIGGER ALL; and half the time a few updates under session_replication_role =
        replica right after (ENABLE TRIGGER ALL turns an ENABLE ALWAYS trigger into an
        ordinary one, which such writers do not fire). Nothing of it was captured: the
        recovery waits until every row written since the triggers went off reached the
        target and the deleted ones are gone from it."""
        t = self.rnd.choice(BULK_TABLES)
        q = W._q(t)
        n_ins, n_upd, n_del = self.rnd.randint(50, 400), self.rnd.randint(20, 200), self.rnd.randint(5, 50)
        use_copy, replica = self.rnd.random() < 0.5, self.rnd.random() < 0.5
        hold = self.rnd.uniform(0.5, 3.0)
        rnd = random.Random(self.rnd.random())
        t_off = L.scalar(self.src_url, "SELECT clock_timestamp()")
        L.execute(self.src_url, "ALTER TABLE %s DISABLE TRIGGER ALL" % q)
        try:
            def load(cur):
                if use_copy:
                    cur.execute("SELECT nextval(%s) FROM generate_series(1, %s)", (t + "_id_seq", n_ins))
                    buf = io.StringIO()
                    for (k,) in cur.fetchall():
                        body = "\\N" if rnd.random() < 0.2 else "%08x" % rnd.getrandbits(32) * rnd.randint(1, 500)
                        buf.write("%d\t%s\t1\tbulk %d\t%s\t%s\n" % (
                            k, rnd.choice(("active", "inactive")), k, body, json.dumps({"bulk": k, "r": rnd.random()})))
                    buf.seek(0)
                    cur.copy_expert("COPY %s (id, status, version, name, body, doc) FROM STDIN" % q, buf)
                else:
                    cur.execute("INSERT INTO %s (id, status, version, name, body, doc) SELECT nextval(%%s), "
                                "CASE WHEN mod(g, 3) = 0 THEN 'inactive' ELSE 'active' END, 1, 'bulk ' || g, "
                                "repeat(md5(g::text || %%s), 1 + mod(g, 300)), jsonb_build_object('bulk', g) "
                                "FROM generate_series(1, %%s) g" % q, (t + "_id_seq", str(rnd.random()), n_ins))
                cur.execute("UPDATE %s SET version = version + 1, status = CASE WHEN status = 'active' THEN "
                            "'inactive' ELSE 'active' END, name = 'bulk update', updated_at = now() WHERE id IN "
                            "(SELECT id FROM %s WHERE id >= 1 ORDER BY random() LIMIT %%s)" % (q, q), (n_upd,))
                cur.execute("DELETE FROM %s WHERE id IN (SELECT id FROM %s WHERE id >= 1 ORDER BY random() "
                            "LIMIT %%s) RETURNING id" % (q, q), (n_del,))
                return [r[0] for r in cur.fetchall()]
            deleted = self._txn(load)
            time.sleep(hold)  # the writers go on writing uncaptured meanwhile
        finally:
            L.execute(self.src_url, "ALTER TABLE %s ENABLE TRIGGER ALL" % q)
        n_rep = 0
        if replica:
            def rep(cur):
                cur.execute("SET LOCAL session_replication_role = replica")
                cur.execute("UPDATE %s SET version = version + 1, name = 'replica role', updated_at = now() "
                            "WHERE id IN (SELECT id FROM %s WHERE id >= 1 ORDER BY random() LIMIT 20)" % (q, q))
                return cur.rowcount
            n_rep = self._txn(rep)
        job = [j for j in SYNC_JOBS if TABLES[j] == t][0]
        since = L.execute(self.src_url, "SELECT id, version FROM %s WHERE updated_at >= %%s - interval '10 s'" % q,
                          (t_off,))
        self.extra = [("%s: writes while capture was off reached" % job,
                       lambda: C.reached(self.src_url, self.dst_url, t, LOGS[job], since)),
                      ("%s: keys deleted while capture was off gone" % job,
                       lambda: gone(self.src_url, self.dst_url, t, deleted))]
        return "%s (%s)" % (t, job), "DISABLE TRIGGER ALL, %s %d rows + %d updated + %d deleted, %.1fs more, " \
            "ENABLE TRIGGER ALL%s; %d rows written since" % (
                "COPY" if use_copy else "INSERT...SELECT", n_ins, n_upd, len(deleted), hold,
                ", then %d updated as session_replication_role = replica" % n_rep if replica else "", len(since))

    def fault_attach(self):
        """CREATE TABLE items4_pN holding rows of a new key range, ALTER TABLE items4
        ATTACH PARTITION (the rows appear in items4 without a write through its triggers);
        half the time some of them are updated right after (through the triggers the
        partition got). The recovery waits until all of them reached the target."""
        self.attached += 1
        t = TABLES["rtp"]
        part = "%s_p%d" % (t, self.attached)
        lo = PART_BASE + (self.attached - 1) * PART_SPAN
        n = self.rnd.randint(100, 1000)
        upd = self.rnd.random() < 0.5
        q = W._q
        L.execute(self.src_url, "CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS)" % (q(part), q(t)))
        L.execute(self.src_url, "INSERT INTO %s (id, status, version, name, body, doc) SELECT %d + g, "
                                "CASE WHEN g %% 2 = 0 THEN 'active' ELSE 'inactive' END, 1 + g %% 5, 'attached ' || g, "
                                "repeat(md5(g::text), 1 + g %% 100), jsonb_build_object('part', %d, 'g', g) "
                                "FROM generate_series(0, %d) g" % (q(part), lo, self.attached, n - 1))
        L.execute(self.src_url, "ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%d) TO (%d)"
                  % (q(t), q(part), lo, lo + PART_SPAN))
        if upd:
            L.execute(self.src_url, "UPDATE %s SET version = version + 1, name = 'attached, updated', "
                                    "updated_at = now() WHERE id %% 10 = 0" % q(part))
        rows = L.execute(self.src_url, "SELECT id, version FROM %s" % q(part))
        self.extra = [("rtp: attached rows reached",
                       lambda: C.reached(self.src_url, self.dst_url, t, LOGS["rtp"], rows))]
        return "%s (rtp)" % t, "ATTACH PARTITION %s holding %d rows (keys %d..%d)%s" % (
            part, n, lo, lo + n - 1, ", every 10th updated after" if upd else "")

    def _as_owner(self, cmd):
        return ["runuser", "-u", "postgres", "--"] + cmd if os.geteuid() == 0 else cmd

    def take_backup(self):
        """pg_basebackup of the source (-X stream, fast checkpoint) into its cluster
        folder; it replaces the one in hand. Also notes how far each target version log
        was then (for the diagnosis of a table that differs after a restore)."""
        c = self.clusters["source"]
        self.backups += 1
        dest = os.path.join(c.dir, "backup-%d" % self.backups)
        marks = dict((LOGS[j], L.scalar(self.dst_url, "SELECT coalesce(max(id), 0) FROM %s" % W._q(LOGS[j])))
                     for j in SYNC_JOBS)
        t = self.clock()
        p = subprocess.run(self._as_owner([os.path.join(c.bindir, "pg_basebackup"), "-h", "127.0.0.1", "-p",
                                           str(c.port), "-U", "postgres", "-D", dest, "-X", "stream", "-c", "fast"]),
                           capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            shutil.rmtree(dest, ignore_errors=True)
            raise RuntimeError("pg_basebackup failed: %s%s" % (p.stdout, p.stderr))
        if self.backup is not None:
            shutil.rmtree(self.backup["dir"], ignore_errors=True)
        self.backup = {"dir": dest, "t": t, "marks": marks}
        self.log("source backup %d taken at t=%.1fs in %.1fs (pg_basebackup)" % (self.backups, t, self.clock() - t))

    def fault_restore(self):
        """Crash-stops the source and starts, in place of its data folder and on the same
        port, the physical backup taken earlier in the run: every write after the backup
        is lost, and the source's transaction ids, sequences and lockstep's changelog go
        back. Before the writers and lockstep can reach it, the restored source is
        started once on a port of its own to read each table's (key, version): the
        version rule lets a key go back once after this fault, and only to a version the
        restored source held."""
        if self.backup is None:
            raise RuntimeError("no backup of the source in hand")
        c, b = self.clusters["source"], self.backup
        self.backup = None
        data = os.path.join(c.dir, "data")
        c.stop_immediate()
        marks = dict((LOGS[j], L.scalar(self.dst_url, "SELECT coalesce(max(id), 0) FROM %s" % W._q(LOGS[j])))
                     for j in SYNC_JOBS)
        os.rename(data, data + ".lost")
        os.rename(b["dir"], data)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        c._pg_ctl("-l", os.path.join(c.dir, "pg-restore.log"), "-o", "-p %d" % port, "-w", "-t", "300", "start")
        try:
            url = "postgresql://postgres@127.0.0.1:%d/soak" % port
            vb = dict((LOGS[j], dict(L.execute(url, "SELECT id, version FROM %s" % W._q(TABLES[j]))))
                      for j in SYNC_JOBS)
        finally:
            c.stop_fast()
        c.start()
        shutil.rmtree(data + ".lost", ignore_errors=True)
        self.restores.append({"t": self.clock(), "B": marks, "vb": vb, "backup_marks": b["marks"],
                              "backup_t": b["t"]})
        return "source cluster", "crash-stopped, restored from backup %d of t=%.1fs (%s rows then)" % (
            self.backups, b["t"], "/".join(str(len(vb[LOGS[j]])) for j in SYNC_JOBS))

    def inject(self, kind):
        if kind == "kill":
            return self.fault_kill()
        if kind == "freeze":
            return self.fault_freeze()
        if kind.startswith("restart-"):
            return self.fault_restart(kind.split("-", 1)[1])
        if kind.startswith("terminate-"):
            return self.fault_terminate(kind.split("-", 1)[1])
        if kind.startswith("cut-"):
            return self.fault_cut(kind.split("-", 1)[1])
        if kind == "hup":
            return self.fault_hup()
        if kind == "failpoint":
            return self.fault_failpoint()
        if kind == "bulk-load":
            return self.fault_bulk()
        if kind == "attach-partition":
            return self.fault_attach()
        if kind == "restore-source":
            return self.fault_restore()
        raise ValueError(kind)

    # -- recovery

    def mark_logs(self):
        """Remembers how far each instance's log file is (read by throttle_waits)."""
        self.log_marks = dict((i.name, os.path.getsize(i.logfile) if os.path.exists(i.logfile) else 0)
                              for i in self.insts)

    def throttle_waits(self):
        """The waits (s) of throttled re-snapshots lockstep announced since mark_logs().
        Also keeps self.throttled_until: the latest wall time (epoch s) at which any
        throttled re-snapshot announced so far starts, an earlier fault's included."""
        out = []
        for i in self.insts:
            scanned = getattr(self, "scanned", {})  # how far each log was read for throttled_until
            self.scanned = scanned
            start = min(self.log_marks.get(i.name, 0), scanned.get(i.name, 0))
            try:
                with open(i.logfile, "rb") as f:
                    f.seek(start)
                    data = f.read()
            except OSError:
                continue
            data = data[:data.rfind(b"\n") + 1]  # whole lines only
            new = data[max(0, self.log_marks.get(i.name, 0) - start):].decode(errors="replace")
            out += [int(m.group(2)) for m in THROTTLED.finditer(new)]
            unseen = data[max(0, scanned.get(i.name, 0) - start):].decode(errors="replace")
            scanned[i.name] = start + len(data)
            for m in THROTTLED.finditer(unseen):
                wait = int(m.group(2))
                try:
                    at = calendar.timegm(time.strptime(m.group(1).split(".")[0], "%Y-%m-%dT%H:%M:%S"))
                    self.throttled_until = max(getattr(self, "throttled_until", 0.0), at + 1 + wait)
                except ValueError:
                    pass
        return out

    def recovery(self, kind, cap):
        """Waits until every criterion holds at once and keeps holding for SETTLE_S (so a
        connection that silently never comes back, which /api/health reports only after
        10 s, is not taken for a recovery). Returns (ok, seconds from the heal until
        they all held, {criterion: seconds from when it last began to hold}, the
        criterion that held last, what still failed at the cap). The cap grows by the
        longest wait of a throttled re-snapshot lockstep announced since the fault began
        (documented behaviour: the target stays as it was meanwhile)."""
        t = time.monotonic()
        heal_wall = time.time()
        throttled = 0
        samples = {}
        first = {}
        failing = []
        all_since = None
        while True:
            el = time.monotonic() - t
            state = {}
            # each instance alive, not frozen, and its /api/health answers (not 503)
            bad = []
            for i in self.insts:
                code, body = i.health()
                if not i.alive() or i.stopped or code != 200:
                    why = [c.get("detail", c.get("name")) for c in (body or {}).get("checks", [])
                           if c.get("status") == "fail"]
                    bad.append("%s: %s" % (i.name, "dead" if not i.alive() else "%s %s" % (code, "; ".join(why))))
            state["instances healthy"] = not bad
            if kind == "hup":
                state["config reloaded"] = all(i.output().count("config reloaded") > n
                                               for i, n in getattr(self, "_hup_expect", []))
            held = self._safe(lambda: C.live_leases(self.store_url), {})
            state["every job held"] = len(held) == len(JOBS)
            ran = self._safe(lambda: dict(L.execute(
                self.aux_url, "SELECT job, count(*) FROM execs WHERE lower(during) > to_timestamp(%s) GROUP BY job",
                (heal_wall,))), {})
            state["sql jobs ran"] = all(ran.get(j, 0) > 0 for j in SQL_JOBS)
            for job in SYNC_JOBS:
                if job not in samples:
                    s = self._safe(lambda: C.sample_recent(self.src_url, TABLES[job]))
                    if s is not None:
                        samples[job] = s
                name = "%s caught up" % job
                state[name] = job in samples and bool(self._safe(lambda: C.reached(
                    self.src_url, self.dst_url, TABLES[job], LOGS[job], samples[job]), False))
            for name, fn in self.extra:  # what the fault in progress wrote past capture
                state[name] = bool(self._safe(fn, False))
            for k, v in state.items():
                if v and k not in first:
                    first[k] = el
                elif not v:
                    first.pop(k, None)  # must hold at the end, counted from when it last began to
            failing = [k for k, v in state.items() if not v]
            if failing:
                all_since = None
            elif all_since is None:
                all_since = el
            if all_since is not None and el - all_since >= SETTLE_S:
                last = max(first.items(), key=lambda kv: kv[1])
                return True, all_since, first, last[0], ""
            throttled = max([throttled] + self.throttle_waits())
            # a re-snapshot an earlier fault made lockstep throttle may still be waiting
            pending = max(0.0, getattr(self, "throttled_until", 0.0) - heal_wall)
            if el > cap + max(throttled, pending):
                detail = "; ".join(failing)
                if bad:
                    detail += " (%s)" % ", ".join(bad)
                if "every job held" in failing:
                    detail += "; held: %s" % sorted(held)
                return False, el, first, None, detail or "did not hold for %.0fs" % SETTLE_S
            time.sleep(0.5)

    # -- the soak

    def run_faults(self):
        end = self.minutes * 60.0
        next_at = self.rnd.uniform(10, 40)
        self.log("fault phase: %.1f minutes; first fault at t=%.1fs; kinds: %s" % (
            self.minutes, next_at, ", ".join(k for k, _ in self.kinds)))
        restores = any(k == "restore-source" for k, _ in self.kinds)
        while True:
            now = self.clock()
            if now >= end:
                break
            if restores and (self.backup is None or now - self.backup["t"] > BACKUP_MAX_AGE_S):
                try:  # early in the run, again after each restore and when it is old
                    self.take_backup()
                except Exception as e:  # noqa: BLE001 - retried before the next fault
                    self.log("!! source backup failed: %s" % e)
                    time.sleep(5.0)
                continue
            if now < next_at:
                time.sleep(min(0.5, next_at - now))
                continue
            kind = C.choose(self.rnd, self.kinds)
            if kind == "restore-source" and now - self.backup["t"] < BACKUP_MIN_AGE_S:
                others = [(k, w) for k, w in self.kinds if k != kind]
                if not others:  # only restores drawn: wait until the backup is old enough
                    next_at = self.backup["t"] + BACKUP_MIN_AGE_S
                    continue
                kind = C.choose(self.rnd, others)
            self.extra = []
            self.mark_logs()
            start = self.clock()
            try:
                on, detail = self.inject(kind)
            except Exception as e:  # noqa: BLE001 - a fault the soak could not inject
                on, detail = "?", "INJECTION FAILED: %s" % e
                traceback.print_exc()
            healed = self.clock()
            ok, rec, first, last, why = self.recovery(kind, self.cap)
            self.extra = []
            waits = self.throttle_waits()
            if waits:
                detail += "; lockstep throttled %d re-snapshot%s (longest wait %d s)" % (
                    len(waits), "s" if len(waits) > 1 else "", max(waits))
            ev = {"t": start, "kind": kind, "on": on, "detail": detail, "fault_s": healed - start,
                  "ok": ok and not detail.startswith("INJECTION FAILED"), "rec_s": rec, "last": last,
                  "last_s": first.get(last) if last else None, "why": why}
            self.timeline.append(ev)
            self.log(self.timeline_line(ev))
            next_at = max(start + self.rnd.uniform(10, 40), self.clock() + 2.0)

    @staticmethod
    def timeline_line(ev):
        if ev["ok"]:
            rec = "recovered in %6.1fs (last: %s)" % (ev["rec_s"], ev["last"])
        else:
            rec = "NOT RECOVERED after %.1fs: %s" % (ev["rec_s"], ev["why"] or ev["detail"])
        return "t=%7.1fs  %-15s %-24s %s | fault lasted %.1fs | %s" % (
            ev["t"], ev["kind"], ev["on"], ev["detail"], ev["fault_s"], rec)

    def catch_up(self):
        self.log("stopping the writers")
        for w in self.writers:
            w.stop()
        for w in self.writers:
            self.log("writers %s: %s" % (w.table, w.summary()))
        res = {}
        for job in SYNC_JOBS:
            t = time.monotonic()
            # after a restore, pl's target keeps the rows the restore took back (judge()):
            # its md5 never matches, so give its catch-up a minute, then compare by key
            wait = 60 if job == "pl" and self.restores else 300
            eq, a, b = W.wait_equal(None, self.src_url, self.dst_url, None, wait, src_table=TABLES[job],
                                    dst_table=TABLES[job])
            res[job] = (eq, time.monotonic() - t, a, b)
            self.log("%s: %s after %.1fs of catch-up (source %s, target %s)" % (
                job, "equal (md5)" if eq else "NOT equal", time.monotonic() - t, a, b))
        return res

    def check(self, ok, what, detail=""):
        self.verdict.append((bool(ok), what, detail))
        if not ok:
            self.all_ok = False

    def judge(self, catch):
        # 1. faults
        bad = [e for e in self.timeline if not e["ok"]]
        self.check(not bad, "every fault recovered within its cap (%d faults, cap %.0fs, slowest %s)" % (
            len(self.timeline), self.cap, fmt_s(max([e["rec_s"] for e in self.timeline] or [0]))),
            "\n".join(self.timeline_line(e) for e in bad))
        # 2. equality: md5 (above) and a canonical row comparison, both outside lockstep
        for job in SYNC_JOBS:
            tbl = TABLES[job]
            eq, took, a, b = catch[job]
            try:
                ra = L.rows_canonical(self.src_url, tbl, ["id"])
                rb = L.rows_canonical(self.dst_url, tbl, ["id"])
                d = L.compare_rows(ra, rb)
                gone = []
                if job == "pl" and self.restores:
                    # A poll job never sees deletes (docs/operations.md, "Poll mode: late
                    # commits"): after a restore of the source, the rows the restore took back
                    # stay on its target. Only those are excused: keys the target has and the
                    # restored source lacks (pl's writers never delete); every key the source
                    # has must be equal (the job reads every row again after a restore).
                    gone = [k for k in d if k in rb and k not in ra]
                    d = [k for k in d if k not in gone]
                    eq = not d
                det = "" if not d else (self.lost_diagnosis(job, d) + "\n" + L.describe_diff(ra, rb, d) + "\n"
                                         + W.diff(self.src_url, self.dst_url, None, tbl, tbl)).lstrip("\n")
                self.check(eq and not d, "%s: %s equal to the source (%d rows; md5 %s, canonical compare: "
                           "%d keys differ; caught up in %.1fs%s)" % (
                               job, tbl, len(ra), "equal" if eq else "DIFFERS", len(d), took,
                               "; %d rows the restores took back stay on the target, as poll mode sees no "
                               "deletes" % len(gone) if gone else ""), det)
            except Exception as e:  # noqa: BLE001
                self.check(False, "%s: compare %s" % (job, tbl), repr(e))
        # 3. versions (after a restore-source, a key may go back once, to what the restored source held)
        for job in SYNC_JOBS:
            back, excused = self.versions_back(LOGS[job])
            n = W.log_count(self.dst_url, LOGS[job])
            det = "\n".join("key %d: %s" % (k, W.version_history(self.dst_url, k, LOGS[job])[-12:]) for k in back[:5])
            self.check(not back, "%s: no key's version went backwards (%d writes logged, %d keys went back%s)"
                       % (job, n, len(back), "; %d steps back excused by %d restore-source faults"
                          % (excused, len(self.restores)) if self.restores else ""), det)
        # 4. no job ran twice at once
        counts = dict(L.execute(self.aux_url, "SELECT job, count(*) FROM execs GROUP BY job"))
        ov = C.overlaps(self.aux_url)
        excl = C.exclusion_failures(self.store_url)
        con = L.scalar(self.aux_url, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'execs'::regclass "
                                     "AND contype = 'x'")
        failed = dict(L.execute(self.store_url, "SELECT job, count(*) FROM lockstep.runs WHERE status = 'failed' "
                                                "GROUP BY job"))
        enough = all(counts.get(j, 0) >= 10 for j in SQL_JOBS)
        self.check(con == 1 and ov == 0 and not excl and enough,
                   "no job ran twice at once: executions %s, overlapping pairs %d, failed runs blaming the "
                   "exclusion constraint %d (failed runs for other reasons, by job: %s)"
                   % (dict(sorted(counts.items())), ov, len(excl), dict(sorted(failed.items())) or "none"),
                   "\n".join("%s: %s" % r for r in excl[:10]))
        # 5. RSS
        self.judge_rss()
        # 6. no instance died on its own
        self.check(not self.unexpected, "no instance exited on its own (%d did)" % len(self.unexpected),
                   "\n".join("t=%.1fs %s exit %s:\n%s" % u for u in self.unexpected))
        # 7. the workload itself
        errs = [e for w in self.writers for e in w.errors]
        self.check(not errs, "the writers saw no unexpected database error", "\n".join(errs[:10]))

    def versions_back(self, log):
        """([keys whose version went backwards], steps back excused by a restore).

        Without a restore-source fault: rtwriters.versions_monotonic, every step back is
        a stale write. After restores, a key's log may step back once per restore r, and
        only where (a) the entry came after r's crash-stop (log id > r.B), (b) the version
        it left was one the restore lost (above r.vb[key], the restored source's
        version, 0 when the restored source lacks the key) and (c) the version it came
        to is one the restored source's timeline holds (at least r.vb[key]). A stale
        write after a restore, on a key the restore did not set back, still counts."""
        if not self.restores:
            return W.versions_monotonic(self.dst_url, log), 0
        rows = L.execute(self.dst_url, "SELECT key, id, version FROM %s ORDER BY key, id" % W._q(log))
        bad, excused = [], 0
        key = prev = None
        used = set()
        for k, i, v in rows:
            if k != key:
                key, prev, used = k, v, set()
                continue
            if v < prev:
                for n, r in enumerate(self.restores):
                    base = r["vb"][log].get(k, 0)
                    if n not in used and i > r["B"][log] and prev > base and v >= base:
                        used.add(n)
                        excused += 1
                        break
                else:
                    if not bad or bad[-1] != k:
                        bad.append(k)
            prev = v
        return bad, excused

    def lost_diagnosis(self, job, keys):
        """Of `keys` (that differ), how many were written to the target between a backup
        and the restore of it (that is, were on the source's lost history)."""
        if not self.restores or not keys:
            return ""
        log = LOGS[job]
        keys = [k[0] if isinstance(k, tuple) else k for k in keys]
        n = set()
        for r in self.restores:
            n |= set(x[0] for x in L.execute(self.dst_url, "SELECT DISTINCT key FROM %s WHERE key = ANY(%%s) AND "
                                                            "id > %%s AND id <= %%s" % W._q(log),
                                             (keys, r["backup_marks"][log], r["B"][log])))
        return "%d of the %d keys that differ were written to the target between a backup and its restore " \
               "(source history the restore lost)" % (len(n), len(keys))

    def judge_rss(self):
        lines, bad, judged = [], [], 0
        for i in self.insts:
            for lt in i.lifetimes:
                dur = (lt.end if lt.end is not None else self.clock()) - lt.start
                if dur < RSS_MIN_LIFETIME_S or len(lt.samples) < 20:
                    lines.append("  %s pid %d: %.0fs, not judged (under %.0fs)" % (i.name, lt.pid, dur,
                                                                                RSS_MIN_LIFETIME_S))
                    continue
                last_t = lt.samples[-1][0]
                base = C.median([k for s, k in lt.samples if 60 < s <= 120])
                final = C.median([k for s, k in lt.samples if last_t - 60 < s <= last_t])
                peak = max(k for _, k in lt.samples)
                limit = base * (1 + RSS_TOLERANCE) + RSS_SLACK_KIB
                ok = final <= limit
                judged += 1
                line = ("  %s pid %d: %.1f min, RSS 2nd minute %.1f MiB, last minute %.1f MiB (%+.1f%%), "
                        "peak %.1f MiB, limit %.1f MiB: %s" % (i.name, lt.pid, dur / 60, base / 1024, final / 1024,
                                                               100.0 * (final - base) / base, peak / 1024,
                                                               limit / 1024, "ok" if ok else "GREW"))
                lines.append(line)
                if not ok:
                    bad.append(line)
        self.rss_lines = lines
        with open(os.path.join(self.wd, "rss.csv"), "w") as f:  # every sample, for a closer look
            f.write("instance,pid,lifetime_start_s,seconds,rss_kib\n")
            for i in self.insts:
                for lt in i.lifetimes:
                    for sec, kib in lt.samples:
                        f.write("%s,%d,%.1f,%.1f,%d\n" % (i.name, lt.pid, lt.start, sec, kib))
        if judged == 0 and self.minutes * 60 < RSS_MIN_LIFETIME_S:  # --minutes 2: nothing to judge
            self.log("RSS flat: not judged (no check), the run is shorter than %.0fs" % RSS_MIN_LIFETIME_S)
            return
        self.check(not bad and judged > 0,
                   "RSS flat: %d process lifetimes of %.0fs or more judged, %d grew beyond +%.0f%% + %d MiB"
                   % (judged, RSS_MIN_LIFETIME_S, len(bad), RSS_TOLERANCE * 100, RSS_SLACK_KIB // 1024),
                   "\n".join(bad) if bad else ("" if judged else "no lifetime was long enough to judge"))

    def lockstep_verify(self):
        """`lockstep verify` as a second opinion (not part of the verdict)."""
        out = []
        for job in SYNC_JOBS:
            rc, so, se = L.run_lockstep(["verify", job, "--json"], self.insts[0].cfg, timeout=180)
            obj = L.whole_json(so) or {}
            out.append("%s: exit %s, equal %s" % (job, rc, obj.get("equal")))
        return out

    def run(self):
        self.setup()
        self.start_background()
        seeds = [self.rnd.randrange(1 << 30) for _ in SYNC_JOBS]
        kw = dict(body_kb=(1, 16), hold_s=(0.5, 3.0), pause_s=(0.02, 0.15))
        self.writers = [W.Writers(self.src_url, table=TABLES["rt1"], seed=seeds[0], n=2, **kw),
                        W.Writers(self.src_url, table=TABLES["rt2"], seed=seeds[1], n=2, **kw),
                        C.NoDeleteWriters(self.src_url, table=TABLES["pl"], seed=seeds[2], n=2, **kw),
                        W.Writers(self.src_url, table=TABLES["rtp"], seed=seeds[3], n=1, **kw)]
        for w in self.writers:
            w.start()
        shift = time.monotonic() - self.t0
        self.soak_t0 = time.monotonic()
        for i in self.insts:  # the soak clock starts now: earlier starts become negative
            for lt in i.lifetimes:
                lt.start -= shift
        self.log("writers started on %s; soak clock t=0" % ", ".join(TABLES.values()))
        self.run_faults()
        self.log("fault phase over at t=%.1fs (%d faults)" % (self.clock(), len(self.timeline)))
        catch = self.catch_up()
        for i in self.insts:
            i.sample_rss()
        self.judge(catch)
        try:
            self.verify_lines = self.lockstep_verify()
        except Exception as e:  # noqa: BLE001
            self.verify_lines = ["lockstep verify failed to run: %r" % e]
        self.stop_ev.set()
        rcs = []
        for i in self.insts:
            with i.ctl:
                i.expect_exit = True
                rcs.append("%s exit %s" % (i.name, i.term(40, "SIGTERM (end of soak)")))
        self.stop_lines = rcs
        self.report()
        return 0 if self.all_ok else 1

    def report(self):
        print()
        print("==== timeline (seed %d, %.1f minutes, t = seconds since the writers started) ====" % (
            self.seed, self.minutes))
        for ev in self.timeline:
            print(self.timeline_line(ev))
        kinds = {}
        for ev in self.timeline:
            kinds[ev["kind"]] = kinds.get(ev["kind"], 0) + 1
        print("faults by kind: %s" % ", ".join("%s %d" % kv for kv in sorted(kinds.items())))
        print()
        print("==== process lifetimes and RSS ====")
        for i in self.insts:
            for lt in i.lifetimes:
                print("  %s pid %d: t=%.1fs .. %s, %s" % (i.name, lt.pid, lt.start,
                                                        "t=%.1fs" % lt.end if lt.end is not None else "-",
                                                        lt.how or "running"))
        for line in getattr(self, "rss_lines", []):
            print(line)
        print()
        print("==== lockstep verify (second opinion, not part of the verdict) ====")
        for line in getattr(self, "verify_lines", []):
            print("  " + line)
        print("  instances stopped: %s" % ", ".join(getattr(self, "stop_lines", [])))
        print()
        print("==== verdict ====")
        for ok, what, detail in self.verdict:
            print("%s  %s" % ("PASS" if ok else "FAIL", what))
            for line in (detail or "").splitlines()[:40]:
                print("        " + line)
        print("VERDICT: %s (seed %d; replay with LK_SOAK_SEED=%d)" % ("PASS" if self.all_ok else "FAIL",
                                                                     self.seed, self.seed))

    def cleanup(self, keep):
        self.stop_ev.set()
        for w in self.writers:
            w.stop_ev.set()
        for i in self.insts:
            try:
                if i.alive():
                    i.expect_exit = True
                    if i.stopped:
                        os.kill(i.pid(), signal.SIGCONT)
                    i.kill("SIGKILL (clean-up)")
            except Exception:  # noqa: BLE001
                pass
        if self.proxy_host is not None:
            self.proxy_host.close()
        for w in self.writers:
            w.stop(timeout=5)
        for c in self.clusters.values():
            try:
                c.destroy()
            except Exception:  # noqa: BLE001
                pass
        if keep:
            print("kept for inspection: %s (instance logs a.log, b.log)" % self.wd)
        else:
            shutil.rmtree(self.wd, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description="lockstep chaos soak (docs/soak.md)")
    ap.add_argument("--quick", action="store_true", help="3 minutes (CI)")
    ap.add_argument("--minutes", type=float, help="length of the fault phase (default LK_SOAK_MINUTES or 30)")
    ap.add_argument("--seed", type=int, help="random seed (default LK_SOAK_SEED or random)")
    args = ap.parse_args()
    minutes = args.minutes or (3.0 if args.quick else float(os.environ.get("LK_SOAK_MINUTES") or 30))
    seed = args.seed if args.seed is not None else (
        int(os.environ["LK_SOAK_SEED"]) if os.environ.get("LK_SOAK_SEED") else random.randrange(1 << 31))
    sys.stdout.reconfigure(line_buffering=True)
    if L.psycopg2 is None:
        L.skip_or_fail("python3-psycopg2 is not installed")
    if not os.access(L.lk_bin(), os.X_OK):
        print("FAIL: LK_BIN %s is not an executable" % L.lk_bin())
        sys.exit(1)
    print("chaos soak: %.1f minutes of faults, seed %d (LK_SOAK_SEED=%d replays it), lockstep %s"
          % (minutes, seed, seed, L.lk_bin()))

    def on_signal(sig, frame):
        raise Interrupted("signal %d" % sig)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    soak = Soak(minutes, seed, quick=args.quick)
    rc = 1
    try:
        rc = soak.run()
    except Interrupted as e:
        print("interrupted (%s): cleaning up" % e)
        rc = 130
    except Exception:  # noqa: BLE001 - the soak itself broke: a FAIL with the traceback
        traceback.print_exc()
        print("VERDICT: FAIL (the soak could not complete; seed %d)" % seed)
        rc = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        soak.cleanup(keep=rc != 0 or os.environ.get("LK_SOAK_KEEP") == "1")
    sys.exit(rc)


if __name__ == "__main__":
    main()
