#!/usr/bin/env bash
# Installs what `npm test` and `npm run cluster` need and a fresh clone lacks, saying what it
# does; run by npm before both (the `pretest` and `precluster` hooks). It needs nothing but bash,
# coreutils, node and npm, so it runs before node_modules exists.
#
#   1. npm dependencies: `npm ci` when node_modules is missing or was installed from another
#      package-lock.json (or another Node.js). The lock file's SHA-256 and `node --version` are
#      kept in node_modules/.samsa-lock-hash after each install; a tree without that file (an
#      `npm ci` by hand) is adopted when npm's own record of it (node_modules/.package-lock.json)
#      lists every package of the lock file at its locked version.
#   2. generated proto types (services/shared/generated/, git-ignored): `npm run gen` when they are
#      missing or a .proto file is newer.
#   3. etcd (only with --etcd): Debian's etcd-server when no `etcd` is found (/usr/bin/etcd or
#      PATH, where the launcher looks) and this is root with apt-get; otherwise one line with the
#      command to run, and exit 1.
#   4. ip and iptables (only with --netns; the network-namespace fault tests, test/support/netns.ts,
#      run it when either is missing): Debian's iproute2 and iptables, as for etcd.
#
# With nothing to do it only checks (well under a second).
# Usage: bash scripts/bootstrap.sh [--etcd] [--netns]
set -euo pipefail
cd "$(dirname "$0")/.."

NEED_ETCD=0
NEED_NETNS=0
for arg in "$@"; do
  case "$arg" in
    --etcd) NEED_ETCD=1 ;;
    --netns) NEED_NETNS=1 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "bootstrap: unknown argument $arg" >&2; exit 2 ;;
  esac
done

log() { echo "bootstrap: $*" >&2; }

LOCK=package-lock.json
STAMP=node_modules/.samsa-lock-hash
GENERATED=services/shared/generated

# --- 1. npm dependencies -----------------------------------------------------------------------
lock_stamp() { echo "$(sha256sum "$LOCK" | cut -d' ' -f1) node-$(node --version)"; }

# True when npm's hidden lockfile shows every non-optional package of the lock at its version.
tree_matches_lock() {
  [ -f node_modules/.package-lock.json ] || return 1
  node -e '
    const locked = require("./package-lock.json").packages ?? {};
    const installed = require("./node_modules/.package-lock.json").packages ?? {};
    for (const [path, p] of Object.entries(locked)) {
      if (path === "" || p.optional) continue;
      if (installed[path]?.version !== p.version) process.exit(1);
    }
  ' 2>/dev/null
}

wanted=$(lock_stamp)
why=""
if [ ! -d node_modules ]; then
  why="node_modules is missing"
elif [ -f "$STAMP" ]; then
  [ "$(cat "$STAMP")" = "$wanted" ] || why="node_modules was installed from another $LOCK or Node.js"
elif ! tree_matches_lock; then
  why="node_modules does not match $LOCK"
fi
installed=0
if [ -n "$why" ]; then
  log "$why: npm ci"
  npm ci --no-audit --no-fund >&2
  installed=1
fi
[ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ] || echo "$wanted" >"$STAMP"

# --- 2. generated proto types ------------------------------------------------------------------
if [ "$installed" = 1 ] || [ ! -d "$GENERATED" ] ||
  [ -n "$(find proto -name '*.proto' -newer "$GENERATED" -print -quit)" ]; then
  log "generating proto types: npm run gen"
  bash scripts/gen-proto.sh >&2
  touch "$GENERATED"
fi

# --- 3. etcd -----------------------------------------------------------------------------------
find_etcd() {
  if [ -x /usr/bin/etcd ]; then echo /usr/bin/etcd; else command -v etcd 2>/dev/null; fi
}
if [ "$NEED_ETCD" = 1 ] && ! find_etcd >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "etcd is missing: apt-get update && apt-get install -y etcd-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q etcd-server >&2
    find_etcd >/dev/null || { log "etcd-server installed but no etcd binary found"; exit 1; }
  elif command -v apt-get >/dev/null 2>&1; then
    log "etcd is missing; install it with: sudo apt-get install -y etcd-server"
    exit 1
  else
    log "etcd is missing; install etcd 3.4+ (https://etcd.io/docs/latest/install/) on PATH"
    exit 1
  fi
fi

# --- 4. ip and iptables -------------------------------------------------------------------------
find_sbin() {
  for d in /usr/sbin /sbin /usr/bin /bin; do [ -x "$d/$1" ] && { echo "$d/$1"; return 0; }; done
  command -v "$1" 2>/dev/null
}
if [ "$NEED_NETNS" = 1 ] && { ! find_sbin ip >/dev/null || ! find_sbin iptables >/dev/null; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "ip or iptables is missing: apt-get update && apt-get install -y iproute2 iptables"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q iproute2 iptables >&2
    find_sbin ip >/dev/null && find_sbin iptables >/dev/null ||
      { log "iproute2 and iptables installed but ip or iptables not found"; exit 1; }
  elif command -v apt-get >/dev/null 2>&1; then
    log "ip or iptables is missing; install them with: sudo apt-get install -y iproute2 iptables"
    exit 1
  else
    log "ip or iptables is missing; install iproute2 and iptables"
    exit 1
  fi
fi

summary="npm dependencies match $LOCK"
[ "$installed" = 1 ] && summary="npm dependencies installed from $LOCK"
[ "$NEED_ETCD" = 1 ] && summary="$summary; etcd: $(find_etcd)"
[ "$NEED_NETNS" = 1 ] && summary="$summary; ip: $(find_sbin ip), iptables: $(find_sbin iptables)"
log "$summary"
