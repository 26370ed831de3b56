#!/usr/bin/env bash
# Facade benchmark: requests per second and p50/p99 latency with oha, in one run, for
#   direct       oha -> upstream (TCP, no proxy)
#   nginx-w1     oha -> nginx (1 worker) on a Unix socket -> upstream   (perf-anchors.md)
#   nginx-auto   oha -> nginx (auto = 1 per CPU) on a Unix socket -> upstream
#   facade       oha -> omac __facade on a Unix socket -> upstream (default workers = 1 per CPU,
#                at most 2; access log on, as in a session)
#   facade-w1    the same with 1 worker thread
#   facade-nolog the default facade without its access log (nginx's access log is off)
#   facade-hyper the default facade with its fast path off: every request through hyper (the
#                facade as it was before the fast path, for a before/after in the same run)
#   facade-before (only with BENCH_FACADE_BEFORE=/path/to/an/older/omac) that binary's facade,
#                default settings: a before/after comparison measured in the same run
# at 1, 16 and 256 connections; the upstream is nginx `return 200` (fast enough not to be the
# bottleneck). Medians of $BENCH_REPS reps, paths interleaved within each rep. Also the
# facade's RSS after the 256-connection runs. Goals: facade req/s >= nginx's, p99 added over
# direct < 0.2 ms at 1 connection, RSS < 20 MiB at 256 connections.
#   bash bench/facade.sh            (or through bench/run.sh, which builds omac and sets $OMAC)
#   BENCH_DURATION=5 BENCH_REPS=3 BENCH_CONCURRENCY="1 16 256" bash bench/facade.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
dur=${BENCH_DURATION:-5}
reps=${BENCH_REPS:-3}
conc=${BENCH_CONCURRENCY:-1 16 256}

if [ -z "${OMAC:-}" ]; then
  cargo build --release --quiet --manifest-path "$here/../Cargo.toml"
  OMAC="$here/../target/$(rustc -vV | sed -n "s/^host: //p")/release/omac"
fi
oha=$(command -v oha || true)
if [ -z "$oha" ]; then
  oha="$here/.tools/bin/oha"
  if [ ! -x "$oha" ]; then
    echo "installing oha into $here/.tools (once; it is not in Debian)" >&2
    cargo install oha --locked --quiet --root "$here/.tools"
  fi
fi
nginx=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$nginx" ]; then
  echo "nginx is missing: apt-get install nginx-light" >&2
  exit 4
fi

work=$(mktemp -d /tmp/omac-bench-facade.XXXXXX)
chmod 700 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in "$work"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  sleep 0.3
  rm -rf "$work"
}
trap cleanup EXIT

up_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

temp_paths() {
  local n=$1
  mkdir -p "$work/$n-tmp"
  for t in body proxy fastcgi uwsgi scgi; do echo "    ${t}_temp_path $work/$n-tmp/$t;" | sed 's/body_temp/client_body_temp/'; done
}

cat > "$work/up.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 16384;
pid $work/up.pid;
error_log $work/up.error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
$(temp_paths up)
    server {
        listen 127.0.0.1:$up_port backlog=4096;
        location / { default_type text/plain; return 200 "ok"; }
    }
}
EOF

proxy_conf() {
  local name=$1 workers=$2
  cat > "$work/$name.conf" <<EOF
worker_processes $workers;
worker_rlimit_nofile 16384;
pid $work/$name.pid;
error_log $work/$name.error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
$(temp_paths "$name")
    upstream up { server 127.0.0.1:$up_port; keepalive 512; keepalive_requests 1000000; }
    server {
        listen unix:$work/$name.sock backlog=4096;
        location /up/ {
            proxy_pass http://up/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-Prefix /up;
            proxy_buffering off;
        }
    }
}
EOF
}
proxy_conf nginx-w1 1
proxy_conf nginx-auto auto
for n in up nginx-w1 nginx-auto; do "$nginx" -c "$work/$n.conf" -g 'daemon on;' 2>>"$work/nginx.stderr"; done

