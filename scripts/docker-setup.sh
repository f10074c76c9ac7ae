#!/usr/bin/env bash
# Makes this machine able to run Samsa's Docker images without any registry:
#
#   1. installs Docker (docker.io) and docker-compose from Debian when missing;
#   2. starts dockerd when no engine answers (--iptables=false --bridge=none, log in
#      $SAMSA_DOCKERD_LOG), and waits for `docker info`, bounded;
#   3. builds three local base images with `docker import`, from binaries already on this
#      machine (installing their Debian packages when missing):
#        samsa/node-base:20     /usr/bin/node + its libraries, a non-root `samsa` user (1000)
#        samsa/etcd-base        Debian's etcd and etcdctl, at the public image's paths
#        samsa/prometheus-base  Debian's prometheus and promtool, at the public image's paths
#      A base image that exists is kept unless --rebuild is given.
#
# Idempotent: a second run does nothing but check. Usage:
#   bash scripts/docker-setup.sh [--rebuild] [--no-bases]
# Prints the environment docker-compose.yml reads for the local bases at the end (`export ...`).
set -euo pipefail
cd "$(dirname "$0")/.."

REBUILD=0
BASES=1
for arg in "$@"; do
  case "$arg" in
    --rebuild) REBUILD=1 ;;
    --no-bases) BASES=0 ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "docker-setup: unknown argument $arg" >&2; exit 2 ;;
  esac
done

NODE_BASE=samsa/node-base:20
ETCD_BASE=samsa/etcd-base:latest
PROMETHEUS_BASE=samsa/prometheus-base:latest
DOCKERD_LOG=${SAMSA_DOCKERD_LOG:-/var/log/samsa-dockerd.log}
# How long dockerd may take to answer after it was started, seconds.
DOCKERD_START_TIMEOUT_S=${SAMSA_DOCKERD_START_TIMEOUT_S:-60}
# uid/gid of the non-root user of the node base (the same as `node` in the public node images).
SAMSA_UID=1000
# uid/gid `nobody`, which the public Prometheus image runs as.
NOBODY_UID=65534

log() { echo "docker-setup: $*" >&2; }

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    log "need root to install $*"
    exit 1
  fi
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    apt-get update -qq
    apt_updated=1
  fi
  log "installing $*"
  apt-get install -y -qq "$@" >/dev/null
}

# --- 1. Docker and docker-compose -------------------------------------------------------------
# Debian's client is /usr/bin/docker; another `docker` earlier on PATH is fine too.
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
  apt_install docker.io
fi
if ! command -v docker-compose >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then
  apt_install docker-compose
fi

# --- 2. the engine ----------------------------------------------------------------------------
# `docker info`, bounded: a wedged engine must not hang the script.
engine_answers() { timeout 15 docker info >/dev/null 2>&1; }
if engine_answers; then
  log "docker engine is running"
else
  if command -v pgrep >/dev/null 2>&1 && pgrep -x dockerd >/dev/null 2>&1; then
    log "dockerd is starting; waiting for it"
  else
    log "starting dockerd (log: $DOCKERD_LOG)"
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    # A dockerd that was killed leaves its pid files; with the pid reused they would stop a start.
    rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
    # No iptables (and no default bridge): user-defined networks and ports published through
    # docker-proxy still work, which is all the compose file needs.
    setsid nohup dockerd --iptables=false --bridge=none >>"$DOCKERD_LOG" 2>&1 </dev/null &
  fi
  deadline=$((SECONDS + DOCKERD_START_TIMEOUT_S))
  until engine_answers; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "dockerd did not answer within ${DOCKERD_START_TIMEOUT_S}s; last lines of $DOCKERD_LOG:"
      tail -n 20 "$DOCKERD_LOG" >&2 || true
      exit 1
    fi
    sleep 1
  done
  log "docker engine is up"
fi

if [ "$BASES" = 0 ]; then exit 0; fi

# --- 3. local base images ---------------------------------------------------------------------
STAGE_ROOT=$(mktemp -d /tmp/samsa-docker-base.XXXXXX)
trap 'rm -rf "$STAGE_ROOT"' EXIT

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# The shared libraries `ldd` lists for each file given (the dynamic loader included); nothing for
# a static binary.
libs_of() {
  local f
  for f in "$@"; do
    ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' || true
  done | sort -u
}

# copy_file <root> <source> [<destination path inside the image>]: a real file (symlinks
# followed), its directories created.
copy_file() {
  local root=$1 src=$2 dest=${3:-$2}
  mkdir -p "$root$(dirname "$dest")"
  cp -L "$src" "$root$dest"
}

