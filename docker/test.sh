#!/bin/sh
# The checks of `make docker-test` on the images `make docker` built:
#   1. the recon image reconstructs SCAN offline (--network none, SCAN's folder as /data, as
#      the non-root user of the image) into a DICOM series; dciodvfy on the host finds neither
#      errors nor warnings in its first and last image;
#   2. the serve image starts with its port published on 127.0.0.1 only, its HEALTHCHECK (an MRD
#      CLOSE exchange) says healthy, and python-ismrmrd-server's client.py sends SCAN to it and
#      gets back as many finite, non-zero images as the series has.
# Containers it started are removed on exit, also on failure or Ctrl-C; images stay. Outputs
# stay in SCAN's folder.
#
#   docker/test.sh SCAN [TAG]        TAG of npgd-recon / npgd-serve (default cpu)
#
# PYTHON (default .venv/bin/python: ismrmrd, h5py) runs MRD_CLIENT, python-ismrmrd-server's
# client.py (github.com/kspaceKelvin/python-ismrmrd-server).
set -eu

scan=${1:?usage: docker/test.sh SCAN [TAG]}
tag=${2:-cpu}
python=${PYTHON:-.venv/bin/python}
client=${MRD_CLIENT:-../shared/tools/python-ismrmrd-server/client.py}
dir=$(cd "$(dirname "$scan")" && pwd)
name=$(basename "$scan")
recon=npgd-docker-test-recon-$$
serve=npgd-docker-test-serve-$$

fail() { echo "docker-test: FAILED: $*" >&2; exit 1; }
for image in "npgd-recon:$tag" "npgd-serve:$tag"; do
    docker image inspect "$image" >/dev/null 2>&1 || fail "no image $image (make docker)"
done
[ -f "$client" ] || fail "no $client (MRD_CLIENT: python-ismrmrd-server's client.py)"
command -v dciodvfy >/dev/null || fail "dciodvfy is missing (apt-get install dicom3tools)"

cleanup() { docker rm -f "$recon" "$serve" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM
rm -rf "$dir/series" "$dir/series.png" "$dir/served.h5" "$dir/client.log"
chmod 777 "$dir"  # the image's user (uid 1000) writes the series there

echo "docker-test: npgd-recon:$tag $name --out series --png (--network none)"
start=$(date +%s)
docker run --name "$recon" --network none -v "$dir:/data" "npgd-recon:$tag" \
    "/data/$name" --out /data/series --png
docker rm "$recon" >/dev/null
echo "docker-test: reconstruction in the container: $(($(date +%s) - start)) s"
[ -f "$dir/series.png" ] || fail "no preview series.png"
count=$(find "$dir/series" -name '*.dcm' | wc -l)
[ "$count" -gt 0 ] || fail "no DICOM files in $dir/series"
first=$(find "$dir/series" -name '*.dcm' | sort | head -n 1)
last=$(find "$dir/series" -name '*.dcm' | sort | tail -n 1)
for file in "$first" "$last"; do
    if dciodvfy "$file" 2>&1 | grep -E '^(Error|Warning)'; then fail "dciodvfy: $file"; fi
done
echo "docker-test: $count DICOM images; dciodvfy: no errors and no warnings in" \
    "$(basename "$first") and $(basename "$last")"

echo "docker-test: npgd-serve:$tag on 127.0.0.1 (health checked every 2 s here)"
docker run -d --name "$serve" --health-interval 2s -p 127.0.0.1::9002 "npgd-serve:$tag" >/dev/null
health=starting
for _ in $(seq 120); do
    health=$(docker inspect -f '{{.State.Health.Status}}' "$serve")
    [ "$health" = starting ] || break
    [ "$(docker inspect -f '{{.State.Running}}' "$serve")" = true ] || break
    sleep 1
done
if [ "$health" != healthy ]; then
    docker logs "$serve" 2>&1 | tail -n 20 >&2
    fail "the server's health is '$health'"
fi
address=$(docker port "$serve" 9002/tcp | head -n 1)
case $address in 127.0.0.1:*) ;; *) fail "port published on $address, not 127.0.0.1";; esac
port=${address##*:}
echo "docker-test: healthy ($(docker inspect -f '{{(index .State.Health.Log 0).Output}}' "$serve" \
    | head -n 1)); client.py -c npgd $name -> 127.0.0.1:$port"
start=$(date +%s)
"$python" "$client" -a 127.0.0.1 -p "$port" -c npgd -G npgd -o "$dir/served.h5" \
    -l "$dir/client.log" -q "$dir/$name" >/dev/null
echo "docker-test: client.py round trip: $(($(date +%s) - start)) s"
# The server's TEXT messages and the client's own complaints, as client.py logs them.
if grep -E '(ERROR|WARNING) +npgd-serve|closed unexpectedly|Failed to|Abort' "$dir/client.log"; then
    fail "errors in $dir/client.log"
fi
"$python" - "$dir/served.h5" "$count" <<'EOF' || fail "the images client.py received"
import sys

import h5py
import numpy as np

path, expected = sys.argv[1], int(sys.argv[2])
with h5py.File(path, "r") as f:
    groups = [g for k, g in f["npgd"].items() if k.startswith("image_")]
    images = [np.asarray(g["data"]) for g in groups]
received = sum(len(i) for i in images)
ok = received == expected and all(np.isfinite(i).all() and np.abs(i).max() > 0 for i in images)
print(f"docker-test: {received} images back in {path} (expected {expected}), "
      f"{'finite and non-zero' if ok else 'NOT as expected'}")
sys.exit(0 if ok else 1)
EOF
if docker logs "$serve" 2>&1 | grep -E 'internal error|Traceback'; then fail "server log"; fi
echo "docker-test: passed"
