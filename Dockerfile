# The fer-pipeline worker and CLI. Data and photo archives are mounted, never baked in.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /app

COPY pyproject.toml README.md ./
COPY fer_model ./fer_model
COPY workers ./workers
COPY db ./db
COPY cli ./cli
RUN pip install . && useradd --create-home fer
USER fer

CMD ["fer", "worker"]
