/*
 * keyset.h - a sorted set of key strings without NUL bytes (lk_key_canon output, or
 * another exact encoding) with a 64-bit payload each (a row hash in verify, a row index).
 * Built per page, then probed or deduplicated.
 */
#ifndef LK_KEYSET_H
#define LK_KEYSET_H

#include "core/arena.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lk_keyset_item {
	const char *key;
	uint64_t payload;
	bool seen;
};

struct lk_keyset {
	struct lk_keyset_item *items;
	size_t n, cap;
	bool sorted;
	struct lk_arena arena;
};

void lk_keyset_init(struct lk_keyset *ks);
void lk_keyset_reset(struct lk_keyset *ks);
void lk_keyset_release(struct lk_keyset *ks);
/* Adds a copy of key (canonical strings hold no NUL, so they compare with strcmp). */
void lk_keyset_add(struct lk_keyset *ks, const char *key, size_t len, uint64_t payload);
/* Finds key (sorting first when needed); NULL when absent. */
struct lk_keyset_item *lk_keyset_find(struct lk_keyset *ks, const char *key);
/*
 * Sorts the set and keeps one item of each key (which one of equal keys is unspecified);
 * returns how many are left, ks->items[0 .. n). One sort, however many keys repeat.
 */
size_t lk_keyset_unique(struct lk_keyset *ks);

#endif
