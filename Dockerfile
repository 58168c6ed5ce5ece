# GPU image: NVIDIA's CUDA runtime + TensorFlow 2.21 with CUDA wheels.
# Build: docker build -t tf2-vision .   Run: docker run --gpus all -it -v /data:/data tf2-vision
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 TF_CPP_MIN_LOG_LEVEL=2
RUN apt-get update && apt-get install -y --no-install-recommends g++ make && rm -rf /var/lib/apt/lists/*
WORKDIR /workspace/tf2-vision
COPY . .
# The same steps as `make install` (plus the CUDA wheels of the gpu extra): the DALI TF plugin
# builds against the installed TensorFlow, so it goes last and without build isolation.
RUN pip install --upgrade pip && pip install 'setuptools>=68' wheel \
 && pip install -e '.[gpu,dev]' \
 && pip install --no-build-isolation 'nvidia-dali-tf-plugin-cuda120==2.4.0' \
 && (python -m custom_ops.build || true)
CMD ["python", "main.py", "--help"]
