#!/usr/bin/env bash
# The Debian packages, made by scripts/package from this (already built) tree: their files, control
# data and maintainer scripts; the unpacked receiver checks the packaged configuration; the unpacked
# tdhook finds the packaged samples; the unit passes systemd-analyze verify; lintian finds no error
# (its warnings are printed).
#   package_test.sh SOURCE_DIR BINARY_DIR
set -euo pipefail
source_dir=$(realpath "$1") binary_dir=$(realpath "$2")
work=$(mktemp -d "${TMPDIR:-/tmp}/tdhook-package-test.XXXXXX")
trap 'rm -rf "$work"' EXIT

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

mapfile -t debs < <(TDHOOK_REUSE_BUILD=1 BUILD_DIR="$binary_dir" PACKAGE_DIR="$work/out" \
	"$source_dir/scripts/package")
printf 'package: %s\n' "${debs[@]}"
runtime=$(printf '%s\n' "${debs[@]}" | grep '/tdhook_[^/]*\.deb$') || { echo "no tdhook_*.deb"; exit 1; }
dev=$(printf '%s\n' "${debs[@]}" | grep '/tdhook-dev_[^/]*\.deb$') || { echo "no tdhook-dev_*.deb"; exit 1; }

# Files.
root=$work/root
dpkg-deb -x "$runtime" "$root"
dpkg-deb -x "$dev" "$root"
for f in usr/bin/tdhook-receiver usr/bin/tdhook lib/systemd/system/tdhook-receiver.service \
	etc/tdhook/tdhook-receiver.toml usr/share/man/man8/tdhook-receiver.8.gz \
	usr/share/man/man1/tdhook.1.gz usr/share/bash-completion/completions/tdhook \
	usr/share/bash-completion/completions/tdhook-receiver \
	usr/share/tdhook/samples/events/lead.create.json usr/share/tdhook/scripts/crm-bridge.sh \
	usr/share/tdhook/scripts/operator-select.sh usr/share/doc/tdhook/copyright \
	usr/share/doc/tdhook/changelog.gz usr/share/doc/tdhook-dev/copyright \
	usr/include/tdhook/tdhook.hpp usr/include/tdhook/verify.hpp; do
	[ -e "$root/$f" ] && ok "/$f" || fail "/$f is not in the packages"
done
# The library directory is GNUInstallDirs' for the tree's prefix: /usr/lib/<multiarch> from
# scripts/package (configured for /usr), /usr/lib from a tree configured for /usr/local.
libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:PATH=//p' "$binary_dir/CMakeCache.txt")
for f in "$libdir/libtdhook.a" "$libdir/cmake/tdhook/tdhookConfig.cmake"; do
	[ -e "$root/usr/$f" ] && ok "/usr/$f" || fail "/usr/$f is not in tdhook-dev"
done
# Headers and the library only in tdhook-dev; no secret shipped.
dpkg-deb -c "$runtime" | grep -qE '/usr/include/|\.a$' && fail "tdhook holds development files"
dpkg-deb -c "$runtime" | grep -qE '/etc/tdhook/secret' && fail "tdhook ships a secret file"
[ -x "$root/usr/share/tdhook/scripts/crm-bridge.sh" ] || fail "the sample scripts are not executable"
grep -q '^ExecStart=/usr/bin/tdhook-receiver \$TDHOOK_ARGS$' "$root/lib/systemd/system/tdhook-receiver.service" ||
	fail "the packaged unit does not run /usr/bin/tdhook-receiver"
grep -qE '^Exec.*/usr/local' "$root/lib/systemd/system/tdhook-receiver.service" &&
	fail "the packaged unit names /usr/local"
# The configuration checked before a start and a reload is the one that runs: same arguments.
[ "$(grep -cE '^Exec(StartPre|Start|Reload)=/usr/bin/tdhook-receiver \$TDHOOK_ARGS( --check-config)?$' \
	"$root/lib/systemd/system/tdhook-receiver.service")" = 3 ] ||
	fail "ExecStartPre, ExecStart and ExecReload do not run tdhook-receiver with \$TDHOOK_ARGS"
grep -q '^ExecReload=/bin/kill -HUP \$MAINPID$' "$root/lib/systemd/system/tdhook-receiver.service" ||
	fail "ExecReload sends no SIGHUP after the check"

# Control data and maintainer scripts.
dpkg-deb -e "$runtime" "$work/control"
for f in control conffiles postinst prerm postrm md5sums; do
	[ -e "$work/control/$f" ] && ok "DEBIAN/$f" || fail "no DEBIAN/$f"