# new_root <name>: an empty root filesystem with /tmp, /etc/passwd, /etc/group, nsswitch.conf.
new_root() {
  local root="$STAGE_ROOT/$1"
  mkdir -p "$root"/{etc,tmp,root}
  chmod 1777 "$root/tmp"
  chmod 700 "$root/root"
  cat >"$root/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
samsa:x:$SAMSA_UID:$SAMSA_UID:samsa:/home/samsa:/sbin/nologin
nobody:x:$NOBODY_UID:$NOBODY_UID:nobody:/nonexistent:/sbin/nologin
EOF
  cat >"$root/etc/group" <<EOF
root:x:0:
samsa:x:$SAMSA_UID:
nogroup:x:$NOBODY_UID:
EOF
  # Without this file glibc asks DNS before /etc/hosts and may never read the latter.
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
  echo "$root"
}

# import_root <root> <image> <docker import --change ...>...
import_root() {
  local root=$1 image=$2
  shift 2
  local changes=()
  local c
  for c in "$@"; do changes+=(--change "$c"); done
  log "importing $image ($(du -sh "$root" | cut -f1))"
  tar --numeric-owner -C "$root" -c . | docker import "${changes[@]}" - "$image" >/dev/null
}

need_build() {
  if [ "$REBUILD" = 1 ] || ! image_exists "$1"; then return 0; fi
  log "$1 exists (--rebuild to make it again)"
  return 1
}

if need_build "$NODE_BASE"; then
  node_bin=$(command -v node)
  node_bin=$(readlink -f "$node_bin")
  root=$(new_root node)
  mkdir -p "$root/home/samsa"
  chown "$SAMSA_UID:$SAMSA_UID" "$root/home/samsa"
  copy_file "$root" "$node_bin" /usr/bin/node
  # The native addons of the project's dependencies may need more than node itself (librt).
  addons=()
  if [ -d node_modules ]; then
    while IFS= read -r f; do addons+=("$f"); done < <(find node_modules -name '*.node' -type f)
  fi
  for lib in $(libs_of "$node_bin" "${addons[@]}"); do copy_file "$root" "$lib"; done
  for lib in librt.so.1 libresolv.so.2; do
    for dir in /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib64 /usr/lib64 /lib /usr/lib; do
      if [ -e "$dir/$lib" ]; then copy_file "$root" "$dir/$lib"; break; fi
    done
  done
  import_root "$root" "$NODE_BASE" \
    'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    'CMD ["node"]'
fi

if need_build "$ETCD_BASE"; then
  command -v etcd >/dev/null 2>&1 || apt_install etcd-server
  command -v etcdctl >/dev/null 2>&1 || apt_install etcd-client
  etcd_bin=$(readlink -f "$(command -v etcd)")
  etcdctl_bin=$(readlink -f "$(command -v etcdctl)")
  root=$(new_root etcd)
  # Same paths as the public quay.io/coreos/etcd image, so one compose file fits both.
  copy_file "$root" "$etcd_bin" /usr/local/bin/etcd
  copy_file "$root" "$etcdctl_bin" /usr/local/bin/etcdctl
  for lib in $(libs_of "$etcd_bin" "$etcdctl_bin"); do copy_file "$root" "$lib"; done
  mkdir -p "$root/var/lib/etcd"
  import_root "$root" "$ETCD_BASE" \
    'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    'ENV ETCDCTL_API=3' \
    'WORKDIR /var/lib/etcd' \
    'EXPOSE 2379 2380' \
    'CMD ["/usr/local/bin/etcd"]'
fi

if need_build "$PROMETHEUS_BASE"; then
  command -v prometheus >/dev/null 2>&1 || apt_install prometheus
  prom_bin=$(readlink -f "$(command -v prometheus)")
  promtool_bin=$(readlink -f "$(command -v promtool)")
  root=$(new_root prometheus)
  # Same paths as the public prom/prometheus image.
  copy_file "$root" "$prom_bin" /bin/prometheus
  copy_file "$root" "$promtool_bin" /bin/promtool
  for lib in $(libs_of "$prom_bin" "$promtool_bin"); do copy_file "$root" "$lib"; done
  # Debian's build serves its web assets from here.
  if [ -d /usr/share/prometheus/web ]; then
    mkdir -p "$root/usr/share/prometheus"
    cp -a /usr/share/prometheus/web "$root/usr/share/prometheus/"
  fi
  mkdir -p "$root/etc/prometheus" "$root/prometheus"
  cat >"$root/etc/prometheus/prometheus.yml" <<'EOF'
# Minimal default; docker-compose.yml mounts deploy/prometheus/prometheus.yml over it.
global:
  scrape_interval: 15s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:9090"]
EOF
  chown "$NOBODY_UID:$NOBODY_UID" "$root/prometheus"
  import_root "$root" "$PROMETHEUS_BASE" \
    'ENV PATH=/bin:/usr/bin' \
    'USER nobody' \
    'WORKDIR /prometheus' \
    'EXPOSE 9090' \
    'ENTRYPOINT ["/bin/prometheus"]' \
    'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]'
fi

log "base images ready"
cat <<EOF
export NODE_IMAGE=$NODE_BASE
export ETCD_IMAGE=$ETCD_BASE
export PROMETHEUS_IMAGE=$PROMETHEUS_BASE
EOF
