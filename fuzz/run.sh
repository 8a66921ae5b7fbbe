#!/usr/bin/env bash
# Runs every fuzz target for a bounded time; a crash (a panic, an assertion, a
# timeout or running out of memory) fails the run and leaves the input that caused
# it in fuzz/artifacts/<target>/.
#
#   bash fuzz/run.sh [SECONDS]        # per target; default $FUZZ_SECONDS, else 60
#   bash fuzz/run.sh 3600 acme_stream # one target, for an hour
#   bash fuzz/run.sh 0                # only replay the seeds and the local corpus
#
# cargo-fuzz passes nightly-only flags to rustc (-Z...); only the stable toolchain
# is installed, so RUSTC_BOOTSTRAP=1 lets it accept them. No sanitizer: AddressSanitizer
# needs the standard library rebuilt, which stable cannot do, and the code under test
# has no `unsafe` of its own; panics and assertions are what the targets look for.
#
# Each target starts from its committed seeds (fuzz/seeds/<target>) plus what earlier
# runs found on this machine (fuzz/corpus/<target>, not committed), and adds to the
# latter.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

seconds="${1:-${FUZZ_SECONDS:-60}}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

export RUSTC_BOOTSTRAP=1
mkdir -p artifacts
if ! cargo fuzz build --sanitizer none > artifacts/build.log 2>&1; then
    # cargo-fuzz ends with its own backtrace: the compiler's errors come first.
    grep -E -A12 '^error' artifacts/build.log | head -n 60 >&2 || tail -n 30 artifacts/build.log >&2
    echo "fuzz/run.sh: the fuzz targets do not build (fuzz/artifacts/build.log)" >&2
    exit 1
fi

# libFuzzer reads -max_total_time=0 as "no limit".
if [ "$seconds" -eq 0 ]; then
    budget=(-runs=0)
else
    budget=(-max_total_time="$seconds")
fi

failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    echo "fuzz/run.sh: $target for ${seconds}s" >&2
    # -timeout: one input taking more than 10 s is a hang, which fails the run too.
    # -rss_limit_mb: the readers must stay bounded on any input of fuzz size.
    if ! cargo fuzz run --sanitizer none "$target" "corpus/$target" "seeds/$target" -- \
        "${budget[@]}" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 2> "artifacts/$target/log"; then
        failed+=("$target")
        tail -n 60 "artifacts/$target/log" >&2
    else
        grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb|Done )' \
            "artifacts/$target/log" | sed "s/^/fuzz\/run.sh: $target: /" >&2 || true
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz/run.sh: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz/run.sh: ${#targets[@]} targets, ${seconds}s each, no crash" >&2
