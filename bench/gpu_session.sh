#!/usr/bin/env bash
# Everything a session with a lent GPU machine should run, in one command (~8 min on an H100).
#
# The GPU machine has Python 3.12 with torch/torchvision but not smp, rasterio, nibabel,
# albumentations, rio-cogeo or pydantic: they travel as wheels in .whl/ (gitignored). Fetch
# them here once (pip download for cp312 manylinux, see /work/.library/device/README.md):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl segmentation-models-pytorch==0.6.0 rasterio==1.4.4 rio-cogeo morecantile pyproj nibabel \
#     pydantic pydantic-core annotated-types typing-inspection affine cligj click-plugins \
#     albumentations albucore simsimd stringzilla monai pyogrio shapely slicerio pynrrd scipy tqdm
# then run, with the device tool, carrying .whl:   bash bench/gpu_session.sh
# Figures go to bench/RESULTS.md (GPU section), with the commit measured.
set -u
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 DO_NOT_TRACK=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
git log --oneline -1 2>/dev/null || true

echo "== GPU tests"
python3 -m pytest -q -p no:cacheprovider -m gpu tests/pipeline tests/models/train/test_train_gpu.py

work=$(mktemp -d)
# Each benchmark prints fp32 and auto (bf16) side by side, end to end, model-only and MONAI
# (monai's wheel travels in .whl too); the QA-on scene run skips MONAI, measured just before.
echo "== scene 20000 x 20000 x 4 uint16, resnet34, no QA / QA"
python3 bench/bench_scene.py --size 20000 --device cuda --no-qa --workdir "$work"
python3 bench/bench_scene.py --size 20000 --device cuda --precision auto --no-monai --workdir "$work"
echo "== volume 512 x 512 x 400 int16, resnet34, context 3 and 5"
python3 bench/bench_volume.py --device cuda --workdir "$work"
