#!/usr/bin/env bash
# Builds the Samsa image (samsa:latest) on this machine without any registry:
#   1. scripts/bootstrap.sh (`npm ci` when node_modules is missing or stale): the local base has
#      no npm, so the build uses this machine's node_modules (and their native addons' libraries
#      go into the node base);
#   2. scripts/docker-setup.sh: Docker, a running engine and the local base images; `npm run gen`;
#   3. docker build -f deploy/Dockerfile from the local samsa/node-base:20.
# Then prints the exports docker-compose.yml reads to use the local images:
#   eval "$(bash scripts/docker-build.sh)" && docker-compose up -d
#
# Usage: bash scripts/docker-build.sh [--rebuild]   (--rebuild: remake the base images too)
# Environment: SERVICE_IMAGE (default samsa:latest), NODE_IMAGE (default samsa/node-base:20; set it
# to node:20-bookworm-slim where a registry is reachable).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "docker-build: $*" >&2; }

setup_args=()
for arg in "$@"; do
  case "$arg" in
    --rebuild) setup_args+=(--rebuild) ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "docker-build: unknown argument $arg" >&2; exit 2 ;;
  esac
done

SERVICE_IMAGE=${SERVICE_IMAGE:-samsa:latest}
NODE_IMAGE=${NODE_IMAGE:-samsa/node-base:20}

started=$SECONDS
bash scripts/bootstrap.sh >&2
# docker-setup.sh prints the base images' exports on stdout; keep them for the end.
base_exports=$(bash scripts/docker-setup.sh "${setup_args[@]}")
log "npm run gen"
npm run --silent gen >&2

log "docker build -t $SERVICE_IMAGE (from $NODE_IMAGE)"
# The legacy builder: it needs no buildx plugin and pulls nothing for a local base. Host network:
# the build itself needs none, but it then needs no bridge either (dockerd runs --bridge=none).
DOCKER_BUILDKIT=0 docker build \
  --network host \
  -f deploy/Dockerfile \
  --build-arg "NODE_IMAGE=$NODE_IMAGE" \
  -t "$SERVICE_IMAGE" \
  . >&2
# Images of earlier builds of this Dockerfile that no tag names any more (replaced samsa:latest,
# old build stages): dropped, so repeated builds do not fill the disk.
docker image prune -f --filter label=io.samsa.image >/dev/null
log "built $SERVICE_IMAGE in $((SECONDS - started))s"

echo "$base_exports"
# The base this image was built on (a later line wins over the setup's default), for `--build`.
echo "export NODE_IMAGE=$NODE_IMAGE"
echo "export SERVICE_IMAGE=$SERVICE_IMAGE"
