#!/usr/bin/env bash
# Builds the katran Debian package: packaging/build-deb.sh [VERSION]
#
# VERSION defaults to Cargo.toml's. Builds the release binary, generates the
# man page and completions with the binary itself (`katran generate`),
# assembles the file tree, and runs `dpkg-deb --build --root-owner-group`.
# Needs only dpkg-deb, gzip and cargo (strip and objdump from binutils are
# used when present). Progress goes to stderr; the last line of stdout is
# the path of the .deb: <target dir>/debian/katran_VERSION_ARCH.deb.
#
# The package installs the unit but never enables or starts it: the shipped
# /etc/katran.toml names an interface that has to be checked first. The
# maintainer scripts run `systemctl daemon-reload` only when systemd is the
# running init (so installing into a container or a chroot works), and on
# removal stop the daemon, which leaves the dataplane forwarding (prerm says
# how to take it down).
set -euo pipefail
umask 022
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

say() { echo "build-deb: $*" >&2; }

version=${1:-$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)}
if ! [[ $version =~ ^[0-9][A-Za-z0-9.+~-]*$ ]]; then
    echo "build-deb: \"$version\" is not a Debian version" >&2
    exit 1
fi
arch=$(dpkg --print-architecture)
target=${CARGO_TARGET_DIR:-target}
out="$target/debian"
root="$out/katran_${version}_${arch}"
# Overridable like Debian's own tools (DEBFULLNAME/DEBEMAIL).
maintainer=${KATRAN_MAINTAINER:-"${DEBFULLNAME:-katran maintainers} <${DEBEMAIL:-katran@example.org}>"}
# Dates in the package: the last commit's, so rebuilds are identical.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
deb="$out/katran_${version}_${arch}.deb"

say "cargo build --release"
# the binary says the package's version (src/main.rs reads KATRAN_VERSION;
# only the binary is rebuilt for it, not the library)
KATRAN_VERSION=$version cargo build --release --locked --bin katran >&2
bin="$target/release/katran"

rm -rf "$root"
install -d -m 0755 "$root"/DEBIAN \
    "$root"/usr/bin \
    "$root"/etc \
    "$root"/lib/systemd/system \
    "$root"/usr/share/man/man5 \
    "$root"/usr/share/man/man8 \
    "$root"/usr/share/bash-completion/completions \
    "$root"/usr/share/zsh/vendor-completions \
    "$root"/usr/share/fish/vendor_completions.d \
    "$root"/usr/share/doc/katran/examples

install -m 0755 "$bin" "$root/usr/bin/katran"
if command -v strip >/dev/null; then
    strip --strip-unneeded "$root/usr/bin/katran"
fi
install -m 0644 packaging/katran.toml "$root/etc/katran.toml"
install -m 0644 packaging/katran.service "$root/lib/systemd/system/katran.service"

say "man pages and completions"
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
"$bin" generate man "$gen" 2>/dev/null
gzip -9n <"$gen/katran.8" >"$root/usr/share/man/man8/katran.8.gz"
gzip -9n <man/katran.toml.5 >"$root/usr/share/man/man5/katran.toml.5.gz"
"$bin" generate completions bash >"$root/usr/share/bash-completion/completions/katran"
"$bin" generate completions zsh >"$root/usr/share/zsh/vendor-completions/_katran"
"$bin" generate completions fish >"$root/usr/share/fish/vendor_completions.d/katran.fish"

