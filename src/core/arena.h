/*
 * arena.h - a bump allocator for one batch of rows.
 *
 * Memory is taken in chunks and handed out in order; lk_arena_reset keeps the
 * standard-size chunks for reuse and frees oversized ones, so a steady stream of
 * batches reuses the same memory and the resident set stays flat (DESIGN
 * decision 9): it holds what the largest batch needed.
 */
#ifndef LK_ARENA_H
#define LK_ARENA_H

#include <stddef.h>

struct lk_arena_chunk;

struct lk_arena {
	struct lk_arena_chunk *head;  /* newest chunk first */
	struct lk_arena_chunk *spare; /* standard chunks kept by reset for reuse */
	size_t chunk_size;
	size_t total; /* bytes held, for the memory watchdog */
};

void lk_arena_init(struct lk_arena *a, size_t chunk_size);
void *lk_arena_alloc(struct lk_arena *a, size_t n);
/* Copies n bytes and appends a NUL (so text values are C strings too). */
char *lk_arena_memdup(struct lk_arena *a, const void *p, size_t n);
void lk_arena_reset(struct lk_arena *a);
void lk_arena_release(struct lk_arena *a);

#endif
