#!/usr/bin/env bash
# Writes a Mosquitto password file for the gateway instances and the given devices.
#   DEVICEGATE_DEVICE_KEY=... GATEWAY_PASSWORD=... deploy/mosquitto/make-passwords.sh passwords tv-1 tv-2 ...
# GATEWAY_USERS lists the gateway instances' usernames (default "devicegate-1 devicegate-2", as in
# docker-compose.yml and deploy/mosquitto/acl); they share GATEWAY_PASSWORD.
# Device passwords are derived from the fleet key exactly as the gateway derives them, so the file
# can be rebuilt at any time; mosquitto_passwd -U hashes the plain `user:password` lines in place.
# The file is created mode 600: the broker must run as its owner. The eclipse-mosquitto image runs as uid 1883, so
# for docker compose: sudo chown 1883:1883 <file>.
set -euo pipefail
file=${1:?usage: make-passwords.sh <file> <deviceId>...}
shift
: "${DEVICEGATE_DEVICE_KEY:?set DEVICEGATE_DEVICE_KEY (the fleet key)}"
: "${GATEWAY_PASSWORD:?set GATEWAY_PASSWORD (the MQTT password of the gateway instances)}"
read -r -a gateways <<< "${GATEWAY_USERS:-devicegate-1 devicegate-2}"
valid_id='^[A-Za-z0-9._-]{1,64}$'
for id in "${gateways[@]}" "$@"; do
  # a ':' or a newline would forge another line of the file; the gateway refuses such ids anyway
  [[ $id =~ $valid_id ]] || { echo "invalid id: '$id' (must match $valid_id)" >&2; exit 2; }
done
for id in "$@"; do
  for gw in "${gateways[@]}"; do
    # a device named like a gateway instance would receive that instance's ACL (every device's requests)
    [[ $id != "$gw" ]] || { echo "device id '$id' is a gateway username" >&2; exit 2; }
  done
done
umask 077
device_password() {
  printf '%s' "$1" | openssl dgst -sha256 -hmac "$DEVICEGATE_DEVICE_KEY" -binary | openssl base64 -A | tr '+/' '-_' | tr -d =
}
{
  for gw in "${gateways[@]}"; do
    printf '%s:%s\n' "$gw" "$GATEWAY_PASSWORD"
  done
  for id in "$@"; do
    printf '%s:%s\n' "$id" "$(device_password "$id")"
  done
} > "$file"
mosquitto_passwd -U "$file"
echo "wrote $file for ${#gateways[@]} gateway instance(s) and $# device(s)"
