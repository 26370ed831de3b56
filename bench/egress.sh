#!/usr/bin/env bash
# Egress proxy benchmark: tunnel throughput (a 2 GiB transfer, up and down) and tunnel setup
# time (p50/p99 over 1000 sequential tunnels) through omac's egress proxy, next to the same
# transfer made directly on loopback and through tinyproxy and squid from Debian, all in
# the same run. omac's proxy is measured through its Unix socket (that is how a sandbox
# reaches it); tinyproxy and squid cannot listen on one and are measured on loopback TCP.
# The proxy process is the library with a test-only exemption for the loopback sink
# (egress/src/bin/bench_server.rs): loopback is otherwise refused by the policy.
#
# Knobs: REPS (3), XFER_BYTES (2 GiB), SETUP_N (1000), WORK (a fresh temp dir).
# Needs python3; tinyproxy and squid for their rows (Debian packages tinyproxy, squid).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$here/..
export PATH="$HOME/.cargo/bin:$PATH"
REPS=${REPS:-3}
XFER_BYTES=${XFER_BYTES:-$((2 << 30))}
SETUP_N=${SETUP_N:-1000}
made_work=
if [ -z "${WORK:-}" ]; then WORK=$(mktemp -d /tmp/omac-bench-egress.XXXXXX); made_work=1; fi
chmod 755 "$WORK"
bench="python3 $here/tunnel_bench.py"

cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p omac-egress \
  --bin omac-egress-bench --features test-support
target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" \
  | python3 -c 'import sys, json; print(json.load(sys.stdin)["target_directory"])')
