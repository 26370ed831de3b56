#!/usr/bin/env bash
# Benchmark section "runtime": the start-to-exit time of a fully confined /bin/true.
#
#   omac run         the default profile's bundle: user, mount (fresh proc, minimal /dev),
#                    pid, net, ipc, uts and cgroup namespaces, masks, Landlock, seccomp
#   bwrap            bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc true
#   crun run         the same bundle (config.json as omac wrote it), in a copy
#   runc run         the same bundle, in another copy
#   unshare          unshare -Urmpf --mount-proc true
#   true             bare /bin/true
#
# omac runs as installed: a copy of the build, written back and dropped from the page cache,
# then brought back by its first run's page faults, the state in which a system holds an
# installed program after a boot (bwrap, crun, runc and their libraries are in whatever state
# the system left them). omac's code then comes back in 2 MB folios, which its processes map
# with one page-table entry per 2 MB (src/entry.rs); the section says how much. The build's
# own file is measured too: the linker writes it through a memory mapping, in 4 KiB
# page-cache pages, which stay so while the file is cached (see bench/level_cache.py).
#
# The commands run in ROUNDS alternating rounds (every other round in the reverse order) of
# RUNS/ROUNDS runs each, and each median is over all of a command's runs: a run of 200 in one
# block per command let the machine's drift (0.3-0.5 ms between blocks, here) into the ratios.
#
# Prints a markdown table of medians and each one's ratio to omac's, then omac's peak RSS
# (the largest of its processes, from wait4's rusage). Run as root on a quiet machine:
# crun on a hybrid cgroup v1/v2 host only runs with cgroup2 unmounted, so every command runs
# in a private mount namespace where /sys/fs/cgroup/unified is unmounted.
#   OMAC=target/<host triple>/release/omac bash bench/runtime.sh      (bench/run.sh sets OMAC)
#   RUNS=300 ROUNDS=6 WARMUP=10 bash bench/runtime.sh
set -euo pipefail
OMAC=${OMAC:-$(cd "$(dirname "$0")/.." && pwd)/target/$(rustc -vV | sed -n "s/^host: //p")/release/omac}
RUNS=${RUNS:-200}
ROUNDS=${ROUNDS:-4}
WARMUP=${WARMUP:-10}
for tool in hyperfine bwrap crun runc unshare python3; do
  command -v "$tool" >/dev/null || { echo "runtime bench: $tool is missing (.ci/apt-packages)" >&2; exit 4; }
done
if [ "$(id -u)" != 0 ]; then
  echo "runtime bench: run as root (crun and runc need it here)" >&2
  exit 4
fi

work=$(mktemp -d /tmp/omac-bench-runtime.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/home" "$work/wd" "$work/bin"
# Installed, then dropped from the page cache: the first run below brings it back.
build=$OMAC
OMAC=$work/bin/omac
cp "$build" "$OMAC"
python3 "$(dirname "$0")/level_cache.py" "$OMAC"
# A clean home and work directory: the bundle does not depend on this machine's dotfiles.
(cd "$work/wd" && env -i HOME="$work/home" PATH=/usr/local/bin:/usr/bin:/bin \
  "$OMAC" bundle create --out "$work/omac" -- /bin/true)
cp -r "$work/omac" "$work/crun"
cp -r "$work/omac" "$work/runc"
mounts=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["mounts"]))' "$work/omac/config.json")

