#!/usr/bin/env bash
# Fuzz smoke run: every cargo-fuzz target of the repository for a fixed time each.
#
#   ci/fuzz-smoke.sh [SECONDS]          (default 10 s per target; FUZZ_SECONDS works too)
#   FUZZ_TARGETS="wire:sniffer_line core:case_file" ci/fuzz-smoke.sh 60
#
# libFuzzer needs -Zsanitizer (nightly). With a nightly toolchain installed it is used
# (`cargo +nightly fuzz`); otherwise the stable toolchain is told to accept nightly flags with
# RUSTC_BOOTSTRAP=1, which works for cargo-fuzz's flags (checked with stable 1.95 and
# cargo-fuzz 0.13.2). Needs `cargo install cargo-fuzz`.
# Exit status: non-zero when a target crashes, leaks, times out or runs out of memory; the
# reproducer is in <crate>/fuzz/artifacts/<target>/. Prints one line per target with its
# execution count.
set -euo pipefail

seconds="${1:-${FUZZ_SECONDS:-10}}"
root="$(cd "$(dirname "$0")/.." && pwd)"
# Per-input limits: a hang (-timeout, s) or unbounded growth (-rss_limit_mb) is a failure.
libfuzzer_flags=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)

declare -A dirs=(
    [wire]="$root/harness/wire/fuzz"
    [dtls]="$root/harness/dtls/fuzz"
    [core]="$root/harness/core/fuzz"
)
# Seed inputs besides each target's corpus (read-only: new inputs go to corpus/<target>).
seeds_for() {
    local crate="$1" target="$2" dir="$3"
    if [[ -d "$dir/seeds/$target" ]]; then echo "$dir/seeds/$target"; fi
    if [[ "$crate/$target" == core/case_file ]]; then echo "$root/testcases"; fi
}

# FUZZ_TOOLCHAIN=stable forces the RUSTC_BOOTSTRAP route even where a nightly exists.
if [[ "${FUZZ_TOOLCHAIN:-}" != stable ]] && cargo +nightly --version >/dev/null 2>&1; then
    cargo_fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    cargo_fuzz=(cargo +stable fuzz)
fi

targets=()
if [[ -n "${FUZZ_TARGETS:-}" ]]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    for crate in wire dtls core; do
        while read -r t; do targets+=("$crate:$t"); done < <(cd "${dirs[$crate]}" && "${cargo_fuzz[@]}" list)
    done
fi

failed=0
for entry in "${targets[@]}"; do
    crate="${entry%%:*}"
    target="${entry#*:}"
    dir="${dirs[$crate]}"
    mkdir -p "$dir/corpus/$target"
    mapfile -t seeds < <(seeds_for "$crate" "$target" "$dir")
    log="$(mktemp)"
    if (cd "$dir" && "${cargo_fuzz[@]}" run -O "$target" "corpus/$target" "${seeds[@]}" -- "${libfuzzer_flags[@]}") >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed=1
    fi
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)"
    printf '%-6s %-16s %-6s %10s runs in %ss  %s\n' "$crate" "$target" "$status" "${runs:-?}" "$seconds" "$cov"
    if [[ "$status" != ok ]]; then tail -40 "$log"; fi
    rm -f "$log"
done
exit "$failed"
