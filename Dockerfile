# The serving image: the lean install (no torch, no scikit-learn, no onnx) and the shared backends' clients.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    ONNXGATE_STORE=/models

WORKDIR /app
COPY pyproject.toml README.md ./
# every package pyproject.toml lists: the CLI imports governance's and retrain's errors, the gateway monitoring
COPY modelstore ./modelstore
COPY monitoring ./monitoring
COPY gateway ./gateway
COPY exporters ./exporters
COPY governance ./governance
COPY retrain ./retrain
COPY onnxgate ./onnxgate
# the shared backends (issue 16): the registry in PostgreSQL, artifacts in an S3-compatible bucket
ARG EXTRAS=postgres,s3
RUN pip install ".[${EXTRAS}]" && useradd --system --uid 10001 onnxgate

USER onnxgate
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/v2/health/live', timeout=2).status == 200 else 1)"
ENTRYPOINT ["onnxgate", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--env", "production"]
