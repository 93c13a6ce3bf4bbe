#!/usr/bin/env bash
# Makes certificates for trying devicegate's TLS (and Mosquitto's) with openssl only:
#   deploy/gen-certs.sh [OUT_DIR] [DEVICE_ID ...]
# OUT_DIR (default deploy/certs, git-ignored) receives
#   ca.crt ca.key                      a private CA (kept when it exists, so earlier certificates stay valid)
#   server.crt server.key              the broker's certificate, signed by the CA
#   devices/<id>.crt devices/<id>.key  one client certificate per device id, subject CN = the id
# The server certificate names localhost, 127.0.0.1, ::1, mosquitto, devicegate, gateway-1 and gateway-2, plus the
# comma-separated hosts in $CERT_HOSTS (names or IP addresses). Running it again keeps the CA and reissues the rest.
# For trying it out: a production CA key belongs in a vault, not beside the broker.
set -euo pipefail
out=${1:-deploy/certs}
[[ $# -gt 0 ]] && shift
valid_id='^[A-Za-z0-9._-]{1,64}$'
for id in "$@"; do
  # the id becomes a file name and the certificate's CN: the gateway's id rule keeps both safe
  [[ $id =~ $valid_id ]] || { echo "invalid device id: '$id' (must match $valid_id)" >&2; exit 2; }
done
umask 077
mkdir -p "$out/devices"

if [[ ! -s $out/ca.crt || ! -s $out/ca.key ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 3650 \
    -subj '/CN=devicegate test CA' -keyout "$out/ca.key" -out "$out/ca.crt" \
    -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>/dev/null
fi

# subjectAltName entries: DNS names, and IP addresses for anything that parses as one
san() {
  local entries=() host
  IFS=',' read -r -a hosts <<< "localhost,127.0.0.1,::1,mosquitto,devicegate,gateway-1,gateway-2${CERT_HOSTS:+,$CERT_HOSTS}"
  for host in "${hosts[@]}"; do
    host=${host// /}
    [[ -z $host ]] && continue
    if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then entries+=("IP:$host"); else entries+=("DNS:$host"); fi
  done
  local IFS=','
  echo "${entries[*]}"
}

# issue NAME CN EXTENSIONS: a P-256 key and a certificate for it signed by the CA
issue() {
  local base=$1 cn=$2 ext=$3
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -subj "/CN=$cn" \
    -keyout "$base.key" -out "$base.csr" 2>/dev/null
  openssl x509 -req -in "$base.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial -days 825 -sha256 \
    -extfile <(printf '%s\n' "$ext") -out "$base.crt" 2>/dev/null
  rm -f "$base.csr"
}

issue "$out/server" devicegate "subjectAltName=$(san)
extendedKeyUsage=serverAuth
basicConstraints=critical,CA:FALSE"
for id in "$@"; do
  issue "$out/devices/$id" "$id" "extendedKeyUsage=clientAuth
basicConstraints=critical,CA:FALSE"
done
# the broker (Mosquitto runs as uid 1883 in its image) must read server.key: chown it for docker compose
chmod 644 "$out/ca.crt" "$out/server.crt"
echo "wrote $out: CA, server certificate ($(san)) and $# device certificate(s)"
