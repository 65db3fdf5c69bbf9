#!/usr/bin/env bash
# Builds upstream OpenThread's simulation CLI (`ot-cli-ftd`) for the `openthread-sim` firmware variant.
#
# The OpenThread sources come from the crates.io package `openthread-sys` (pinned below): cargo fetches it like
# any crate, into its own registry cache, so nothing from OpenThread is committed here. The binaries land in
# target/openthread-sim/: ot-cli-ftd (real time, its radio a UDP multicast group) and ot-cli-ftd-vt (the same
# sources with OT_SIMULATION_VIRTUAL_TIME and OT_SIMULATION_VIRTUAL_TIME_UART: timers, radio and console driven
# by an event dispatcher, the case's air hub on the case clock), next to BUILD-INFO, which records the package, the upstream repository
# commit the package was published from and the build options. A second run with the same BUILD-INFO does nothing.
#
# Needs cmake, ninja and a C++ compiler; installs them with apt when run as root and they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

OT_SYS_VERSION="0.4.0"
OUT="target/openthread-sim"
WORK="$OUT/work"
# CoAP and CoAPS: the CLI's `coap` and `coaps` commands. OT_COAPS also turns on mbedtls' PSK and ECDHE-ECDSA
# key exchanges (third_party/mbedtls/mbedtls-config.h), which the `coaps psk` and `coaps x509` commands use.
# BUILD_TESTING off: the package ships OpenThread without tests/unit.
CMAKE_OPTIONS=(
  -DOT_PLATFORM=simulation
  -DOT_FTD=ON -DOT_MTD=OFF -DOT_RCP=OFF
  -DOT_APP_CLI=ON -DOT_APP_NCP=OFF -DOT_APP_RCP=OFF
  -DOT_COAP=ON -DOT_COAPS=ON
  -DOT_COMPILE_WARNING_AS_ERROR=OFF
  -DBUILD_TESTING=OFF
  -DCMAKE_BUILD_TYPE=Release
)

VIRTUAL_TIME_OPTIONS=(-DOT_SIMULATION_VIRTUAL_TIME=ON -DOT_SIMULATION_VIRTUAL_TIME_UART=ON)

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v ninja >/dev/null || missing+=(ninja-build)
command -v c++ >/dev/null || missing+=(g++)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "build.sh: missing ${missing[*]}; install them (Debian: apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

# A throwaway manifest whose only dependency is the pinned package: `cargo fetch` downloads and unpacks it,
# `cargo metadata` says where.
mkdir -p "$WORK/fetch/src"
cat >"$WORK/fetch/Cargo.toml" <<TOML
[package]
name = "openthread-sim-sources"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
openthread-sys = "=$OT_SYS_VERSION"

[workspace]
TOML
: >"$WORK/fetch/src/lib.rs"
cargo fetch --quiet --manifest-path "$WORK/fetch/Cargo.toml"
manifest="$(cargo metadata --quiet --format-version 1 --manifest-path "$WORK/fetch/Cargo.toml" |
  python3 -c 'import json,sys
pkgs = json.load(sys.stdin)["packages"]
print(next(p["manifest_path"] for p in pkgs if p["name"] == "openthread-sys"))')"
pkg_dir="$(dirname "$manifest")"
src="$pkg_dir/openthread"
[ -f "$src/CMakeLists.txt" ] || { echo "build.sh: no OpenThread sources in $pkg_dir" >&2; exit 1; }

# The package records the commit of its own repository; OpenThread is an unmodified submodule there.
pkg_commit="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["git"]["sha1"])' \
  "$pkg_dir/.cargo_vcs_info.json" 2>/dev/null || echo unknown)"
info="openthread-sys $OT_SYS_VERSION
openthread-sys repository commit $pkg_commit
options ${CMAKE_OPTIONS[*]} -ffile-prefix-map=<sources>/=
virtual time (ot-cli-ftd-vt) ${VIRTUAL_TIME_OPTIONS[*]}"

if [ -x "$OUT/ot-cli-ftd" ] && [ -x "$OUT/ot-cli-ftd-vt" ] && [ -f "$OUT/BUILD-INFO" ] && [ "$(cat "$OUT/BUILD-INFO")" = "$info" ]; then
  echo "ot-cli-ftd up to date ($OUT/ot-cli-ftd, openthread-sys $OT_SYS_VERSION)"
  exit 0
fi

rm -f "$OUT/BUILD-INFO"
# The source path is cut from __FILE__, so an assertion reads `assert failed at
# src/core/...:<line>` wherever cargo keeps its registry (and the binary does not depend on it).
# build <dir> <binary name> <extra cmake options..>
build() {
  local dir="$WORK/$1" name="$2"
  shift 2
  rm -rf "$dir"
  cmake -S "$src" -B "$dir" -G Ninja "${CMAKE_OPTIONS[@]}" "$@" \
    -DCMAKE_C_FLAGS="-ffile-prefix-map=$src/=" -DCMAKE_CXX_FLAGS="-ffile-prefix-map=$src/=" \
    -DOT_PACKAGE_VERSION="openthread-sys-$OT_SYS_VERSION" >"$WORK/cmake-$name.log"
  ninja -C "$dir" ot-cli-ftd >"$WORK/ninja-$name.log"
  cp "$dir/examples/apps/cli/ot-cli-ftd" "$OUT/$name"
  echo "built $OUT/$name from openthread-sys $OT_SYS_VERSION"
}
build build ot-cli-ftd
build build-vt ot-cli-ftd-vt "${VIRTUAL_TIME_OPTIONS[@]}"
printf '%s\n' "$info" >"$OUT/BUILD-INFO"
