#!/usr/bin/env bash
# Download, into .whl/, the wheels that a GPU machine with its own Python 3.12 + torch 2.11
# (the lent H100/H200 image) lacks to run the engine, the CUDA tests and `bench`:
# coqui-tts and its pure-Python needs, at this project's pins. scripts/gpu_check.sh installs
# them there into /tmp/site. About 21 MB; .whl/ is git-ignored.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p .whl
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
    platforms+=(--platform "$tag")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .whl \
    coqui-tts==0.28.0 coqpit-config==0.2.5 coqui-tts-trainer==0.4.0 anyascii==0.3.3 \
    inflect==7.6.0 typeguard==4.6.1 more-itertools==11.2.1 jaraco.functools ko-speech-tools==0.1.0 \
    librosa==0.11.0 audioread==3.1.0 soxr==1.1.0 pooch==1.9.0 decorator==5.3.1 \
    soundfile==0.14.0 cffi pycparser num2words==0.5.14 monotonic-alignment-search==0.2.1 \
    pysbd==0.3.4 transformers==5.23.0 platformdirs==4.14.8 "torchcodec==0.11.*"
# docopt (needed by num2words) is published as a source archive only.
python3 -m pip wheel -q --no-deps -w .whl docopt==0.6.2
ls .whl
