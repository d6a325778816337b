#!/usr/bin/env bash
# Build .gpu/, what benchmarks/gpu_run.sh needs on a GPU machine that has torch but no network:
# cp312 manylinux wheels of the packages it lacks, the training-image cache (npgd-data fetch),
# the MNI template and the mricron templates (INIA19 for training, Colin27 for validation).
# .gpu/ is git-ignored (data are never committed); carry it in the device call. Run from the
# repository root after `make data`. Prints the size that will travel (the limit is 64 MiB
# together with the working tree).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CACHE=${NPGD_DATA_CACHE:-$HOME/.cache/npgd-recon}
rm -rf .gpu && mkdir -p .gpu/whl .gpu/data
# What the GPU machine lacks (torch, numpy, scipy, h5py, scikit-image, safetensors are there).
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/whl ismrmrd xsdata pydicom nibabel pynrrd tqdm typing_extensions
# Training images: the verified cache, compressed (DICOM and raw NRRD shrink well).
tar -czf .gpu/cache.tar.gz -C "$CACHE" .
cp ../shared/data/mni_icbm152_t1_2009a_1mm.nii.gz /usr/share/mricron/templates/ch2.nii.gz \
  /usr/share/mricron/templates/inia19-t1-brain.nii.gz .gpu/data/
du -sh .gpu
