/*
 * json.c - jansson values from text that came from a database (json.h).
 */
#include "core/json.h"

#include "core/buf.h"

json_t *lk_json_text(const char *s, size_t len)
{
	json_t *j = json_stringn(s, len);
	struct lk_buf b = LK_BUF_INIT;

	if (j)
		return j;
	lk_buf_add_utf8(&b, s, len);
	j = json_stringn(b.buf, b.len);
	lk_buf_release(&b);
	return j;
}

json_t *lk_json_parse_text(const char *s, size_t len)
{
	json_t *j = json_loadb(s, len, JSON_DECODE_ANY, NULL);
	struct lk_buf b = LK_BUF_INIT;

	if (j)
		return j;
	lk_buf_add_utf8(&b, s, len);
	j = json_loadb(b.buf, b.len, JSON_DECODE_ANY, NULL);
	if (!j)
		j = lk_json_text(b.buf, b.len);
	lk_buf_release(&b);
	return j;
}
