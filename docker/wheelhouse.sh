#!/bin/sh
# The Python half of `make docker`, made on the host so that `docker build` needs no network:
#   docker/build/dist/             the wheel of this project (tracked and not-ignored files of
#                                  the working tree; zip times from the last commit)
#   docker/build/wheels-VARIANT/   its dependencies, exactly docker/requirements-VARIANT.lock
#                                  (pip download --require-hashes: names, versions and sha256)
#
#   docker/wheelhouse.sh [VARIANT]           VARIANT: cpu (default) or gpu
#   docker/wheelhouse.sh --lock [VARIANT]    resolve docker/requirements-VARIANT.txt and the
#                                            project's dependencies afresh, rewrite the lock
#
# PYTHON (default .venv/bin/python) runs pip with the host's pip configuration (indexes,
# find-links; the CPU torch build elsewhere: PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu).
# Wheels are chosen for the image, not the host: IMAGE_PYTHON (3.11, bookworm's python3) and
# IMAGE_GLIBC (2.36, bookworm's: every manylinux wheel for glibc 2.17 to it, x86_64).
set -eu

lock_mode=
if [ "${1:-}" = --lock ]; then lock_mode=1; shift; fi
variant=${1:-cpu}
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
image_python=${IMAGE_PYTHON:-3.11}
glibc=${IMAGE_GLIBC:-2.36}
platforms="--platform manylinux2014_x86_64"
for minor in $(seq 17 "${glibc#2.}"); do platforms="$platforms --platform manylinux_2_${minor}_x86_64"; done
requirements=docker/requirements-$variant.txt
lock=docker/requirements-$variant.lock
build=docker/build
[ -f "$requirements" ] || { echo "wheelhouse: no $requirements" >&2; exit 1; }

work=$(mktemp -d /var/tmp/npgd-wheels.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
pip_for_image() {
    # shellcheck disable=SC2086  # one option a word
    "$python" -m pip "$@" --only-binary=:all: --implementation cp \
        --python-version "$image_python" $platforms --quiet
}

# The project's wheel, from a copy of the files git would commit (no .venv, runs or caches).
mkdir "$work/src" "$work/dist"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # shellcheck disable=SC2016  # the inner shell expands $f
    git ls-files -z --cached --others --exclude-standard \
        | xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' _ \
        | xargs -0 cp -p --parents -t "$work/src"
    SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
    export SOURCE_DATE_EPOCH
else
    cp -a pyproject.toml README.md sampling bart_baselines npgd_recon "$work/src/"
fi
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$work/src"
project=$(ls "$work/dist"/*.whl)

if [ -n "$lock_mode" ]; then
    pip_for_image download --dest "$work/resolved" --requirement "$requirements" "$project"
    {
        echo "# What the $variant image installs besides npgd-recon: $requirements and the"
        echo "# dependencies of pyproject.toml, resolved by \`docker/wheelhouse.sh --lock $variant\`"
        echo "# for Python $image_python, glibc $glibc, x86_64. Edit the inputs, not this file."
        for wheel in "$work"/resolved/*.whl; do
            name=$(basename "$wheel" | cut -d- -f1)
            [ "$name" = npgd_recon ] && continue
            version=$(basename "$wheel" | cut -d- -f2)
            echo "$name==$version --hash=sha256:$(sha256sum "$wheel" | cut -d' ' -f1)"
        done
    } >"$lock"
    echo "wheelhouse: wrote $lock ($(grep -c -- --hash "$lock") wheels)"
fi
[ -f "$lock" ] || { echo "wheelhouse: no $lock; make it with docker/wheelhouse.sh --lock $variant" >&2; exit 1; }

# Exactly the locked wheels (pip's own cache makes a second run quick).
mkdir "$work/wheels"
pip_for_image download --no-deps --require-hashes --dest "$work/wheels" --requirement "$lock"
if [ "$variant" = cpu ] && ! ls "$work"/wheels/torch-*+cpu-*.whl >/dev/null 2>&1; then
    echo "wheelhouse: the cpu lock must pin a +cpu torch build" >&2; exit 1
fi
# The lock must hold every dependency of the project as pyproject.toml now names them.
pip_for_image install --dry-run --ignore-installed --target "$work/target" --no-index \
    --find-links "$work/wheels" "$project" >/dev/null \
    || { echo "wheelhouse: $lock lacks what $(basename "$project") needs;" \
              "docker/wheelhouse.sh --lock $variant makes it afresh" >&2; exit 1; }
mkdir -p "$build"
rm -rf "$build/dist" "$build/wheels-$variant"
mv "$work/dist" "$build/dist"
mv "$work/wheels" "$build/wheels-$variant"
echo "wheelhouse: $(find "$build/wheels-$variant" -name '*.whl' | wc -l) wheels in $build/wheels-$variant" \
    "($(du -sh "$build/wheels-$variant" | cut -f1)), $(basename "$project") in $build/dist"