install -m 0644 examples/configs/*.toml "$root/usr/share/doc/katran/examples/"
install -m 0644 README.md "$root/usr/share/doc/katran/README.md"
cat >"$root/usr/share/doc/katran/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: katran
Comment: a layer-4 XDP load balancer driven by one TOML file. The BPF
 dataplane reproduces the frames of Facebook's Katran (same flow hash,
 Maglev ring and encapsulation) but is its own implementation.

Files: *
Copyright: 2026 the katran authors
License: GPL-2.0-only

License: GPL-2.0-only
 This program is free software; you can redistribute it and/or modify it
 under the terms of the GNU General Public License version 2 as published
 by the Free Software Foundation.
 .
 This program is distributed in the hope that it will be useful, but
 WITHOUT ANY WARRANTY; without even the implied warranty of MERCHANTABILITY
 or FITNESS FOR A PARTICULAR PURPOSE. See the GNU General Public License
 for more details.
 .
 On Debian systems the full text of the GNU General Public License version
 2 is in /usr/share/common-licenses/GPL-2.
EOF
chmod 0644 "$root/usr/share/doc/katran/copyright"

# libc6: the newest symbol version the binary asks for.
libc="libc6"
if command -v objdump >/dev/null; then
    glibc=$(objdump -T "$root/usr/bin/katran" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -Vu | tail -n1)
    [ -n "$glibc" ] && libc="libc6 (>= $glibc)"
fi
cat >"$gen/changelog" <<EOF
katran ($version) unstable; urgency=medium

  * Release $version.

 -- $maintainer  $(date -R -u -d "@$epoch")
EOF
gzip -9n <"$gen/changelog" >"$root/usr/share/doc/katran/changelog.gz"

installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)

cat >"$root/DEBIAN/control" <<EOF
Package: katran
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $libc, libgcc-s1, libelf1, zlib1g
Section: net
Priority: optional
Description: layer-4 XDP load balancer driven by one TOML file
 katran forwards packets for virtual IPs to real servers with an XDP
 program, over IP-in-IP or GUE, and the reals answer clients directly
 (direct server return). One declarative file, /etc/katran.toml, says
 what to balance; "katran apply" or the katran service make the kernel
 match it atomically, and the dataplane keeps forwarding across restarts.
 .
 The service is installed but neither enabled nor started.
EOF

echo /etc/katran.toml >"$root/DEBIAN/conffiles"

# Shared by the maintainer scripts: is systemd the running init?
systemd_running='[ -d /run/systemd/system ]'

cat >"$root/DEBIAN/postinst" <<EOF
#!/bin/sh
# Makes systemd see the (new) unit. Never enables or starts katran: the
# administrator does, once /etc/katran.toml describes this machine. On an
# upgrade, restarts a running daemon: the new one finds the old build's
# dataplane pinned and replaces it without dropping connections
# (docs/replace.md); without a daemon, 'katran apply' does the same.
set -e
if [ "\$1" = configure ] && $systemd_running; then
    systemctl daemon-reload || true
    if systemctl is-active --quiet katran.service; then
        deb-systemd-invoke try-restart katran.service || \\
            echo "katran: restarting the daemon failed; the old dataplane keeps forwarding" >&2
    fi
fi
exit 0
EOF

cat >"$root/DEBIAN/prerm" <<EOF
#!/bin/sh
# On removal, stops the daemon. That leaves the dataplane pinned and
# forwarding (as any stop does); say how to take it down.
set -e
if [ "\$1" = remove ]; then
    # deb-systemd-invoke (init-system-helpers, essential) does nothing
    # where systemd is not running.
    deb-systemd-invoke stop katran.service || true
    if [ -d /sys/fs/bpf/katran ]; then
        echo "katran: the dataplane pinned at /sys/fs/bpf/katran keeps forwarding;" \\
            "run 'katran down' first to detach it" >&2
    fi
fi
exit 0
EOF

cat >"$root/DEBIAN/postrm" <<EOF
#!/bin/sh
# Makes systemd forget the unit; on purge, also the administrator's
# enablement (a dangling symlink once the unit is gone).
set -e
case "\$1" in
purge)
    rm -f /etc/systemd/system/multi-user.target.wants/katran.service
    ;;
esac
if { [ "\$1" = remove ] || [ "\$1" = purge ]; } && $systemd_running; then
    systemctl daemon-reload || true
fi
exit 0
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles"

# md5sums of every shipped file but the conffiles, as dh_md5sums writes them
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort \
    | grep -vxF -f <(sed 's|^/||' DEBIAN/conffiles) | xargs -r md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

say "dpkg-deb --build"
find "$root" -newermt "@$epoch" -exec touch -h -d "@$epoch" {} +
SOURCE_DATE_EPOCH=$epoch dpkg-deb --build --root-owner-group "$root" "$deb" >&2
rm -rf "$root"
echo "$deb"
