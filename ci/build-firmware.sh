#!/usr/bin/env bash
# Builds the real image of one firmware variant with west, where the variant's manifest says:
#   firmware/variants/<variant>.toml  [build] ncs, board, sample, hex  +  kconfig = [fragments...]
# The fragments go to the build as OVERLAY_CONFIG (later ones override earlier ones, as in the manifest).
# Needs: west and the Zephyr SDK/toolchain of that NCS release (the `ncs-build` runner), python3 >= 3.11.
# One NCS checkout per release is kept under $NCS_ROOT (default ~/ncs) and created on first use.
#
# Usage: ci/build-firmware.sh [--dry-run] <variant>
#   --dry-run  print the commands instead of running them (no west needed)
# Prints the path of the built hex (the manifest's build.hex, relative to the repository root) last.
set -euo pipefail

dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
variant="${1:?usage: ci/build-firmware.sh [--dry-run] <variant>}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
manifest="$repo/firmware/variants/$variant.toml"
[ -f "$manifest" ] || { echo "no manifest $manifest" >&2; exit 2; }

# Read the manifest with Python's tomllib; emit shell-quoted assignments.
vars="$(python3 - "$manifest" <<'PY'
import shlex, sys, tomllib, pathlib
path = pathlib.Path(sys.argv[1])
m = tomllib.loads(path.read_text())
b = m.get("build")
if not b:
    sys.exit(f"{path}: no [build] table: variant {m.get('name')} has no real image")
for key in ("ncs", "board", "sample", "hex"):
    if not b.get(key):
        sys.exit(f"{path}: [build] needs {key}")
frags = [str((path.parent / k).resolve()) for k in m.get("kconfig", [])]
missing = [f for f in frags if not pathlib.Path(f).is_file()]
if missing:
    sys.exit(f"{path}: missing Kconfig fragment(s): {', '.join(missing)}")
print(f"ncs={shlex.quote(b['ncs'])}")
print(f"board={shlex.quote(b['board'])}")
print(f"sample={shlex.quote(b['sample'])}")
print(f"hex={shlex.quote(b['hex'])}")
print(f"overlays={shlex.quote(';'.join(frags))}")
PY
)"
eval "$vars"

ncs_dir="${NCS_ROOT:-$HOME/ncs}/$ncs"
build_dir="$repo/$(dirname "$(dirname "$hex")")"   # build/<variant>/zephyr/zephyr.hex -> build/<variant>

run() {
  if [ "$dry" = 1 ]; then printf '+'; printf ' %q' "$@"; printf '\n'; else "$@"; fi
}

if [ ! -d "$ncs_dir/.west" ]; then
  run west init -m https://github.com/nrfconnect/sdk-nrf --mr "$ncs" "$ncs_dir"
fi
if [ "$dry" = 0 ]; then cd "$ncs_dir"; fi
run west update --narrow -o=--depth=1
run west build --pristine always -b "$board" -d "$build_dir" "$ncs_dir/$sample" -- "-DOVERLAY_CONFIG=$overlays"
if [ "$dry" = 0 ]; then
  [ -f "$repo/$hex" ] || { echo "west build finished but $hex is missing" >&2; exit 1; }
  sha256sum "$repo/$hex"
fi
echo "$hex"
