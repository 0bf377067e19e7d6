# The image of the API and the projector workers (docker-compose.yml). .dockerignore keeps the virtual
# environment, git history and caches out of the build context.
FROM python:3.11-slim
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir -c constraints.txt .
EXPOSE 8052 50052
CMD ["sessions", "serve"]
