/*
 * sdnotify.h - the systemd notify protocol without libsystemd: one datagram of
 * "KEY=VALUE\n" lines to the AF_UNIX socket named by $NOTIFY_SOCKET, and the
 * watchdog interval from $WATCHDOG_USEC / $WATCHDOG_PID.
 *
 * What `lockstep run` sends, and when (packaging/README.md tells operators):
 *
 *   READY=1          once, when the daemon serves: config loaded, state store open and
 *                    migrated, HTTP listening, scheduler started. With Type=notify,
 *                    systemd keeps the unit "activating" (and `systemctl start` waits)
 *                    until then. Also sent after a reload has finished.
 *   STATUS=TEXT      one short human line for `systemctl status`, e.g.
 *                    "STATUS=serving 4 jobs, 1 realtime" or "STATUS=DEGRADED: memory 85%".
 *                    Sent on state changes only, never per row or per batch.
 *   WATCHDOG=1       only from the scheduler loop, and only after it has really ticked
 *                    since the last ping (a live thread that no longer schedules must
 *                    not keep the unit alive), at half of lk_sd_watchdog_ms(). When
 *                    pings stop, systemd kills the unit with SIGABRT and Restart=
 *                    brings it back.
 *   STOPPING=1       at the start of a graceful shutdown (SIGTERM, SIGINT), so
 *                    `systemctl status` shows "deactivating" while runs drain.
 *   RELOADING=1      at the start of a SIGHUP reload, followed by READY=1 when the new
 *                    config is in place (or was refused and the old one kept). systemd
 *                    >= 253 (Type=notify-reload) wants MONOTONIC_USEC=… in the same
 *                    datagram to tell this reload from an earlier one:
 *                    lk_sd_notify_reloading() adds it.
 *
 * Child processes (exec jobs) must not inherit NOTIFY_SOCKET, WATCHDOG_USEC or
 * WATCHDOG_PID: lk_sd_is_notify_env() tells which environment entries to drop.
 *
 * Threads: every function may be called from any thread. Each send opens its own
 * socket, so there is no shared state; the functions read the environment, so no
 * thread may call setenv()/unsetenv() at the same time (tests do, single-threaded).
 */
#ifndef LK_SDNOTIFY_H
#define LK_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Sends state (e.g. "READY=1\nSTATUS=serving") as one datagram to $NOTIFY_SOCKET: an
 * absolute path, or an abstract socket when it starts with '@'. The send never blocks
 * (MSG_DONTWAIT) and never raises SIGPIPE (MSG_NOSIGNAL); a full socket buffer is an
 * error (EAGAIN), not a wait.
 *
 * Returns 1 when sent, 0 when not under systemd (NOTIFY_SOCKET unset or empty), and -1
 * with errno set on error: EINVAL for a NULL or empty state, EAFNOSUPPORT for a socket
 * address that is neither a path nor '@' (e.g. systemd's "vsock:"), ENAMETOOLONG for
 * one that does not fit in sun_path, EMSGSIZE for a short send, and socket()/sendto()
 * errors. A failed notification is never fatal for the daemon: log it once and go on.
 */
int lk_sd_notify(const char *state);

/* lk_sd_notify() with a printf-style message built in a buffer of at most 4 KiB
 * (longer text fails with EMSGSIZE rather than sending a truncated line). */
int lk_sd_notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Sends "RELOADING=1\nMONOTONIC_USEC=<CLOCK_MONOTONIC now in µs>", plus
 * "\nSTATUS=<status>" when status is not NULL. Returns as lk_sd_notify().
 */
int lk_sd_notify_reloading(const char *status);

/*
 * Writes "MONOTONIC_USEC=<CLOCK_MONOTONIC now in µs>" into out (NUL-terminated) for a
 * caller that builds its own RELOADING=1 datagram. Returns 0, or -1 (EINVAL) when
 * out_size is too small (40 bytes always suffice).
 */
int lk_sd_monotonic_usec(char *out, unsigned out_size);

/*
 * The watchdog interval in milliseconds that systemd asks for (WatchdogSec=), from
 * $WATCHDOG_USEC, rounded up to a whole ms. Returns 0 when no watchdog is asked for:
 * WATCHDOG_USEC unset, empty, not a positive decimal integer, systemd's "infinity"
 * (UINT64_MAX), or WATCHDOG_PID set to a
 * pid other than ours (the variables were inherited from a parent). The daemon pings
 * (WATCHDOG=1) at half this interval.
 */
int64_t lk_sd_watchdog_ms(void);

/*
 * True when entry, an environ string "NAME=value", is one of systemd's notify
 * variables (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID) that a child process must not
 * inherit: a child that speaks the protocol itself would otherwise send messages that
 * systemd refuses and logs (NotifyAccess=main) or, with NotifyAccess=all, takes for
 * lockstep's own (a READY=1 or WATCHDOG=1 that lockstep never sent).
 */
bool lk_sd_is_notify_env(const char *entry);

#endif
