"""Weight initialisers shared by the model families (one source).

Kept as Keras configs: every layer deserialises its own (unseeded) instance, so no two
layers share one and get identical values.
"""

#: He (fan-out) truncated normal for convolutions: EfficientNet's and ResNet's.
CONV_INIT = {"class_name": "VarianceScaling",
             "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"}}
#: EfficientNet's classifier initialiser (uniform, scale 1/3, fan-out).
DENSE_INIT = {"class_name": "VarianceScaling",
              "config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"}}
