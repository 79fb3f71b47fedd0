#!/usr/bin/env bash
# Build .device/site.tar.xz: the Python packages bench/train needs on the lent GPU machine that its
# image lacks (Unsloth and its needs, plus polars/pydantic for train.*), as py3.12 manylinux wheels
# unpacked into gpusite/ (no network there). ~53 MB: under the device tool's 64 MiB carry limit
# with the repository. Unpack there with: tar -xJf .device/site.tar.xz -C /root/ (PYTHONPATH=/root/gpusite).
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
platforms=""
for p in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 \
         manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64; do
  platforms="$platforms --platform $p"
done
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms \
  -d "$work/whl" unsloth==2026.10.9 unsloth_zoo==2026.10.9 peft==0.21.2 trl==1.15.0 bitsandbytes==0.50.2 \
  "datasets<5" dill multiprocess fsspec torchao cut_cross_entropy tyro docstring_parser typeguard shtab \
  hf_transfer msgspec structlog json5 nest_asyncio diffusers polars==2.1.0 polars-runtime-32==2.1.0 \
  pydantic==2.14.3 pydantic-core==2.50.4 annotated-types typing-inspection
mkdir -p "$work/gpusite"
for w in "$work"/whl/*.whl; do unzip -q -o "$w" -d "$work/gpusite"; done
# what training never touches: bitsandbytes' builds for other CUDA/ROCm/XPU versions, Unsloth's web UI
find "$work/gpusite/bitsandbytes" -name '*.so' ! -name '*cuda130*' ! -name '*cuda132*' ! -name '*cpu*' -delete
rm -rf "$work/gpusite/studio"
mkdir -p .device
tar -C "$work" -cJf .device/site.tar.xz gpusite
rm -rf "$work"
ls -la .device/site.tar.xz