start_facade() { # name extra-json [binary] -> starts omac __facade, waits until it listens
  local name=$1 extra=$2 bin=${3:-$OMAC}
  mkdir -m 700 "$work/$name"
  cat > "$work/$name.json" <<EOF
{"socket": "$work/$name/bridge.sock", $extra
 "max_connections": 8192, "routes": [{"mount": "up", "port": $up_port}]}
EOF
  "$bin" __facade --config "$work/$name.json" > "$work/$name.ready" 2> "$work/$name.stderr" &
  pids+=("$!")
  for _ in $(seq 100); do
    [ -s "$work/$name.ready" ] && [ -S "$work/$name/bridge.sock" ] && return 0
    sleep 0.05
  done
  echo "the facade $name did not start:" >&2
  cat "$work/$name.stderr" >&2
  exit 1
}
ulimit -n 65536 2>/dev/null || true
declare -A proxy_pids
start_facade facade "\"access_log\": \"$work/facade/facade.log\","
facade_pid=${pids[-1]}
proxy_pids[facade]=$facade_pid
start_facade facade-w1 "\"access_log\": \"$work/facade-w1/facade.log\", \"workers\": 1,"
proxy_pids[facade-w1]=${pids[-1]}
start_facade facade-nolog ""
proxy_pids[facade-nolog]=${pids[-1]}
start_facade facade-hyper "\"access_log\": \"$work/facade-hyper/facade.log\", \"fast_path\": false,"
proxy_pids[facade-hyper]=${pids[-1]}
paths=(direct nginx-w1 nginx-auto facade facade-w1 facade-nolog facade-hyper)
if [ -n "${BENCH_FACADE_BEFORE:-}" ]; then
  start_facade facade-before "\"access_log\": \"$work/facade-before/facade.log\"," "$BENCH_FACADE_BEFORE"
  proxy_pids[facade-before]=${pids[-1]}
  paths+=(facade-before)
fi
for _ in $(seq 100); do [ -S "$work/nginx-auto.sock" ] && [ -S "$work/nginx-w1.sock" ] && break; sleep 0.05; done

rss_kib() { # sum of VmRSS over the given pids
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done
  echo "$t"
}
nginx_pids() { local m; m=$(cat "$work/$1.pid"); echo "$m $(pgrep -P "$m" | tr '\n' ' ')"; }
proxy_pids[nginx-w1]=$(nginx_pids nginx-w1)
proxy_pids[nginx-auto]=$(nginx_pids nginx-auto)
proxy_pids[direct]=""
cpu_ticks() { # utime+stime (clock ticks) of the given pids, threads included
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
  echo "$t"
}
hz=$(getconf CLK_TCK)

run_oha() { # path c [seconds] -> one JSON line of results
  local path=$1 c=$2 d=${3:-$dur} target
  case $path in
    direct) target=(http://127.0.0.1:$up_port/) ;;
    facade*) target=(--unix-socket "$work/$path/bridge.sock" http://omac/up/) ;;
    *) target=(--unix-socket "$work/$path.sock" http://omac/up/) ;;
  esac
  # shellcheck disable=SC2086
  local before after
  before=$(cpu_ticks ${proxy_pids[$path]})
  "$oha" -z "${d}s" -c "$c" --no-tui --output-format json "${target[@]}" 2>/dev/null > "$work/oha.json"
  # shellcheck disable=SC2086
  after=$(cpu_ticks ${proxy_pids[$path]})
  python3 -c '
import json, sys
d = json.load(open(sys.argv[3]))
cpu_s = (int(sys.argv[5]) - int(sys.argv[4])) / int(sys.argv[6])
errs = {k: v for k, v in d.get("errorDistribution", {}).items() if "deadline" not in k}
codes = d.get("statusCodeDistribution", {})
bad = sum(v for k, v in codes.items() if k != "200") + sum(errs.values())
p = d["latencyPercentiles"]
n = sum(codes.values())
print(json.dumps({"path": sys.argv[1], "c": int(sys.argv[2]), "rps": d["summary"]["requestsPerSec"],
                  "p50": (p["p50"] or 0) * 1000, "p99": (p["p99"] or 0) * 1000, "errors": bad,
                  "cpu_us": cpu_s * 1e6 / n if n else 0}))
' "$path" "$c" "$work/oha.json" "$before" "$after" "$hz"
}

# Warm up every path (connections, pools, page cache).
for p in "${paths[@]}"; do run_oha "$p" 16 1 >/dev/null || true; done

