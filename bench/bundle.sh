#!/usr/bin/env bash
# Benchmark section "bundle": how long `omac bundle create` takes for the default profile.
#
# Its one slow part is the walk that finds .env/.envrc files to mask in every granted tree,
# so it is measured beside `find WORKDIR -name .env -o -name .envrc` on the same tree: a
# generated project of 50,000 entries (nested directories, a few .env files). Goals: at most
# 1.5x find's median, and under 20 ms for an empty workdir.
#
# The main rows re-create a bundle over an identical one (what repeated starts in one
# project do; omac then writes nothing); the "fresh" rows write and fsync new files.
#
# Two homes: an empty fake HOME (only the workdir is walked: the comparison the goals are
# about), and the real HOME of whoever runs this, whose toolchain trees the default profile
# grants read-only (~/.rustup, ~/.pyenv, ~/.nvm, ...) are walked too; find is then given
# the same trees. Run by bench/run.sh, which exports $OMAC (the release binary).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
OMAC=${OMAC:-$here/../target/$(rustc -vV | sed -n "s/^host: //p")/release/omac}
[ -x "$OMAC" ] || { echo "bench/bundle.sh: $OMAC is missing; run bench/run.sh" >&2; exit 4; }
command -v hyperfine >/dev/null || { echo "bench/bundle.sh: hyperfine is missing (apt-get install hyperfine)" >&2; exit 4; }
runs=${BENCH_RUNS:-30}

tmp=$(mktemp -d /tmp/omac-bench-bundle.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
work=$tmp/work
empty=$tmp/empty
fake_home=$tmp/home
mkdir -p "$empty" "$fake_home"
real_home=${HOME:?HOME must be set}

# A deterministic project-like tree: directories up to 7 deep, 1-12 files per directory
# visit, about one file in 500 a .env or .envrc.
python3 - "$work" 50000 <<'EOF'
import os, random, sys
root, total = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
os.makedirs(root)
dirs, made = [root], 0
while made < total:
    parent = rnd.choice(dirs)
    if parent[len(root):].count("/") < 7 and rnd.random() < 0.5:
        d = os.path.join(parent, "d%d" % len(dirs))
        os.mkdir(d)
        dirs.append(d)
        made += 1
        continue
    for i in range(rnd.randint(1, 12)):
        if made >= total:
            break
        ext = rnd.choice(["js", "ts", "rs", "py", "json", "md"])
        name = "f%d_%d.%s" % (len(dirs), i, ext)
        if rnd.random() < 0.002:
            name = rnd.choice([".env", ".envrc"])
        p = os.path.join(parent, name)
        if not os.path.exists(p):
            with open(p, "w") as f:
                f.write("x\n")
            made += 1
EOF
entries=$(find "$work" -mindepth 1 | wc -l)
secrets=$(find "$work" -name .env -o -name .envrc | wc -l)

# The trees the default profile walks under the real HOME (besides the workdir).
env HOME="$real_home" "$OMAC" --workdir "$empty" bundle create --out "$tmp/probe" -- /bin/true 2>/dev/null
mapfile -t home_trees < <(env HOME="$real_home" "$OMAC" bundle explain --json "$tmp/probe" | python3 -c '
import json, os, sys
x = json.load(sys.stdin)
home = os.environ["HOME"]
for g in x["filesystem"]["readOnly"] + x["filesystem"]["readWrite"]:
    p = g["path"]
    if p.startswith(home + "/") and os.path.isdir(p):
        print(p)
' )
home_entries=0
if [ ${#home_trees[@]} -gt 0 ]; then
  home_entries=$(find "${home_trees[@]}" -mindepth 1 2>/dev/null | wc -l)
fi

create() { echo "env HOME=$1 $OMAC --workdir $2 bundle create --out $tmp/out-$3 -- /bin/true"; }
find_cmd="env HOME=$fake_home find $work -name .env -o -name .envrc"
find_real="env HOME=$real_home find $work ${home_trees[*]} -name .env -o -name .envrc"
find_home="env HOME=$real_home find $empty ${home_trees[*]} -name .env -o -name .envrc"

hyperfine -N --style none --warmup 3 --runs "$runs" --export-json "$tmp/h.json" \
  -n find "$find_cmd" \
  -n create "$(create "$fake_home" "$work" a)" \
  -n create-empty "$(create "$fake_home" "$empty" b)" \
  -n find-real "$find_real" \
  -n create-real "$(create "$real_home" "$work" c)" \
  -n find-home "$find_home" \
  -n create-empty-real "$(create "$real_home" "$empty" d)" >/dev/null

# The runs above re-create a bundle whose files are already there and identical, which
# omac leaves alone; these write (and fsync) fresh files every time.
hyperfine -N --style none --warmup 3 --runs "$runs" --export-json "$tmp/f.json" \
  --prepare "rm -rf $tmp/out-e" -n create-fresh "$(create "$fake_home" "$work" e)" \
  --prepare "rm -rf $tmp/out-f" -n create-empty-fresh "$(create "$fake_home" "$empty" f)" >/dev/null

python3 - "$tmp/h.json" "$tmp/f.json" "$entries" "$secrets" "$home_entries" "${#home_trees[@]}" <<'EOF'
import json, sys
res = {r["command"]: r for f in sys.argv[1:3] for r in json.load(open(f))["results"]}
entries, secrets, home_entries, trees = sys.argv[3:7]
med = lambda n: res[n]["median"] * 1000
def row(what, home, name, base=None, goal=""):
    ratio = "%.2fx" % (med(name) / med(base)) if base else ("1.00x" if name.startswith("find") else "-")
    print("| %s | %s | %.1f | %s | %s |" % (what, home, med(name), ratio, goal))
ok = lambda c: "met" if c else "MISSED"
print("Workdir: %s entries, %s .env/.envrc; real HOME: %s granted trees, %s entries." % (entries, secrets, trees, home_entries))
print()
print("| command | HOME | median (ms) | ratio to find | goal |")
print("|---|---|---|---|---|")
row("`find WORKDIR -name .env -o -name .envrc`", "fake (empty)", "find")
row("`omac bundle create` (default profile, 50k-entry workdir)", "fake (empty)", "create", "find",
    "<= 1.5x find: " + ok(med("create") <= 1.5 * med("find")))
row("`omac bundle create` (default profile, empty workdir)", "fake (empty)", "create-empty", None,
    "< 20 ms: " + ok(med("create-empty") < 20))
row("`omac bundle create`, fresh output directory (50k-entry workdir)", "fake (empty)", "create-fresh", "find")
row("`omac bundle create`, fresh output directory (empty workdir)", "fake (empty)", "create-empty-fresh")
row("`find WORKDIR HOME-TREES -name .env -o -name .envrc`", "real", "find-real")
row("`omac bundle create` (default profile, 50k-entry workdir)", "real", "create-real", "find-real")
row("`find EMPTY-WORKDIR HOME-TREES -name .env -o -name .envrc`", "real", "find-home")
row("`omac bundle create` (default profile, empty workdir)", "real", "create-empty-real", "find-home")
EOF
