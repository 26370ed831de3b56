#!/usr/bin/env bash
# Benchmark section "start": what `omac start` costs over `omac run` of the same bundle.
#
#   run, no skills        omac run of a bundle made by `omac bundle create -- /bin/true`
#   start, no skills      omac start --inner /bin/true in the same work directory
#   run, echo skill       the same with the example skill echo-rest registered: the bundle
#                         carries its layer and sidecar plan, `run` starts the sidecar
#   start, echo skill     omac start --inner /bin/true with that skill
#   sidecar boot          the echo sidecar alone: spawn to its first healthy /status answer,
#                         polled every 0.2 ms (the sidecar's own time, which omac waits for)
#
# The rounds are interleaved (every command once per round, the sidecar boot too), so that
# the load of a shared machine falls on all of them alike.
#
# Every session runs the default profile (filtered network: the egress proxy comes up too)
# in a scratch HOME, so the machine's dotfiles and registries play no part. Prints a table of
# medians and the goals of issue 5: start adds < 10 ms over run without skills, and with a
# skill < 10 ms over the sidecar's own boot time.
#   OMAC=target/<host triple>/release/omac bash bench/start.sh      (bench/run.sh sets OMAC)
#   RUNS=60 bash bench/start.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
OMAC=${OMAC:-$here/../target/$(rustc -vV | sed -n "s/^host: //p")/release/omac}
RUNS=${RUNS:-40}
WARMUP=${WARMUP:-5}
for tool in python3; do
  command -v "$tool" >/dev/null || { echo "start bench: $tool is missing (.ci/apt-packages)" >&2; exit 4; }
done

work=$(mktemp -d /tmp/omac-bench-start.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/home" "$work/plain" "$work/echo/.agents/skills"
cp -r "$here/../skills/examples/echo-rest" "$work/echo/.agents/skills/"
export HOME="$work/home" XDG_CONFIG_HOME= XDG_DATA_HOME= XDG_STATE_HOME= XDG_RUNTIME_DIR=
export OMAC_KEYRING_BACKEND=keyutils

"$OMAC" --workdir "$work/echo" register echo-rest --no-secrets --no-fields </dev/null >/dev/null
(cd "$work/plain" && "$OMAC" bundle create --out "$work/b-plain" -- /bin/true >/dev/null)
(cd "$work/echo" && "$OMAC" bundle create --out "$work/b-echo" -- /bin/true >/dev/null)

# Each command must work before it is timed.
for c in "run $work/b-plain" "--workdir $work/plain start --inner /bin/true" \
         "run $work/b-echo" "--workdir $work/echo start --inner /bin/true"; do
  (cd "$work/echo" && $OMAC $c </dev/null >/dev/null) || { echo "start bench: omac $c failed" >&2; exit 1; }
done

# Interleaved rounds: each round runs every command once, then boots the sidecar alone, so
# the machine's load (shared, noisy) weighs on all of them alike; hyperfine would run all
# the runs of one command before the next. The sidecar alone is spawned as omac spawns it:
# from its directory, with SIDECAR_PORT and SIDECAR_SKILL and only the host variables omac
# passes a sidecar by default (PATH, HOME, USER, LANG, LC_ALL, LC_CTYPE, TMPDIR), taken
# from this shell's environment, saved before Python starts: a python3 started through a
# version manager's shim (pyenv) adds its own variables (PYENV_VERSION...) and puts its bin
# directory first in PATH, and a sidecar spawned with those would skip the shim's work that
# omac's sidecar does (50 to 100 ms with pyenv). omac runs with that environment too. The
# sidecar is polled every 0.2 ms.
env -0 > "$work/shell.env"
cd "$work/echo"
python3 - "$OMAC" "$work" "$RUNS" "$WARMUP" <<'EOF'
import http.client, os, shutil, socket, statistics, subprocess, sys, time
omac, work, runs, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
shell = dict(kv.split("=", 1) for kv in
             open(os.path.join(work, "shell.env")).read().split("\0") if "=" in kv)
path = shell.get("PATH", "/usr/bin:/bin")
base = {k: shell[k] for k in ("PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR")
        if k in shell}
skill = os.path.join(work, "echo/.agents/skills/echo-rest")
cmds = [
    ("run-plain", "`omac run` of the bundle, no skills", [omac, "run", work + "/b-plain"]),
    ("start-plain", "`omac start --inner /bin/true`, no skills",
     [omac, "--workdir", work + "/plain", "start", "--inner", "/bin/true"]),
    ("run-echo", "`omac run` of the bundle with the echo skill", [omac, "run", work + "/b-echo"]),
    ("start-echo", "`omac start --inner /bin/true` with the echo skill",
     [omac, "--workdir", work + "/echo", "start", "--inner", "/bin/true"]),
]

def timed(argv):
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=shell)
    ms = (time.perf_counter() - t0) * 1000
    if r.returncode != 0:
        sys.exit("start bench: %s exited with %d" % (" ".join(argv), r.returncode))
    return ms

def boot():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    env = dict(base, SIDECAR_PORT=str(port), SIDECAR_SKILL="echo-rest")
    t0 = time.perf_counter()
    p = subprocess.Popen(["python3", "scripts/sidecar.py"], cwd=skill, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/status")
            if 200 <= c.getresponse().status < 300:
                break
        except OSError:
            if p.poll() is not None:
                sys.exit("start bench: the echo sidecar exited (%s) before it was healthy" % p.returncode)
            time.sleep(0.0002)
    ms = (time.perf_counter() - t0) * 1000
    p.terminate(); p.wait()
    return ms

times = {k: [] for k, _, _ in cmds}
boots = []
for i in range(warmup + runs):
    for k, _, argv in cmds:
        ms = timed(argv)
        if i >= warmup:
            times[k].append(ms)
    ms = boot()
    if i >= warmup:
        boots.append(ms)

med = {k: statistics.median(v) for k, v in times.items()}
b = statistics.median(boots)
print("| command | median ms | over `omac run`, no skills |")
print("|---|---:|---:|")
for k, what, _ in cmds:
    print("| %s | %.2f | %+.2f ms |" % (what, med[k], med[k] - med["run-plain"]))
print("| the echo sidecar alone: spawn to healthy | %.2f | |" % b)
print()
print("(%d interleaved rounds after %d warm-up rounds, medians; default profile, filtered "
      "network; the sidecar's python3 is %s)" % (runs, warmup, shutil.which("python3", path=path)))
added_plain = med["start-plain"] - med["run-plain"]
added_echo = med["start-echo"] - med["run-plain"] - b
print("start adds over run, no skills: %.2f ms (goal < 10: %s)" %
      (added_plain, "met" if added_plain < 10 else "NOT met"))
print("start with the skill adds over run + the sidecar's own boot: %.2f ms (goal < 10: %s)" %
      (added_echo, "met" if added_echo < 10 else "NOT met"))
print("start over run of the same skill bundle: %+.2f ms" % (med["start-echo"] - med["run-echo"]))
EOF
