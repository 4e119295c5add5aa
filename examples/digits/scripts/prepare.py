"""Writes scikit-learn's bundled digits data set (1797 8x8 images, no download) as two Data
directories, digits-train/ and digits-test/, each holding images.csv (one image per row, 64
pixels 0..16) and labels.csv (one digit per row).

The split is stratified and seeded, so every run of this script writes byte-identical files and
pushing them again gives Data with the same content.
"""

import argparse
import os

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def write(directory, images, labels):
    os.makedirs(directory, exist_ok=True)
    np.savetxt(os.path.join(directory, "images.csv"), images, fmt="%d", delimiter=",")
    np.savetxt(os.path.join(directory, "labels.csv"), labels, fmt="%d")
    print(f"wrote {directory}: {len(labels)} images")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/out/data", help="directory to create digits-train/ and digits-test/ in")
    parser.add_argument("--test-size", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    digits = load_digits()
    images = digits.data.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, digits.target, test_size=args.test_size, random_state=args.seed, stratify=digits.target
    )
    write(os.path.join(args.out, "digits-train"), train_x, train_y)
    write(os.path.join(args.out, "digits-test"), test_x, test_y)


if __name__ == "__main__":
    main()
