/*
 * A devicegate device in C with libmosquitto (Debian: libmosquitto-dev). See README.md beside this file and the
 * README's "Writing a device"; the contract is docs/asyncapi.yaml.
 *
 * It connects with its own credential (username = client id = device id, the password that `devicegate
 * credentials <id>` printed at provisioning — a device never holds the fleet key), optionally over TLS; asks for
 * authorization; prints the user code and where to enter it; waits for the token; stores it in a file only its owner
 * can read; and acknowledges it. The request id is kept in a state file until the ack, so a device that restarts
 * asks `req/status` for the same request instead of starting another one.
 *
 * Exit status: 0 authorized, 1 refused (connection or OAuth error, printed on stderr), 2 timed out, 64 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <mosquitto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "json.h"

struct options {
  const char *host, *device_id, *password, *cafile, *prefix, *scope, *state_file, *token_file;
  int port;
  long timeout;
};

struct device {
  struct options o;
  struct mosquitto *mosq;
  char rid[33];
  int resuming;      /* the rid came from the state file: ask req/status rather than req/authorize */
  char shown_code[64];
  int ack_mid;
  time_t retry_at;   /* when to ask again after slow_down / temporarily_unavailable (0: not waiting) */
  int done, result;
};

static void topic(const struct device *d, const char *suffix, char *out, size_t len) {
  snprintf(out, len, "%s/%s/%s", d->o.prefix, d->o.device_id, suffix);
}

/* A new request id: 16 random bytes in hex. */
static int new_rid(char out[33]) {
  unsigned char b[16];
  FILE *f = fopen("/dev/urandom", "rb");
  if (f == NULL || fread(b, 1, sizeof b, f) != sizeof b) {
    if (f != NULL) fclose(f);
    return -1;
  }
  fclose(f);
  for (size_t i = 0; i < sizeof b; i++) sprintf(out + 2 * i, "%02x", b[i]);
  return 0;
}

/* Writes `text` to `path` with mode 600, through a temporary file, so a crash never leaves half a file. */
static int write_private(const char *path, const char *text, size_t len) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return -1;
  int ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
  close(fd);
  return ok && rename(tmp, path) == 0 ? 0 : -1;
}

/* The rid of an unfinished request from an earlier run, if the state file has one. */
static int load_rid(const char *path, char out[33]) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  int ok = fscanf(f, "%32[0-9a-f]", out) == 1;
  fclose(f);
  return ok ? 0 : -1;
}

/* Publishes {"rid":...} (and the scope on authorize) on req/<action>, QoS 1, never retained. */
static int publish_request(struct device *d, const char *action, int *mid) {
  char t[512], body[700];
  char suffix[32];
  snprintf(suffix, sizeof suffix, "req/%s", action);
  topic(d, suffix, t, sizeof t);
  if (strcmp(action, "authorize") == 0 && d->o.scope[0] != '\0')
    snprintf(body, sizeof body, "{\"rid\":\"%s\",\"scope\":\"%s\"}", d->rid, d->o.scope);
  else
    snprintf(body, sizeof body, "{\"rid\":\"%s\"}", d->rid);
  return mosquitto_publish(d->mosq, mid, t, (int)strlen(body), body, 1, false);
}

/* Asks about the request: a known rid by req/status after a restart, otherwise req/authorize (the gateway answers
 * a rid it knows with that request's current state, so asking again after a reconnect is safe). */
static void ask(struct device *d) {
  if (d->resuming) printf("resuming request %s\n", d->rid);
  publish_request(d, d->resuming ? "status" : "authorize", NULL);
}

static void start_new_request(struct device *d) {
  if (new_rid(d->rid) != 0 || write_private(d->o.state_file, d->rid, strlen(d->rid)) != 0) {
    fprintf(stderr, "cannot create the request id in %s: %s\n", d->o.state_file, strerror(errno));
    d->result = 1, d->done = 1;
    return;
  }
  d->resuming = 0;
}

static void finish(struct device *d, int result) {
  unlink(d->o.state_file);
  d->result = result;
  d->done = 1;
}

