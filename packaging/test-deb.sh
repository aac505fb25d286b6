#!/usr/bin/env bash
# Builds the .deb (packaging/build-deb.sh), installs it, checks what it
# installed (binary, conffile, unit, man pages, completions), then removes
# and purges it and checks that everything is gone. Needs root (dpkg -i);
# as another user it prints "skipped: ..." and exits 0 (exits 1 instead under
# KATRAN_REQUIRE_PRIVILEGED=1, as in CI).
#
# Prints one line per check and a final "N passed, M failed"; exits 1 when
# anything failed. Refuses to run where a katran package is already
# installed, since it ends by purging it.
set -uo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

if [ "$(id -u)" -ne 0 ]; then
    if [ "${KATRAN_REQUIRE_PRIVILEGED:-}" = 1 ]; then
        echo "test-deb: needs root to install the package, and KATRAN_REQUIRE_PRIVILEGED=1 forbids skipping" >&2
        exit 1
    fi
    echo "skipped: test-deb: needs root to install the package"
    exit 0
fi
if dpkg-query -W -f='${Status}' katran 2>/dev/null | grep -q 'install ok installed'; then
    echo "test-deb: a katran package is installed already; this test would purge it" >&2
    exit 1
fi

passed=0
failed=0
pass() {
    echo "ok: $1"
    passed=$((passed + 1))
}
fail() {
    echo "FAIL: $1"
    [ -n "${2:-}" ] && sed 's/^/    /' <<<"$2"
    failed=$((failed + 1))
}
# check NAME COMMAND...: passes when COMMAND exits 0; shows its output if not.
check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$out"; fi
}
# quiet NAME COMMAND...: passes when COMMAND exits 0 and prints nothing on
# stderr (stdout is discarded).
quiet() {
    local name=$1 err
    shift
    if err=$("$@" 2>&1 >/dev/null) && [ -z "$err" ]; then pass "$name"; else fail "$name" "${err:-non-zero exit}"; fi
}
finish() {
    echo "test-deb: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

for tool in dpkg-deb man systemd-analyze gzip; do
    command -v "$tool" >/dev/null || fail "tool $tool" "not installed (scripts/deps.sh installs it)"
done
[ "$failed" -eq 0 ] || finish

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
# a package version other than Cargo's: the binary must say the package's
deb_version="$version+test1"
if ! deb=$(packaging/build-deb.sh "$deb_version" | tail -n1) || [ ! -f "$deb" ]; then
    fail "build-deb.sh" "no package built"
    finish
fi
pass "build $deb"

files=(
    /usr/bin/katran
    /etc/katran.toml
    /lib/systemd/system/katran.service
    /usr/share/man/man8/katran.8.gz
    /usr/share/man/man5/katran.toml.5.gz
    /usr/share/bash-completion/completions/katran
    /usr/share/zsh/vendor-completions/_katran
    /usr/share/fish/vendor_completions.d/katran.fish
    /usr/share/doc/katran/copyright
)
contents=$(dpkg-deb --contents "$deb" | awk '{print $NF}' | sed 's/^\.//')
missing=()
for f in "${files[@]}" /usr/share/doc/katran/examples/minimal.toml; do
    grep -qx "$f" <<<"$contents" || missing+=("$f")
done
if [ ${#missing[@]} -eq 0 ]; then pass "package contents"; else fail "package contents" "missing: ${missing[*]}"; fi
check "control: Depends" grep -q '^Depends: .*libelf1.*zlib1g' <(dpkg-deb --field "$deb")

# --- installed -------------------------------------------------------------
check "dpkg -i" dpkg -i "$deb"
check "conffile /etc/katran.toml registered" grep -q '/etc/katran.toml' \
    <(dpkg-query -W -f='${Conffiles}\n' katran)
if out=$(katran --version 2>&1) && [ "$out" = "katran $deb_version" ]; then
    pass "katran --version: $out"
else
    fail "katran --version" "$out"
fi
check "katran check -c /etc/katran.toml" katran check -c /etc/katran.toml
quiet "dpkg --verify katran (md5sums)" dpkg --verify katran
check "md5sums list the binary" grep -q ' usr/bin/katran$' /var/lib/dpkg/info/katran.md5sums

# The unit, offline: systemd need not be the running init for either.
unit=/lib/systemd/system/katran.service
if out=$(systemd-analyze verify "$unit" 2>&1) && [ -z "$out" ]; then
    pass "systemd-analyze verify $unit"
else
    fail "systemd-analyze verify $unit" "${out:-non-zero exit}"
fi
sec=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1)
exposure=$(sed -n 's/.*Overall exposure level for katran.service: \([0-9.]*\).*/\1/p' <<<"$sec")
if [ -n "$exposure" ] && awk -v e="$exposure" 'BEGIN { exit !(e < 3.0) }'; then
    pass "systemd-analyze security: exposure $exposure (< 3.0)"
else
    fail "systemd-analyze security: exposure ${exposure:-?} (want < 3.0)" "$(grep '✗' <<<"$sec")"
fi

# Man pages: found by name, and rendered by groff without a warning.
# Slim images tell dpkg not to install /usr/share/man at all; there, the
# pages are checked as the package holds them.
export MANWIDTH=80
mandir=/usr/share/man
if grep -qsE '^path-exclude=?/usr/share/man' /etc/dpkg/dpkg.cfg.d/*; then
    echo "skipped: man -w: dpkg excludes /usr/share/man here (/etc/dpkg/dpkg.cfg.d); checking the pages in the .deb"
    extracted=$(mktemp -d)
    trap 'rm -rf "$extracted"' EXIT
    dpkg-deb -x "$deb" "$extracted"
    mandir=$extracted/usr/share/man
else
    check "man -w katran" test "$(man -w 8 katran)" = /usr/share/man/man8/katran.8.gz
    check "man -w katran.toml" test "$(man -w 5 katran.toml)" = /usr/share/man/man5/katran.toml.5.gz
fi
quiet "man --warnings katran.8" man --warnings -l "$mandir/man8/katran.8.gz"
quiet "man --warnings katran.toml.5" man --warnings -l "$mandir/man5/katran.toml.5.gz"

# Completions: each parses in its shell (scripts/deps.sh installs zsh and
# fish; without them the check is skipped, or fails under
# KATRAN_REQUIRE_PRIVILEGED=1 as in CI).
check "bash completion" bash -c \
    'source /usr/share/bash-completion/completions/katran && complete -p katran'
shell_check() {
    local shell=$1 name=$2
    shift 2
    if command -v "$shell" >/dev/null; then
        check "$name" "$@"
    elif [ "${KATRAN_REQUIRE_PRIVILEGED:-}" = 1 ]; then
        fail "$name: $shell not installed (KATRAN_REQUIRE_PRIVILEGED=1 forbids skipping)"
    else
        echo "skipped: $name: $shell not installed"
    fi
}
shell_check zsh "zsh completion parses" zsh -n /usr/share/zsh/vendor-completions/_katran
shell_check fish "fish completion parses" \
    fish --no-execute /usr/share/fish/vendor_completions.d/katran.fish

# --- removed, then purged --------------------------------------------------
check "dpkg -r katran" dpkg -r katran
left=()
for f in "${files[@]}"; do
    [ "$f" = /etc/katran.toml ] && continue
    [ -e "$f" ] && left+=("$f")
done
if [ ${#left[@]} -eq 0 ]; then pass "removed: binary, unit, man pages, completions"; else fail "removed" "still there: ${left[*]}"; fi
check "removed: the edited-or-not conffile stays" test -f /etc/katran.toml
check "dpkg -P katran" dpkg -P katran
check "purged: /etc/katran.toml gone" test ! -e /etc/katran.toml
check "purged: package unknown to dpkg" bash -c \
    "! dpkg-query -W -f='\${Status}' katran 2>/dev/null | grep -q installed"

# --- upgrade under traffic -------------------------------------------------
# "Previous" packages, each built from its own commit, so the upgrade crosses
# a change of map layout as a real one does: f57be17, the last release
# before dataplane stamps and set-associative tables (per-CPU LRU hashes),
# 04b4073, the last with LRU hashes for the shared table, and 14c291b, the
# last with sets of 4 ways. Where the
# history is not there (a shallow clone), the same source built with a tag
# that changes the BPF object stands in (its stamp differs, its layout does
# not), and the check says which.
# tests/integration/replace.rs runs the old package's daemon on the namespace testbed
# under traffic, installs this build's package over it and restarts the
# daemon (what the postinst does under systemd): the dataplane must be
# replaced with no failed connection, the interface never without XDP, and
# the old build's connection entries carried over.
target_dir=$(realpath "${CARGO_TARGET_DIR:-target}")
upgrade_from() {
    local previous=$1 from old_src old_target old_deb out
    if git cat-file -e "$previous^{commit}" 2>/dev/null; then
        from="release ${previous:0:7}"
        old_src=$(mktemp -d)
        git worktree add --detach "$old_src" "$previous" >/dev/null 2>&1
        # One target directory for the previous builds, apart from this
        # build's: their dependencies are mostly the same crates, built once.
        # Cargo names a path package's units by their place in the
        # workspace, the same in every source tree, so the package's own
        # units are removed first: never taken from another tree's build.
        # Built unoptimized (the old daemon only has to run, and the BPF
        # object is compiled by clang either way): a fraction of the time.
        old_target=$target_dir/previous-releases
        rm -rf "$old_target"/release/.fingerprint/katran* "$old_target"/release/build/katran* \
            "$old_target"/release/deps/*katran* "$old_target"/release/katran
        old_deb=$(cd "$old_src" && CARGO_TARGET_DIR=$old_target CARGO_PROFILE_RELEASE_OPT_LEVEL=0 \
            CARGO_PROFILE_RELEASE_DEBUG=0 packaging/build-deb.sh "${version}~prev" | tail -n1)
        old_deb=$old_target/debian/$(basename "$old_deb")
        git worktree remove --force "$old_src" >/dev/null 2>&1 || rm -rf "$old_src"
    else
        from="this source with -DKATRAN_BUILD_TAG=1 (no history for $previous)"
        old_deb=$(KATRAN_BPF_CFLAGS=-DKATRAN_BUILD_TAG=1 packaging/build-deb.sh "${version}~old" | tail -n1)
    fi
    if [ ! -f "${old_deb:-}" ]; then
        fail "build-deb.sh (previous build: $from)" "no package built"
        return
    fi
    pass "build $old_deb ($from)"
    if out=$(KATRAN_UPGRADE_OLD_DEB=$old_deb KATRAN_UPGRADE_NEW_DEB=$deb \
        cargo test --locked --test integration -- --ignored --nocapture --test-threads=1 \
        replace::upgrading 2>&1) \
        && grep -q "test result: ok. 1 passed" <<<"$out"; then
        pass "upgrade under traffic: $(grep -o 'upgrade [0-9a-z]* -> .*' <<<"$out")"
    else
        fail "upgrade under traffic from $from" "$(tail -n 40 <<<"$out")"
    fi
    dpkg -P katran >/dev/null 2>&1 || true
    rm -f "$old_deb"
}
upgrade_from f57be179906559df2bda3b5651dc45bdf1460b79
upgrade_from 04b4073456f9e31bb5d0dcca8f70803974df0dc7
upgrade_from 14c291b1222e584765b85468369c04b7fe6dec77

finish
