# stream-dec image. The default installs PyTorch's CPU build; docker-compose.yml's gpu
# profile builds it with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126
# (the CUDA build) and tags it stream-dec:cuda.
FROM python:3.11-slim
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
WORKDIR /app
RUN pip install --no-cache-dir --index-url ${TORCH_INDEX} ${TORCH_SPEC}
COPY pyproject.toml README.md ./
COPY stream_dec ./stream_dec
RUN pip install --no-cache-dir . \
 && useradd --create-home --uid 1000 --shell /usr/sbin/nologin stream-dec
USER stream-dec
WORKDIR /home/stream-dec
