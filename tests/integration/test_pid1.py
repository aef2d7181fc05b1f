"""lockstep as PID 1 reaps orphaned processes (issue 20, item 9; docs/security.md).

In a container lockstep is often PID 1, the parent of every orphaned process: without
reaping them they stay zombies, one per orphan, until the pid table is full. The test
starts `lockstep run` as PID 1 of a new PID namespace (`unshare --pid --fork
--mount-proc`, which needs root or user namespaces; skipped, exit 77, when the machine
refuses it) with an exec job, every second, whose command leaves 5 orphans behind (each
`(sleep 0.3 &)` outlives its subshell). After 6 runs (30 orphans):

- the zombies whose parent is lockstep never pile up (at most two runs' worth, where the
  old binary had 30), and once a reload makes the job rare, none is left;
- every run of the job still succeeds with its own exit code (the reaper leaves the
  commands of exec runs to their runs);
- lockstep stops on SIGTERM with exit 0.
"""
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import lktest as L

t = L.Suite("test_pid1")


def can_unshare():
    if not shutil.which("unshare"):
        return False
    p = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p.returncode == 0


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def zombies_of(ppid):
    n = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if rest[0] == "Z" and int(rest[1]) == ppid:
            n += 1
    return n


def runs(wd):
    try:
        c = sqlite3.connect(wd.file("state.db"))
        rows = c.execute("SELECT status, error FROM lockstep_runs WHERE job = 'orphans' "
                         "ORDER BY started_ms").fetchall()
        c.close()
        return rows
    except sqlite3.Error:
        return []


def test_reaps_orphans():
    wd = L.Workdir("pid1")
    cfg = L.sync_config(wd, {}, {
        "orphans": {"kind": "exec", "every": "1s",
                    "command": ["sh", "-c", "for i in 1 2 3 4 5; do (sleep 0.3 &); done; exit 3"]},
    })
    log = open(wd.file("run.log"), "w")
    p = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", L.lk_bin(), "-c", str(cfg), "run"],
                         stdout=log, stderr=subprocess.STDOUT, cwd=wd.path)
    try:
        lk = L.wait_for(lambda: (children(p.pid) or [None])[0], 10, 0.05)
        t.check(bool(lk), "lockstep runs as PID 1 of a new PID namespace")
        if not lk:
            return
        t.check(L.wait_for(lambda: len(runs(wd)) >= 6, 60, 0.2), "6 runs of the job (30 orphans)",
                runs(wd))
        peak = max(zombies_of(lk) for _ in range(40) if time.sleep(0.05) is None)
        t.check(peak <= 10, "the zombies never pile up: at most two runs' worth (peak %d of "
                "30 orphans so far)" % peak)
        # the job made rare by a reload: the last run's orphans are reaped, none is left
        L.sync_config(wd, {}, {"orphans": {"kind": "exec", "every": "1h",
                                           "command": ["sh", "-c", "exit 3"]}})
        os.kill(lk, signal.SIGHUP)
        t.check(L.wait_for(lambda: zombies_of(lk) == 0, 10, 0.1),
                "once the job stops making orphans, none is left (%d)" % zombies_of(lk))
        done = [r for r in runs(wd) if r[0] != "running"]
        t.check(done and all(r[0] == "failed" and r[1] and "status 3" in r[1] for r in done),
                "every finished run has its own exit code (3), not one the reaper took",
                done[:5])
        os.kill(lk, signal.SIGTERM)
        t.eq(p.wait(30), 0, "lockstep stops on SIGTERM with exit 0")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
        log.close()


if __name__ == "__main__":
    if not can_unshare():
        print("SKIP: unshare --pid --fork --mount-proc is refused here (needs root or user "
              "namespaces)")
        sys.exit(77)
    t.case(test_reaps_orphans)
    t.finish()
