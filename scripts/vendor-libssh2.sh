#!/usr/bin/env bash
# Rebuilds vendor/libssh2-sys: the libssh2-sys crate from crates.io, trimmed to what its build
# script compiles, then, in this order:
#   1. vendor/security/*.patch, sorted by name (backported security fixes, if any);
#   2. vendor/libssh2-whole-packet.patch (performance);
#   3. a check that every fix listed in vendor/security/fixes.tsv is in the result.
# See vendor/README.md. scripts/check-vendor.sh runs this and fails if vendor/ differs.
#
#   ./scripts/vendor-libssh2.sh            # the version below
#   VERSION=0.3.5 SHA256=... ./scripts/vendor-libssh2.sh
#
# After a new version: check that the patches still apply, run the tests and
# `SCENARIOS=upload ./scripts/bench.sh`, and update the version in vendor/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=${VERSION:-0.3.4}
# The crate's checksum as crates.io (and Cargo.lock before vendoring) list it.
SHA256=${SHA256:-fce5a0b125f6aeac93b304b35f7f1e9f054aad29ddac57091928e41df3ccd233}
DEST=vendor/libssh2-sys
URL="https://static.crates.io/crates/libssh2-sys/libssh2-sys-$VERSION.crate"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/vendor-libssh2.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

echo "downloading $URL" >&2
curl -fsSL "$URL" -o "$TMP/crate.tar.gz"
got=$(sha256sum "$TMP/crate.tar.gz" | cut -d' ' -f1)
echo "sha256 $got" >&2
if [ -n "$SHA256" ] && [ "$got" != "$SHA256" ]; then
  echo "vendor-libssh2: expected sha256 $SHA256" >&2
  exit 1
fi
tar -xzf "$TMP/crate.tar.gz" -C "$TMP"
SRC="$TMP/libssh2-sys-$VERSION"

rm -rf "$DEST"
mkdir -p "$DEST/libssh2"
cp "$SRC"/{Cargo.toml,build.rs,lib.rs,LICENSE-APACHE,LICENSE-MIT} "$DEST/"
# What build.rs reads: the C sources and headers, the config template, the pkg-config template.
cp -r "$SRC"/libssh2/{src,include,COPYING,libssh2.pc.in} "$DEST/libssh2/"

# Security backports first (they are written against upstream's code), then the performance
# patch. A patch that does not apply stops the script: never vendor half a fix.
for fix in vendor/security/*.patch; do
  [ -e "$fix" ] || continue
  echo "applying $fix" >&2
  patch -d "$DEST" -p1 --forward --no-backup-if-mismatch < "$fix"
done
patch -d "$DEST" -p1 --forward --no-backup-if-mismatch < vendor/libssh2-whole-packet.patch

# Every published security fix must be in the result, whether upstream carries it or a patch
# above adds it. Each line of fixes.tsv: id, file under libssh2/src, how many lines (at least)
# must contain the text, the text (fixed string). A miss means a new version dropped or
# reworded the fix: look at the code, then backport the fix or update the line.
missing=0
while IFS=$'\t' read -r id file count text; do
  case "$id" in '' | '#'*) continue ;; esac
  got=$(grep -cF -- "$text" "$DEST/libssh2/src/$file" || true)
  if [ "$got" -lt "$count" ]; then
    echo "vendor-libssh2: $id: expected $count line(s) with '$text' in src/$file, found $got" >&2
    missing=1
  fi
done < vendor/security/fixes.tsv
if [ "$missing" -ne 0 ]; then
  echo "vendor-libssh2: a security fix is missing from $DEST (see vendor/README.md)" >&2
  exit 1
fi
echo "vendored libssh2-sys $VERSION into $DEST" >&2
