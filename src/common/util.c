/*
 * util.c -- small text helpers: UTF-8 validation, glob matching, basename.
 */
#include "cki.h"

int cki_utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t need;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; }
        else return 0;
        if (n - i - 1 < need) return 0;
        for (size_t k = 1; k <= need; k++) {
            uint8_t d = s[i + k];
            if ((d & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (d & 0x3F);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
        i += need + 1;
    }
    return 1;
}

static int class_match(const char **pp, char c)
{
    const char *p = *pp + 1; /* after '[' */
    int neg = 0, hit = 0;
    if (*p == '!' || *p == '^') { neg = 1; p++; }
    if (*p == ']') { hit = (c == ']'); p++; }
    while (*p && *p != ']') {
        if (p[1] == '-' && p[2] && p[2] != ']') {
            if ((unsigned char)c >= (unsigned char)p[0] && (unsigned char)c <= (unsigned char)p[2])
                hit = 1;
            p += 3;
        } else {
            if (*p == c) hit = 1;
            p++;
        }
    }
    if (!*p) return -1; /* unterminated: treat '[' literally */
    *pp = p + 1;
    return hit != neg;
}

int cki_glob_match(const char *pat, const char *s)
{
    const char *star_p = NULL, *star_s = NULL;
    while (*s) {
        if (*pat == '*') {
            star_p = ++pat;
            star_s = s;
            continue;
        }
        if (*pat == '[') {
            const char *q = pat;
            int r = class_match(&q, *s);
            if (r == 1) { pat = q; s++; continue; }
            if (r == -1 && *s == '[') { pat++; s++; continue; }
        } else if (*pat && (*pat == '?' || *pat == *s)) {
            pat++;
            s++;
            continue;
        }
        if (!star_p) return 0;
        pat = star_p;
        s = ++star_s;
    }
    while (*pat == '*') pat++;
    return *pat == 0;
}

const char *cki_basename(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}
