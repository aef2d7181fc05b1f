/*
 * json.h - jansson values from text that came from a database.
 *
 * jansson refuses strings that are not UTF-8, and a NULL member silently drops out of
 * its object. Text read back from a state store or a source (an SQLite TEXT value holds
 * any bytes; a message cut to a fixed buffer may end mid-character) goes through these,
 * which write each byte that does not start a valid UTF-8 sequence as U+FFFD.
 */
#ifndef LK_JSON_H
#define LK_JSON_H

#include <jansson.h>
#include <stddef.h>

/* A JSON string of len bytes of text (never NULL). */
json_t *lk_json_text(const char *s, size_t len);

/* The JSON value stored as text (a key, a row image), else lk_json_text of it. */
json_t *lk_json_parse_text(const char *s, size_t len);

#endif
