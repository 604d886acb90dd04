# stream-dec image. The default installs the CPU build of torch; for GPU labelers build
# with --build-arg TORCH_SPEC="torch==2.13.0" --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126
FROM python:3.11-slim
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
WORKDIR /app
RUN pip install --no-cache-dir --index-url ${TORCH_INDEX} ${TORCH_SPEC}
COPY pyproject.toml README.md ./
COPY stream_dec ./stream_dec
RUN pip install --no-cache-dir .
USER 1000
