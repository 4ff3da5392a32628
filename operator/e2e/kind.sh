#!/usr/bin/env bash
# End-to-end run of the Replay operator on a real cluster: kind + Istio (istioctl).
# Never part of `./x test` (no cluster on CI); run it by hand with `./x e2e-cluster`.
#
# Needs on PATH: docker, kind, kubectl, istioctl. It creates the kind cluster `tapedeck-e2e`
# (KEEP=1 leaves it), builds the tapedeck image, installs the CRD, RBAC and operator, deploys a
# target (nginx proxying /pay to `payments`), a real `payments` and an unrelated `billing` pod,
# applies a Replay of the shop golden snapshot, and checks: the routing only matches the
# target's labels, billing still reaches the real payments during the replay, the Replay ends
# with a verdict (not Error), and everything it created but its report claim is gone.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLUSTER=${CLUSTER:-tapedeck-e2e}
IMAGE=${IMAGE:-tapedeck:e2e}
NS=shop
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
for tool in docker kind kubectl istioctl; do
  command -v "$tool" >/dev/null || fail "$tool is not on PATH"
done

if ! kind get clusters | grep -qx "$CLUSTER"; then
  say "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --wait 120s
fi
[ "${KEEP:-0}" = 1 ] || trap 'kind delete cluster --name "$CLUSTER"' EXIT
kubectl config use-context "kind-$CLUSTER" >/dev/null

say "building $IMAGE (release build of tapedeck; minutes)"
docker build -t "$IMAGE" -f "$ROOT/operator/e2e/Dockerfile" "$ROOT"
kind load docker-image --name "$CLUSTER" "$IMAGE"

say "installing Istio (minimal profile)"
istioctl install -y --set profile=minimal

say "installing the Replay CRD, RBAC and the operator"
kubectl create namespace tapedeck --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f "$ROOT/operator/manifests/replay-crd.yaml"
kubectl apply -f "$ROOT/operator/manifests/rbac.yaml"
sed "s|ghcr.io/tapedeck/tapedeck:latest|$IMAGE|g" "$ROOT/operator/manifests/deployment.yaml" | kubectl apply -f -
kubectl -n tapedeck rollout status deployment/tapedeck-operator --timeout=180s

say "deploying the shop: orders (target), payments (real dependency), billing (bystander)"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace "$NS" istio-injection=enabled --overwrite
kubectl -n "$NS" apply -f "$ROOT/operator/e2e/shop.yaml"
kubectl -n "$NS" rollout status deployment/orders --timeout=180s
kubectl -n "$NS" rollout status deployment/payments --timeout=180s
kubectl -n "$NS" rollout status deployment/billing --timeout=180s
kubectl -n "$NS" create configmap orders-snapshot \
  --from-file="$ROOT/analyzer/tests/golden/shop/snapshot.json" \
  --from-file="$ROOT/analyzer/tests/golden/shop/inbound.jsonl" \
  --from-file="$ROOT/analyzer/tests/golden/shop/outbound.jsonl" \
  --dry-run=client -o yaml | kubectl apply -f -

say "applying the Replay"
kubectl -n "$NS" delete replay orders --ignore-not-found --wait=true
cat <<YAML | kubectl -n "$NS" apply -f -
apiVersion: tapedeck.dev/v1alpha1
kind: Replay
metadata:
  name: orders
spec:
  target: {deployment: orders, port: 80}
  snapshot: {configMap: orders-snapshot}
  mock: {hosts: ["payments:80"]}
  image: $IMAGE
  load: {copies: 2}
  timeout: 10m
YAML

say "waiting for the routing"
for _ in $(seq 60); do
  kubectl -n "$NS" get virtualservice orders-mock-0 >/dev/null 2>&1 && break
  sleep 2
done
labels=$(kubectl -n "$NS" get virtualservice orders-mock-0 -o jsonpath='{.spec.http[0].match[*].sourceLabels}')
[ "$labels" = '{"app":"orders"}' ] || fail "the VirtualService matches $labels, not only the target's labels"
say "billing still reaches the real payments during the replay"
real=$(kubectl -n "$NS" exec deploy/billing -c billing -- wget -qO- http://payments/ 2>/dev/null || true)
[ "$real" = "real payments" ] || fail "billing got '$real' from payments"

say "waiting for the verdict"
phase=""
for _ in $(seq 300); do
  phase=$(kubectl -n "$NS" get replay orders -o jsonpath='{.status.phase}')
  case "$phase" in Passed|Failed|Inconclusive|Error) break ;; esac
  sleep 2
done
kubectl -n "$NS" get replay orders -o yaml
[ "$phase" != "Error" ] && [ -n "$phase" ] || fail "the replay ended in phase '$phase'"
kubectl -n "$NS" get events --field-selector involvedObject.name=orders | grep -q Replay \
  || kubectl -n "$NS" get events.events.k8s.io | grep -q orders || fail "no Event for the replay"

say "everything the replay created is gone (but its report claim)"
left=$(kubectl -n "$NS" get deploy,svc,job,virtualservice,serviceentry,configmap,secret \
  -l replay.tapedeck.dev/name=orders -o name)
[ -z "$left" ] || fail "left behind: $left"
kubectl -n "$NS" delete replay orders --wait=true
[ -z "$(kubectl -n "$NS" get pvc -l replay.tapedeck.dev/name=orders -o name)" ] || say "(the report claim is being garbage-collected)"
say "e2e-cluster: ok (phase $phase)"
