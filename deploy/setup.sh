#!/usr/bin/env bash
# Prepares docker-compose.yml's stack; then `docker compose up --build`. Run from anywhere; safe to run again.
#   deploy/setup.sh [PUBLIC_HOST] [DEVICE_ID ...]
# PUBLIC_HOST is the name or address people and devices reach this machine by (default: the one in .env, else
# devicegate.localhost; give the LAN name or address to finish a flow from a phone). DEVICE_IDs get a line in
# Mosquitto's password file (default: tv-1).
#  1. deploy/gen-certs.sh: the CA and a server certificate that also names PUBLIC_HOST (an existing CA is kept);
#  2. .env: random secrets, written once and kept after that (a new fleet key would change every device password);
#  3. Mosquitto's password file and its copy of the server key, owned by the image's user (uid 1883).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in openssl mosquitto_passwd; do
  command -v "$tool" > /dev/null || { echo "setup.sh needs $tool: sudo apt-get install openssl mosquitto" >&2; exit 1; }
done
existing_host=$( (grep -s '^PUBLIC_HOST=' .env || true) | cut -d= -f2-)
public_host=${1:-${existing_host:-devicegate.localhost}}
shift || true
devices=("${@:-tv-1}")
[[ $public_host =~ ^[A-Za-z0-9.:-]+$ ]] || { echo "invalid PUBLIC_HOST: '$public_host'" >&2; exit 2; }

CERT_HOSTS=$public_host deploy/gen-certs.sh deploy/certs

# .env: compose reads it for the ${...} of docker-compose.yml. A variable already there is kept.
touch .env && chmod 600 .env
secret() { openssl rand -base64 "$1" | tr '+/' '-_' | tr -d '=\n'; }
ensure() { grep -q "^$1=" .env || printf '%s=%s\n' "$1" "$2" >> .env; }
sed -i '/^PUBLIC_HOST=/d' .env
printf 'PUBLIC_HOST=%s\n' "$public_host" >> .env
ensure DEVICEGATE_DEVICE_KEY "$(secret 32)"
ensure DEVICEGATE_SECRET "$(secret 48)"
ensure GATEWAY_PASSWORD "$(secret 24)"
ensure UPSTREAM_CLIENT_SECRET "$(secret 32)"
ensure KEYCLOAK_ADMIN_PASSWORD "$(secret 18)"
ensure DEMO_USER_PASSWORD "$(secret 12)"

# the eclipse-mosquitto image runs as uid 1883 and the files are mode 600 (a second run replaces them)
as_root=()
[[ $(id -u) == 0 ]] || as_root=(sudo)
"${as_root[@]}" rm -f deploy/mosquitto/passwords deploy/mosquitto/certs/server.key
set -a && . ./.env && set +a
deploy/mosquitto/make-passwords.sh deploy/mosquitto/passwords "${devices[@]}"
mkdir -p deploy/mosquitto/certs
install -m 644 deploy/certs/ca.crt deploy/mosquitto/certs/ca.crt
install -m 644 deploy/certs/server.crt deploy/mosquitto/certs/server.crt
install -m 600 deploy/certs/server.key deploy/mosquitto/certs/server.key
"${as_root[@]}" chown 1883:1883 deploy/mosquitto/passwords deploy/mosquitto/certs/server.key

cat << DONE
Ready. Start the stack:  docker compose up --build
  the page:    https://$public_host:8443/device   (trust deploy/certs/ca.crt, or accept the warning)
  Keycloak:    https://$public_host:8444          (user demo, password DEMO_USER_PASSWORD in .env; admin: KEYCLOAK_ADMIN_PASSWORD)
  devices:     mqtts://$public_host:8883 with --cafile deploy/certs/ca.crt
               password: DEVICEGATE_DEVICE_KEY=... npx devicegate credentials ${devices[0]}
DONE
