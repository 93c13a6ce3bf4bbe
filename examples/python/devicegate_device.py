#!/usr/bin/env python3
"""A devicegate device in Python with paho-mqtt (Debian: python3-paho-mqtt; 1.6 and 2.x both work).

Connects with its own credential (username = client id = device id, and the password `devicegate credentials <id>`
printed at provisioning; a device never holds the fleet key), optionally over TLS (`--cafile`), asks for
authorization on `{prefix}/{id}/req/authorize`, prints the user code and where to enter it, waits for the token on
`{prefix}/{id}/res`, stores it in a file only its owner can read, and acknowledges it (`req/ack`) so the gateway
forgets it. The token itself is never printed.

Every request repeats the same `rid`, which the gateway treats as the same request: after a reconnect, or a
`slow_down` / `temporarily_unavailable` answer, the device simply asks again. The `rid` is kept in a state file until
the ack, so a device restarted meanwhile asks `req/status` about the same request instead of starting another. The
contract is docs/asyncapi.yaml; the README's "Writing a device" walks it.

Exit status: 0 authorized, 1 refused (the OAuth error is printed), 2 timed out (the state file stays).
"""

import argparse
import json
import os
import secrets
import sys
import threading

import paho.mqtt.client as mqtt

RETRYABLE = {"slow_down", "temporarily_unavailable"}


def write_private(path: str, text: str) -> None:
    """Writes a file only its owner can read, through a temporary file so a crash never leaves half of it."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_rid(path: str):
    """The rid of a request an earlier run did not finish, if the state file has one."""
    try:
        with open(path) as f:
            rid = f.read().strip()
    except FileNotFoundError:
        return None
    return rid or None


def new_client(device_id: str) -> mqtt.Client:
    # paho-mqtt 2.x asks which callback signatures the program uses; 1.x has only these.
    if hasattr(mqtt, "CallbackAPIVersion"):
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id=device_id, protocol=mqtt.MQTTv311)
    return mqtt.Client(client_id=device_id, protocol=mqtt.MQTTv311)


class Device:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rid = load_rid(args.state_file)
        # a rid from an earlier run: ask req/status about it rather than starting a new request
        self.resuming = self.rid is not None
        if not self.resuming:
            self.new_request()
        self.res = f"{args.prefix}/{args.device_id}/res"
        self.req = f"{args.prefix}/{args.device_id}/req/"
        self.shown_code = None
        self.result = 2
        self.done = threading.Event()
        self.client = new_client(args.device_id)
        self.client.username_pw_set(args.device_id, args.password)
        if args.cafile:
            # verifies the broker's certificate and host name
            self.client.tls_set(ca_certs=args.cafile)
        self.client.on_connect = self.on_connect
        self.client.on_message = self.on_message
        self.client.on_publish = self.on_publish
        self.ack_mid = None

    def run(self) -> int:
        self.client.connect(self.args.host, self.args.port, keepalive=30)
        self.client.loop_start()
        if not self.done.wait(self.args.timeout):
            print("timed out", file=sys.stderr)
        self.client.disconnect()
        self.client.loop_stop()
        return self.result

    def ask(self, action: str, body: dict) -> mqtt.MQTTMessageInfo:
        return self.client.publish(self.req + action, json.dumps({"rid": self.rid, **body}), qos=1)

    def new_request(self) -> None:
        self.rid = secrets.token_hex(16)
        self.resuming = False
        write_private(self.args.state_file, self.rid)

    def authorize(self) -> None:
        if self.resuming:
            print(f"resuming request {self.rid}", flush=True)
            self.ask("status", {})
        else:
            self.ask("authorize", {"scope": self.args.scope} if self.args.scope else {})

    def finish(self, result: int) -> None:
        if os.path.exists(self.args.state_file):
            os.remove(self.args.state_file)
        self.result = result
        self.done.set()

    def on_connect(self, client, userdata, flags, rc) -> None:
        if rc != 0:
            print(f"connection refused: {mqtt.connack_string(rc)}", file=sys.stderr)
            self.result = 1
            self.done.set()
            return
        # Subscribe before asking: replies are never retained, so one sent before the subscription is lost. On a
        # reconnect the same rid asks again and the gateway answers with the request's current state.
        client.subscribe(self.res, qos=1)
        self.authorize()

    def on_message(self, client, userdata, msg) -> None:
        try:
            reply = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(reply, dict) or reply.get("rid") != self.rid:
            return
        status = reply.get("status")
        if status == "pending":
            self.show(reply)
        elif status == "authorized":
            self.store(msg.payload)
            print(f"authorized: token_type={reply.get('token_type', 'jwe')} stored in {self.args.token_file}")
            # Done once the broker has the ack (on_publish). Not wait_for_publish() here: this callback runs on the
            # network thread, which is the one that would read the PUBACK.
            self.ack_mid = self.ask("ack", {}).mid
        elif status == "error" and reply.get("error") in RETRYABLE:
            wait = max(1, int(reply.get("retry_after", 5)))
            print(f"{reply['error']}: asking again in {wait} s", flush=True)
            threading.Timer(wait, self.authorize).start()
        elif status == "error" and reply.get("error") == "expired_token" and self.resuming:
            # the gateway no longer knows the request of the earlier run: start a new one
            print(f"request {self.rid} is gone; starting a new one", flush=True)
            self.new_request()
            self.authorize()
        elif status == "error":
            print(f"refused: {reply.get('error')}: {reply.get('error_description', '')}", file=sys.stderr)
            self.finish(1)

    def on_publish(self, client, userdata, mid) -> None:
        if mid == self.ack_mid:
            self.finish(0)

    def show(self, reply: dict) -> None:
        code = reply.get("user_code")
        if code == self.shown_code:
            return
        self.shown_code = code
        print(f"user_code: {code}")
        print(f"verification_uri: {reply.get('verification_uri')}")
        if "verification_uri_complete" in reply:
            print(f"verification_uri_complete: {reply['verification_uri_complete']}")
        sys.stdout.flush()

    def store(self, payload: bytes) -> None:
        # the reply as it came: the token fields (or `jwe`), and the rid it answers
        write_private(self.args.token_file, payload.decode())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--device-id", required=True)
    p.add_argument("--password", default=os.environ.get("DEVICEGATE_DEVICE_PASSWORD"),
                   help="this device's password from `devicegate credentials` (default: $DEVICEGATE_DEVICE_PASSWORD)")
    p.add_argument("--cafile", help="connect with TLS, verifying the broker with this CA certificate")
    p.add_argument("--prefix", default="devicegate/v1")
    p.add_argument("--scope", default="")
    p.add_argument("--token-file", default="token.json")
    p.add_argument("--state-file", default="devicegate-state", help="keeps the request id until the ack")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the person")
    args = p.parse_args()
    if not args.password:
        p.error("--password or DEVICEGATE_DEVICE_PASSWORD is required")
    return Device(args).run()


if __name__ == "__main__":
    sys.exit(main())
