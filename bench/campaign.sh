#!/usr/bin/env bash
# Issue 15's partition campaign: seeded runs of writers on every site while the
# replicator's links to the sites are cut and healed (network namespaces and
# veth links), the replicator is killed with SIGKILL and the databases crash;
# every run is checked (nothing lost, nothing phantom, sites identical, hot keys
# at their latest committed write) and timed (convergence after the last fault).
#
#   bench/campaign.sh            # 50 runs (about 40 minutes)
#   bench/campaign.sh --quick    # 3 runs of 8 s (about 2 minutes)
#   bench/campaign.sh --quick --delay-ms 25   # the same across a WAN: every
#                                # connection of the replicator to a site crosses a
#                                # delay link of 25 ms each way (RTT 50 ms)
#   bench/campaign.sh --help     # --runs, --seed, --window, --deadline, ...
#
# Needs root (network namespaces). Installs PostgreSQL 15 and iproute2 when
# missing. Writes bench/results/campaign/latest.json (quick.json with --quick,
# and -delay-Dms before .json with --delay-ms D); exits non-zero when a run
# failed, naming its seed. Builds into $CARGO_TARGET_DIR when set.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --quiet -p dugong -p dugong-bench
target_dir="${CARGO_TARGET_DIR:-target}"
export DUGONG_BENCH_DUGONG="${DUGONG_BENCH_DUGONG:-$target_dir/release/dugong}"
exec "$target_dir/release/dugong-bench" campaign "$@"