done
grep -qx /etc/tdhook/tdhook-receiver.toml "$work/control/conffiles" ||
	fail "the sample configuration is not a conffile"
grep -q 'adduser --system --group' "$work/control/postinst" || fail "postinst adds no user"
grep -q 'chmod 0640 /etc/tdhook/secret' "$work/control/postinst" || fail "postinst: no secret file"
grep -q 'deb-systemd-helper' "$work/control/postinst" || fail "postinst: no deb-systemd-helper"
grep -q 'purge' "$work/control/postrm" || fail "postrm: no purge"
depends=$(dpkg-deb -f "$runtime" Depends)
echo "Depends: $depends"
for lib in libc6 libssl3 libsqlite3-0 libnats3.4 libcpp-httplib0.11 adduser; do
	grep -q "$lib" <<<"$depends" && ok "Depends on $lib" || fail "Depends lacks $lib"
done
[ "$(dpkg-deb -f "$runtime" Version)" = "$("$root/usr/bin/tdhook" --version | awk '{print $2}')" ] ||
	fail "tdhook --version is not the package's version"
[ "$(dpkg-deb -f "$runtime" Version)" = "$("$root/usr/bin/tdhook-receiver" --version | awk '{print $2}')" ] ||
	fail "tdhook-receiver --version is not the package's version"

# tdhook-dev, unpacked anywhere, builds samples/consumer with find_package(tdhook).
if cmake -S "$source_dir/samples/consumer" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$root/usr" \
	>"$work/consumer.log" 2>&1 && cmake --build "$work/consumer" >>"$work/consumer.log" 2>&1; then
	ok "samples/consumer builds against the unpacked tdhook-dev"
else
	fail "samples/consumer does not build against tdhook-dev: $(tail -20 "$work/consumer.log")"
fi

# The packaged configuration, checked by the unpacked receiver: its paths moved under $work (the
# secret file, the data and log directories) and the unpacked tree (the scripts), nothing else.
mkdir -p "$work/etc" "$work/log" "$work/data"
echo 0b5e3f0e-1111-4222-8333-444455556666 >"$work/etc/secret"
sed -e "s|/etc/tdhook/|$work/etc/|g" -e "s|/var/lib/tdhook|$work/data|g" \
	-e "s|/var/log/tdhook/|$work/log/|g" -e "s|/usr/share/tdhook/|$root/usr/share/tdhook/|g" \
	"$root/etc/tdhook/tdhook-receiver.toml" >"$work/etc/tdhook-receiver.toml"
if "$root/usr/bin/tdhook-receiver" --config "$work/etc/tdhook-receiver.toml" --check-config \
	>"$work/check.out" 2>&1; then
	ok "tdhook-receiver --check-config accepts the packaged configuration"
	grep -q "sink       crm = exec:$root/usr/share/tdhook/scripts/crm-bridge.sh" "$work/check.out" ||
		fail "--check-config does not show the crm sink: $(cat "$work/check.out")"
else
	fail "tdhook-receiver --check-config: $(cat "$work/check.out")"
fi

# The unpacked tdhook finds the packaged samples (beside it in ../share/tdhook/samples/events):
# a sample that only the unpacked tree has is listed.
cp "$root/usr/share/tdhook/samples/events/lead.create.json" \
	"$root/usr/share/tdhook/samples/events/zz.packaged.only.json"
env -u TDHOOK_SAMPLES_DIR "$root/usr/bin/tdhook" events | grep -q '^zz.packaged.only' &&
	ok "tdhook finds the packaged samples" || fail "tdhook does not find /usr/share/tdhook/samples"

# The unit, with the unpacked tree as root: the binaries it runs and the man pages it names are
# the packaged ones; the units it needs (sysinit.target, network-online.target...) are copied
# from this machine's systemd.
cp -rn /lib/systemd/system/. "$root/lib/systemd/system/"
if MANPATH="$root/usr/share/man" systemd-analyze verify --root="$root" \
	"$root/lib/systemd/system/tdhook-receiver.service" >"$work/verify.out" 2>&1; then
	ok "systemd-analyze verify"
else
	fail "systemd-analyze verify: $(cat "$work/verify.out")"
fi

# lintian: no error; every warning and information printed.
if lintian --fail-on error --tag-display-limit 0 --display-info "$runtime" "$dev" >"$work/lintian.out" 2>&1; then
	ok "lintian: no error"
else
	fail "lintian found errors"
fi
sed 's/^/  lintian: /' "$work/lintian.out"

[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
