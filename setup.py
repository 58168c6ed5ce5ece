"""Installable monorepo: EfficientNet and Mask R-CNN on TensorFlow 2 + tf-keras."""
from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "tf-keras==2.21.0",
    "numpy>=1.26,<3",
    "pillow>=10.0,<14",
    "tensorboard==2.21.0",
    "matplotlib==3.11.2",  # curves.png and the evaluation pictures (headless Agg backend)
    "pyyaml==6.0.4",  # dataset.convert --from yolo-seg reads data.yaml (safe_load)
]

EXTRAS = {
    "dev": ["pytest==9.0.3", "pytest-timeout==2.4.0", "pytest-xdist==3.8.0", "pycocotools==2.0.11", "faster-coco-eval==1.8.0",
            "tensorflow-model-optimization==0.8.1", "tf2onnx==1.17.0", "onnx==1.23.2", "onnxruntime==1.31.1",
            "nvidia-dali-cuda120==2.4.0", "openvino==2026.4.1", "ai-edge-litert==2.3.0"],
    "coco": ["pycocotools==2.0.11", "faster-coco-eval==1.8.0"],
    "qat": ["tensorflow-model-optimization==0.8.1"],
    "onnx": ["tf2onnx==1.17.0", "onnx==1.23.2", "onnxruntime==1.31.1"],
    # --runtime openvino runs the ONNX export (the onnx extra writes it); --runtime tflite: LiteRT's interpreter
    "openvino": ["openvino==2026.4.1", "tf2onnx==1.17.0", "onnx==1.23.2"],
    "tflite": ["ai-edge-litert==2.3.0"],
    # The TF plugin compiles against the installed TF: pip install --no-build-isolation
    # nvidia-dali-tf-plugin-cuda120==2.4.0 after this extra (the Makefile does it).
    "dali": ["nvidia-dali-cuda120==2.4.0"],
    "gpu": ["tensorflow[and-cuda]==2.21.0"],
    # Only the fixture scripts (scripts/make_*_fixture*.py) need torch: the product reads .pth files
    # without it (common/io/pth.py). CPU wheel: --extra-index-url https://download.pytorch.org/whl/cpu
    "torch": ["torch>=2.2"],
}

setup(
    name="tf2-vision-recipes",
    version="0.1.0",
    description="EfficientNet and Mask R-CNN recipes on TensorFlow 2.21 / tf-keras",
    python_requires=">=3.10",
    packages=find_packages(include=["backbones*", "common*", "efficientnet_tf2*", "mrcnn_tf2*", "custom_ops*", "dataset*",
                                    "scripts*"]),
    # Kernel sources travel with the package: custom_ops builds them on first use.
    package_data={"custom_ops": ["*/*.cc", "*/*.h", "*/*.cu", "harness/*.md"]},
    py_modules=["main"],
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["tf2-vision=main:main"]},
)
