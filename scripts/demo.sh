#!/usr/bin/env bash
# The README's first command: omac working on a fresh Debian 12 machine, no agent needed.
#
#   bash scripts/demo.sh
#
# It builds omac (release), makes a scratch project holding the example skill echo-rest,
# registers the skill non-interactively (its secret from OMAC_SECRET_ECHO_API_KEY), then
# runs `omac start --inner sh -- standin-agent.sh`: a stand-in for an agent that, inside
# the sandbox, calls the skill through the facade (plain HTTP on $OMAC_BASE and the Unix
# socket $OMAC_SOCKET) and tries to read your ~/.ssh. It ends with a checklist and exits
# non-zero if anything is not as it should be.
#
# As root it installs what is missing (Debian packages, Rust through rustup); as another
# user it says which packages to install. It leaves behind the release build, the skill's
# layer in ~/.local/share/omac (`omac skills gc` removes it) and lines in the audit log
# (~/.local/state/omac/audit.jsonl); the scratch project and the secret are removed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
say() { printf '\n== %s\n' "$*"; }

# 1. What a fresh Debian 12 lacks.
pkgs=(build-essential ca-certificates curl python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "demo: missing Debian packages: ${missing[*]}" >&2
    echo "  fix: sudo apt-get install -y ${missing[*]}   (then run this again)" >&2
    exit 4
  fi
fi
export PATH="$HOME/.cargo/bin:$PATH"
rust_ok() { command -v cargo >/dev/null && [ "$(rustc --version | awk '{split($2,v,"."); print (v[1]>1 || v[2]>=88)}')" = 1 ]; }
if ! rust_ok; then
  say "installing Rust with rustup (omac needs 1.88 or newer; Debian 12 ships 1.63)"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
  export PATH="$HOME/.cargo/bin:$PATH"
fi

# 2. omac.
say "building omac (release)"
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
omac="$repo/target/$(rustc -vV | sed -n "s/^host: //p")/release/omac"
"$omac" version

# 3. A scratch project with the example skill, a fake key if there is no ~/.ssh.
project=$(mktemp -d "${TMPDIR:-/tmp}/omac-demo.XXXXXX")
made_ssh=
cleanup() {
  "$omac" --workdir "$project" secrets unset echo-rest ECHO_API_KEY >/dev/null 2>&1 || true
  rm -rf "$project"
  [ -n "$made_ssh" ] && rm -rf "$HOME/.ssh"
  return 0
}
trap cleanup EXIT
if [ ! -e "$HOME/.ssh" ]; then
  mkdir -m 700 "$HOME/.ssh"
  echo "omac-demo fake private key $(date +%s)" > "$HOME/.ssh/id_demo"
  chmod 600 "$HOME/.ssh/id_demo"
  made_ssh=1
fi
key=$(find "$HOME/.ssh" -maxdepth 1 -type f | head -1)
if [ -z "$key" ]; then
  key="$HOME/.ssh/id_demo_omac"
  echo "omac-demo fake private key" > "$key" && chmod 600 "$key"
  trap 'cleanup; rm -f "$key"' EXIT
fi
mkdir -p "$project/.agents/skills"
cp -r "$repo/skills/examples/echo-rest" "$project/.agents/skills/"
cp "$repo/scripts/standin-agent.sh" "$project/"
cd "$project"
say "a scratch project: $project (skill echo-rest in .agents/skills)"

# 4. Register the skill: reviewed by you, approved as a layer, its secret stored.
secret="demo-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
say "omac register echo-rest   (secret from OMAC_SECRET_ECHO_API_KEY)"
OMAC_SECRET_ECHO_API_KEY="$secret" "$omac" register echo-rest </dev/null | sed -n '1,3p'

# 5. The session.
say "omac start --inner sh -- standin-agent.sh $key"
out=$("$omac" start --inner sh -- standin-agent.sh "$key" 0 </dev/null)
printf '%s\n' "$out" | sed 's/^/   | /'
inside_env=$("$omac" start --inner sh -- -c 'env' </dev/null)

# 6. The checklist.
say "what that shows"
fail=0
check() { if eval "$2"; then echo "[ok]   $1"; else echo "[FAIL] $1"; fail=1; fi; }
get() { printf '%s\n' "$out" | sed -n "s/^$1=//p"; }
fp="sha256:$(printf %s "$secret" | sha256sum | cut -c1-12)"
check "the skill answered over plain HTTP at \$OMAC_BASE ($(get omac_base))" '[ "$(get base_status)" = 200 ]'
check "the skill answered over the Unix socket \$OMAC_SOCKET ($(get omac_socket))" '[ "$(get socket_status)" = 200 ]'
check "the sidecar received the secret (fingerprint $fp) outside the sandbox" 'get whoami | grep -q "$fp"'
check "the agent's environment does not hold the secret" '! printf "%s" "$inside_env" | grep -q "$secret"'
check "$key is out of reach inside the sandbox ($(get protected | cut -c1-60))" 'get protected | grep -q "^denied"'
check "... while omac itself, outside, can read it" '[ -r "$key" ]'
exit $fail
