#!/usr/bin/env bash
# Generates TypeScript types for every proto under proto/ into services/shared/generated/.
#
# The options must match PROTO_LOADER_OPTIONS in services/shared/grpc/proto.ts exactly, because
# the types describe the objects that loader produces at run time:
#   keepCase=false (camelCase fields), longs=String (int64 as decimal strings), enums as numbers
#   (the loader's default, so ErrorCode values are the same numbers as the TS enum), bytes as
#   Buffer (the default), defaults=true, oneofs=true.
# Generated files are never edited by hand; they are rebuilt by `npm run gen` (and before
# `typecheck` and `test`), and kept out of git.
set -euo pipefail
cd "$(dirname "$0")/.."

proto_dir="proto"
out_dir="services/shared/generated"

# The roots are the .proto files under proto/ that declare a service (paths relative to proto/,
# the import root, in a stable order). Files without a service (errors.proto) are still generated
# through the imports of the roots; passing them as roots would make the generator emit a
# top-level file with unused imports, which `noUnusedLocals` rejects.
mapfile -t protos < <(cd "$proto_dir" && grep -rlE --include='*.proto' '^service[[:space:]]' . \
  | sed 's|^\./||' | LC_ALL=C sort)
if [ "${#protos[@]}" -eq 0 ]; then
  echo "gen-proto: no .proto file under $proto_dir/ declares a service" >&2
  exit 1
fi

gen="node_modules/.bin/proto-loader-gen-types"
if [ ! -x "$gen" ]; then
  echo "gen-proto: $gen not found; run 'npm ci' first" >&2
  exit 1
fi

# Generate into a scratch directory first so a failed run never leaves a half-written tree.
tmp_dir="$(mktemp -d)"
trap 'rm -rf "$tmp_dir"' EXIT

"$gen" \
  --grpcLib=@grpc/grpc-js \
  --longs=String \
  --defaults \
  --oneofs \
  --includeComments \
  --importFileExtension=.js \
  --includeDirs="$proto_dir" \
  --outDir="$tmp_dir" \
  "${protos[@]}"

# Unchanged output is left alone, so a type check running at the same time never sees the
# directory missing.
if [ -d "$out_dir" ] && diff -rq "$tmp_dir" "$out_dir" >/dev/null 2>&1; then
  echo "gen-proto: ${protos[*]} -> $out_dir/ (unchanged)"
  exit 0
fi
chmod 755 "$tmp_dir"
rm -rf "$out_dir"
mkdir -p "$(dirname "$out_dir")"
# -T: never move the new tree *into* a directory a concurrent run has just put in place.
if ! mv -T "$tmp_dir" "$out_dir" 2>/dev/null; then
  echo "gen-proto: $out_dir/ was written by a concurrent run; keeping that one"
  exit 0
fi
trap - EXIT
echo "gen-proto: ${protos[*]} -> $out_dir/"
