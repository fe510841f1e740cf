# shellcheck shell=bash
# Helpers to make a Debian root filesystem with debootstrap and import it as a
# local image, for machines where no image registry is reachable. Sourced by
# scripts/build-real-images.sh (the nginx/httpd test images) and
# scripts/build-base-image.sh (the local bases of `make image`).
#
# The mirror is the one this machine's apt sources already use (read from
# /etc/apt/sources.list, /etc/apt/sources.list.d/*.list and *.sources at build
# time; nothing is hard-coded or written into the repository); DEBIAN_MIRROR
# overrides it. Root filesystems are kept as tarballs under the cache dir, so a
# rebuild on the same machine (removed images, a fresh engine) takes seconds.
#
# Callers set: log() (a message to stderr).

# debian_mirror SUITE: the URI of the first enabled `deb` source that serves
# SUITE itself (not SUITE-security / -updates), from the one-line and the deb822 formats.
debian_mirror() {
    local suite=$1 f
    shopt -s nullglob
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # deb [options] URI suite component...
        awk -v suite="$suite" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        # Stanzas separated by blank lines; fields Types, URIs, Suites, Enabled.
        awk -v suite="$suite" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " suite " ") && uris != "") {
                    split(uris, u, " "); print u[1]; found = 1
                }
                types = uris = suites = enabled = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); if (found) exit; next }
            {
                key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "")
                if (key == "types") types = $0
                else if (key == "uris") uris = $0
                else if (key == "suites") suites = $0
                else if (key == "enabled") enabled = tolower($0)
            }
            END { if (!found) flush() }' "$f"
    done | head -n 1
}

# rootfs_tarball CACHE_DIR SUITE INCLUDE: the cached tarball's path; its name
# carries the suite and the package list, so changing either builds a new one.
rootfs_tarball() {
    printf '%s/rootfs-%s-minbase-%s.tar\n' "$1" "$2" "${3//,/-}"
}

# build_rootfs CACHE_DIR SUITE INCLUDE [CUSTOMIZE]: debootstrap SUITE (minbase +
# the comma-separated INCLUDE packages) and tar it into the cached tarball.
# CUSTOMIZE, when given, is a function called with the root directory before
# the tarball is made (e.g. to add runtime directories). Package caches, apt
# lists, docs and manuals are removed (not needed to run). Prints the tarball's
# path. Needs root and debootstrap.
build_rootfs() {
    local cache=$1 suite=$2 include=$3 customize=${4:-}
    local tarball mirror work r
    tarball=$(rootfs_tarball "$cache" "$suite" "$include")
    if [ "$(id -u)" -ne 0 ]; then
        log "debootstrap needs root; run as root, or build once as root so $tarball is cached"
        return 1
    fi
    if ! command -v debootstrap >/dev/null 2>&1; then
        log "debootstrap is not installed; run scripts/ensure-docker.sh (installs it on Debian)"
        return 1
    fi
    mirror=${DEBIAN_MIRROR:-$(debian_mirror "$suite")}
    if [ -z "$mirror" ]; then
        log "no 'deb' source for suite $suite in /etc/apt/sources.list or /etc/apt/sources.list.d/; set DEBIAN_MIRROR"
        return 1
    fi
    mkdir -p "$cache"
    chmod 0755 "$cache"
    work=$(mktemp -d "$cache/build.XXXXXX")
    # The work dir goes on any exit (an interrupted debootstrap leaves nothing behind).
    _rootfs_work=$work
    trap '[ -z "${_rootfs_work:-}" ] || rm -rf -- "$_rootfs_work"' EXIT
    log "debootstrap $suite (minbase + $include) from $mirror; takes a minute or two, once"
    if ! debootstrap --variant=minbase --include="$include" "$suite" "$work/root" "$mirror" \
            >"$work/debootstrap.log" 2>&1; then
        log "debootstrap failed; last lines of its log:"
        tail -n 30 "$work/debootstrap.log" >&2
        rm -rf -- "$work"
        return 1
    fi
    r="$work/root"
    rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r"/usr/share/doc/* \
        "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/var/log/*.log "$r"/var/log/apt/*
    if [ -n "$customize" ]; then
        "$customize" "$r" || { rm -rf -- "$work"; return 1; }
    fi
    # Only a complete tarball is renamed into place; the root filesystem is removed.
    tar --numeric-owner -C "$r" -cf "$work/rootfs.tar" .
    mv "$work/rootfs.tar" "$tarball"
    rm -rf -- "$work"
    _rootfs_work=""
    log "cached $tarball ($(du -h "$tarball" | cut -f1))"
    printf '%s\n' "$tarball"
}
