#!/usr/bin/env bash
# Writes a Mosquitto password file for the gateway and the given devices.
#   DEVICEGATE_DEVICE_KEY=... GATEWAY_PASSWORD=... deploy/mosquitto/make-passwords.sh passwords tv-1 tv-2 ...
# Device passwords are derived from the fleet key exactly as the gateway derives them (DESIGN §2), so the file
# can be rebuilt at any time; mosquitto_passwd -U hashes the plain `user:password` lines in place.
set -euo pipefail
file=${1:?usage: make-passwords.sh <file> <deviceId>...}
shift
: "${DEVICEGATE_DEVICE_KEY:?set DEVICEGATE_DEVICE_KEY (the fleet key)}"
: "${GATEWAY_PASSWORD:?set GATEWAY_PASSWORD (the MQTT password of the gateway itself)}"
umask 077
device_password() {
  printf '%s' "$1" | openssl dgst -sha256 -hmac "$DEVICEGATE_DEVICE_KEY" -binary | openssl base64 -A | tr '+/' '-_' | tr -d =
}
{
  printf 'devicegate:%s\n' "$GATEWAY_PASSWORD"
  for id in "$@"; do
    printf '%s:%s\n' "$id" "$(device_password "$id")"
  done
} > "$file"
mosquitto_passwd -U "$file"
echo "wrote $file for the gateway and $# device(s)"
