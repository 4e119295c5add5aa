"""Evaluates a model written by train.py on a digits dataset directory.

Writes metrics.json (accuracy, per-digit precision/recall, confusion matrix) to --save-to. With
--id N it instead prints image N as ASCII art with the prediction, like the Knitfab tutorial.
"""

import argparse
import json
import os
import pickle

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from common import load_dataset


def show(image, predicted, truth):
    shades = " .:-=+*#%@@@@@@@@"
    print("=== image ===")
    for row in image.reshape(8, 8):
        print("".join(shades[int(v)] * 2 for v in row))
    print("=== ===== ===")
    print(f"Prediction: {predicted}, Ground Truth: {truth}")


def main():
    parser = argparse.ArgumentParser(description="validate a digits classifier")
    parser.add_argument("--dataset", default="/in/dataset")
    parser.add_argument("--model", default="/in/model/model.pkl")
    parser.add_argument("--save-to", default="/out/metrics")
    parser.add_argument("--id", type=int, help="only show this image and its prediction")
    args = parser.parse_args()

    images, labels = load_dataset(args.dataset)
    with open(args.model, "rb") as model_file:
        model = pickle.load(model_file)

    if args.id is not None:
        show(images[args.id], int(model.predict(images[args.id : args.id + 1])[0]), int(labels[args.id]))
        return

    predicted = model.predict(images)
    correct = 0
    for start in range(0, len(labels), 100):
        correct += int(np.sum(predicted[start : start + 100] == labels[start : start + 100]))
        seen = min(start + 100, len(labels))
        print(f"Accuracy (at {seen} images): {correct / seen:.4f}")
    accuracy = correct / len(labels)

    digits = list(range(10))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=digits, zero_division=0)
    metrics = {
        "accuracy": accuracy,
        "images": int(len(labels)),
        "correct": correct,
        "perDigit": {
            str(d): {
                "precision": round(float(precision[d]), 4),
                "recall": round(float(recall[d]), 4),
                "f1": round(float(f1[d]), 4),
                "support": int(support[d]),
            }
            for d in digits
        },
        "confusionMatrix": confusion_matrix(labels, predicted, labels=digits).tolist(),
    }
    os.makedirs(args.save_to, exist_ok=True)
    with open(os.path.join(args.save_to, "metrics.json"), "w") as out:
        json.dump(metrics, out, indent=2)
        out.write("\n")
    print()
    print("=== Validation Result ===")
    print(f"Accuracy: {accuracy:.4f}")


if __name__ == "__main__":
    main()
