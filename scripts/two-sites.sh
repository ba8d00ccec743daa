#!/usr/bin/env bash
# Two PostgreSQL "sites" on this machine, put in master-master with the
# deployment guide's bucardo.json, written on both sides, checked identical.
# Everything it starts is stopped and removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pgbin" ]; then
    echo "installing PostgreSQL" >&2
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
    pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
cargo build --release --quiet -p dugong
dugong="$PWD/target/release/dugong"

work=$(mktemp -d /tmp/dugong-two-sites.XXXXXX)
as_pg=()
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$work"; as_pg=(runuser -u postgres --); fi
replicator=""
cleanup() {
    [ -n "$replicator" ] && kill "$replicator" 2>/dev/null && wait "$replicator" 2>/dev/null || true
    for site in 0 1; do "${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/site$site" -m immediate stop >/dev/null 2>&1 || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
psql_site() { "$pgbin/psql" -X -q -h 127.0.0.1 -p "${ports[$1]}" -U postgres -d kwanza -v ON_ERROR_STOP=1 "${@:2}"; }
ports=()
for site in 0 1; do
    port=$(free_port); ports+=("$port")
    "${as_pg[@]}" "$pgbin/initdb" -D "$work/site$site" -U postgres -A trust -E UTF8 --locale=C >/dev/null
    "${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/site$site" -l "$work/site$site.log" -w -o \
        "-p $port -k $work -c listen_addresses=127.0.0.1 -c track_commit_timestamp=on" start >/dev/null
    "$pgbin/createdb" -h 127.0.0.1 -p "$port" -U postgres kwanza
    psql_site "$site" -c "CREATE TABLE flows (id uuid PRIMARY KEY, app text NOT NULL, body text, version int NOT NULL DEFAULT 1)"
    echo "site $site: PostgreSQL on 127.0.0.1:$port, database kwanza"
done

cat > "$work/bucardo.json" <<JSON
{
 "databases":[
   {"id": 0, "dbname": "kwanza", "host": "127.0.0.1 port=${ports[0]}", "user": "postgres", "pass": "env"},
   {"id": 1, "dbname": "kwanza", "host": "127.0.0.1 port=${ports[1]}", "user": "postgres", "pass": "env"}],
 "syncs" : [
   {"sources": [0,1], "targets": [], "tables": "all", "onetimecopy": 0}
 ]
}
JSON
export BUCARDO_DB0="" BUCARDO_DB1=""   # trust auth on loopback; real sites put the password here
echo "+ dugong replicate --config bucardo.json &"
"$dugong" replicate --config "$work/bucardo.json" 2>"$work/replicate.log" &
replicator=$!
until psql_site 1 -tAc "SELECT count(*) FROM pg_trigger WHERE tgname = 'dugong_capture_insert'" | grep -qx 1; do sleep 0.1; done

psql_site 0 -c "INSERT INTO flows SELECT gen_random_uuid(), 'app-' || g, 'written on site 0' FROM generate_series(1, 1000) g"
psql_site 1 -c "INSERT INTO flows SELECT gen_random_uuid(), 'app-' || g, 'written on site 1' FROM generate_series(1, 500) g"
psql_site 0 -c "UPDATE flows SET body = 'edited on site 0', version = version + 1 WHERE app = 'app-7'"
until [ "$(psql_site 0 -tAc 'SELECT count(*) FROM flows')" = 1500 ] && [ "$(psql_site 1 -tAc 'SELECT count(*) FROM flows')" = 1500 ]; do sleep 0.05; done
echo "both sites have 1500 rows"
echo "+ dugong status --config bucardo.json"
"$dugong" status --config "$work/bucardo.json" || true
echo "+ dugong compare --config bucardo.json"
"$dugong" compare --config "$work/bucardo.json"
