/* err.c - filling and classifying struct lk_err. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int lk_err_set(struct lk_err *err, enum lk_errcode code, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return -1;
	err->code = code;
	err->transient = false;
	err->sqlstate[0] = '\0';
	va_start(ap, fmt);
	(void)vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -1;
}

int lk_err_prefix(struct lk_err *err, const char *fmt, ...)
{
	char head[LK_ERR_MSG_MAX];
	char old[LK_ERR_MSG_MAX];
	va_list ap;

	if (!err)
		return -1;
	va_start(ap, fmt);
	(void)vsnprintf(head, sizeof(head), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	(void)snprintf(err->msg, sizeof(err->msg), "%s: %s", head, old);
	return -1;
}

void lk_err_clear(struct lk_err *err)
{
	if (!err)
		return;
	err->code = LK_OK;
	err->transient = false;
	err->sqlstate[0] = '\0';
	err->msg[0] = '\0';
}

bool lk_err_sqlstate_is_transient(const char *s)
{
	if (!s || strlen(s) != 5)
		return false;
	if (strncmp(s, "08", 2) == 0) /* connection exception */
		return true;
	if (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0) /* serialization, deadlock */
		return true;
	if (strncmp(s, "57P0", 4) == 0) /* admin/crash shutdown, cannot connect now */
		return true;
	if (strncmp(s, "53", 2) == 0) /* insufficient resources */
		return true;
	return false;
}

bool lk_err_is_row_level(const struct lk_err *err)
{
	const char *s = err->sqlstate;

	if (err->code == LK_ERR_VALUE)
		return true;
	if ((err->code != LK_ERR_PG && err->code != LK_ERR_SQLITE) || err->transient)
		return false;
	return strncmp(s, "22", 2) == 0 || strncmp(s, "23", 2) == 0 || strcmp(s, "P0001") == 0;
}

const char *lk_err_code_name(enum lk_errcode code)
{
	switch (code) {
	case LK_OK:
		return "ok";
	case LK_ERR_CONFIG:
		return "config";
	case LK_ERR_USAGE:
		return "usage";
	case LK_ERR_IO:
		return "io";
	case LK_ERR_PG:
		return "postgres";
	case LK_ERR_SQLITE:
		return "sqlite";
	case LK_ERR_UNAVAILABLE:
		return "unavailable";
	case LK_ERR_BUSY:
		return "busy";
	case LK_ERR_FENCED:
		return "fenced";
	case LK_ERR_SCHEMA:
		return "schema";
	case LK_ERR_VALUE:
		return "value";
	case LK_ERR_CONFLICT:
		return "conflict";
	case LK_ERR_NOTFOUND:
		return "notfound";
	case LK_ERR_CANCELLED:
		return "cancelled";
	case LK_ERR_PERMISSION:
		return "permission";
	case LK_ERR_NOMEM:
		return "nomem";
	case LK_ERR_INTERNAL:
		return "internal";
	}
	return "unknown";
}

int lk_err_exit_code(const struct lk_err *err)
{
	switch (err->code) {
	case LK_OK:
		return 0;
	case LK_ERR_CONFIG:
		return 78;
	case LK_ERR_USAGE:
		return 2;
	case LK_ERR_UNAVAILABLE:
		return 69;
	case LK_ERR_BUSY:
		return 75;
	default:
		return 1;
	}
}
