# Shared by scripts/*.sh: idempotent installation steps (bash; sourced).

# apt_install PKG...: install Debian packages (needs root; apt-get update once).
apt_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "need root to apt-get install $*" >&2
        return 1
    fi
    if [ -z "${_APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        _APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

# ensure_tarantool: a tarantool binary on PATH (or $TARANTOOL), else Debian's.
ensure_tarantool() {
    if [ -n "${TARANTOOL:-}" ]; then
        return 0
    fi
    if ! command -v tarantool >/dev/null 2>&1; then
        echo "installing tarantool (apt)" >&2
        apt_install tarantool
    fi
    command -v tarantool >/dev/null 2>&1 || { echo "no tarantool after apt-get install" >&2; return 1; }
}

# ensure_command CMD [PACKAGE]: CMD on PATH, else apt-get install PACKAGE (default CMD).
ensure_command() {
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "installing ${2:-$1} (apt)" >&2
    apt_install "${2:-$1}"
}

# _venv_ok: .venv exists and has a working pip.
_venv_ok() {
    [ -x .venv/bin/python ] && .venv/bin/python -m pip --version >/dev/null 2>&1
}

# ensure_venv EXTRAS: .venv with the package installed editable with [EXTRAS]
# (comma-separated). Re-installs when pyproject.toml is newer than the last install.
ensure_venv() {
    local extras="$1" py
    if ! _venv_ok; then
        rm -rf .venv
        py=$(command -v python3 || true)
        if [ -z "$py" ]; then
            echo "installing python3 (apt)" >&2
            apt_install python3 python3-venv
            py=$(command -v python3)
        fi
        if ! "$py" -m venv .venv >/dev/null 2>&1 || ! _venv_ok; then
            # Debian's python3 has venv (ensurepip) only with python3-venv.
            echo "installing python3-venv (apt)" >&2
            rm -rf .venv
            apt_install python3-venv
            "$py" -m venv .venv
        fi
    fi
    local stamp=".venv/.installed-${extras//,/-}"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "installing the package with [$extras] into .venv" >&2
        .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"
        touch "$stamp"
    fi
}
