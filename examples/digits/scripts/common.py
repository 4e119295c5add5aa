"""What train.py and validation.py share: reading a dataset directory written by prepare.py."""

import os
import sys

import numpy as np


def load_dataset(directory):
    images_path = os.path.join(directory, "images.csv")
    labels_path = os.path.join(directory, "labels.csv")
    for path in (images_path, labels_path):
        if not os.path.isfile(path):
            sys.exit(f"dataset {directory}: {os.path.basename(path)} is missing (expected images.csv and labels.csv)")
    images = np.loadtxt(images_path, delimiter=",", dtype=np.float64, ndmin=2)
    labels = np.loadtxt(labels_path, dtype=np.int64, ndmin=1)
    if images.shape[0] != labels.shape[0] or images.shape[1] != 64:
        sys.exit(f"dataset {directory}: images {images.shape} do not match labels {labels.shape} (need N x 64 and N)")
    print(f"data shape:{images.shape}, type: {images.dtype}")
    print(f"label shape:{labels.shape}, type: {labels.dtype}")
    return images, labels
