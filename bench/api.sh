#!/usr/bin/env bash
# Issue 4's API load test: requests/s and p99 of `dugong serve` (get app, list
# flows, post events; gRPC and REST; SQLite and durable PostgreSQL) next to the
# bare frameworks (a tonic and an axum handler returning a constant, served
# with TCP_NODELAY like the server) measured in the same run as the ceiling.
# --tls measures every server plain and over TLS, each against its own ceiling.
#
#   bench/api.sh                                   # defaults
#   bench/api.sh --seconds 3 --concurrency 1,8,32 --engines sqlite,postgres
#   bench/api.sh --tls
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --quiet -p dugong-server --example api_load -- "$@"
