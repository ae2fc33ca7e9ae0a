#!/usr/bin/env bash
# Regenerates the seed corpora under fuzz/seeds/<target>/ with the make_seeds program (frames,
# packages, merged files and payloads built by the crate itself, plus the JSON payloads of
# tests/data/stock/ and the Fernet vectors of tests/data/fernet_vectors.json).
set -euo pipefail
fuzz="$(cd "$(dirname "$0")/.." && pwd)"
cd "$fuzz"
export RUSTC_BOOTSTRAP=1
cargo fuzz build --release --debug-assertions make_seeds
"$fuzz/target/x86_64-unknown-linux-gnu/release/make_seeds" "$fuzz/seeds"
