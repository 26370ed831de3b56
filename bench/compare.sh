#!/usr/bin/env bash
# Side by side: two omac binaries running the same fully confined /bin/true (the default
# profile's bundle, as in bench/runtime.sh), in alternating hyperfine rounds so that the
# machine's drift touches both alike. Prints each round's medians (and bwrap's, for scale)
# and the median of the rounds. Not a section of bench/run.sh: a tool for changes.
#   bash bench/compare.sh OLD_OMAC NEW_OMAC [ROUNDS]      (RUNS=150 per command per round)
# Run as root on a quiet machine (crun's note in bench/runtime.sh applies to bwrap too).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: bash bench/compare.sh OLD_OMAC NEW_OMAC [ROUNDS]" >&2; exit 2; }
old=$(realpath "$1"); new=$(realpath "$2"); rounds=${3:-10}; runs=${RUNS:-150}
for tool in hyperfine bwrap unshare python3; do
  command -v "$tool" >/dev/null || { echo "compare: $tool is missing" >&2; exit 4; }
done
[ "$(id -u)" = 0 ] || { echo "compare: run as root" >&2; exit 4; }
work=$(mktemp -d /tmp/omac-bench-compare.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/home" "$work/wd"
(cd "$work/wd" && env -i HOME="$work/home" PATH=/usr/local/bin:/usr/bin:/bin \
  "$new" bundle create --out "$work/b" -- /bin/true)
# Both binaries come back into the page cache the same way (see bench/level_cache.py).
python3 "$(dirname "$0")/level_cache.py" "$old" "$new"
"$old" run "$work/b" && "$new" run "$work/b"
for r in $(seq "$rounds"); do
  if [ $((r % 2)) = 1 ]; then first=$old; second=$new; a=old; b=new
  else first=$new; second=$old; a=new; b=old; fi
  unshare -m --propagation private bash -c "umount /sys/fs/cgroup/unified 2>/dev/null || true
    hyperfine -N --warmup 20 --runs $runs --style none --export-json '$work/r$r.json' \
      -n $a '$first run $work/b' -n $b '$second run $work/b' \
      -n bwrap 'bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc true' >/dev/null"
done
python3 - "$work" "$rounds" <<'PY'
import json, statistics as st, sys
work, rounds = sys.argv[1], int(sys.argv[2])
cols = {"old": [], "new": [], "bwrap": []}
for r in range(1, rounds + 1):
    m = {x["command"]: x["median"] * 1000 for x in json.load(open("%s/r%d.json" % (work, r)))["results"]}
    for k in cols:
        cols[k].append(m[k])
    print("round %2d: old %.2f ms  new %.2f ms  bwrap %.2f ms" % (r, m["old"], m["new"], m["bwrap"]))
o, n, b = (st.median(cols[k]) for k in ("old", "new", "bwrap"))
print("median of %d rounds: old %.2f ms (%.2fx bwrap), new %.2f ms (%.2fx bwrap), new - old %+.2f ms"
      % (rounds, o, o / b, n, n / b, n - o))
PY
