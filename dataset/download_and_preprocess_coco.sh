#!/usr/bin/env bash
# Downloads COCO 2017 and converts it to the TFRecords read by mrcnn_tf2.data.build_dataset.
#
#   bash dataset/download_and_preprocess_coco.sh /data            # run from the repository root
#
# Needs internet access, about 50 GB of free disk, wget (or curl) and unzip. Result:
#   /data/train2017/, /data/val2017/                      images
#   /data/annotations/instances_{train,val}2017.json      annotations (also used for evaluation)
#   /data/tfrecord/train-00000-of-00256.tfrecord ...      256 training shards
#   /data/tfrecord/val-00000-of-00032.tfrecord ...        32 validation shards
# Downloaded zips are kept (and not fetched again); delete them afterwards to save space.
# Without internet, `python -m dataset.make_synthetic_shapes --out DIR` writes a small
# dataset in the same layout (DIR/train, DIR/val, DIR/annotations/instances_{train,val}.json).
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 DATA_DIR" >&2
  exit 2
fi
DATA_DIR="$(mkdir -p "$1" && cd "$1" && pwd)"
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
COCO_URL="http://images.cocodataset.org"
TRAIN_SHARDS=256
VAL_SHARDS=32

download() {  # download URL -> DATA_DIR/<basename>, skipped if already there
  local url="$1" target="${DATA_DIR}/$(basename "$1")"
  if [[ -f "${target}" ]]; then
    echo "Already downloaded: ${target}"
  elif command -v wget >/dev/null; then
    wget --continue --output-document="${target}.part" "${url}" && mv "${target}.part" "${target}"
  else
    curl --fail --location --continue-at - --output "${target}.part" "${url}" \
      && mv "${target}.part" "${target}"
  fi
}

unpack() {  # unpack ZIP into DATA_DIR unless the folder it creates exists
  local zip="${DATA_DIR}/$1" folder="${DATA_DIR}/$2"
  if [[ -d "${folder}" ]]; then
    echo "Already unpacked: ${folder}"
  else
    unzip -q "${zip}" -d "${DATA_DIR}"
  fi
}

convert() {  # convert SPLIT NUM_SHARDS: COCO images + JSON -> TFRecord shards
  local split="$1" shards="$2"
  (cd "${REPO_DIR}" && "${PYTHON}" -m dataset.create_coco_tf_record \
    --image_dir "${DATA_DIR}/${split}2017" \
    --object_annotations_file "${DATA_DIR}/annotations/instances_${split}2017.json" \
    --output_file_prefix "${DATA_DIR}/tfrecord/${split}" \
    --num_shards "${shards}")
}

download "${COCO_URL}/zips/train2017.zip"
download "${COCO_URL}/zips/val2017.zip"
download "${COCO_URL}/annotations/annotations_trainval2017.zip"
unpack train2017.zip train2017
unpack val2017.zip val2017
unpack annotations_trainval2017.zip annotations

mkdir -p "${DATA_DIR}/tfrecord"
convert train "${TRAIN_SHARDS}"
convert val "${VAL_SHARDS}"
echo "COCO 2017 TFRecords are in ${DATA_DIR}/tfrecord; annotations in ${DATA_DIR}/annotations."
