/*
 * Just enough JSON for the gateway's replies: read one top-level member of a JSON object. The replies are flat
 * objects (docs/asyncapi.yaml), so a device needs no JSON library; nested values of other members are skipped.
 */
#ifndef DEVICEGATE_JSON_H
#define DEVICEGATE_JSON_H

#include <stddef.h>

/* Copies the string member `key` of the object in text[0..len) into out (NUL-terminated, unescaped).
 * Returns 0, or -1 when the text is not an object, the member is missing or not a string, or out is too small. */
int json_get_string(const char *text, size_t len, const char *key, char *out, size_t outlen);

/* Reads the integer member `key`. Returns 0, or -1 as json_get_string. */
int json_get_long(const char *text, size_t len, const char *key, long *out);

#endif
