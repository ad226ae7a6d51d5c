# Shared helpers for the scripts in this directory (sourced, not run).

# Installs the Debian packages named in "$@" that are missing.
ensure_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> installing Debian packages: ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Packages needed to build Latchkey.
# libxml2-dev, libxmlsec1-dev and libclang (for bindgen): samael, the SAML library, links xmlsec.
BUILD_PACKAGES=(pkg-config libssl-dev gcc libxml2-dev libxmlsec1-dev libclang1-14 libclang-common-14-dev)
