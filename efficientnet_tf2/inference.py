"""Classification of images with a trained model: ``main.py infer``, ``scripts/classify.py`` and the Python API.

    from efficientnet_tf2 import Classifier
    classifier = Classifier.from_workspace("runs/b0")          # a training run (model_best)
    classifier = Classifier.from_pretrained("efficientnet-b0")  # published weights (downloaded once)
    result = classifier.classify("cat.jpg")                    # or a [H, W, 3] uint8 array, or a list
    result.names, result.probabilities                         # top-5, descending
"""
from __future__ import annotations

import dataclasses
import os
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from common.io.pixel_budget import check_file as check_pixel_budget
from efficientnet_tf2.data import decode_image_file
from efficientnet_tf2.experiments import TOP_K
from efficientnet_tf2.preprocessing import preprocess_for_eval

Prediction = Tuple[str, float]
Image = Union[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Classification:
    """The top-k classes of one image.

    Attributes:
      names: ``[k]`` class names (folder names of the training data; indices as text without them).
      indices: ``[k] int64`` class indices.
      probabilities: ``[k] float32`` softmax probabilities, descending.
    """

    names: List[str]
    indices: np.ndarray
    probabilities: np.ndarray

    def pairs(self) -> List[Prediction]:
        """``[(name, probability), ...]``."""
        return [(n, float(p)) for n, p in zip(self.names, self.probabilities)]


class Classifier:
    """Runs a Keras classifier on image files or uint8 arrays with the training eval preprocessing."""

    def __init__(self, model, image_size: int, class_names: Sequence[str]):
        self.model, self.image_size, self.class_names = model, int(image_size), list(class_names)
        self._forward = tf.function(lambda x: tf.nn.softmax(tf.cast(model(x, training=False), tf.float32)))

    @classmethod
    def from_workspace(cls, workspace: str, checkpoint: Optional[str] = None) -> "Classifier":
        """The trained model of a ``main.py train`` run (``model_best``, else ``checkpoint-latest``)."""
        from common.command.api import load_for_inference

        return cls._of(load_for_inference(["--workspace", workspace] + (["--checkpoint", checkpoint] if checkpoint
                                                                           else [])))

    @classmethod
    def from_pretrained(cls, model: str = "efficientnet-b0", weights: str = "default") -> "Classifier":
        """Published weights of ``model`` by name (``main.py weights list``), downloaded once into the cache."""
        from common.command.api import load_for_inference

        return cls._of(load_for_inference(["--model", model, f"--pretrained={weights}"]))

    @classmethod
    def _of(cls, loaded) -> "Classifier":
        family, experiment, model = loaded
        return cls(model, family.default_benchmark_size(experiment), family.class_names(experiment, None))

    def probabilities(self, image: Image) -> np.ndarray:
        """``[C]`` float32 class probabilities of one image (a file path or an ``[H, W, 3]`` uint8 array)."""
        if isinstance(image, (str, os.PathLike)):
            check_pixel_budget(os.fspath(image))
        pixels = decode_image_file(image) if isinstance(image, (str, os.PathLike)) else tf.constant(image)
        batch = preprocess_for_eval(pixels, self.image_size)[tf.newaxis]
        return self._forward(batch).numpy()[0]

    def classify(self, images: Union[Image, Sequence[Image]], top_k: int = TOP_K):
        """The top-k classes of one image (a path or ``[H, W, 3] uint8``): a :class:`Classification`;
        of several (a list, or ``[B, H, W, 3] uint8``): a list of them."""
        if isinstance(images, (str, os.PathLike)) or (isinstance(images, np.ndarray) and images.ndim == 3):
            return self._top(self.probabilities(images), top_k)
        return [self._top(self.probabilities(image), top_k) for image in images]

    def _top(self, probs: np.ndarray, top_k: int) -> Classification:
        order = np.argsort(-probs)[:top_k]
        return Classification([self._name(i) for i in order], order.astype(np.int64), probs[order])

    def _name(self, index: int) -> str:
        return self.class_names[index] if index < len(self.class_names) else str(index)


def format_predictions(path: str, predictions: List[Prediction]) -> str:
    """Human-readable block: the file then one ``  name  prob%`` line per class."""
    lines = [path]
    lines += [f"  {rank}. {name:<24s} {100.0 * prob:6.2f}%" for rank, (name, prob) in enumerate(predictions, 1)]
    return "\n".join(lines)
