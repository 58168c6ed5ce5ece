# GPU image: NVIDIA's CUDA runtime + TensorFlow 2.21 with CUDA wheels.
# Build: docker build -t tf2-vision .   Run: docker run --gpus all -it -v /data:/data tf2-vision
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 TF_CPP_MIN_LOG_LEVEL=2
RUN apt-get update && apt-get install -y --no-install-recommends g++ make && rm -rf /var/lib/apt/lists/*
WORKDIR /workspace/tf2-vision
COPY . .
RUN pip install -e '.[gpu,dev]'
CMD ["python", "main.py", "--help"]
