#!/usr/bin/env bash
# The filtered network as the agent sees it: a tunnel (up and down) and tunnel setup time
# (p50/p99) from inside a filtered `omac start` sandbox, through init's loopback bridge
# (127.0.0.1:29171, what HTTPS_PROXY names) and through the proxy's Unix socket
# (/run/omac/egress.sock), next to the same transfer made directly from the host, all in
# the same run. The sink is a real remote host: a network namespace of its own behind a
# veth pair (10.77.0.2, admitted by the profile's network.allow_private), everything inside
# `unshare -rn`, so the release omac runs as shipped (no test hooks) as root or not.
#
# Knobs: REPS (3), XFER_BYTES (1 GiB), SETUP_N (300). Needs python3, iproute2, util-linux.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
if [ -z "${OMAC:-}" ]; then
  cargo build --release --quiet --manifest-path "$here/../Cargo.toml" --bin omac
  OMAC="$here/../target/$(rustc -vV | sed -n "s/^host: //p")/release/omac"
fi
REPS=${REPS:-3}
XFER_BYTES=${XFER_BYTES:-$((1 << 30))}
SETUP_N=${SETUP_N:-300}
W=$(mktemp -d /tmp/omac-bench-egress-sandbox.XXXXXX)
chmod 755 "$W"
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/home" "$W/work/.omac/profiles" "$W/run"
chmod 700 "$W/run"
cp "$here/tunnel_bench.py" "$W/work/"
cat >"$W/work/.omac/profiles/bench.json" <<'EOF'
{"extends": "default",
 "network": {"allow_domain": ["10.77.0.2"], "allow_private": ["10.77.0.2"],
             "network_prompt": {"enabled": false}}}
EOF

cat >"$W/inner.sh" <<'EOF'
set -euo pipefail
cd "$W/work"
ip link set lo up
unshare -n sleep infinity &
far=$!
sleep 0.2
ip link add v0 type veth peer name v1
ip link set v1 netns "$far"
ip addr add 10.77.0.1/30 dev v0
ip link set v0 up
nsenter -t "$far" -n sh -c 'ip link set lo up; ip addr add 10.77.0.2/30 dev v1; ip link set v1 up'
port=47001
nsenter -t "$far" -n python3 tunnel_bench.py sink "$port" --host 10.77.0.2 &
sinkpid=$!
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/10.77.0.2/$port) 2>/dev/null && break
  sleep 0.05
done
bench="python3 tunnel_bench.py"
inside() { # commands run in one sandbox; each prints "NAME JSON"
  env -i HOME="$W/home" PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
    XDG_RUNTIME_DIR="$W/run" OMAC_KEYRING_BACKEND=keyutils \
    "$OMAC" start --profile bench --inner sh -- -c "$1" </dev/null
}
for rep in $(seq "$REPS"); do
  for dir in up down; do
    echo "xfer-$dir direct $($bench xfer --via direct --host 10.77.0.2 --target $port --bytes "$XFER_BYTES" --dir $dir)"
    inside "
      echo \"xfer-$dir bridge \$($bench xfer --via connect-tcp:127.0.0.1:29171 --host 10.77.0.2 --target $port --bytes $XFER_BYTES --dir $dir)\"
      echo \"xfer-$dir socket \$($bench xfer --via connect-uds:/run/omac/egress.sock --host 10.77.0.2 --target $port --bytes $XFER_BYTES --dir $dir)\""
  done
done
n=$((SETUP_N / 3 > 0 ? SETUP_N / 3 : 1))
for round in 1 2 3; do
  echo "setup direct $($bench setup --via direct --host 10.77.0.2 --target $port --n $n)"
  inside "
    echo \"setup bridge \$($bench setup --via connect-tcp:127.0.0.1:29171 --host 10.77.0.2 --target $port --n $n)\"
    echo \"setup socket \$($bench setup --via connect-uds:/run/omac/egress.sock --host 10.77.0.2 --target $port --n $n)\""
done
kill "$sinkpid" "$far" 2>/dev/null || true
EOF

W=$W OMAC=$OMAC REPS=$REPS XFER_BYTES=$XFER_BYTES SETUP_N=$SETUP_N \
  unshare -rn bash "$W/inner.sh" >"$W/results.txt"

python3 - "$W/results.txt" "$XFER_BYTES" "$REPS" <<'EOF'
import json, statistics, sys
rows = []
for l in open(sys.argv[1]):
    parts = l.split(" ", 2)
    if len(parts) == 3 and parts[2].startswith("{"):
        rows.append((parts[0], parts[1], json.loads(parts[2])))
gib = int(sys.argv[2]) / (1 << 30)
names = {"direct": "direct from the host", "bridge": "sandbox, via 127.0.0.1:29171 (bridge + proxy)",
         "socket": "sandbox, via /run/omac/egress.sock (proxy)"}
print(f"| from inside a filtered sandbox, {gib:g} GiB over veth | up MB/s | x direct | down MB/s | x direct |")
print("|---|---:|---:|---:|---:|")
med = {}
for k in names:
    for d in ("up", "down"):
        v = [r["mbps"] for kind, n, r in rows if kind == f"xfer-{d}" and n == k]
        med[k, d] = statistics.median(v) if v else float("nan")
for k, label in names.items():
    cells = []
    for d in ("up", "down"):
        cells += [f"{med[k, d]:,.0f}", f"{med[k, d] / med['direct', d]:.2f}"]
    print(f"| {label} | " + " | ".join(cells) + " |")
print(f"\n(median of {sys.argv[3]} runs each, interleaved)\n")
print("| tunnel setup | n | established p50 us | p99 us | first byte p50 us | p99 us |")
print("|---|---:|---:|---:|---:|---:|")
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]
for k, label in names.items():
    est = [x for kind, n, r in rows if kind == "setup" and n == k for x in r["est"]]
    first = [x for kind, n, r in rows if kind == "setup" and n == k for x in r["first"]]
    if est:
        print(f"| {label} | {len(est)} | {pct(est, 50):.0f} | {pct(est, 99):.0f} | {pct(first, 50):.0f} | {pct(first, 99):.0f} |")
print("\n(established: from before connect() to the end of the proxy's 200; first byte: plus a"
      " 32-byte request and the sink's answer)")
EOF
