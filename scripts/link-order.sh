#!/usr/bin/env bash
# Writes link/omac.order, the order in which the linker lays out omac's functions (see
# build.rs): the code that a run of a fully confined /bin/true reaches, in the order it is
# first reached. The sandbox's own processes come first (the stage, init, the agent until its
# exec: the path every start waits for), then omac's.
#
# How it sees the code a run reaches: the binary's pages are dropped from the page cache and
# the disk's read-ahead is set to 0 for the run (and restored), so that every page of code
# comes in by a page fault of its own; perf records the faults, and every function on a
# page that faulted is listed. Run it as root on a machine where omac's repository lies on a
# block device, after changes that move much code, then rebuild:
#   bash scripts/link-order.sh && cargo build --release
# A second pass, with the binary built from the first list, finds code that the first pass
# saw only through pages another process had brought in; the script runs two passes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
for tool in perf python3 nm findmnt; do
  command -v "$tool" >/dev/null || { echo "link-order: $tool is missing" >&2; exit 4; }
done
[ "$(id -u)" = 0 ] || { echo "link-order: run as root (it sets the disk's read-ahead)" >&2; exit 4; }
host=$(rustc -vV | sed -n "s/^host: //p")
[ "$host" = x86_64-unknown-linux-gnu ] || { echo "link-order: only for x86_64-unknown-linux-gnu (LLD)" >&2; exit 4; }

work="$root/target/link-order"
rm -rf "$work" && mkdir -p "$work/home" "$work/wd"
dev=$(basename "$(findmnt -no SOURCE -T "$work")")
ra=$(realpath "/sys/class/block/$dev" 2>/dev/null || true)
[ -e "$ra/queue/read_ahead_kb" ] || ra=$(dirname "$ra")
ra="$ra/queue/read_ahead_kb"
[ -w "$ra" ] || { echo "link-order: $work is not on a block device whose read-ahead can be set ($ra)" >&2; exit 4; }
saved=$(cat "$ra")
trap 'echo "$saved" > "$ra"' EXIT

profile() {  # profile PASS: builds, runs once under perf, leaves pf.txt, nm.txt and entry.txt
  local pass=$1 out="$work/p$1"
  mkdir -p "$out"
  # Code in 4 KiB pages (see build.rs): with 2 MB ones, a fault would stand for 2 MB.
  OMAC_CODE_IN_SMALL_PAGES=1 cargo build --release --quiet --manifest-path "$root/Cargo.toml"
  cp "$root/target/$host/release/omac" "$work/omac-$pass"
  (cd "$work/wd" && env -i HOME="$work/home" PATH=/usr/local/bin:/usr/bin:/bin \
    "$work/omac-$pass" bundle create --out "$work/b-$pass" -- /bin/true)
  "$work/omac-$pass" run "$work/b-$pass"
  sync
  python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$work/omac-$pass"
  echo 0 > "$ra"
  perf record -q -o "$out/pf.data" -a -e exceptions:page_fault_user -- \
    "$work/omac-$pass" run "$work/b-$pass"
  echo "$saved" > "$ra"
  perf script -i "$out/pf.data" -F comm,tid,time,trace > "$out/pf.txt" 2>/dev/null
  nm -S -n --defined-only "$work/omac-$pass" > "$out/nm.txt"
  readelf -h "$work/omac-$pass" | awk '/Entry point/ {print $4}' > "$out/entry.txt"
}

order() {  # order OUT PASS...: the functions on pages that faulted, the sandbox's first
  python3 - "$@" <<'EOF'
import re, sys
out, passes = sys.argv[1], sys.argv[2:]
sandbox = ("omac-stage", "omac-init", "omac-agent")
rank = {}  # name -> (group, pass, time)
for n, work in enumerate(passes):
    entry = int(open(work + "/entry.txt").read(), 16)
    base, first, first_sandbox = None, {}, {}
    for line in open(work + "/pf.txt"):
        m = re.match(r"\s*(\S+)\s+\d+\s+([\d.]+):\s+address=0x([0-9a-f]+) ip=0x([0-9a-f]+)", line)
        if not m or not m.group(1).startswith("omac"):
            continue
        comm, t = m.group(1), float(m.group(2))
        addr, ip = int(m.group(3), 16), int(m.group(4), 16)
        if base is None:
            base = ip - entry  # the first fault of an exec is at its entry point
        for x in (addr, ip):
            page = (x - base) >> 12
            first.setdefault(page, t)
            if comm in sandbox:
                first_sandbox.setdefault(page, t)
    for line in open(work + "/nm.txt"):
        f = line.split()
        if len(f) < 4 or f[2] not in "tTwW" or int(f[1], 16) == 0:
            continue
        a, s, name = int(f[0], 16), int(f[1], 16), f[3]
        pages = range(a >> 12, ((a + s - 1) >> 12) + 1)
        hits = [(0, first_sandbox[q]) for q in pages if q in first_sandbox]
        hits += [(1, first[q]) for q in pages if q in first]
        if hits:
            g, t = min(hits)
            key = (g, n, t)
            if name not in rank or key < rank[name]:
                rank[name] = key
names = sorted(rank, key=lambda k: rank[k])
with open(out, "w") as f:
    f.write("".join(n + "\n" for n in names))
print("link-order: %d functions, %d reached by the sandbox's processes"
      % (len(names), sum(1 for k in names if rank[k][0] == 0)))
EOF
}

for pass in 1 2; do
  profile "$pass"
  dirs=()
  for p in $(seq "$pass"); do dirs+=("$work/p$p"); done
  mkdir -p "$root/link"
  order "$root/link/omac.order.new" "${dirs[@]}"
  mv "$root/link/omac.order.new" "$root/link/omac.order"
done
echo "link-order: wrote link/omac.order; rebuild to use it"
