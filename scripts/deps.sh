#!/usr/bin/env bash
# Installs what building and testing katran needs on Debian 12 (idempotent).
# clang-19 compiles the BPF programs (clang, 14, the releases packaging/test-deb.sh
# upgrades from); libelf/zlib/pkg-config build the vendored
# libbpf; iproute2/ethtool drive the network-namespace tests; man-db,
# groff-base and systemd (systemd-analyze) check the .deb (packaging/test-deb.sh);
# mosquitto is the MQTT broker of the MQTT end-to-end tests; bird2 the BGP
# daemon of the fleet test (tests/integration/fleet.rs, scripts/demo-fleet); prometheus
# ships promtool, which checks the /metrics output; python3 (3.11, tomllib)
# and bpftool load Katran's program beside ours in the benchmark;
# clang-format checks the style of bpf/ (bpf/.clang-format); zsh and fish
# check that the package's completions parse.
set -euo pipefail

packages=(clang clang-19 llvm libelf-dev zlib1g-dev pkg-config make iproute2 ethtool curl python3 bpftool man-db groff-base systemd mosquitto bird2 prometheus clang-format zsh fish)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust (https://rustup.rs) and re-run" >&2
    exit 1
fi
