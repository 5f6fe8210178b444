# syntax=docker/dockerfile:1
#
# sts-sidecar container image.
#   docker build -t sts-sidecar:0.1.0 .
#   docker run --read-only --tmpfs /tmp -v "$PWD/sidecar.yaml:/etc/sts-sidecar/config.yaml:ro" sts-sidecar:0.1.0
# CI builds and runs it with rootful podman and local stand-ins for the base images: .ci/image.sh.
#
# Two stages: `build` compiles TypeScript with the dev dependencies and bundles the CLI with
# its production dependencies into one minified file (scripts/bundle.mjs; the development
# commands in dist/bundle/dev/, loaded only when named); the runtime stage copies just
# dist/bundle onto distroless Node.js (no shell, no package manager, no node_modules). One file
# starts in about half the CPU time of ~300 modules and idles about 5 MB smaller (issue 15,
# docs/benchmarks.md). Tests, sources and anything key-like never reach it (.dockerignore).

# The Node.js major of the runtime image; .ci/run also runs the test suite on it.
# An ARG before the first FROM is visible only in FROM lines: a stage that uses it again
# (the runtime stage's base.name label) declares it once more, without a value.
ARG NODE_MAJOR=24

FROM node:${NODE_MAJOR}-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would run tsc before the sources are copied; no dependency needs an install script.
# The optional secret `npm-ca` is a CA bundle for the registry (a TLS-inspecting proxy's CA):
# .ci/image.sh passes the host npm's `cafile` (`--secret id=npm-ca,src=...`). It is mounted
# for this RUN only and never lands in a layer; without it npm uses the image's own CAs.
# The cache mount keeps npm's download cache between builds (a changed lock file then fetches
# only what changed); it is not part of any layer.
RUN --mount=type=secret,id=npm-ca --mount=type=cache,target=/root/.npm \
    if [ -s /run/secrets/npm-ca ]; then export NPM_CONFIG_CAFILE=/run/secrets/npm-ca; fi && \
    npm ci --no-audit --no-fund --ignore-scripts --prefer-offline
COPY tsconfig.json ./
COPY src ./src
COPY scripts/bundle.mjs ./scripts/bundle.mjs
RUN npm run build && node scripts/bundle.mjs

# distroless/nodejs: Debian 12 with Node.js only; the :nonroot variant's user is 65532.
FROM gcr.io/distroless/nodejs${NODE_MAJOR}-debian12:nonroot AS runtime
ARG NODE_MAJOR
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="sts-sidecar" \
      org.opencontainers.image.description="Sidecar token broker: exchanges the workload's ambient credential at an STS (RFC 8693), caches the token and injects it into outbound requests." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/nodejs${NODE_MAJOR}-debian12:nonroot"
ENV NODE_ENV=production
WORKDIR /app
# The bundle carries its dependencies and its version: no package.json, no node_modules.
COPY --from=build /src/dist/bundle ./dist/bundle
# Numeric, so runAsNonRoot can verify it without resolving a name.
USER 65532:65532
# 15000: the admin listener (/metrics /healthz /readyz, never a token). The kubelet's probes
# and Prometheus come in on the pod IP, so the configs this project ships (k8s/, deploy/) set
# admin.listen: 0.0.0.0:15000; its built-in default is 127.0.0.1:15000. The proxy (15001)
# and route ports are not exposed: in a pod only the pod's own containers may use them
# (127.0.0.1; anything reaching them gets the workload's tokens).
EXPOSE 15000
# Exec form: node is PID 1 and receives SIGTERM itself (run drains in-flight requests, then exits 0).
# --max-semi-space-size=1: about 12 MB less RSS idle and 30 MB less under load (issue 15,
# docs/design.md "Footprint"); V8 reads it only from the command line.
ENTRYPOINT ["/nodejs/bin/node", "--max-semi-space-size=1", "/app/dist/bundle/sts-sidecar.mjs"]
CMD ["run", "--config", "/etc/sts-sidecar/config.yaml"]
