"""Classification of image files with a trained model (``main.py infer``, ``scripts/classify.py``)."""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from efficientnet_tf2.data import decode_image_file
from efficientnet_tf2.experiments import TOP_K
from efficientnet_tf2.preprocessing import preprocess_for_eval

Prediction = Tuple[str, float]


class Classifier:
    """Runs a Keras classifier on files with the training eval preprocessing."""

    def __init__(self, model, image_size: int, class_names: Sequence[str]):
        self.model, self.image_size, self.class_names = model, int(image_size), list(class_names)
        self._forward = tf.function(lambda x: tf.nn.softmax(tf.cast(model(x, training=False), tf.float32)))

    def probabilities(self, path: str) -> np.ndarray:
        """``[C]`` float32 class probabilities of one image file."""
        image = preprocess_for_eval(decode_image_file(path), self.image_size)
        return self._forward(image[tf.newaxis]).numpy()[0]

    def classify(self, path: str, top_k: int = TOP_K) -> List[Prediction]:
        """``[(class name, probability), ...]``: the top-k classes of one image file."""
        probs = self.probabilities(path)
        order = np.argsort(-probs)[:top_k]
        return [(self._name(i), float(probs[i])) for i in order]

    def _name(self, index: int) -> str:
        return self.class_names[index] if index < len(self.class_names) else str(index)


def format_predictions(path: str, predictions: List[Prediction]) -> str:
    """Human-readable block: the file then one ``  name  prob%`` line per class."""
    lines = [path]
    lines += [f"  {rank}. {name:<24s} {100.0 * prob:6.2f}%" for rank, (name, prob) in enumerate(predictions, 1)]
    return "\n".join(lines)
