"""Pure tensor functions of Mask R-CNN (no layers, no variables).

* ``box_ops``   -- the one module of box arithmetic: encode/decode, IoU, clip, areas.
* ``anchors``   -- multilevel anchor generator (levels 2..6, 3 anchors per location).
* ``matcher``   -- IoU matcher: labels {1 fg, 0 bg, -1 ignore} and matched GT indices.
* ``sampler``   -- balanced fg/bg sampling with a stateless seed.
* ``targets``   -- RPN anchor targets and Fast R-CNN RoI sampling/targets.
* ``roi_align`` -- FPN level assignment and multilevel ROIAlign in plain TF.
"""
