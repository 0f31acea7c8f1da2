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

# python_for VERSION: the path of a python VERSION (e.g. 3.12) interpreter, from
# pyenv ($PYENV_ROOT/versions/VERSION.*, the newest) or PATH; nothing if none.
python_for() {
    local version="$1" root="${PYENV_ROOT:-$HOME/.pyenv}" candidate found=""
    for candidate in "$root"/versions/"$version".*/bin/python"$version"; do
        [ -x "$candidate" ] && found="$candidate"  # glob order: the last is the newest patch
    done
    if [ -z "$found" ]; then
        found=$(command -v "python$version" 2>/dev/null || true)
        # pyenv's shim is on PATH even when that version is not installed.
        if [ -n "$found" ] && ! "$found" -c "" >/dev/null 2>&1; then
            found=""
        fi
    fi
    [ -n "$found" ] && echo "$found"
}

# _pyproject_hash [EXTRA...]: changes when pyproject.toml (or any EXTRA string) does.
_pyproject_hash() {
    { cat pyproject.toml; printf '%s\n' "$@"; } | sha256sum | cut -d' ' -f1
}

# _new_venv DIR PYTHON: a fresh virtualenv at DIR with pip >= 25.1 (PEP 735
# dependency groups: pip install --group NAME).
_new_venv() {
    local dir="$1" py="$2"
    rm -rf "$dir"
    if ! "$py" -m venv "$dir" >/dev/null 2>&1 || ! "$dir/bin/python" -m pip --version >/dev/null 2>&1; then
        # Debian's python3 has venv (ensurepip) only with python3-venv.
        echo "installing python3-venv (apt)" >&2
        rm -rf "$dir"
        apt_install python3-venv
        "$py" -m venv "$dir"
    fi
    _ensure_new_pip "$dir"
}

# _ensure_new_pip DIR: the venv's pip understands --group (pip >= 25.1).
_ensure_new_pip() {
    local dir="$1"
    if ! "$dir/bin/python" -c 'import sys, pip
sys.exit(tuple(map(int, pip.__version__.split(".")[:2])) < (25, 1))' 2>/dev/null; then
        "$dir/bin/python" -m pip install -q --disable-pip-version-check "pip>=25.1"
    fi
}

# ensure_venv [GROUP...]: .venv with the package installed editable plus the
# given dependency groups of pyproject.toml (none: the package alone).
# Re-installs when pyproject.toml changed since the last install.
ensure_venv() {
    local py group want
    local -a args=()
    if [ ! -x .venv/bin/python ] || ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
        py=$(command -v python3 || true)
        if [ -z "$py" ]; then
            echo "installing python3 (apt)" >&2
            apt_install python3 python3-venv
            py=$(command -v python3)
        fi
        _new_venv .venv "$py"
    fi
    for group in "$@"; do
        args+=(--group "$group")
    done
    local stamp=".venv/.installed${*:+-}$(IFS=-; echo "$*")"
    want=$(_pyproject_hash)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "installing the package${*:+ with the groups $*} into .venv" >&2
        _ensure_new_pip .venv
        .venv/bin/python -m pip install -q --disable-pip-version-check -e . "${args[@]}"
        echo "$want" > "$stamp"
    fi
}

# ensure_job_venv DIR PYTHON [PIP ARGS...]: a cached venv at DIR made with
# PYTHON, holding `pip install PIP ARGS` (run from the repo root). Made again
# from scratch when pyproject.toml, PYTHON or the arguments change.
ensure_job_venv() {
    local dir="$1" py="$2" want
    shift 2
    want=$(_pyproject_hash "$py" "$@")
    if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    echo "preparing $dir ($("$py" --version 2>&1))" >&2
    _new_venv "$dir" "$py" || return 1
    "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@" || return 1
    echo "$want" > "$dir/.stamp"
}
