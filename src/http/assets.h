/*
 * assets.h - files embedded in the binary at build time (cmake/embed.cmake writes them
 * into the build directory's gen/assets.c): the dashboard served at GET / and
 * GET /dashboard.js. Each array ends with a NUL that its length does not count.
 */
#ifndef LK_ASSETS_H
#define LK_ASSETS_H

#include <stddef.h>

extern const unsigned char lk_asset_dashboard_html[];
extern const size_t lk_asset_dashboard_html_len;
extern const unsigned char lk_asset_dashboard_js[];
extern const size_t lk_asset_dashboard_js_len;

#endif
