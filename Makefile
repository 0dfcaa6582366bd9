# Two set-up commands on a fresh machine (Python 3.11, no GPU): `make demo` and `make test`.
# Both create or reuse the virtual environment in $(VENV). torch 2.13.0 is installed first and pinned through
# constraints.txt, so pip never swaps in a CUDA build. On a machine without a local CPU wheel, point
# PIP_EXTRA_INDEX_URL at PyTorch's CPU wheel index before the first run.

PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.labelfree-installed
MONUSEG ?= ../shared/data/monuseg/train
CPM15 ?= ../shared/data/cpm15/train
GLAS ?= ../shared/data/glas/train

.PHONY: demo demo-pseudo-labels test test-all test-slow bundle-zips test-bundle-zips label-env test-label serve-label bench-pseudo-labels bench-ssimnet bench-dcgn bench-dcgn-step bench-speed bench-backends bench-reference-stack bench-slides demo-slide benchmarks clean

$(STAMP): setup.cfg constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet -c constraints.txt "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,onnx]"
	touch $(STAMP)

## the main job: the SSimNet bundle (shipped checkpoint, test-time fine-tuning) on the embedded sample
demo: $(STAMP)
	$(BIN)/python -m monai.bundle run --config_file bundles/ssimnet/configs/inference.json --bundle_root bundles/ssimnet \
		--output_dir out/demo
	@echo "scores against the sample's own labels (used only to measure):"
	@$(BIN)/python -m labelfree score --pred out/demo

## whole slides: a synthetic pyramidal slide from the embedded sample → QuPath GeoJSON with the SSimNet bundle
demo-slide: $(STAMP)
	$(BIN)/python -m labelfree demo_slide --output out/demo_slide.ome.tif
	$(BIN)/python -m labelfree slide out/demo_slide.ome.tif --output out/slides

## the label-free pseudo labels alone (no network) on the embedded sample
demo-pseudo-labels: $(STAMP)
	$(BIN)/python -m labelfree pseudo_labels --output out/pseudo_labels

## the test suite (slow end-to-end runs excluded; `make test-all` includes them), one worker per core; a file's tests
## share a worker, so module fixtures (a tiny trained model) are built once
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow or not slow"

## only the slow end-to-end runs (CI runs them after `make test`): the bundle zips in a fresh venv, the harness resume
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow --durations=10

## pseudo labels vs Otsu + watershed on the 30 MoNuSeg training images (labels used only to score)
bench-pseudo-labels: $(STAMP)
	$(BIN)/python -m bench.pseudo_labels --images $(MONUSEG)/images --labels $(MONUSEG)/labels --out bench/results/v2/monuseg/pseudo_labels
	$(BIN)/python -m bench.pseudo_labels --images $(CPM15)/images --labels $(CPM15)/labels --out bench/results/v2/cpm15/pseudo_labels

## SSimNet bundle: train + fine-tuned inference on the 30 MoNuSeg training images, 3 seeds (about 1.5 h on 2 cores)
bench-ssimnet: $(STAMP)
	$(BIN)/python -m bench.ssimnet --images $(MONUSEG)/images --labels $(MONUSEG)/labels --seeds 0,1,2 --out bench/results

## DCGN bundle: 3 seeds (label-free rule and oracle, degeneration counts) through the comparison harness, then the
## shipped checkpoint on CPM-15 beside k-means k = 3 and Otsu + watershed, and the tissue mode on GlaS
DCGN_EPOCHS ?= 20
DCGN_SEEDS ?= 3
bench-dcgn: $(STAMP)
	$(BIN)/python -m bench.harness compare --images $(MONUSEG)/images --labels $(MONUSEG)/labels --methods dcgn,kmeans3 \
		--seeds $(DCGN_SEEDS) --options '{"dcgn": {"max_epochs": $(DCGN_EPOCHS)}}' --out bench/results/dcgn --runs bench/runs/compare
	$(BIN)/python -m bench.harness compare --images $(CPM15)/images --labels $(CPM15)/labels \
		--methods dcgn_shipped,kmeans3,otsu_ws --seeds 1 --out bench/results/dcgn_cpm15 --runs bench/runs/compare_cpm15
	$(BIN)/python -m bench.glas_tissue --images $(GLAS)/images --labels $(GLAS)/labels_binary --out bench/results/glas_tissue

## seconds per DCGN training step at 512², batch 1, on this machine's CPU
bench-dcgn-step: $(STAMP)
	$(BIN)/python -m bench.dcgn_step_time --images $(MONUSEG)/images --out bench/results

## seconds per tile of every inference pipeline against its network alone, side by side in one run, with the profile
## of where each second goes (about 10 minutes on 2 cores; run it alone on the machine)
bench-speed: $(STAMP)
	$(BIN)/python -m bench.speed --images $(MONUSEG)/images --out bench/results/speed

