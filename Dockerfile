# syntax=docker/dockerfile:1
#
# sts-sidecar container image.
#   docker build -t sts-sidecar:0.1.0 .
#   docker run --read-only -v "$PWD/sidecar.yaml:/etc/sts-sidecar/config.yaml:ro" sts-sidecar:0.1.0
#
# Three stages: `build` compiles TypeScript with the dev dependencies, `prod-deps` installs
# the production dependencies only, and the runtime stage copies just dist/src and those
# node_modules onto distroless Node.js (no shell, no package manager). Tests, dist/test,
# sources and anything key-like never reach the runtime stage (see .dockerignore).

# The Node.js major of the runtime image; .ci/run also runs the test suite on it.
ARG NODE_MAJOR=24

FROM node:${NODE_MAJOR}-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would run tsc before the sources are copied; no dependency needs an install script.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

FROM node:${NODE_MAJOR}-bookworm-slim AS prod-deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force

# distroless/nodejs: Debian 12 with Node.js only; the :nonroot variant's user is 65532.
FROM gcr.io/distroless/nodejs${NODE_MAJOR}-debian12:nonroot AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="sts-sidecar" \
      org.opencontainers.image.description="Sidecar token broker: exchanges the workload's ambient credential at an STS (RFC 8693), caches the token and injects it into outbound requests." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/nodejs${NODE_MAJOR}-debian12:nonroot"
ENV NODE_ENV=production
WORKDIR /app
# package.json: "type": "module" for dist/, and the version `--version` prints.
COPY --from=build /src/package.json ./package.json
COPY --from=prod-deps /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
# Numeric, so runAsNonRoot can verify it without resolving a name.
USER 65532:65532
# 15000 admin (/metrics /healthz /readyz), 15001 proxy. Both bind 127.0.0.1 unless the config says otherwise.
EXPOSE 15000 15001
# Exec form: node is PID 1 and receives SIGTERM itself (run drains in-flight requests, then exits 0).
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/src/cli/main.js"]
CMD ["run", "--config", "/etc/sts-sidecar/config.yaml"]
