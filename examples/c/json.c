#include "json.h"

#include <stdlib.h>
#include <string.h>

struct cursor {
  const char *p;
  const char *end;
};

static void skip_ws(struct cursor *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int hex4(const char *p, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char ch = p[i];
    v <<= 4;
    if (ch >= '0' && ch <= '9') v |= (unsigned)(ch - '0');
    else if (ch >= 'a' && ch <= 'f') v |= (unsigned)(ch - 'a' + 10);
    else if (ch >= 'A' && ch <= 'F') v |= (unsigned)(ch - 'A' + 10);
    else return -1;
  }
  *out = v;
  return 0;
}

/* Appends one code point as UTF-8 (surrogates, which a reply never carries, become '?'). */
static int put_utf8(unsigned cp, char *out, size_t outlen, size_t *n) {
  char buf[3];
  size_t k;
  if (cp >= 0xD800 && cp <= 0xDFFF) cp = '?';
  if (cp < 0x80) { buf[0] = (char)cp; k = 1; }
  else if (cp < 0x800) { buf[0] = (char)(0xC0 | (cp >> 6)); buf[1] = (char)(0x80 | (cp & 0x3F)); k = 2; }
  else {
    buf[0] = (char)(0xE0 | (cp >> 12));
    buf[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    buf[2] = (char)(0x80 | (cp & 0x3F));
    k = 3;
  }
  if (*n + k >= outlen) return -1;
  memcpy(out + *n, buf, k);
  *n += k;
  return 0;
}

/* Reads a string at c->p (the opening quote). With out == NULL it only skips it. */
static int read_string(struct cursor *c, char *out, size_t outlen) {
  size_t n = 0;
  if (c->p >= c->end || *c->p != '"') return -1;
  for (c->p++; c->p < c->end; c->p++) {
    unsigned char ch = (unsigned char)*c->p;
    unsigned cp = ch;
    if (ch == '"') {
      c->p++;
      if (out != NULL) out[n] = '\0';
      return 0;
    }
    if (ch < 0x20) return -1;
    if (ch == '\\') {
      if (++c->p >= c->end) return -1;
      switch (*c->p) {
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
          if (c->end - c->p < 5 || hex4(c->p + 1, &cp) != 0) return -1;
          c->p += 4;
          break;
        default: cp = (unsigned char)*c->p; /* " \ / */
      }
      if (out != NULL && put_utf8(cp, out, outlen, &n) != 0) return -1;
      continue;
    }
    if (out != NULL) {
      if (n + 1 >= outlen) return -1;
      out[n++] = (char)ch;
    }
  }
  return -1;
}

/* Skips any value: a string, a nested object or array, or a literal / number. */
static int skip_value(struct cursor *c) {
  int depth = 0;
  while (c->p < c->end) {
    char ch = *c->p;
    if (ch == '"') {
      if (read_string(c, NULL, 0) != 0) return -1;
    } else if (ch == '{' || ch == '[') {
      depth++, c->p++;
    } else if (ch == '}' || ch == ']') {
      if (depth == 0) return 0;
      depth--, c->p++;
    } else if (ch == ',' && depth == 0) {
      return 0;
    } else {
      c->p++;
    }
    if (depth == 0 && (ch == '"' || ch == '}' || ch == ']')) return 0;
  }
  return depth == 0 ? 0 : -1;
}

/* Moves c to the value of the top-level member `key`. */
static int find_member(struct cursor *c, const char *key) {
  char name[64];
  skip_ws(c);
  if (c->p >= c->end || *c->p++ != '{') return -1;
  for (;;) {
    skip_ws(c);
    if (c->p >= c->end || *c->p == '}') return -1;
    if (read_string(c, name, sizeof name) != 0) return -1;
    skip_ws(c);
    if (c->p >= c->end || *c->p++ != ':') return -1;
    skip_ws(c);
    if (strcmp(name, key) == 0) return 0;
    if (skip_value(c) != 0) return -1;
    skip_ws(c);
    if (c->p >= c->end || *c->p++ != ',') return -1;
  }
}

int json_get_string(const char *text, size_t len, const char *key, char *out, size_t outlen) {
  struct cursor c = {text, text + len};
  if (find_member(&c, key) != 0) return -1;
  return read_string(&c, out, outlen);
}

int json_get_long(const char *text, size_t len, const char *key, long *out) {
  struct cursor c = {text, text + len};
  char digits[24];
  size_t n = 0;
  if (find_member(&c, key) != 0) return -1;
  while (c.p < c.end && n + 1 < sizeof digits && (*c.p == '-' || (*c.p >= '0' && *c.p <= '9'))) digits[n++] = *c.p++;
  if (n == 0) return -1;
  digits[n] = '\0';
  *out = strtol(digits, NULL, 10);
  return 0;
}
