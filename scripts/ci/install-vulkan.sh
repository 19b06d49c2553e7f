#!/usr/bin/env bash
# Install a software Vulkan driver so that onnxruntime-node's built-in WebGPU
# execution provider (Dawn over Vulkan) finds an adapter on a GPU-less machine.
#
#   scripts/ci/install-vulkan.sh            # auto: lavapipe (Mesa >= 24), else SwiftShader
#   KFQN_VULKAN_DRIVER=lavapipe    scripts/ci/install-vulkan.sh   # lavapipe only, fail otherwise
#   KFQN_VULKAN_DRIVER=swiftshader scripts/ci/install-vulkan.sh   # Chromium's SwiftShader only
#
# Debian/Ubuntu (apt) only. Idempotent: does nothing (no apt calls at all) when a
# suitable driver is already installed. Needs root (or passwordless sudo).
# Progress goes to stderr; the LAST LINE OF STDOUT is the ICD json path to use:
#
#   export VK_ICD_FILENAMES="$(scripts/ci/install-vulkan.sh | tail -n1)"
#
# Why not the distro's lavapipe on Debian 12: Mesa 22.3 lavapipe is rejected by
# Dawn ("Vulkan shaderUniform*ArrayDynamicIndexing required."), so
# onnxruntime reports "Failed to get a WebGPU adapter: No supported adapters".
# Mesa 25 from bookworm-backports works (about 3-6 GFLOP/s on a CPU core or two).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
MODE="${KFQN_VULKAN_DRIVER:-auto}"
MIN_MESA=24          # first Mesa major assumed good enough for Dawn (22 fails, 25 works)
SWIFTSHADER_ICD=/usr/lib/chromium/vk_swiftshader_icd.json
LOG="$(mktemp -t install-vulkan.XXXXXX.log)"
trap 'rm -f "$LOG"' EXIT

log() { printf '[install-vulkan] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "must run as root (or have sudo)"
  SUDO=(sudo -n)
fi

# Run an apt command quietly; dump its output only when it fails.
apt_q() {
  if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive "$@" >"$LOG" 2>&1; then
    tail -n 40 "$LOG" >&2
    return 1
  fi
}
APT_INSTALL=(apt-get install -y -q --no-install-recommends
             -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
# Install; if that fails (e.g. stale package lists -> 404), refresh lists once and retry.
apt_install() {
  apt_q "${APT_INSTALL[@]}" "$@" && return 0
  log "install failed; running apt-get update and retrying once"
  apt_q apt-get update -q && apt_q "${APT_INSTALL[@]}" "$@"
}

installed_version() { dpkg-query -W -f='${db:Status-Abbrev}${Version}' "$1" 2>/dev/null | sed -n 's/^ii *//p' || true; }
mesa_ok() { # $1 = version string
  [ -n "$1" ] && dpkg --compare-versions "$1" ge "$MIN_MESA"
}
lvp_icd() { # lavapipe ICD json shipped by the installed mesa-vulkan-drivers
  dpkg -L mesa-vulkan-drivers 2>/dev/null | grep -E '/vulkan/icd\.d/lvp_icd[^/]*\.json$' | head -n1 || true
}
lists_present() { compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; }

finish() { # $1 = icd path
  [ -f "$1" ] || die "ICD file $1 missing after install"
  log "using $1"
  printf '%s\n' "$1"
  exit 0
}

# ---------------------------------------------------------------- fast paths
if [ "$MODE" != swiftshader ]; then
  v="$(installed_version mesa-vulkan-drivers)"
  if mesa_ok "$v" && [ -n "$(installed_version libvulkan1)" ] && icd="$(lvp_icd)" && [ -n "$icd" ]; then
    log "lavapipe already installed (mesa-vulkan-drivers $v)"
    finish "$icd"
  fi
fi
swiftshader_present() { [ -f "$SWIFTSHADER_ICD" ] && [ -n "$(installed_version libvulkan1)" ]; }
if [ "$MODE" = swiftshader ] && swiftshader_present; then
  log "SwiftShader already installed (chromium $(installed_version chromium))"
  finish "$SWIFTSHADER_ICD"
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get not found; only Debian/Ubuntu are supported"

# ---------------------------------------------------------------- lavapipe
install_lavapipe() {
  local codename cand target=() src=""
  # shellcheck disable=SC1091
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  if ! lists_present; then
    log "apt-get update (no package lists yet)"
    apt_q apt-get update -q || return 1
  fi
  cand="$(apt-cache policy mesa-vulkan-drivers 2>/dev/null | sed -n 's/^ *Candidate: *//p' || true)"
  if ! mesa_ok "$cand"; then
    [ -n "$codename" ] || { log "unknown distribution codename"; return 1; }
    # Debian only: Ubuntu has no <codename>-backports Mesa on deb.debian.org.
    grep -qi '^ID=debian' /etc/os-release || { log "distro Mesa $cand < $MIN_MESA and not Debian"; return 1; }
    if ! grep -rqsE "^[^#]*${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
      src=/etc/apt/sources.list.d/kfqn-${codename}-backports.sources
      log "adding ${codename}-backports ($src)"
      printf '%s\n' \
        'Types: deb' \
        'URIs: http://deb.debian.org/debian' \
        "Suites: ${codename}-backports" \
        'Components: main' \
        'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' |
        "${SUDO[@]}" tee "$src" >/dev/null
    fi
    if [[ "$(apt-cache policy 2>/dev/null || true)" != *"${codename}-backports"* ]]; then
      log "apt-get update (for ${codename}-backports)"
      if ! apt_q apt-get update -q; then
        # Don't leave a source behind that breaks every later `apt-get update`.
        if [ -n "$src" ]; then "${SUDO[@]}" rm -f "$src"; fi
        return 1
      fi
    fi
    target=(-t "${codename}-backports")
    cand="$(apt-cache policy "${target[@]}" mesa-vulkan-drivers 2>/dev/null | sed -n 's/^ *Candidate: *//p' || true)"
    mesa_ok "$cand" || { log "no Mesa >= $MIN_MESA in ${codename}-backports (candidate: ${cand:-none})"; return 1; }
  fi
  log "installing mesa-vulkan-drivers $cand + libvulkan1"
  apt_install "${target[@]}" mesa-vulkan-drivers libvulkan1 || return 1
  mesa_ok "$(installed_version mesa-vulkan-drivers)" || return 1
  [ -n "$(lvp_icd)" ]
}

# ---------------------------------------------------------------- SwiftShader
install_swiftshader() {
  if swiftshader_present; then log "SwiftShader already installed"; return 0; fi
  lists_present || { log "apt-get update"; apt_q apt-get update -q || return 1; }
  log "installing chromium (for its SwiftShader Vulkan ICD; ~80 MB download) + libvulkan1"
  apt_install chromium libvulkan1 || return 1
  [ -f "$SWIFTSHADER_ICD" ]
}

case "$MODE" in
  lavapipe)    install_lavapipe || die "could not install lavapipe (Mesa >= $MIN_MESA)"; finish "$(lvp_icd)" ;;
  swiftshader) install_swiftshader || die "could not install chromium's SwiftShader"; finish "$SWIFTSHADER_ICD" ;;
  auto)
    if install_lavapipe; then finish "$(lvp_icd)"; fi
    log "lavapipe unavailable; falling back to Chromium's SwiftShader"
    install_swiftshader || die "could not install any software Vulkan driver"
    finish "$SWIFTSHADER_ICD" ;;
  *) die "KFQN_VULKAN_DRIVER must be auto, lavapipe or swiftshader (got '$MODE')" ;;
esac
