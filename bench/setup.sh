#!/usr/bin/env bash
# Issue 16's timings: `dugong setup` of a live site holding ROWS rows (1M by
# default) into an empty database while an application keeps writing on the
# live site, then `dugong verify` against the two application servers, on a
# throw-away durable PostgreSQL cluster (fsync on).
#
#   bench/setup.sh                 # 1,000,000 rows; builds target/release/dugong
#   ROWS=100000 bench/setup.sh     # fewer rows
#   DUGONG_BIN=target/debug/dugong bench/setup.sh   # an existing binary instead
#
# Prints one line per timing. Everything it starts is stopped and removed at
# the end, on Ctrl-C too.
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-1000000}
PGBIN=${DUGONG_TEST_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
if [ -z "${DUGONG_BIN:-}" ]; then
    cargo build --release --quiet -p dugong
    DUGONG_BIN=target/release/dugong
fi
DUGONG_BIN=$(realpath "$DUGONG_BIN")

work=$(mktemp -d /tmp/dugong-bench-setup.XXXXXX)
chmod 755 "$work"
as_pg=()
[ "$(id -u)" -eq 0 ] && { chown postgres "$work"; as_pg=(runuser -u postgres --); }
port=$((20000 + RANDOM % 20000))
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

"${as_pg[@]}" "$PGBIN/initdb" -D "$work/data" -U postgres -A trust -E UTF8 --locale=C >/dev/null
"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$work/data" -l "$work/pg.log" -w \
    -o "-p $port -k $work -c listen_addresses=127.0.0.1 -c track_commit_timestamp=on -c max_connections=100" start >/dev/null
psql() { "$PGBIN/psql" -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -q "$@"; }
psql -d postgres -c "CREATE DATABASE site0" -c "CREATE DATABASE site1"

# Site 0 is live: Dugong's application server made its schema; the
# application's own tables hold the rows.
token=bench-setup-token-0123456789
serve() { # site db grpc
    DUGONG_API_TOKENS=$token DUGONG_LOG=warn "$DUGONG_BIN" serve --site "$1" --db "postgres://postgres@127.0.0.1:$port/$2" \
        --grpc "$3" --http "127.0.0.1:0" --metrics "127.0.0.1:0" 2>>"$work/serve$1.log" &
    pids+=($!)
    for _ in $(seq 1 200); do
        DUGONG_TOKEN=$token "$DUGONG_BIN" client --server "$3" info >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "dugong serve for site $1 did not start" >&2; exit 1
}
grpc0=127.0.0.1:$((port + 1)); grpc1=127.0.0.1:$((port + 2))
serve 0 site0 "$grpc0"
psql -d site0 <<SQL
CREATE TABLE customer (id serial PRIMARY KEY, name text NOT NULL, created timestamptz NOT NULL DEFAULT now());
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES customer (id),
                     amount numeric(10,2) NOT NULL, note text);
INSERT INTO customer (name) SELECT 'customer ' || g FROM generate_series(1, $ROWS / 10) g;
INSERT INTO orders (customer_id, amount, note)
    SELECT 1 + g % ($ROWS / 10), (g % 10000) / 100.0, 'order ' || g FROM generate_series(1, $ROWS - $ROWS / 10) g;
ANALYZE;
SQL

cat >"$work/bucardo.json" <<JSON
{"databases": [
  {"id": 0, "dbname": "site0", "host": "127.0.0.1 port=$port", "user": "postgres", "pass": ""},
  {"id": 1, "dbname": "site1", "host": "127.0.0.1 port=$port", "user": "postgres", "pass": ""}],
 "syncs": [{"sources": [0, 1], "targets": [], "tables": "all", "onetimecopy": 0}]}
JSON

# The application keeps writing on site 0 during the setup.
( while :; do psql -d site0 -c "WITH c AS (INSERT INTO customer (name) VALUES ('live') RETURNING id)
      INSERT INTO orders (customer_id, amount) SELECT id, 1 FROM c" 2>/dev/null || true; done ) &
pids+=($!)
writer=$!

start=$(date +%s.%N)
# Each step's line with the seconds since the start, to see where the time goes.
DUGONG_LOG=warn "$DUGONG_BIN" setup --config "$work/bucardo.json" --yes | while IFS= read -r line; do
    printf '%6.1fs %s\n' "$(awk "BEGIN { print $(date +%s.%N) - $start }")" "$line"
done >"$work/setup.out"
end=$(date +%s.%N)
kill "$writer" 2>/dev/null || true
copied=$(grep -o 'copied [0-9]* rows in [0-9.]*s ([0-9]* rows/s)' "$work/setup.out" || true)
printf 'setup of %s rows (online, writes on site 0 throughout): %.1f s wall; %s\n' "$ROWS" "$(awk "BEGIN { print $end - $start }")" "$copied"
grep '==>' "$work/setup.out"

serve 1 site1 "$grpc1"
DUGONG_LOG=warn "$DUGONG_BIN" replicate --config "$work/bucardo.json" 2>>"$work/replicate.log" &
pids+=($!)
start=$(date +%s.%N)
DUGONG_TOKEN=$token DUGONG_LOG=warn "$DUGONG_BIN" verify --config "$work/bucardo.json" \
    --server "$grpc0" --server "$grpc1" >"$work/verify.out" || { cat "$work/verify.out"; exit 1; }
end=$(date +%s.%N)
printf 'verify (checks 1-5; no --kill-cmd): %.2f s wall\n' "$(awk "BEGIN { print $end - $start }")"
sed 's/^/  /' "$work/verify.out"
