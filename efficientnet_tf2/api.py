"""``create_model``: a classifier by registered name, optionally with published weights, as a ``tf_keras.Model``.

    import efficientnet_tf2
    model = efficientnet_tf2.create_model("efficientnet-b0", pretrained=True, num_classes=10)
    # NGC ImageNet weights, every layer but the class head (a fresh 10-class one)

Inputs are ImageNet-normalised float images ``[B, S, S, 3]`` (``efficientnet_tf2.preprocessing.normalize``);
outputs float32 logits ``[B, num_classes]``.
"""
from __future__ import annotations

from typing import Optional, Union


def create_model(name: str = "efficientnet-b0", pretrained: Union[bool, str] = False,
                 num_classes: Optional[int] = None, image_size: Optional[int] = None):
    """A registered classifier (``python main.py -h`` lists them) as a ``tf_keras.Model``.

    Args:
      name: registered model name (``efficientnet-b0`` ... ``-b7``, ``efficientnet-widese-b0``, ``resnet50``, ...).
      pretrained: ``True`` for the model's published weights, a weights name (``main.py weights list``), or False.
      num_classes: classes of the head (default: the weights' or the recipe's); another count than the weights'
        starts the head fresh (fine-tuning).
      image_size: input side (default: the recipe's resolution).

    Raises:
      SystemExit / UserError: unknown name, no weights for the model, a failed download (one line).
    """
    from common.command import registry
    from common.weights import download, registry as weights_registry
    from efficientnet_tf2.model import build_classifier
    from efficientnet_tf2.transfer import load_initial_weights

    experiment = registry.get_experiment(name)
    if registry.get_family(name).name != "classification":
        raise SystemExit(f"error: {name} is not a classifier; use mrcnn_tf2.Detector for detection models")
    entry = path = None
    if pretrained:
        entry = weights_registry.for_model(name, weights_registry.DEFAULT if pretrained is True else pretrained)
        path = download.fetch(entry)
        experiment = experiment.override(dict(entry.config))
    config = experiment.task.model
    config = config.replace(num_classes=num_classes or (entry.num_classes if entry else config.num_classes))
    size = image_size or config.resolution
    label = name.replace("-", "_")
    model = build_classifier(config, input_shape=(size, size, 3), name=label)
    if path:
        load_initial_weights(model, path, lambda classes: build_classifier(
            config.replace(num_classes=classes), input_shape=(size, size, 3), name=label + "_source"))
    return model
