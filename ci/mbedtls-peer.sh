#!/usr/bin/env bash
# Build mbedtls's ssl_server2 / ssl_client2 with EC J-PAKE enabled, as a live DTLS peer for the
# ot-hil-dtls interoperability tests (no distribution package enables EC J-PAKE).
#
# The source is the mbedtls 2.28 tree vendored in the crates.io package `mbedtls-sys-auto`,
# fetched with cargo into cargo's own registry cache.
#
# Usage: ci/mbedtls-peer.sh [build-dir]
#   build-dir defaults to $HOME/.cache/ot-hil/mbedtls. Idempotent: an existing build is reused.
#   Prints the programs directory (containing ssl_server2 and ssl_client2) on stdout, last line;
#   progress goes to stderr. Use as:
#     export OT_HIL_MBEDTLS_PROGRAMS="$(ci/mbedtls-peer.sh)"
set -euo pipefail

MBEDTLS_SYS_VERSION="2.28.15"
BUILD_DIR="${1:-${HOME}/.cache/ot-hil/mbedtls}"
PROGRAMS="${BUILD_DIR}/programs/ssl"
JOBS="${MBEDTLS_JOBS:-2}"

log() { echo "mbedtls-peer: $*" >&2; }

if [[ -x "${PROGRAMS}/ssl_server2" && -x "${PROGRAMS}/ssl_client2" && -f "${BUILD_DIR}/.ot-hil-ecjpake" ]]; then
    log "already built in ${BUILD_DIR}"
    echo "${PROGRAMS}"
    exit 0
fi

for tool in cargo python3 make cc; do
    command -v "${tool}" >/dev/null || { log "missing tool: ${tool}"; exit 1; }
done

# A throwaway manifest that depends on the exact crate version; `cargo fetch` downloads it
# (and its dependencies' sources) into the registry cache without compiling anything.
manifest_dir="$(mktemp -d)"
trap 'rm -rf "${manifest_dir}"' EXIT
mkdir -p "${manifest_dir}/src"
: >"${manifest_dir}/src/lib.rs"
cat >"${manifest_dir}/Cargo.toml" <<EOF
[package]
name = "ot-hil-mbedtls-source"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
mbedtls-sys-auto = "=${MBEDTLS_SYS_VERSION}"

[workspace]
EOF
log "fetching mbedtls-sys-auto ${MBEDTLS_SYS_VERSION}"
cargo fetch --quiet --manifest-path "${manifest_dir}/Cargo.toml" >&2

# Ask cargo where it unpacked the crate instead of guessing the registry directory name.
crate_manifest="$(cargo metadata --format-version 1 --offline \
        --manifest-path "${manifest_dir}/Cargo.toml" |
    python3 -c '
import json, sys
meta = json.load(sys.stdin)
for pkg in meta["packages"]:
    if pkg["name"] == "mbedtls-sys-auto":
        print(pkg["manifest_path"])
        break
')"
vendor="$(dirname "${crate_manifest}")/vendor"
[[ -f "${vendor}/scripts/config.py" ]] || { log "no mbedtls source at ${vendor}"; exit 1; }
log "source: ${vendor} ($(grep -m1 'define MBEDTLS_VERSION_STRING ' "${vendor}/include/mbedtls/version.h" | awk '{print $3}'))"

# Copy into a fresh build directory (the registry copy stays pristine and read-only in spirit).
rm -rf "${BUILD_DIR}"
mkdir -p "$(dirname "${BUILD_DIR}")"
cp -r "${vendor}" "${BUILD_DIR}"
chmod -R u+w "${BUILD_DIR}"

cd "${BUILD_DIR}"
python3 scripts/config.py set MBEDTLS_ECJPAKE_C
python3 scripts/config.py set MBEDTLS_KEY_EXCHANGE_ECJPAKE_ENABLED
log "building library and ssl programs with make -j${JOBS}"
start=$(date +%s)
make -j"${JOBS}" -C library >&2
make -j"${JOBS}" -C programs ssl/ssl_server2 ssl/ssl_client2 >&2
log "built in $(($(date +%s) - start)) s"
touch "${BUILD_DIR}/.ot-hil-ecjpake"
echo "${PROGRAMS}"
