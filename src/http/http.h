/*
 * http.h - the HTTP API of `lockstep run` (SPEC §6) on libmicrohttpd: a thread per
 * connection (Server-Sent Events block in their content callback), a connection cap,
 * per-connection timeouts, 64 KiB bodies, a bearer token for every POST, JSON errors.
 * Handlers answer from the daemon's memory (daemon/api.h); the few that read the state
 * store use the API's own store handle.
 */
#ifndef LK_HTTP_H
#define LK_HTTP_H

#include "core/err.h"

#include <stdbool.h>

struct lk_daemon;
struct lk_http;

/* Largest request body accepted (413 above). */
#define LK_HTTP_BODY_MAX 65536
/* Connections served at once; more are refused by the listener. */
#define LK_HTTP_CONN_MAX 64

/*
 * Checks http.listen ("HOST:PORT"; HOST an IPv4 or IPv6 address, "[v6]", or localhost)
 * and that a non-loopback address has a token. LK_ERR_CONFIG with a hint otherwise.
 */
int lk_http_check_listen(const char *listen, const char *token, struct lk_err *err);

/* Starts serving on `listen`. token NULL or "": POSTs need no token (loopback only). */
struct lk_http *lk_http_start(const char *listen, const char *token, struct lk_daemon *d,
			      struct lk_err *err);
/*
 * Replaces the bearer token that POSTs need (a reload: SIGHUP): requests checked after it
 * returns need the new one, none the old. Copies `token` (NULL or "": none). Sets *changed
 * when it differs from the token in force. Refuses (LK_ERR_CONFIG, the old token stays) to
 * leave a listener on a non-loopback address without a token. Scheduler thread.
 */
int lk_http_set_token(struct lk_http *h, const char *token, bool *changed, struct lk_err *err);
/* Stops accepting, ends event streams, waits for the connection threads, frees. */
void lk_http_stop(struct lk_http *h);

#endif