cat > "$work/inner.sh" <<EOF
set -e
umount /sys/fs/cgroup/unified 2>/dev/null || true
cd "$work"
# Each runtime must work before it is timed.
"$OMAC" run "$work/omac"
crun --root "$work/crun-state" run --bundle "$work/crun" omac-bench-crun
runc --root "$work/runc-state" run --bundle "$work/runc" omac-bench-runc </dev/null
cmds=(
  omac "$OMAC run $work/omac"
  build "$build run $work/omac"
  bwrap "bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc true"
  crun "crun --root $work/crun-state run --bundle $work/crun omac-bench-crun"
  runc "runc --root $work/runc-state run --bundle $work/runc omac-bench-runc"
  unshare "unshare -Urmpf --mount-proc true"
  true "/bin/true"
)
for r in \$(seq $ROUNDS); do
  args=()
  for i in \$(seq 0 2 \$((\${#cmds[@]} - 2))); do
    pair=(-n "\${cmds[\$i]}" "\${cmds[\$((i + 1))]}")
    # Every other round in the reverse order.
    if [ \$((r % 2)) = 1 ]; then args+=("\${pair[@]}"); else args=("\${pair[@]}" "\${args[@]}"); fi
  done
  hyperfine -N --warmup $WARMUP --runs $((RUNS / ROUNDS)) --style basic \\
    --export-json "$work/result-\$r.json" "\${args[@]}" >/dev/null
done
peak=0
for i in \$(seq 20); do
  k=\$( { /usr/bin/time -f %M "$OMAC" run "$work/omac" >/dev/null; } 2>&1 | tail -1)
  [ "\$k" -gt "\$peak" ] && peak=\$k
done
echo "\$peak" > "$work/rss"
EOF
unshare -m --propagation private bash "$work/inner.sh"

python3 - "$work" "$(cat "$work/rss")" "$mounts" "$RUNS" "$ROUNDS" <<'EOF'
import json, statistics, sys
work, rss_kb, mounts, runs, rounds = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
times = {}
for r in range(1, rounds + 1):
    for res in json.load(open("%s/result-%d.json" % (work, r)))["results"]:
        times.setdefault(res["command"], []).extend(res["times"])
med = {name: statistics.median(t) * 1000 for name, t in times.items()}
what = {
    "omac": "`omac run` (default profile: 7 namespaces, %s mounts, masks, Landlock, seccomp)" % mounts,
    "build": "the same, from the build's own file (as the linker wrote it)",
    "bwrap": "`bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc true`",
    "crun": "`crun run` of the same bundle",
    "runc": "`runc run` of the same bundle",
    "unshare": "`unshare -Urmpf --mount-proc true`",
    "true": "bare `/bin/true`",
}
print("| command | median ms | omac / it |")
print("|---|---:|---:|")
for name in ["omac", "build", "bwrap", "crun", "runc", "unshare", "true"]:
    print("| %s | %.2f | %.2fx |" % (what[name], med[name], med["omac"] / med[name]))
print()
print("(hyperfine -N, %s runs each in %d alternating rounds, medians; `omac / it` below 1 means"
      " omac is faster)" % (runs, rounds))
print("omac peak RSS (largest of its processes, 20 runs): %.1f MB" % (rss_kb / 1024))
ok_bwrap = med["omac"] <= med["bwrap"]
ok_crun = med["omac"] <= 0.5 * med["crun"]
print("goals: omac <= 1.0x bwrap: %s; omac <= 0.5x crun: %s; RSS < 10 MB: %s" % (
    "met" if ok_bwrap else "NOT met", "met" if ok_crun else "NOT met",
    "met" if rss_kb < 10 * 1024 else "NOT met"))
EOF

# Whether the binary measured has the code layout of link/omac.order (see build.rs): a
# stale or unused list costs speed, and this says so.
order=$(cd "$(dirname "$0")/.." && pwd)/link/omac.order
if [ -f "$order" ] && command -v nm >/dev/null; then
  nm --defined-only "$OMAC" | python3 -c '
import sys
listed = [l.strip() for l in open(sys.argv[1]) if l.strip()]
addr = {}
for line in sys.stdin:
    f = line.split()
    if len(f) == 3:
        addr.setdefault(f[2], int(f[0], 16))
found = [addr[n] for n in listed if n in addr]
# Rust functions each sit in a section of their own, so the linker can order every one; a
# C object of glibc moves whole, with all its functions at the place of its first one.
rust = [addr[n] for n in listed if n in addr and n.startswith(("_ZN", "_R"))][:200]
laid = len(rust) > 1 and all(a < b for a, b in zip(rust, rust[1:]))
print("code layout: %d of %d functions of link/omac.order are in the binary; %s" % (
    len(found), len(listed),
    "laid out in its order" if laid else "NOT laid out in its order (see build.rs)"))
' "$order"
fi
echo "omac's code in 2 MB page-cache folios: $(python3 "$(dirname "$0")/level_cache.py" --huge "$OMAC") of the installed binary's $(($(stat -c %s "$OMAC") / 1048576)) MB"
