#!/usr/bin/env bash
# Scenario (f) of docs/performance.md: two instances of the release build on one fresh PostgreSQL database;
# loadgen sends on the first and reads every reply's stream from the second (MODE=cross) or from the first
# (MODE=same, the comparison). Prints loadgen's report and both instances' CPU time. With REDIS_URL the
# instances send tokens by Redis Streams (under a key prefix of this run's own) instead of PostgreSQL.
#   cargo build --release --bins && CHATS=100 DURATION=15 MODE=cross loadgen/two-instances.sh
#   REDIS_URL=redis://127.0.0.1:6379 CHATS=100 loadgen/two-instances.sh
set -euo pipefail
bin="${CARGO_TARGET_DIR:-target}/release"
pg="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
chats="${CHATS:-100}"
seconds="${DURATION:-15}"
mode="${MODE:-cross}"
provider="127.0.0.1:${PROVIDER_PORT:-18999}"
database="loadgen_f_$$"
folder=$(mktemp -d)
psql "$pg/postgres" -qc "CREATE DATABASE $database" >/dev/null
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null || true
  rm -rf "$folder"
}
trap cleanup EXIT
start() { # name port
  env -i PATH="$PATH" DATABASE_URL="$pg/$database" DATA_DIR="$folder/$1" LISTEN_ADDR="127.0.0.1:$2" \
    INSTANCE_NAME="$1" LLM_BASE_URL="http://$provider/v1" LLM_MODEL=loadgen LOG_LEVEL=warn LOG_FORMAT=json \
    RATE_LIMIT_LOGIN=off RATE_LIMIT_LOGIN_IP=off RATE_LIMIT_REGISTER=off RATE_LIMIT_CHAT=off \
    RATE_LIMIT_IMAGE=off RATE_LIMIT_COMPANION_CREATE=off RATE_LIMIT_SETTINGS=off \
    ${REDIS_URL:+REDIS_URL="$REDIS_URL" REDIS_KEY_PREFIX="$database"} \
    "$bin/companion-hub" serve >"$folder/$1.log" 2>&1 &
  pids+=($!)
}
start web-a "${PORT_A:-18181}"
sleep 0.3 # the first instance applies the migrations
start web-b "${PORT_B:-18182}"
for port in "${PORT_A:-18181}" "${PORT_B:-18182}"; do
  for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/api/ready" && break; sleep 0.1; done
done
cpu() { awk '{print ($14 + $15) * 10}' "/proc/$1/stat"; } # milliseconds (100 ticks per second)
a0=$(cpu "${pids[0]}"); b0=$(cpu "${pids[1]}")
stream=()
[ "$mode" = cross ] && stream=(--stream-url "http://127.0.0.1:${PORT_B:-18182}")
"$bin/loadgen" --url "http://127.0.0.1:${PORT_A:-18181}" "${stream[@]}" --provider-listen "$provider" \
  --server-pid "${pids[0]}" --database-url "$pg/postgres" --chats "$chats" --seconds "$seconds" \
  ${JSON:+--json "$JSON"}
echo "instance CPU during set-up and load: web-a $(( $(cpu "${pids[0]}") - a0 )) ms, web-b $(( $(cpu "${pids[1]}") - b0 )) ms"
