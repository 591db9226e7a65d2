/* page.c — the chat page (serve/page.html) embedded in the binary with
 * .incbin, served at GET /. The Makefile makes serve objects depend on
 * the HTML files of serve/, so editing the page rebuilds this. */
#define GG_SERVE_INTERNAL
#include "serve/server.h"

__asm__(".section .rodata\n"
        ".global gg_serve_page\n"
        ".type gg_serve_page, @object\n"
        ".balign 16\n"
        "gg_serve_page:\n"
        ".incbin \"serve/page.html\"\n"
        ".global gg_serve_page_end\n"
        "gg_serve_page_end:\n"
        ".byte 0\n"
        ".size gg_serve_page, . - gg_serve_page\n"
        ".previous\n");

extern const char gg_serve_page_end[];

size_t gg_serve_page_len(void) { return (size_t)(gg_serve_page_end - gg_serve_page); }
