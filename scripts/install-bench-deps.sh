#!/usr/bin/env bash
# Installs what bench/compare.py and bench/routing.py need beyond `make setup`, only when
# missing: OVN (the system they compare with), iperf3 (routing.py's throughput) and
# matplotlib (the optional extra `bench`, for bench/plot.py).
# CI does not run this: OVN and iperf3 are needed by the benchmarks only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
need=()
command -v ovn-northd >/dev/null || need+=(ovn-central)
command -v ovn-controller >/dev/null || need+=(ovn-host)
command -v iperf3 >/dev/null || need+=(iperf3)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # No systemd on the lab machines: the packages' services do not start; compare.py starts
    # its own NB/SB databases, ovn-northd and ovn-controllers, routing.py its iperf3 servers.
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c 'import matplotlib' 2>/dev/null || "$VENV/bin/pip" install -q \
    -c constraints.txt --build-constraint constraints.txt -e '.[bench]'
