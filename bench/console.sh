#!/usr/bin/env bash
# The console with a realistic amount of data (issue 20): the size and time of
# the Apps page, a search and a later page, with N apps on an embedded SQLite
# site served by the given `dugong` binary. Prints the median of 20 requests.
#
#   bench/console.sh                          # target/debug/dugong, 5000 apps
#   bench/console.sh path/to/dugong 5000
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/debug/dugong}")
apps=${2:-5000}
dir=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http=127.0.0.1:$(port)
token=$(cat /proc/sys/kernel/random/uuid)
echo "$token" > "$dir/tokens"
echo "a long enough password" > "$dir/password"
db="sqlite:$dir/site.sqlite"
"$bin" serve --site 0 --db "$db" --create-admin bench --password-file "$dir/password" >/dev/null 2>&1
DUGONG_LOG=warn "$bin" serve --site 0 --db "$db" --http "$http" --grpc "127.0.0.1:$(port)" --metrics "127.0.0.1:$(port)" \
    --api-tokens-file "$dir/tokens" --console-insecure-cookie --sqlite-synchronous normal 2>"$dir/serve.log" &
pid=$!
for _ in $(seq 100); do curl -sf "http://$http/healthz" >/dev/null && break; sleep 0.1; done

# N apps, one in ten named "Billing …", four writers at once.
seq "$apps" | xargs -P 4 -I{} sh -c '
    n={}; name="app $n"; [ $((n % 10)) -eq 0 ] && name="Billing $n"
    curl -sf -o /dev/null -X PUT -H "authorization: Bearer '"$token"'" -H "content-type: application/json" \
        -d "{\"name\": \"$name\", \"description\": \"an app of the bench\"}" \
        "http://'"$http"'/api/v1/apps/$(cat /proc/sys/kernel/random/uuid)"'

curl -s -o /dev/null -c "$dir/cookies" -d "name=bench&password=a+long+enough+password&next=/apps" "http://$http/login"

measure() {
    local what=$1 path=$2
    for _ in $(seq 20); do
        curl -s -b "$dir/cookies" -o /dev/null -w '%{size_download} %{time_total}\n' "http://$http$path"
    done | sort -k2 -n | awk -v what="$what" -v path="$path" \
        'NR == 10 { printf "%-12s %-40s %8.1f KiB  %7.1f ms (median of 20)\n", what, path, $1 / 1024, $2 * 1000 }'
}
measure "apps" "/apps"
measure "search" "/apps?q=billing%2042"
next=$(curl -s -b "$dir/cookies" "http://$http/apps" | grep -o 'id="next"[^>]*href="[^"]*"' | sed 's/.*href="//; s/"$//; s/&amp;/\&/g' || true)
if [ -n "$next" ]; then measure "next page" "$next"; fi