results="$work/results.jsonl"
facade_rss_max=0
nginx_rss_max=0
for rep in $(seq "$reps"); do
  for c in $conc; do
    # Rotate the order per rep so no path always runs first (or last).
    n=${#paths[@]}
    for i in $(seq 0 $((n - 1))); do
      p=${paths[$(( (i + rep) % n ))]}
      line=$(run_oha "$p" "$c") || { echo "oha failed on $p c=$c" >&2; exit 1; }
      echo "{\"rep\": $rep, ${line#\{}" >> "$results"
      if [ "$c" = 256 ]; then
        if [ "$p" = facade ]; then
          r=$(rss_kib "$facade_pid"); [ "$r" -gt "$facade_rss_max" ] && facade_rss_max=$r
        elif [ "$p" = nginx-auto ]; then
          # shellcheck disable=SC2046
          r=$(rss_kib $(nginx_pids nginx-auto)); [ "$r" -gt "$nginx_rss_max" ] && nginx_rss_max=$r
        fi
      fi
    done
  done
done
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$facade_pid/status")
log_lines=$(wc -l < "$work/facade/facade.log")

python3 - "$results" "$facade_rss_max" "$hwm" "$nginx_rss_max" "$log_lines" "$reps" "$dur" "${paths[*]}" <<'EOF'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
facade_rss, hwm, nginx_rss, log_lines, reps, dur = (int(sys.argv[i]) for i in range(2, 8))
paths = sys.argv[8].split()
cs = sorted({r["c"] for r in rows})
def get(p, c, rep):
    return next(r for r in rows if r["path"] == p and r["c"] == c and r["rep"] == rep)
print(f"{reps} reps x {dur} s per cell, medians; ratios are medians of per-rep ratios (same rep).")
print("Upstream: nginx `return 200` on 127.0.0.1 (1 worker). All on this machine's CPUs together.\n")
print("| path | c | req/s | x direct | x nginx-auto (min-max) | p50 ms | p99 ms | p99 added ms | proxy CPU us/req (min-max) | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
summary = {}
for c in cs:
    for p in paths:
        rr = [get(p, c, k) for k in range(1, reps + 1)]
        rps = st.median(r["rps"] for r in rr)
        xd = st.median(r["rps"] / get("direct", c, r["rep"])["rps"] for r in rr)
        xns = [r["rps"] / get("nginx-auto", c, r["rep"])["rps"] for r in rr]
        xn = st.median(xns)
        p50 = st.median(r["p50"] for r in rr)
        p99 = st.median(r["p99"] for r in rr)
        added = st.median(r["p99"] - get("direct", c, r["rep"])["p99"] for r in rr)
        errs = sum(r["errors"] for r in rr)
        cpus_all = [r["cpu_us"] for r in rr]
        cpu = st.median(cpus_all)
        summary[(p, c)] = (rps, xn, added, cpu)
        add = "" if p == "direct" else f"{added:+.3f}"
        cpus = "" if p == "direct" else f"{cpu:.1f} ({min(cpus_all):.1f}-{max(cpus_all):.1f})"
        xnr = f"{xn:.2f} ({min(xns):.2f}-{max(xns):.2f})"
        print(f"| {p} | {c} | {rps:,.0f} | {xd:.2f} | {xnr} | {p50:.3f} | {p99:.3f} | {add} | {cpus} | {errs} |")
print()
print(f"RSS after the 256-connection runs (max): facade {facade_rss/1024:.1f} MiB "
      f"(peak VmHWM {hwm/1024:.1f} MiB); nginx-auto master+workers {nginx_rss/1024:.1f} MiB.")
print(f"Facade access log: {log_lines:,} lines written during the run. Proxy CPU = user+system "
      "time of the proxy's processes per request (nginx: master and workers), a measure of "
      "efficiency that the sharing of the CPUs disturbs less than req/s.\n")
best = {c: max(summary[("nginx-w1", c)][0], summary[("nginx-auto", c)][0]) for c in cs}
goals = []
for c in cs:
    f = summary[("facade", c)][0]
    goals.append(f"c={c}: facade {f:,.0f} req/s vs best nginx {best[c]:,.0f} ({f / best[c]:.2f}x) "
                 + ("met" if f >= best[c] else "MISSED"))
if 1 in cs:
    a = summary[("facade", 1)][2]
    goals.append(f"p99 added at c=1: {a:.3f} ms (goal < 0.2 ms) " + ("met" if a < 0.2 else "MISSED"))
if 256 in cs:
    goals.append(f"facade RSS at c=256: {facade_rss/1024:.1f} MiB (goal < 20 MiB) "
                 + ("met" if facade_rss < 20 * 1024 else "MISSED"))
print("Goals: " + "; ".join(goals) + ".")
EOF
