#!/usr/bin/env bash
# The benchmark command: builds omac in release mode and runs the named sections (all by
# default), each printing a table of medians and ratios against the tools users would
# pick instead. Sections live in bench/<name>.sh; run as root on a quiet machine.
#   bash bench/run.sh                 # every section
#   bash bench/run.sh bundle runtime  # some of them
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet --manifest-path "$here/../Cargo.toml"
export OMAC="$here/../target/$(rustc -vV | sed -n "s/^host: //p")/release/omac"
sections=("$@")
if [ ${#sections[@]} = 0 ]; then
  for f in "$here"/*.sh; do
    n=$(basename "$f" .sh)
    [ "$n" = run ] || [ "$n" = lib ] || sections+=("$n")
  done
fi
for s in "${sections[@]}"; do
  echo
  echo "## $s"
  bash "$here/$s.sh"
done