## each network alone under every CPU runtime (eager, channels-last, TorchScript, torch.compile, bf16, ONNX Runtime
## float32 and int8), masks compared with eager float32; run it alone on the machine
bench-backends: $(STAMP)
	$(BIN)/python -m bench.network_backends --images $(MONUSEG)/images --out bench/results/speed/backends

## pseudo labels against the same recipe on the reference libraries (SPAMS, scikit-fuzzy, scikit-image), side by side
## on the 30 MoNuSeg tiles (about 15 minutes on 2 cores; installs the `reference` extra; run it alone on the machine)
bench-reference-stack: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[reference]"
	$(BIN)/python -m bench.reference_stack --images $(MONUSEG)/images --labels $(MONUSEG)/labels --out bench/results/reference_stack

## whole slides: stitched vs one pass (MoNuSeg, CPM-15), throughput of both bundles, peak memory on 5k²/20k²/40k²
## synthetic slides (about 25 min on 2 CPU cores)
bench-slides: $(STAMP)
	$(BIN)/python -m bench.slides --images $(MONUSEG)/images --cpm $(CPM15)/images --out bench/results/slides

## BENCHMARKS.md: both bundles and every baseline, 5 seeds, on the MoNuSeg training tiles (hours on 2 CPU cores;
## resumable: finished method/seed runs under bench/compare/runs are reused)
SEEDS ?= 5
benchmarks: $(STAMP)
	$(BIN)/python -m bench.harness compare --images $(MONUSEG)/images --labels $(MONUSEG)/labels \
		--methods ssimnet,dcgn,otsu_cc,otsu_ws,kmeans,kmeans3,gmm,gmm3 --seeds $(SEEDS) \
		--options '{"dcgn": {"max_epochs": $(DCGN_EPOCHS)}}' --out bench/compare --runs bench/runs/compare --markdown BENCHMARKS.md \
		--notes bench/compare_notes.md

## MONAI Label (optional, about 3.7 GB): its own environment, torch pinned to the CPU build, SAM2 built without CUDA;
## the .pth hook lets torchvision's CUDA-only wheel import there (apps/labelfree/site/labelfree_torchvision_cpu.py)
LABEL_VENV ?= .venv-label
LABEL_BIN := $(LABEL_VENV)/bin
LABEL_STAMP := $(LABEL_VENV)/.labelfree-installed
STUDIES ?= out/studies
PORT ?= 8000

$(LABEL_STAMP): setup.cfg constraints.txt pyproject.toml apps/labelfree/site/labelfree_torchvision_cpu.py
	test -x $(LABEL_BIN)/python || $(PY) -m venv $(LABEL_VENV)
	$(LABEL_BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(LABEL_BIN)/python -m pip install --quiet -c constraints.txt "torch==2.13.0"
	SAM2_BUILD_CUDA=0 PIP_CONSTRAINT=constraints.txt $(LABEL_BIN)/python -m pip install --quiet -e ".[label]" pytest
	cp apps/labelfree/site/labelfree_torchvision_cpu.py apps/labelfree/site/labelfree_torchvision_cpu.pth \
		"$$($(LABEL_BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
	touch $(LABEL_STAMP)

label-env: $(LABEL_STAMP)

## the MONAI Label app's tests: a real server on loopback, both bundles, ASAP/DSA contours, a label-free training run
test-label: $(LABEL_STAMP)
	$(LABEL_BIN)/python -m pytest -q tests/test_monailabel_app.py tests/test_labelfree_app_lib.py

## serve both bundles to QuPath / DSA / ASAP on http://127.0.0.1:$(PORT); STUDIES=dir of tiles or slides (default: a
## copy of the embedded sample in out/studies, since MONAI Label writes its datastore files into the studies folder)
serve-label: $(LABEL_STAMP)
	test -d $(STUDIES) || (mkdir -p $(STUDIES) && cp labelfree/sample/images/*.png $(STUDIES)/)
	$(LABEL_BIN)/python -m monailabel.main start_server --app apps/labelfree --studies $(STUDIES) \
		--conf models dcgn,ssimnet --host 127.0.0.1 --port $(PORT)

## self-contained model-zoo zips (bundle + the labelfree package) in dist/
bundle-zips: $(STAMP)
	$(BIN)/python -m labelfree bundle_zip bundles/ssimnet --out dist
	$(BIN)/python -m labelfree bundle_zip bundles/dcgn --out dist

## each zip unpacked elsewhere runs inference.json in a fresh venv holding only what its metadata.json lists
test-bundle-zips: $(STAMP)
	$(BIN)/python -m pytest -q -m slow tests/test_bundle_zip.py

clean:
	rm -rf out .pytest_cache
