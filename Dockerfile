# The image of the API and the projector workers (docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY events events
COPY projections projections
COPY consumers consumers
COPY service service
COPY bench bench
RUN pip install --no-cache-dir .
EXPOSE 8052 50052
CMD ["sessions", "serve"]
