#!/usr/bin/env bash
# Rebuilds vendor/libssh2-sys: the libssh2-sys crate from crates.io, trimmed to what its build
# script compiles, with vendor/libssh2-whole-packet.patch applied. See vendor/README.md.
#
#   ./scripts/vendor-libssh2.sh            # the version below
#   VERSION=0.3.5 ./scripts/vendor-libssh2.sh
#
# After a new version: check that the patch still applies, run the tests and
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
patch -d "$DEST" -p1 --no-backup-if-mismatch < vendor/libssh2-whole-packet.patch
echo "vendored libssh2-sys $VERSION into $DEST" >&2