server="$target_dir/release/omac-egress-bench"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SINK_PORT=$(free_port)
TP_PORT=$(free_port)
SQ_PORT=$(free_port)

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # A directory of its own goes with it (one given as WORK stays, results and all).
  if [ -n "$made_work" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

wait_for() { # host port | path
  for _ in $(seq 100); do
    if [ $# = 2 ]; then (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    else [ -S "$1" ] && return 0; fi
    sleep 0.05
  done
  echo "egress bench: $* did not come up" >&2
  return 1
}

$bench sink "$SINK_PORT" &
pids+=($!)
wait_for 127.0.0.1 "$SINK_PORT"

"$server" "$WORK/egress.sock" "127.0.0.1:$SINK_PORT" >/dev/null &
omac_pid=$!
pids+=($omac_pid)
wait_for "$WORK/egress.sock"
targets=("direct|direct|" "omac (Unix socket)|connect-uds:$WORK/egress.sock|$omac_pid")

tp=$(command -v tinyproxy || true)
if [ -n "$tp" ]; then
  cat >"$WORK/tinyproxy.conf" <<EOF
Port $TP_PORT
Listen 127.0.0.1
Timeout 600
MaxClients 1024
LogLevel Critical
LogFile "$WORK/tinyproxy.log"
PidFile "$WORK/tinyproxy.pid"
Allow 127.0.0.1
DisableViaHeader Yes
EOF
  "$tp" -d -c "$WORK/tinyproxy.conf" >/dev/null 2>&1 &
  tp_pid=$!
  pids+=($tp_pid)
  wait_for 127.0.0.1 "$TP_PORT"
  targets+=("tinyproxy (TCP)|connect-tcp:127.0.0.1:$TP_PORT|$tp_pid")
fi

sq=$(command -v squid || true)
if [ -n "$sq" ]; then
  mkdir -p "$WORK/squid"
  if [ "$(id -u)" = 0 ]; then chown proxy "$WORK/squid"; fi
  cat >"$WORK/squid.conf" <<EOF
http_port 127.0.0.1:$SQ_PORT
acl lo src 127.0.0.1/32
acl anyport port 1-65535
http_access allow lo
http_access deny all
cache deny all
cache_mem 8 MB
access_log none
cache_store_log none
cache_log $WORK/squid/cache.log
pid_filename $WORK/squid/squid.pid
coredump_dir $WORK/squid
cache_effective_user proxy
workers 1
shutdown_lifetime 1 seconds
pinger_enable off
EOF
  "$sq" -N -f "$WORK/squid.conf" >/dev/null 2>&1 &
  sq_pid=$!
  pids+=($sq_pid)
  wait_for 127.0.0.1 "$SQ_PORT"
  targets+=("squid (TCP)|connect-tcp:127.0.0.1:$SQ_PORT|$sq_pid")
fi

rss() { # pid, and its children (squid forks its worker)
  local total=0 p
  for p in $1 $(pgrep -P "$1" 2>/dev/null || true); do
    v=$(awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    total=$((total + v))
  done
  echo "$total"
}

cpu_ticks() { # utime+stime of a pid and its children, in clock ticks
  local total=0 p v
  for p in $1 $(pgrep -P "$1" 2>/dev/null || true); do
    v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
    total=$((total + v))
  done
  echo "$total"
}
hz=$(getconf CLK_TCK)

results="$WORK/results.jsonl"
: >"$results"
for rep in $(seq "$REPS"); do
  for dir in up down; do
    for t in "${targets[@]}"; do
      IFS='|' read -r name via pid <<<"$t"
      c0=0
      [ -n "$pid" ] && c0=$(cpu_ticks "$pid")
      r=$($bench xfer --via "$via" --target "$SINK_PORT" --bytes "$XFER_BYTES" --dir "$dir")
      c1=0
      [ -n "$pid" ] && c1=$(cpu_ticks "$pid")
      echo "{\"kind\":\"xfer\",\"name\":\"$name\",\"dir\":\"$dir\",\"cpu\":$(((c1 - c0))),\"hz\":$hz,\"r\":$r}" >>"$results"
    done
  done
done
# Setup: SETUP_N tunnels per target, in rounds of 100 interleaved across the targets so that
# a change of load on this shared machine hits every target alike.
rounds=$(((SETUP_N + 99) / 100))
for round in $(seq "$rounds"); do
  for t in "${targets[@]}"; do
    IFS='|' read -r name via pid <<<"$t"
    r=$($bench setup --via "$via" --target "$SINK_PORT" --n $((SETUP_N / rounds)))
    echo "{\"kind\":\"setup\",\"name\":\"$name\",\"r\":$r}" >>"$results"
  done
done
for t in "${targets[@]}"; do
  IFS='|' read -r name via pid <<<"$t"
  kb=0
  [ -n "$pid" ] && kb=$(rss "$pid")
  echo "{\"kind\":\"rss\",\"name\":\"$name\",\"rss_kb\":$kb}" >>"$results"
done

python3 - "$results" "$XFER_BYTES" "$REPS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
gib = int(sys.argv[2]) / (1 << 30)
reps = sys.argv[3]
names = []
for r in rows:
    if r["name"] not in names:
        names.append(r["name"])
def mbps(name, d):
    return [r["r"]["mbps"] for r in rows if r["kind"] == "xfer" and r["name"] == name and r["dir"] == d]
def cpu(name, d):
    return [r["cpu"] / r["hz"] / gib for r in rows
            if r["kind"] == "xfer" and r["name"] == name and r["dir"] == d]
print(f"| tunnel, {gib:g} GiB one stream | up MB/s | x direct | down MB/s | x direct | proxy CPU s/GiB up / down |")
print("|---|---:|---:|---:|---:|---:|")
base = {d: statistics.median(mbps("direct", d)) for d in ("up", "down")}
for n in names:
    cells = []
    for d in ("up", "down"):
        v = mbps(n, d)
        m = statistics.median(v)
        lo, hi = min(x / base[d] for x in v), max(x / base[d] for x in v)
        cells += [f"{m:,.0f}", f"{m / base[d]:.2f} ({lo:.2f}-{hi:.2f})"]
    c = "" if n == "direct" else f"{statistics.median(cpu(n, 'up')):.2f} / {statistics.median(cpu(n, 'down')):.2f}"
    print(f"| {n} | " + " | ".join(cells) + f" | {c} |")
print(f"\n(median of {reps} runs each, interleaved; range of the per-run ratio in brackets; proxy CPU ="
      " user+system time of the proxy process per GiB moved)\n")
print("| tunnel setup | n | established p50 us | p99 us | first byte p50 us | p99 us | peak RSS MiB |")
print("|---|---:|---:|---:|---:|---:|---:|")
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]
for n in names:
    est = [x for r in rows if r["kind"] == "setup" and r["name"] == n for x in r["r"]["est"]]
    first = [x for r in rows if r["kind"] == "setup" and r["name"] == n for x in r["r"]["first"]]
    kb = next((r["rss_kb"] for r in rows if r["kind"] == "rss" and r["name"] == n), 0)
    rss = f"{kb / 1024:.1f}" if kb else ""
    print(f"| {n} | {len(est)} | {pct(est, 50):.0f} | {pct(est, 99):.0f} | {pct(first, 50):.0f} | {pct(first, 99):.0f} | {rss} |")
print("\n(established: from before connect() to the end of the proxy's 200 answer, for direct until"
      " connect() returned; first byte: plus a 32-byte request and the target's 1-byte answer;"
      " sequential tunnels in rounds of 100 interleaved across targets; peak RSS = VmHWM at the end)")
EOF
