#!/usr/bin/env bash
# Issue 3's benchmark: Dugong, Bucardo 5.6 and PostgreSQL's native logical
# replication, side by side on three throw-away durable PostgreSQL 15 clusters.
#
#   bench/run.sh            # full run, 3 repetitions (about 20-25 minutes)
#   bench/run.sh --quick    # smoke run: 1 repetition, a tenth of the rows
#   bench/run.sh --help     # every option (systems, workloads, reps, ...)
#
# Prints the table and the JSON; writes bench/results/latest.json (quick.json
# with --quick). Installs PostgreSQL 15 and Bucardo from Debian's packages when
# missing (root). Everything it starts is stopped and removed at the end, on
# Ctrl-C too.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/lib/postgresql/15/bin/pgbench ]; then
    echo "installing PostgreSQL 15" >&2
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql-15 >/dev/null
fi
cargo build --release --quiet -p dugong -p dugong-bench
exec target/release/dugong-bench all "$@"