static void on_connect(struct mosquitto *m, void *obj, int rc) {
  struct device *d = obj;
  char t[512];
  if (rc != 0) {
    fprintf(stderr, "connection refused: %s\n", mosquitto_connack_string(rc));
    d->result = 1, d->done = 1;
    return;
  }
  /* Subscribe before asking: a reply is never retained, so one sent before the subscription would be lost. */
  topic(d, "res", t, sizeof t);
  mosquitto_subscribe(m, NULL, t, 1);
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int count, const int *granted) {
  (void)m, (void)mid;
  struct device *d = obj;
  if (count < 1 || granted[0] > 2) {
    fprintf(stderr, "the broker refused the subscription to res\n");
    d->result = 1, d->done = 1;
    return;
  }
  ask(d);
}

static void on_publish(struct mosquitto *m, void *obj, int mid) {
  (void)m;
  struct device *d = obj;
  if (d->ack_mid != 0 && mid == d->ack_mid) finish(d, 0);
}

static void show_pending(struct device *d, const char *json, size_t len) {
  char code[64], uri[1024];
  if (json_get_string(json, len, "user_code", code, sizeof code) != 0 || strcmp(code, d->shown_code) == 0) return;
  snprintf(d->shown_code, sizeof d->shown_code, "%s", code);
  printf("user_code: %s\n", code);
  if (json_get_string(json, len, "verification_uri", uri, sizeof uri) == 0) printf("verification_uri: %s\n", uri);
  if (json_get_string(json, len, "verification_uri_complete", uri, sizeof uri) == 0)
    printf("verification_uri_complete: %s\n", uri);
}

/* The token is a secret: it goes into a file only the device's user can read, and is never printed. */
static void store_token(struct device *d, const char *json, size_t len) {
  if (d->ack_mid != 0) return; /* already stored; the ack is on its way */
  if (write_private(d->o.token_file, json, len) != 0) {
    fprintf(stderr, "cannot write %s: %s\n", d->o.token_file, strerror(errno));
    d->result = 1, d->done = 1;
    return;
  }
  printf("authorized: token stored in %s\n", d->o.token_file);
  publish_request(d, "ack", &d->ack_mid);
}

static void on_error_reply(struct device *d, const char *json, size_t len) {
  char error[64] = "", description[512] = "";
  long retry_after = 5;
  json_get_string(json, len, "error", error, sizeof error);
  json_get_string(json, len, "error_description", description, sizeof description);
  if (strcmp(error, "slow_down") == 0 || strcmp(error, "temporarily_unavailable") == 0) {
    json_get_long(json, len, "retry_after", &retry_after);
    if (retry_after < 1) retry_after = 1;
    printf("%s: asking again in %ld s\n", error, retry_after);
    d->retry_at = time(NULL) + retry_after;
  } else if (strcmp(error, "expired_token") == 0 && d->resuming) {
    /* the gateway no longer knows the request of the earlier run: start a new one */
    printf("request %s is gone (%s); starting a new one\n", d->rid, description);
    start_new_request(d);
    if (!d->done) ask(d);
  } else {
    fprintf(stderr, "refused: %s: %s\n", error, description);
    finish(d, 1);
  }
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg) {
  (void)m;
  struct device *d = obj;
  char rid[65], status[32];
  const char *json = msg->payload;
  size_t len = (size_t)msg->payloadlen;
  if (json_get_string(json, len, "rid", rid, sizeof rid) != 0 || strcmp(rid, d->rid) != 0) return;
  if (json_get_string(json, len, "status", status, sizeof status) != 0) return;
  if (strcmp(status, "pending") == 0) show_pending(d, json, len);
  else if (strcmp(status, "authorized") == 0) store_token(d, json, len);
  else if (strcmp(status, "error") == 0) on_error_reply(d, json, len);
}

static void usage(void) {
  fprintf(stderr,
          "usage: devicegate-device --device-id ID [--host H] [--port P] [--cafile CA.crt] [--prefix P]\n"
          "         [--scope S] [--state-file F] [--token-file F] [--timeout SECONDS]\n"
          "The password comes from $DEVICEGATE_DEVICE_PASSWORD (see `devicegate credentials ID`).\n");
}

