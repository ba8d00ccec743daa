#!/usr/bin/env bash
# Issue 17's WAN profile: Dugong and PostgreSQL's native logical replication,
# each crossing its own userspace delay link (D ms one way) to the remote site,
# on two throw-away durable PostgreSQL 15 clusters.
#
#   bench/wan.sh                          # D = 0, 5, 25 ms, 3 repetitions (about 20 minutes)
#   bench/wan.sh --quick                  # 1 repetition, 20,000-row backlog, 8 s of lag
#   bench/wan.sh --quick --delay-ms 0,25  # the CI-sized profile (a few minutes)
#   bench/wan.sh --dugong /path/to/dugong # measure another dugong binary
#   bench/wan.sh --help                   # every option
#
# Prints the table, issue 17's targets and the JSON; writes
# bench/results/wan/latest.json (quick.json with --quick). Installs PostgreSQL 15
# from Debian's packages when missing (root). Everything it starts is stopped
# and removed at the end, on Ctrl-C too.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/lib/postgresql/15/bin/pg_ctl ]; then
    echo "installing PostgreSQL 15" >&2
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql-15 >/dev/null
fi
cargo build --release --quiet -p dugong -p dugong-bench
exec target/release/dugong-bench wan "$@"
