#!/usr/bin/env bash
# The contract check (operations.md section 1): schemathesis, driven by the
# live server's own /api/openapi.json, against the real latchkey binary on
# 127.0.0.1. Fails (non-zero) on any 5xx, any response that violates its
# schema, content type or headers, any undocumented status, any invalid
# input accepted and any undocumented method not refused with 405.
#
#   bash crates/latchkey/tests/contract/run.sh
#
# Environment: LATCHKEY_BIN (default: target/debug/latchkey, built first),
# LATCHKEY_CONTRACT_VENV (default ~/.cache/latchkey-contract/venv),
# LATCHKEY_CONTRACT_EXAMPLES (test cases per operation, default 40),
# LATCHKEY_CONTRACT_SEED (default fixed, so that a CI run is reproducible).
#
# Choices, each because the alternative would test nothing or lock the run out:
# - It authenticates as the Admin user's pseudo-key (`X-ApiKey: Admin:PASSWORD`),
#   which no key deletion or rotation can revoke; the store refuses any change
#   that would leave no administrator. After the run the script checks that
#   Admin still logs in (a users/edit that changed Admin's password would
#   make every later answer a 403 and the run hollow).
# - The failed-authentication limiter is off (LATCHKEY_AUTH_FAILURE_LIMIT=0):
#   verify is called with random keys, each a failed authentication, and
#   after a few 127.0.0.1 would get only 429s.
# - All four phases; the stateful one follows the document's links only
#   (a created key, user, group or permission to its delete, rotate or log),
#   so its chains act on what it created, never on Admin.
# - The checks, and the two forward-auth exceptions (its designed 500, and
#   every method served), are in schemathesis.toml.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
cd "$root"

venv="${LATCHKEY_CONTRACT_VENV:-$HOME/.cache/latchkey-contract/venv}"
examples="${LATCHKEY_CONTRACT_EXAMPLES:-40}"
seed="${LATCHKEY_CONTRACT_SEED:-20261202}"
password="contract-check-admin-password"

for tool in curl openssl python3; do
  command -v "$tool" >/dev/null || { echo "contract: $tool is required" >&2; exit 1; }
done

# schemathesis in its own venv; reinstalled when requirements.txt changes.
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/schemathesis" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "contract: installing schemathesis into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" || { echo "contract: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  echo "$want" > "$stamp"
fi

bin="${LATCHKEY_BIN:-}"
if [[ -z "$bin" ]]; then
  cargo build --quiet --bin latchkey
  bin="$root/target/debug/latchkey"
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# A leak-report signing key, so that /api/api-keys/leaked is enabled (its
# answers are then 401 for unsigned reports and 400/200 for signed ones,
# not a blanket 404).
openssl ecparam -name prime256v1 -genkey -noout -out "$work/leak.pem" 2>/dev/null
openssl ec -in "$work/leak.pem" -pubout -out "$work/leak.pub" 2>/dev/null
python3 -c 'import json,sys; print(json.dumps([{"key_identifier":"contract","key":open(sys.argv[1]).read()}]))' \
  "$work/leak.pub" > "$work/leak-keys.json"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
LATCHKEY_ADMIN_PASSWORD="$password" LATCHKEY_AUTH_FAILURE_LIMIT=0 \
  "$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" \
  --leak-report-keys "$work/leak-keys.json" > "$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "$base/health" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; echo "contract: the server did not start" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$base/health" >/dev/null

admin=(-H "X-ApiKey: Admin:$password")
api() { # METHOD PATH [JSON]: fails the script on an error status
  local method="$1" path="$2"; shift 2
  curl -fsS -X "$method" "${admin[@]}" -H 'Content-Type: application/json' "$base$path" "$@"
}

# Data for the listings to return, so that their schemas are checked on
# real content: keys of each type (one rotated with a grace period, one
# used), a user, a group, a permission, audit and access-log entries, a
# signed leak report.
api POST /api/security/users/add -d '{"name":"contract-user","password":"contract-user-pw","displayName":"Contract","email":"c@example.com"}' >/dev/null
api POST /api/security/groups/add -d '{"name":"Contract Group","members":["contract-user"]}' >/dev/null
api POST /api/security/permissions/add -d '{"group":"Contract Group","task":"Publish Packages","feed":"npm"}' >/dev/null
system_key="$(api POST /api/api-keys/create -d '{"type":"system","displayName":"contract system","systemApis":["feeds","sca"],"logging":"both"}')"
system_id="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$system_key")"
system_text="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["key"])' "$system_key")"
api POST /api/api-keys/create -d '{"type":"feed","feedGroup":"public","packagePermissions":["view","add"],"expiration":"2099-01-01"}' >/dev/null
api POST /api/api-keys/create -d '{"type":"personal","user":"contract-user","description":"for the contract check"}' >/dev/null
curl -fsS -H "X-ApiKey: $system_text" "$base/api/api-keys/self" >/dev/null
curl -fsS -H "X-ApiKey: $system_text" "$base/api/auth/forward?systemApi=feeds" >/dev/null
api POST "/api/api-keys/rotate?id=$system_id&grace=3600" >/dev/null
report='[{"token":"lk_not_a_key","type":"latchkey_api_key","url":"https://example.com/leak","source":"content"}]'
signature="$(printf '%s' "$report" | openssl dgst -sha256 -sign "$work/leak.pem" | base64 -w0)"
curl -fsS -X POST "$base/api/api-keys/leaked" -H 'Content-Type: application/json' \
  -H 'Github-Public-Key-Identifier: contract' -H "Github-Public-Key-Signature: $signature" \
  -d "$report" >/dev/null

echo "contract: schemathesis against $base (seed $seed, $examples examples per operation)" >&2
status=0
# From the temporary directory: schemathesis keeps a cache in its working directory.
(cd "$work" && "$venv/bin/schemathesis" --config-file "$here/schemathesis.toml" run "$base/api/openapi.json" \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$examples" \
  --seed "$seed" \
  --workers 2 \
  --request-timeout 10 \
  --header "X-ApiKey: Admin:$password" \
  --suppress-health-check too_slow,filter_too_much) \
  || status=$?

# Admin must still log in: otherwise the run after the change proved nothing.
if ! api GET /api/security/users/list >/dev/null; then
  echo "contract: Admin no longer authenticates after the run (its password or groups changed); the run is void" >&2
  status=1
fi
if grep -q "handler panicked" "$work/server.log"; then
  echo "contract: the server log records a panic:" >&2
  grep "handler panicked" "$work/server.log" >&2
  status=1
fi
if [[ "$status" -ne 0 ]]; then
  echo "contract: FAILED (exit $status); the server log is below" >&2
  tail -n 50 "$work/server.log" >&2
  exit "$status"
fi
echo "contract: passed" >&2
