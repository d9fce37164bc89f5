#!/usr/bin/env bash
# The benchmark suite side by side: installs the peers at pinned versions into a cache under
# target/ (a pip venv for LiteLLM, an npm prefix for 9Router), then runs
#   cargo bench --bench suite -- --peers target/suite-peers
# A peer that cannot be installed gets a status line saying why; the suite still runs and its
# column says so. Extra arguments go to the bench (e.g. --quick). Not run by CI.
set -uo pipefail
cd "$(dirname "$0")/.."

LITELLM_VERSION=1.106.12   # newest whose [proxy] extra resolves from PyPI here (1.108+ pins unpublished extras)
NINEROUTER_VERSION=0.5.69
# 9Router's own postinstall puts these into ~/.9router/runtime; we put them into our cache
# instead (same pins as its hooks/sqliteRuntime.js for Node < 22).
SQLJS_VERSION=1.14.1
BETTER_SQLITE3_VERSION=12.6.2

PEERS="${CARGO_TARGET_DIR:-target}/suite-peers"
mkdir -p "$PEERS"
PEERS="$(cd "$PEERS" && pwd)"

installed() { # DIR VERSION: already installed at that version?
  [ "$(cat "$1/status" 2>/dev/null)" = "ok $2" ]
}

fail() { # DIR REASON LOG
  echo "failed: $2${3:+ ($(tail -n 1 "$3" 2>/dev/null | cut -c1-160))}" > "$1/status"
}

install_litellm() {
  local dir="$PEERS/litellm"
  mkdir -p "$dir"
  installed "$dir" "$LITELLM_VERSION" && [ -x "$dir/venv/bin/litellm" ] && return 0
  rm -rf "$dir/venv" "$dir/status"
  command -v python3 >/dev/null || { fail "$dir" "python3 not found"; return 0; }
  python3 -m venv "$dir/venv" > "$dir/install.log" 2>&1 || { fail "$dir" "python3 -m venv failed" "$dir/install.log"; return 0; }
  "$dir/venv/bin/pip" install --disable-pip-version-check --quiet "litellm[proxy]==$LITELLM_VERSION" >> "$dir/install.log" 2>&1 \
    || { fail "$dir" "pip install litellm[proxy]==$LITELLM_VERSION failed" "$dir/install.log"; return 0; }
  echo "ok $LITELLM_VERSION" > "$dir/status"
}

install_ninerouter() {
  local dir="$PEERS/9router"
  mkdir -p "$dir"
  installed "$dir" "$NINEROUTER_VERSION" && [ -f "$dir/prefix/node_modules/9router/app/custom-server.js" ] && return 0
  rm -rf "$dir/prefix" "$dir/runtime" "$dir/status"
  command -v npm >/dev/null || { fail "$dir" "npm not found"; return 0; }
  # --ignore-scripts: its postinstall would write into ~/.9router; the runtime goes below.
  npm install --prefix "$dir/prefix" --no-audit --no-fund --ignore-scripts "9router@$NINEROUTER_VERSION" > "$dir/install.log" 2>&1 \
    || { fail "$dir" "npm install 9router@$NINEROUTER_VERSION failed" "$dir/install.log"; return 0; }
  mkdir -p "$dir/runtime"
  [ -f "$dir/runtime/package.json" ] || echo '{"name":"9router-runtime","version":"1.0.0","private":true}' > "$dir/runtime/package.json"
  npm install --prefix "$dir/runtime" --no-audit --no-fund "sql.js@$SQLJS_VERSION" "better-sqlite3@$BETTER_SQLITE3_VERSION" >> "$dir/install.log" 2>&1 \
    || { fail "$dir" "npm install of its SQLite runtime (sql.js, better-sqlite3) failed" "$dir/install.log"; return 0; }
  echo "ok $NINEROUTER_VERSION" > "$dir/status"
}

echo "suite.sh: installing peers into $PEERS (cached; first time takes several minutes)" >&2
install_litellm &
install_ninerouter &
wait
for peer in litellm 9router; do
  echo "suite.sh: $peer: $(cat "$PEERS/$peer/status" 2>/dev/null || echo 'no status')" >&2
done

exec cargo bench --locked --bench suite -- --peers "$PEERS" "$@"
