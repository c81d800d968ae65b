# The fer-pipeline worker and CLI. Data and photo archives are mounted, never baked in.
#   CPU (default):  docker build .
#   GPU worker:     docker build --build-arg BASE_IMAGE=tensorflow/tensorflow:2.21.0-gpu --build-arg TENSORFLOW=image .
# With TENSORFLOW=image the base image's CUDA TensorFlow is kept and the package's
# tensorflow-cpu is not installed (docker/install-deps.py lists the other dependencies).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG TENSORFLOW=cpu

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_BREAK_SYSTEM_PACKAGES=1 TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /app

COPY pyproject.toml README.md ./
COPY docker ./docker
COPY fer_model ./fer_model
COPY workers ./workers
COPY db ./db
COPY cli ./cli
COPY reports ./reports
RUN if [ "$TENSORFLOW" = image ]; then \
        python3 docker/install-deps.py pyproject.toml | pip install -r /dev/stdin && pip install --no-deps . ; \
    else \
        pip install . ; \
    fi \
    && (id fer >/dev/null 2>&1 || useradd --create-home fer)
USER fer

CMD ["fer", "worker"]