static int parse_options(int argc, char **argv, struct options *o) {
  static const struct option longopts[] = {
      {"host", 1, 0, 'h'},       {"port", 1, 0, 'p'},   {"device-id", 1, 0, 'i'}, {"cafile", 1, 0, 'c'},
      {"prefix", 1, 0, 'P'},     {"scope", 1, 0, 's'},  {"state-file", 1, 0, 'S'}, {"token-file", 1, 0, 'T'},
      {"timeout", 1, 0, 't'},    {0, 0, 0, 0}};
  *o = (struct options){"127.0.0.1", NULL, getenv("DEVICEGATE_DEVICE_PASSWORD"), NULL, "devicegate/v1", "",
                        "devicegate-state", "token.json", 1883, 900};
  for (int ch; (ch = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
    switch (ch) {
      case 'h': o->host = optarg; break;
      case 'p': o->port = atoi(optarg); break;
      case 'i': o->device_id = optarg; break;
      case 'c': o->cafile = optarg; break;
      case 'P': o->prefix = optarg; break;
      case 's': o->scope = optarg; break;
      case 'S': o->state_file = optarg; break;
      case 'T': o->token_file = optarg; break;
      case 't': o->timeout = atol(optarg); break;
      default: return -1;
    }
  }
  /* the scope goes into the JSON request as it is: a quote or backslash would break it (and is no scope token) */
  if (strpbrk(o->scope, "\"\\") != NULL) return -1;
  return o->device_id == NULL || o->password == NULL || o->password[0] == '\0' ? -1 : 0;
}

/* Client id = username = device id (the broker checks both); TLS verifies the broker's certificate and name. */
static int setup_client(struct device *d) {
  d->mosq = mosquitto_new(d->o.device_id, true, d);
  if (d->mosq == NULL) return -1;
  mosquitto_connect_callback_set(d->mosq, on_connect);
  mosquitto_subscribe_callback_set(d->mosq, on_subscribe);
  mosquitto_message_callback_set(d->mosq, on_message);
  mosquitto_publish_callback_set(d->mosq, on_publish);
  if (mosquitto_username_pw_set(d->mosq, d->o.device_id, d->o.password) != MOSQ_ERR_SUCCESS) return -1;
  if (d->o.cafile != NULL && mosquitto_tls_set(d->mosq, d->o.cafile, NULL, NULL, NULL, NULL) != MOSQ_ERR_SUCCESS) {
    fprintf(stderr, "cannot use the CA file %s\n", d->o.cafile);
    return -1;
  }
  return 0;
}

/* One thread: the network, the retry after slow_down and the deadline all advance here. */
static void run(struct device *d) {
  time_t deadline = time(NULL) + d->o.timeout;
  int rc = mosquitto_connect(d->mosq, d->o.host, d->o.port, 30);
  if (rc != MOSQ_ERR_SUCCESS) fprintf(stderr, "cannot connect: %s\n", mosquitto_strerror(rc));
  while (!d->done) {
    if (time(NULL) >= deadline) {
      fprintf(stderr, "timed out\n");
      d->result = 2; /* the state file stays: the next run resumes the request */
      return;
    }
    if (mosquitto_loop(d->mosq, 500, 1) != MOSQ_ERR_SUCCESS && !d->done) {
      sleep(1);
      mosquitto_reconnect(d->mosq);
    }
    if (d->retry_at != 0 && time(NULL) >= d->retry_at) {
      d->retry_at = 0;
      ask(d);
    }
    fflush(stdout);
  }
  mosquitto_disconnect(d->mosq);
}

int main(int argc, char **argv) {
  struct device d = {.result = 2};
  if (parse_options(argc, argv, &d.o) != 0) {
    usage();
    return 64;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  mosquitto_lib_init();
  d.resuming = load_rid(d.o.state_file, d.rid) == 0;
  if (!d.resuming) start_new_request(&d);
  if (!d.done && setup_client(&d) != 0) d.result = 1, d.done = 1;
  if (!d.done) run(&d);
  mosquitto_destroy(d.mosq);
  mosquitto_lib_cleanup();
  return d.result;
}
