#!/bin/sh
# The offline base image for `make docker`: a Debian root made by debootstrap from the mirror apt
# already uses, with python3, python3-venv and the packages of docker/apt-packages.txt installed
# in it (chroot apt-get, security updates included), imported with `docker import`. Debian's
# packages only; no container registry. Needs root, debootstrap and a running Docker engine.
#
#   docker/debian-base.sh [--keep] IMAGE [MANIFEST]
#
# --keep: do nothing when IMAGE exists and holds the same package list (its label
# npgd-recon.packages); `docker rmi IMAGE` makes the next run fetch newer security updates.
# DEBIAN_SUITE (default bookworm: Debian 12, Python 3.11, what CI runs and what
# requirements-cpu.lock is for, whatever the host runs), DEBIAN_MIRROR and DEBIAN_SECURITY
# (default: the Debian mirrors of the host's apt sources, else deb.debian.org); a
# snapshot.debian.org URL pins the package versions. MANIFEST gets `dpkg-query -W` of the root.
set -eu

keep=
if [ "${1:-}" = --keep ]; then keep=1; shift; fi
image=${1:?usage: docker/debian-base.sh [--keep] IMAGE [MANIFEST]}
manifest=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
packages="python3 python3-venv passwd $(cat "$here/apt-packages.txt")"
if [ -n "$keep" ] && [ "$(docker image inspect -f '{{index .Config.Labels "npgd-recon.packages"}}' \
        "$image" 2>/dev/null)" = "$packages" ]; then
    echo "debian-base: $image is there (docker rmi $image to make it afresh)"
    exit 0
fi

# The mirrors of the host's sources: deb822 (*.sources) or one-line (*.list) entries.
sources_uri() {  # $1: a regular expression the URI must match
    { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
      grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        | awk '{for (i = 2; i <= NF; i++) if ($i !~ /^\[/) {print $i; break}}'
    } | grep -E "$1" | head -n 1
}
DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-$(sources_uri '/debian/?$' || true)}
security=${DEBIAN_SECURITY:-$(sources_uri '/debian-security/?$' || true)}
mirror=${mirror:-http://deb.debian.org/debian}
security=${security:-http://deb.debian.org/debian-security}

for tool in debootstrap docker chroot; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "debian-base: $tool is missing (apt-get install -y docker.io debootstrap)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "debian-base: debootstrap needs root" >&2; exit 1; }
docker info >/dev/null 2>&1 || {
    echo "debian-base: no Docker engine answers (start dockerd)" >&2; exit 1; }

root=$(mktemp -d /var/tmp/npgd-rootfs.XXXXXX)
chmod 755 "$root"  # apt's _apt user reads its downloads there
cleanup() {
    umount "$root/proc" 2>/dev/null || true
    rm -rf "$root" "$root.log" "${apt_log:-}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "debian-base: debootstrap --variant=minbase $DEBIAN_SUITE from $mirror"
debootstrap --variant=minbase "$DEBIAN_SUITE" "$root" "$mirror" >"$root.log" 2>&1 \
    || { tail -n 20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

# The image's own sources: the release, its updates and its security updates.
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $DEBIAN_SUITE $DEBIAN_SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $DEBIAN_SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
# No service may start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"

mount -t proc proc "$root/proc"
in_root() { chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }
apt_log=$(mktemp /var/tmp/npgd-apt.XXXXXX)
apt_in_root() {  # apt-get's chatter to a log, shown when it fails
    in_root apt-get -q -y "$@" >"$apt_log" 2>&1 || { tail -n 20 "$apt_log" >&2; exit 1; }
}
apt_in_root update
apt_in_root upgrade
echo "debian-base: apt-get install $packages"
# shellcheck disable=SC2086  # one package name a word
apt_in_root install --no-install-recommends $packages
rm -f "$apt_log"
version=$(in_root python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
in_root python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "debian-base: $DEBIAN_SUITE has Python $version, npgd-recon needs 3.11 or newer" >&2; exit 1; }
if [ -n "$manifest" ]; then
    mkdir -p "$(dirname "$manifest")"
    # shellcheck disable=SC2016  # dpkg-query fields, not shell variables
    in_root dpkg-query -W -f '${Package}\t${Version}\n' >"$manifest"
fi
in_root apt-get clean
umount "$root/proc"

# Nothing of this host or of this run in the image: lists, caches, logs, host name, resolver.
rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/machine-id"
: >"$root/etc/hostname"
: >"$root/etc/resolv.conf"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/debconf/*-old \
    "$root"/tmp/* "$root"/var/tmp/* "$root"/root/.cache
find "$root/var/log" -type f -delete

# Files in name order with numeric owners; times are kept (Python's .pyc files check them).
echo "debian-base: docker import -> $image (Python $version)"
tar -C "$root" --sort=name --numeric-owner -cf - . \
    | docker import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        --change "LABEL npgd-recon.packages=\"$packages\" npgd-recon.debian=\"$DEBIAN_SUITE $mirror\"" \
        --message "debootstrap --variant=minbase $DEBIAN_SUITE $mirror; apt-get install $packages" \
        - "$image" >/dev/null
docker image inspect -f 'debian-base: {{.RepoTags}} {{.Size}} bytes' "$image"
