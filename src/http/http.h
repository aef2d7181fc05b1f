/*
 * http.h - the HTTP API of `lockstep run` (SPEC §6) on libmicrohttpd: a thread per
 * connection (Server-Sent Events block in their content callback), a connection cap,
 * per-connection timeouts, 64 KiB bodies, JSON errors. With http.token set every call but
 * the probes needs a token or a session; every POST passes the CSRF rules and every
 * request the Host rule (docs/security.md).
 * Handlers answer from the daemon's memory (daemon/api.h); the few that read the state
 * store use the API's own store handle.
 */
#ifndef LK_HTTP_H
#define LK_HTTP_H

#include "config/config.h"
#include "core/err.h"

#include <stdbool.h>

struct lk_daemon;
struct lk_http;

/* Largest request body accepted (413 above). */
#define LK_HTTP_BODY_MAX 65536
/* Connections served at once; more are refused by the listener. */
#define LK_HTTP_CONN_MAX 64
/* Connections one client address may hold at once (the rest stay for everyone else). */
#define LK_HTTP_CONN_PER_CLIENT 16
/* A connection that sends and receives nothing this long is closed (seconds): a client
 * that trickles its headers cannot hold a connection for long. */
#define LK_HTTP_IDLE_S 15

/*
 * Checks http.listen ("HOST:PORT"; HOST an IPv4 or IPv6 address, "[v6]", or localhost)
 * and that a non-loopback address has a token. LK_ERR_CONFIG with a hint otherwise.
 */
int lk_http_check_listen(const char *listen, const char *token, struct lk_err *err);

/*
 * Starts serving on conf->listen (NULL: 127.0.0.1:8433) with the access settings of conf
 * (token NULL or "": no credentials asked, loopback only). Copies what it keeps.
 */
struct lk_http *lk_http_start(const struct lk_http_conf *conf, struct lk_daemon *d,
			      struct lk_err *err);
/*
 * Replaces the access settings (a reload: SIGHUP): http.token, http.read_token and
 * http.allowed_hosts; requests checked after it returns see the new ones, none the old.
 * Copies them. Sets *changed when a token differs from the one in force; then every
 * session ends. Refuses (LK_ERR_CONFIG, the old settings stay) to leave a listener on a
 * non-loopback address without a token. http.listen is not changed (a start-only key).
 * Scheduler thread.
 */
int lk_http_set_access(struct lk_http *h, const struct lk_http_conf *conf, bool *changed,
		       struct lk_err *err);
/* Stops accepting, ends event streams, waits for the connection threads, frees. */
void lk_http_stop(struct lk_http *h);

#endif
