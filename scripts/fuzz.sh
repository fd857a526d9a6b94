#!/bin/sh
# A bounded fuzz run of the control-buffer walker (crates/sendmsg-core/fuzz, cargo-fuzz/libFuzzer
# with AddressSanitizer). Not part of `npm test`.
#
#   sh scripts/fuzz.sh [seconds]        # default 30
#
# cargo-fuzz needs nightly compiler flags (-Zsanitizer=address). With only a stable toolchain,
# RUSTC_BOOTSTRAP=1 lets stable rustc accept them; set FUZZ_TOOLCHAIN=nightly to use a real nightly.
# Needs `cargo install cargo-fuzz` and a C++ compiler (libFuzzer is built from source).
set -eu
seconds="${1:-30}"
cd "$(dirname "$0")/../crates/sendmsg-core"
command -v cargo-fuzz >/dev/null 2>&1 || { echo "fuzz: cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2; exit 2; }
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
  exec cargo "+$FUZZ_TOOLCHAIN" fuzz run walk_control -- -max_total_time="$seconds"
fi
RUSTC_BOOTSTRAP=1 exec cargo fuzz run walk_control -- -max_total_time="$seconds"
