#!/bin/sh
# Recreates the demo's shares on the new server, standing in for the real
# share definitions and permissions: every "NAME MODE" line of
# etc/shares.conf names a folder of the share and the mode it gets, and the
# shares that were set up are listed in etc/shares.active.
# Runs in the playbook's folder, like every local command. Safe to run again.
set -eu

root=demo-data/new-server
conf=$root/etc/shares.conf
active=$root/etc/shares.active

if [ ! -f "$conf" ]; then
    echo "missing $conf: the step upload-share-config puts it there" >&2
    exit 1
fi

: > "$active.tmp"
while read -r name mode rest; do
    case $name in
        ''|'#'*) continue ;;
    esac
    dir=$root/share/$name
    if [ ! -d "$dir" ]; then
        echo "share $name: no folder $dir" >&2
        exit 1
    fi
    chmod "$mode" "$dir"
    printf '%s %s %s\n' "$name" "$mode" "$dir" >> "$active.tmp"
    echo "share $name: $dir, mode $mode"
done < "$conf"
# Written in one move, so a half-finished run never looks done to the check.
mv "$active.tmp" "$active"
