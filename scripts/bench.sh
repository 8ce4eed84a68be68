#!/bin/sh
# Swarm benchmark on real processes over loopback: one JSON summary on stdout, and
# bench-out/swarm-N.json plus bench-out/swarm-N-latency.svg. Options: --peers N --rate KBIT
# --seconds S --late N --keep --markers --source frames|bursts --stall I:AT:MS
# --stats-every SECS. See scripts/bench.py.
set -e
exec python3 "$(dirname "$0")/bench.py" "$@"
