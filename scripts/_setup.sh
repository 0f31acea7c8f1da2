# Shared by scripts/*.sh: idempotent installation steps.

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "need root to apt-get install $*" >&2
        return 1
    fi
    if [ -z "${_APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        _APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
}

ensure_tarantool() {
    command -v tarantool >/dev/null 2>&1 || apt_install tarantool
}

# ensure_venv EXTRAS: .venv with the package installed editable with [EXTRAS].
ensure_venv() {
    local extras="$1" py
    py=$(command -v python3 || true)
    if [ -z "$py" ]; then
        apt_install python3 python3-venv python3-pip
        py=$(command -v python3)
    fi
    if [ ! -x .venv/bin/python ]; then
        "$py" -m venv .venv 2>/dev/null || { apt_install python3-venv; rm -rf .venv; "$py" -m venv .venv; }
    fi
    local stamp=".venv/.installed-$extras"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"
        touch "$stamp"
    fi
}
