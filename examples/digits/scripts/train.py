"""Trains a support vector classifier on a digits dataset directory and saves it to --save-to.

Writes model.pkl (the fitted scikit-learn pipeline) and model.json (hyperparameters, library
versions and the accuracy on a held-out part of the training data), so the model Data says how it
was made even without its lineage.
"""

import argparse
import json
import os
import pickle
import time

import numpy as np
import sklearn
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from common import load_dataset


def main():
    parser = argparse.ArgumentParser(description="train a digits classifier")
    parser.add_argument("--dataset", default="/in/dataset")
    parser.add_argument("--save-to", default="/out/model")
    parser.add_argument("--C", type=float, default=10.0, help="SVC regularisation")
    parser.add_argument("--gamma", default="scale", help='SVC kernel width: a number or "scale"')
    parser.add_argument("--holdout", type=float, default=0.2, help="part of the training data kept for validation")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    gamma = args.gamma if args.gamma in ("scale", "auto") else float(args.gamma)

    images, labels = load_dataset(args.dataset)
    fit_x, val_x, fit_y, val_y = train_test_split(
        images, labels, test_size=args.holdout, random_state=args.seed, stratify=labels
    )

    print(f"**TRAINING START** SVC(C={args.C}, gamma={gamma}) on {len(fit_y)} images")
    started = time.monotonic()
    model = make_pipeline(StandardScaler(), SVC(C=args.C, gamma=gamma, random_state=args.seed))
    model.fit(fit_x, fit_y)
    train_accuracy = float(np.mean(model.predict(fit_x) == fit_y))
    print(f"**TRAINING RESULT** Accuracy: {train_accuracy:.4f} ({time.monotonic() - started:.2f} s)")

    print(f"**VALIDATION START** {len(val_y)} held-out images")
    holdout_accuracy = float(np.mean(model.predict(val_x) == val_y))
    print(f"**VALIDATION RESULT** Accuracy: {holdout_accuracy:.4f}")

    os.makedirs(args.save_to, exist_ok=True)
    print(f"**SAVING MODEL** to {args.save_to}/model.pkl")
    with open(os.path.join(args.save_to, "model.pkl"), "wb") as out:
        pickle.dump(model, out)
    description = {
        "model": "StandardScaler + SVC(rbf)",
        "hyperparameters": {"C": args.C, "gamma": gamma, "holdout": args.holdout, "seed": args.seed},
        "trainingImages": len(fit_y),
        "trainAccuracy": train_accuracy,
        "holdoutAccuracy": holdout_accuracy,
        "versions": {"scikit-learn": sklearn.__version__, "numpy": np.__version__},
    }
    with open(os.path.join(args.save_to, "model.json"), "w") as out:
        json.dump(description, out, indent=2)
        out.write("\n")


if __name__ == "__main__":
    main()
