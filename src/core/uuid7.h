/* uuid7.h - time-ordered run ids (UUIDv7, RFC 9562), so ids sort by creation time. */
#ifndef LK_UUID7_H
#define LK_UUID7_H

/* Writes a lower-case UUIDv7 string (36 characters plus NUL) into out. Thread-safe. */
void lk_uuid7(char out[37]);

#endif
