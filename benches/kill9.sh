#!/usr/bin/env bash
# The long kill -9 run (issue #9, point 6): the end-to-end durability test with
# MEDLAKE_KILLS kills (100 unless given) instead of the suite's 10. It prints a
# "kill9 report:" line with the kills per window, the writes checked and what was lost
# or duplicated; record it in benches/README.md. Not a timed test.
#
#   benches/kill9.sh [kills] [seed]
#
# Builds what the test suite builds (the dev profile, the same targets, so the cache is
# reused). Runs with `cargo test` rather than nextest, whose slow-test timeout would end
# a long run. It takes about 7 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export MEDLAKE_KILLS="${1:-100}"
if [[ -n "${2:-}" ]]; then
    export MEDLAKE_KILL9_SEED="$2"
fi
cargo build -p medlake -p medlake-e2e --all-targets
cargo test -p medlake-e2e --test durability -- --nocapture
