#!/usr/bin/env bash
# A zone repository's CI step (docs/simulate.md, "In CI"): before a zone change merges, the
# proposed zones must load, and a what-if run of them must still meet the team's conditions.
# Exits 1 when a condition does not hold (the change is refused), 2 when something cannot run.
#
#   examples/simulate/ci/check.sh examples/simulate/zones            # exit 0
#   GSLBD=target/debug/gslbd examples/simulate/ci/check.sh my-zones  # another gslbd binary
#
# The scenario (default ../outage.toml: fra fails for seven minutes, Europe moves to ams) is
# SCENARIO; the conditions say how the team wants such a failure to go: seen within 20 s, no
# client sent there 6 minutes on (1 % of the resolvers keep answers 5 minutes whatever the
# TTL), under 2 % of all queries answered with the dead datacenter, ams under 90 % load.
set -euo pipefail
GSLBD=${GSLBD:-gslbd}
ZONES=${1:-zones}
OUT=${OUT:-sim-out}
HERE=$(cd "$(dirname "$0")" && pwd)
SCENARIO=${SCENARIO:-$HERE/../outage.toml}

"$GSLBD" check --zones "$ZONES"
"$GSLBD" simulate --zones "$ZONES" --scenario "$SCENARIO" --out "$OUT/outage" \
  --check 'max_time_to_detect("fra") < 20s' \
  --check 'max_time_to_drain("fra") < 6m' \
  --check 'share_to_down < 2%' \
  --check 'peak_load("ams") < 0.9'
