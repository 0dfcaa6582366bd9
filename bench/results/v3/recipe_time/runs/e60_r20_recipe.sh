#!/bin/bash
# the whole SSimNet recipe from nothing, timed: base training (EPOCHS, DECAY) then self-training rounds by the rule
set -e
EPOCHS=${EPOCHS:-60}; DECAY=${DECAY:-0.95}; REPOCHS=${REPOCHS:-20}; OUT=${OUT:-/tmp/recipe}
cd /work/main/bundles/ssimnet
PY=../../.venv/bin/python
DS=../../../shared/data/monuseg/train/images
mkdir -p $OUT
T0=$(date +%s)
$PY -m monai.bundle run --config_file configs/train.json --dataset_dir $DS --seed 0 --max_epochs $EPOCHS --lr_decay $DECAY --output_dir $OUT/base > $OUT/base.log 2>&1
echo "base done $(( $(date +%s) - T0 )) s" | tee -a $OUT/times.txt
TEACHER=$OUT/base/model.pt
for r in 1 2 3; do
  $PY -m monai.bundle run --config_file "['configs/train.json','configs/self_train.json']" --dataset_dir $DS --seed 0 \
     --teacher_path $TEACHER --max_epochs $REPOCHS --output_dir $OUT/round$r > $OUT/round$r.log 2>&1
  A=$($PY -c "import json;print(json.load(open('$OUT/round$r/round_agreement.json'))['round_agreement'])")
  echo "round $r done $(( $(date +%s) - T0 )) s agreement $A" | tee -a $OUT/times.txt
  TEACHER=$OUT/round$r/model.pt
  $PY -c "import sys; sys.exit(0 if $A >= 0.97 else 1)" && break
done
echo "final $TEACHER" | tee -a $OUT/times.txt
