#!/bin/bash
# Benchmark (issue 17): SSimNet's self-training recipe for several variants at once on one GPU machine.
#
# Each variant is the recipe of configs/self_train.json (two rounds from the 0.2.x teacher, seed 0), run as its own
# `monai.bundle run` chain in parallel with the others on one GPU; the round-2 checkpoints are copied to $OUT and
# scored afterwards on the CPU host through the comparison harness (labels are read there only to score). Run from
# the repository root on the device machine, which has no network: the wheels of monai, pytorch-ignite, fire,
# nibabel, termcolor and this tree's labelfree in .whl/, the 30 MoNuSeg training images in .devdata/monuseg/ (as
# lossless WebP, to fit the transfer; decoded back to PNG here, the same pixels) and the teacher in
# .devdata/teacher02/model.pt (git show 56c41ed:bundles/ssimnet/models/model.pt), both folders carried:
#
#     DEADLINE=480 bash bench/gpu_self_train_sweep.sh
#
# A chain still running at DEADLINE seconds is stopped; the same command resumes its round from the last 5-epoch
# checkpoint on a machine that is still warm. Results, commands and times: bench/results/v5/gpu_sweep/README.md.
set -u
export PYTHONUNBUFFERED=1
T0=$(date +%s)
ROOT=$(pwd)
python3 -m pip install -q --no-deps --no-index .whl/*.whl 2>&1 | tail -2
python3 - <<'PY'
from PIL import Image; import glob, os
os.makedirs('/tmp/monuseg', exist_ok=True)
for p in sorted(glob.glob('.devdata/monuseg/*.webp')):
    Image.open(p).convert('RGB').save('/tmp/monuseg/' + os.path.basename(p)[:-5] + '.png')
print('tiles', len(os.listdir('/tmp/monuseg')))
PY
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, monai; print(torch.__version__, monai.__version__, torch.cuda.is_available())"
cd bundles/ssimnet
chain() {  # variant rounds overrides...
    local v=$1 n=$2; shift 2
    mkdir -p /tmp/r/$v
    local t=$ROOT/.devdata/teacher02/model.pt
    for r in $(seq 1 $n); do
        # two threads each: six chains share the machine's 16 cores (the augmentation runs on the CPU)
        OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 python3 -m monai.bundle run \
            --config_file "['configs/train.json','configs/self_train.json']" --dataset_dir /tmp/monuseg --seed 0 \
            --teacher_path $t --output_dir /tmp/r/$v/r$r --cache_dir /tmp/r/$v/cache "$@" > /tmp/r/$v/r$r.log 2>&1 \
            || { echo "$v round $r FAILED"; return 1; }
        t=/tmp/r/$v/r$r/model.pt
        echo "$v round $r done at $(( $(date +%s) - T0 )) s: $(tr -d '\n ' < /tmp/r/$v/r$r/round_agreement.json)"
        if [ $r -ge 2 ]; then cp $t $OUT/${v}_r$r.pt; fi
    done
}
chain control 3 &
chain contact0 2 --contact_value 0.0 &
chain fraction30 2 --paste_fraction 0.3 &
chain epochs80 2 --max_epochs 80 &
chain share75 2 --paste_share 0.75 &
chain lr1e4 2 --learning_rate 1e-4 &
# fail fast: a traceback in any first round stops everything, so a broken setup costs one minute of the lease
while [ -n "$(jobs -r)" ]; do
    sleep 10
    if grep -l "Traceback" /tmp/r/*/r1.log >/dev/null 2>&1; then
        echo "TRACEBACK"; tail -30 "$(grep -l "Traceback" /tmp/r/*/r1.log | head -1)"; kill $(jobs -p) 2>/dev/null; break
    fi
    el=$(( $(date +%s) - T0 ))
    if [ $el -ge "${DEADLINE:-500}" ]; then echo "deadline at $el s"; kill $(jobs -p) 2>/dev/null; pkill -f monai.bundle; break; fi
done
wait
nvidia-smi --query-gpu=memory.used --format=csv,noheader
cd /tmp/r && tar czf $OUT/logs.tgz */r*.log */r*/round_agreement.json 2>/dev/null
echo "total $(( $(date +%s) - T0 )) s"; ls -la $OUT
