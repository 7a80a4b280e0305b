#!/usr/bin/env bash
# Rewrites constraints.txt: every package a fresh venv resolves from pyproject.toml (the
# extras test and bench included), at the versions it takes today, and the build backend.
# Run it (`make pins`) to move to newer releases; then run the tests and commit both files.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
pip=("$tmp/venv/bin/pip" install -q)
"${pip[@]}" --upgrade pip
"${pip[@]}" -e '.[test,bench]'
# An isolated build takes the newest backend pyproject admits; pin the one it takes today.
mapfile -t backend < <("$tmp/venv/bin/python" -c 'import tomllib
print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")')
"${pip[@]}" --upgrade "${backend[@]}"
{
    echo "# Every Python package ovsfabric is tested with, at the version it is tested with:"
    echo "# written by scripts/pin-deps.sh (make pins) on Python $("$tmp/venv/bin/python" -c \
        'import platform; print(platform.python_version())'); see docs/dependencies.md."
    "$tmp/venv/bin/pip" freeze --all --exclude-editable | LC_ALL=C sort -f
} >constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt: $(grep -c '==' constraints.txt) packages"
