"""What goes in and out: data checks (``data_check``, ``images``), DLLogger logging (``logger``), weights files
(``state_dict``), SavedModel and serving exports (``saved_model``, ``serving``), ONNX (``onnx_convert``,
``onnx_runtime``)."""
