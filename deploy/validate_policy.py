#!/usr/bin/env python3
"""Rules that deploy/ relies on across files, which no schema can express.

Run by deploy/validate.sh with the tools' virtualenv (PyYAML, crossplane):

  validate_policy.py --repo DIR --base BASE.yaml --production PRODUCTION.yaml [--notes FILE]
      the rendered Kubernetes manifests, the Secret template, compose.yaml with nginx.conf,
      and the inputs of the Docker build;
  validate_policy.py --nginx nginx.conf
      every directive of nginx.conf known, in a valid context, with a valid number of arguments.

Prints one line per problem and exits 1 if there is any. Notes (for example placeholder values
that an operator must replace) are written to --notes and do not fail the run.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import yaml

IMAGE_UID = 10001
DATA_DIR = "/var/lib/shl-gateway"
# Memory one passcode hash holds while it runs (argon2id parameters of the gateway).
PASSCODE_HASH_MIB = 19
# What the memory limit must leave beside the passcode hashes for everything else.
BASE_FOOTPRINT_MIB = 64
# RFC 5737 documentation ranges: placeholders that match no real host.
DOCUMENTATION_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]


class Report:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.notes: list[str] = []

    def require(self, condition: object, message: str) -> bool:
        if not condition:
            self.errors.append(message)
        return bool(condition)

    def note(self, message: str) -> None:
        self.notes.append(message)


def seconds(text: str) -> float:
    """A humantime-style duration as the gateway reads it: 500ms, 5s, 2m, 1h, 1m30s."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+)\s*(ms|s|m|h)", text)
    if not parts or re.sub(r"(\d+)\s*(ms|s|m|h)|\s", "", text):
        raise ValueError(f"cannot read duration {text!r}")
    return sum(int(n) * units[u] for n, u in parts)


def mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i?)?", str(quantity))
    if not match:
        raise ValueError(f"cannot read quantity {quantity!r}")
    return float(match.group(1)) * (units[match.group(2)] if match.group(2) else 1 / 2**20)


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def subset(small: dict, big: dict) -> bool:
    return all(big.get(k) == v for k, v in small.items())


def dig(obj, *path, default=None):
    for key in path:
        if isinstance(obj, dict) and key in obj:
            obj = obj[key]
        elif isinstance(obj, list) and isinstance(key, int) and key < len(obj):
            obj = obj[key]
        else:
            return default
    return obj


# ------------------------------------------------------------------------------------------
# Kubernetes
# ------------------------------------------------------------------------------------------

def check_kubernetes(path: Path, which: str, template: dict, r: Report) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    p = f"{which}:"

    r.require("Secret" not in by_kind, f"{p} renders a Secret; secrets are created out of band")
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                 "NetworkPolicy", "ServiceAccount", "ConfigMap"):
        if not r.require(len(by_kind.get(kind, [])) == 1, f"{p} expected exactly one {kind}"):
            return

    deployment = by_kind["Deployment"][0]
    service = by_kind["Service"][0]
    hpa = by_kind["HorizontalPodAutoscaler"][0]
    pdb = by_kind["PodDisruptionBudget"][0]
    policy = by_kind["NetworkPolicy"][0]
    account = by_kind["ServiceAccount"][0]
    configmap = by_kind["ConfigMap"][0]
    config = configmap.get("data", {})
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    labels = pod["metadata"]["labels"]
    containers = spec["containers"]
    r.require(len(containers) == 1, f"{p} the pod has one container")
    container = containers[0]
    name = deployment["metadata"]["name"]

    # Ownership of the replica count, and the selectors that must find the pods.
    r.require("replicas" not in deployment["spec"], f"{p} Deployment sets replicas; the HPA owns them")
    r.require(subset(deployment["spec"]["selector"]["matchLabels"], labels), f"{p} Deployment selector misses its pods")
    r.require(subset(service["spec"]["selector"], labels), f"{p} Service selector misses the pods")
    r.require(subset(pdb["spec"]["selector"]["matchLabels"], labels), f"{p} PodDisruptionBudget selector misses the pods")
    r.require(subset(policy["spec"]["podSelector"]["matchLabels"], labels), f"{p} NetworkPolicy podSelector misses the pods")
    target = hpa["spec"]["scaleTargetRef"]
    r.require(target["kind"] == "Deployment" and target["name"] == name, f"{p} HPA does not target the Deployment")

    # Identity and hardening.
    r.require(spec.get("serviceAccountName") == account["metadata"]["name"], f"{p} pod does not use the ServiceAccount")
    r.require(account.get("automountServiceAccountToken") is False, f"{p} ServiceAccount mounts a token")
    r.require(spec.get("automountServiceAccountToken") is False, f"{p} pod mounts a service account token")
    r.require(spec.get("enableServiceLinks") is False,
              f"{p} enableServiceLinks must be false: Service env vars would collide with SHL_GATEWAY_*")
    psc = spec.get("securityContext", {})
    r.require(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == IMAGE_UID,
              f"{p} pod securityContext must run as non-root UID {IMAGE_UID}")
    r.require(dig(psc, "seccompProfile", "type") == "RuntimeDefault", f"{p} pod seccompProfile must be RuntimeDefault")
    csc = container.get("securityContext", {})
    r.require(csc.get("allowPrivilegeEscalation") is False, f"{p} allowPrivilegeEscalation must be false")
    r.require(csc.get("readOnlyRootFilesystem") is True, f"{p} readOnlyRootFilesystem must be true")
    r.require(dig(csc, "capabilities", "drop") == ["ALL"], f"{p} capabilities must drop ALL")
    r.require(csc.get("runAsNonRoot") is True, f"{p} container runAsNonRoot must be true")
    keys = {c.get("topologyKey") for c in spec.get("topologySpreadConstraints", [])}
    r.require({"topology.kubernetes.io/zone", "kubernetes.io/hostname"} <= keys,
              f"{p} pods must spread across zones and nodes")

    # Probes on the gateway's endpoints, on its named port.
    ports = {port["name"]: port["containerPort"] for port in container.get("ports", [])}
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = dig(container, probe, "httpGet", default={})
        r.require(get.get("path") == path and get.get("port") in ports,
                  f"{p} {probe} must GET {path} on a named container port")

    # Resources, and memory for the passcode hashes allowed in flight.
    resources = container.get("resources", {})
    for bound in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            r.require(dig(resources, bound, resource), f"{p} missing resources.{bound}.{resource}")
    hashes = int(config.get("SHL_GATEWAY_MAX_CONCURRENT_PASSCODE_HASHES", 2))
    limit = dig(resources, "limits", "memory")
    if limit:
        needed = hashes * PASSCODE_HASH_MIB + BASE_FOOTPRINT_MIB
        r.require(mebibytes(limit) >= needed,
                  f"{p} memory limit {limit} is below {needed} MiB for {hashes} concurrent passcode hashes")

    # Configuration: production defaults and ports that agree with the container and Service.
    expected = {"SHL_GATEWAY_GRAPHIQL": "false", "SHL_GATEWAY_INTROSPECTION": "false",
                "SHL_GATEWAY_DEMO": "off", "SHL_GATEWAY_LOG_FORMAT": "json"}
    for key, value in expected.items():
        r.require(config.get(key) == value, f"{p} ConfigMap must set {key}={value}")
    r.require(port_of(config.get("SHL_GATEWAY_LISTEN", ":0")) == ports.get("http"),
              f"{p} SHL_GATEWAY_LISTEN port differs from the container's http port")
    r.require(port_of(config.get("SHL_GATEWAY_METRICS_LISTEN", ":0")) == ports.get("metrics"),
              f"{p} SHL_GATEWAY_METRICS_LISTEN port differs from the container's metrics port")
    for port in service["spec"]["ports"]:
        r.require(port["targetPort"] in ports, f"{p} Service port {port['name']} targets no container port")
    for cidr in filter(None, config.get("SHL_GATEWAY_TRUSTED_PROXIES", "").split(",")):
        try:
            ipaddress.ip_network(cidr.strip())
        except ValueError:
            r.require(False, f"{p} SHL_GATEWAY_TRUSTED_PROXIES: {cidr!r} is not a CIDR")

    # Environment: ConfigMap, Secret references that the template provides, audit chain per pod.
    refs = [source.get("configMapRef", {}).get("name") for source in container.get("envFrom", [])]
    r.require(configmap["metadata"]["name"] in refs, f"{p} container does not load the ConfigMap")
    env = {e["name"]: e for e in container.get("env", [])}
    secret_name = template["metadata"]["name"]
    template_keys = set(template.get("stringData", {})) | set(template.get("data", {}))
    for entry in env.values():
        ref = dig(entry, "valueFrom", "secretKeyRef")
        if ref:
            r.require(ref["name"] == secret_name, f"{p} {entry['name']} reads Secret {ref['name']}, not {secret_name}")
            r.require(ref["key"] in template_keys,
                      f"{p} {entry['name']} reads key {ref['key']!r}, missing from secret.example.yaml")
    r.require(dig(env, "SHL_GATEWAY_AUDIT_CHAIN", "valueFrom", "fieldRef", "fieldPath") == "metadata.name",
              f"{p} SHL_GATEWAY_AUDIT_CHAIN must come from the pod name")

    # Writable paths: only emptyDirs, at the data directory and /tmp; the key from the Secret.
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    data_dir = env.get("SHL_GATEWAY_DATA_DIR", {}).get("value", config.get("SHL_GATEWAY_DATA_DIR"))
    r.require(data_dir == DATA_DIR, f"{p} SHL_GATEWAY_DATA_DIR must be {DATA_DIR}")
    for path in (DATA_DIR, "/tmp"):
        mount = mounts.get(path)
        r.require(mount and "emptyDir" in volumes.get(mount["name"], {}), f"{p} {path} must be an emptyDir mount")
    key_file = env.get("SHL_GATEWAY_SECRET_KEY_FILE", {}).get("value", "")
    key_mount = mounts.get(str(Path(key_file).parent))
    key_volume = volumes.get(key_mount["name"], {}) if key_mount else {}
    r.require(key_mount and key_mount.get("readOnly") and dig(key_volume, "secret", "secretName") == secret_name,
              f"{p} SHL_GATEWAY_SECRET_KEY_FILE must lie in a read-only mount of Secret {secret_name}")
    r.require(any(item.get("key") == "secret-key" and item.get("path") == Path(key_file).name
                  for item in dig(key_volume, "secret", "items", default=[])),
              f"{p} the secret volume must project key 'secret-key' at {key_file}")

    # Termination: the grace period covers preStop, the shutdown delay and the drain.
    grace = spec.get("terminationGracePeriodSeconds", 30)
    pre_stop = dig(container, "lifecycle", "preStop", "sleep", "seconds", default=0)
    delay = seconds(config.get("SHL_GATEWAY_SHUTDOWN_DELAY", "0s"))
    drain = seconds(config.get("SHL_GATEWAY_SHUTDOWN_TIMEOUT", "30s"))
    r.require(grace > pre_stop + delay + drain,
              f"{p} terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop}s + "
              f"shutdown delay {delay:g}s + shutdown timeout {drain:g}s")

    # Scaling and disruption.
    minimum, maximum = hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]
    r.require(minimum >= 2 and maximum >= minimum, f"{p} HPA bounds must be 2 <= min <= max")
    r.require(any(dig(m, "resource", "name") == "cpu" and dig(m, "resource", "target", "type") == "Utilization"
                  for m in hpa["spec"].get("metrics", [])), f"{p} HPA must scale on CPU utilisation")
    r.require(dig(hpa, "spec", "behavior", "scaleDown", "stabilizationWindowSeconds", default=0) >= 60,
              f"{p} HPA scale-down needs a stabilisation window")
    available = pdb["spec"].get("minAvailable")
    r.require(pdb["spec"].get("maxUnavailable") is not None or (isinstance(available, int) and available < minimum),
              f"{p} PodDisruptionBudget must let one pod go while the HPA minimum runs")

    # Network: ingress only to the gateway's ports, DNS allowed, placeholders reported.
    container_ports = set(ports.values())
    for rule in policy["spec"].get("ingress", []):
        for port in rule.get("ports", []):
            r.require(port.get("port") in container_ports, f"{p} NetworkPolicy admits port {port.get('port')}, not served")
    egress_ports = {(port.get("protocol", "TCP"), port.get("port"))
                    for rule in policy["spec"].get("egress", []) for port in rule.get("ports", [])}
    r.require(("UDP", 53) in egress_ports and ("TCP", 53) in egress_ports, f"{p} NetworkPolicy must allow DNS")
    placeholders = sorted({
        peer["ipBlock"]["cidr"]
        for rule in policy["spec"].get("egress", []) for peer in rule.get("to", []) if "ipBlock" in peer
        if any(ipaddress.ip_network(peer["ipBlock"]["cidr"]).subnet_of(net) for net in DOCUMENTATION_NETS)
    })
    if placeholders and which == "production":
        r.note(f"production NetworkPolicy still allows documentation CIDRs {', '.join(placeholders)}: "
               f"set the real PostgreSQL, Redis and upstream ranges in "
               f"kubernetes/overlays/production/networkpolicy-patch.yaml before applying")

    image = container["image"]
    if which == "production":
        r.require("/" in image and (re.search(r":[^/:]+$", image) or "@sha256:" in image),
                  f"{p} image {image!r} must name a registry and a tag or digest")
        r.require(not image.endswith(":latest"), f"{p} image must not be :latest")
        public, upstream = config.get("SHL_GATEWAY_PUBLIC_URL"), config.get("SHL_GATEWAY_UPSTREAM_URL")
        r.require(public or upstream, f"{p} set SHL_GATEWAY_PUBLIC_URL (embedded) or SHL_GATEWAY_UPSTREAM_URL")
        if public:
            r.require(public.startswith("https://"), f"{p} SHL_GATEWAY_PUBLIC_URL must be https")
            hosts = {rule.get("host") for ingress in by_kind.get("Ingress", []) for rule in ingress["spec"]["rules"]}
            if hosts:
                r.require(urlsplit(public).hostname in hosts, f"{p} the Ingress does not serve SHL_GATEWAY_PUBLIC_URL's host")
            if urlsplit(public).hostname.endswith("example.org"):
                r.note(f"production public URL is the placeholder {public}: set the real host in the overlay "
                       f"(kustomization.yaml and ingress.yaml) and the image registry ({image})")
        for ingress in by_kind.get("Ingress", []):
            for rule in ingress["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    backend = path["backend"]["service"]
                    r.require(backend["name"] == service["metadata"]["name"]
                              and backend["port"].get("name") in {p_["name"] for p_ in service["spec"]["ports"]},
                              f"{p} the Ingress backend is not the gateway Service's port")


def check_secret_template(path: Path, r: Report) -> dict:
    template = yaml.safe_load(path.read_text())
    for key, value in template.get("stringData", {}).items():
        r.require("REPLACE_WITH" in str(value), f"secret.example.yaml: {key} must be a REPLACE_WITH placeholder")
    r.require("data" not in template, "secret.example.yaml: use stringData placeholders, never data")
    kustomization = yaml.safe_load((path.parent / "kustomization.yaml").read_text())
    r.require(path.name not in kustomization.get("resources", []),
              "secret.example.yaml must not be a kustomization resource")
    return template


# ------------------------------------------------------------------------------------------
# Compose and nginx
# ------------------------------------------------------------------------------------------

def default_of(expression: str) -> str:
    """The default of a ${VAR:-default} expression, or the text itself."""
    match = re.fullmatch(r"\$\{[A-Z0-9_]+:-([^}]*)\}", expression)
    return match.group(1) if match else expression


def check_compose(deploy: Path, r: Report) -> None:
    compose = yaml.safe_load((deploy / "compose.yaml").read_text())
    services = compose["services"]
    gateways = {name: s for name, s in services.items() if dig(s, "build", "dockerfile") == "deploy/Dockerfile"}
    r.require(len(gateways) >= 2, "compose: at least two gateway replicas")
    subnet = default_of(compose["networks"]["edge"]["ipam"]["config"][0]["subnet"])
    chains = set()
    for name, s in gateways.items():
        env = s.get("environment", {})
        r.require(s.get("read_only") is True, f"compose {name}: read_only must be true")
        r.require(s.get("user") == f"{IMAGE_UID}:{IMAGE_UID}", f"compose {name}: user must be {IMAGE_UID}:{IMAGE_UID}")
        r.require(s.get("cap_drop") == ["ALL"], f"compose {name}: cap_drop must be [ALL]")
        r.require("shl-gateway" in " ".join(map(str, dig(s, "healthcheck", "test", default=[]))),
                  f"compose {name}: healthcheck must run shl-gateway healthcheck")
        r.require(any(t.startswith(DATA_DIR) for t in s.get("tmpfs", [])), f"compose {name}: {DATA_DIR} must be writable")
        key_file = env.get("SHL_GATEWAY_SECRET_KEY_FILE", "")
        r.require(key_file.startswith("/run/secrets/") and key_file.rsplit("/", 1)[1] in s.get("secrets", []),
                  f"compose {name}: SHL_GATEWAY_SECRET_KEY_FILE must be a compose secret")
        r.require(default_of(env.get("SHL_GATEWAY_TRUSTED_PROXIES", "")) == subnet,
                  f"compose {name}: SHL_GATEWAY_TRUSTED_PROXIES must be the edge subnet {subnet}")
        budget = seconds(env.get("SHL_GATEWAY_SHUTDOWN_DELAY", "0s")) + seconds(env.get("SHL_GATEWAY_SHUTDOWN_TIMEOUT", "30s"))
        r.require(seconds(s.get("stop_grace_period", "10s")) > budget,
                  f"compose {name}: stop_grace_period must exceed shutdown delay + timeout ({budget:g}s)")
        chains.add(env.get("SHL_GATEWAY_AUDIT_CHAIN"))
        r.require(all(d.get("condition") == "service_healthy" for d in s.get("depends_on", {}).values()),
                  f"compose {name}: depends_on must wait for healthy services")
    r.require(len(chains) == len(gateways) and None not in chains, "compose: each replica needs its own audit chain")
    nginx = (deploy / "nginx.conf").read_text()
    upstreams = set(re.findall(r"^\s*server\s+([\w.-]+):8080\b", nginx, re.M))
    r.require(upstreams == set(gateways), f"nginx.conf upstream {sorted(upstreams)} differs from compose replicas {sorted(gateways)}")
    r.require(re.search(rf"^\s*set_real_ip_from\s+{re.escape(subnet)};", nginx, re.M),
              f"nginx.conf set_real_ip_from must be the compose edge subnet {subnet}")
    r.require(re.search(r"proxy_set_header\s+X-Forwarded-For\s", nginx), "nginx.conf must pass X-Forwarded-For")


def check_untracked_secrets(repo: Path, r: Report) -> None:
    if not (repo / ".git").exists():
        return
    for name in ("deploy/secret-key", "deploy/.env", "deploy/gateway.env"):
        tracked = subprocess.run(["git", "-C", str(repo), "ls-files", "--error-unmatch", name],
                                 capture_output=True, check=False).returncode == 0
        r.require(not tracked, f"{name} is committed: it holds secrets")


def nginx_errors(path: Path) -> list[str]:
    import crossplane

    # The entries of a map block are values, not directives: the parser's strict mode would
    # report each as an unknown directive, so errors on those lines are dropped.
    lenient = crossplane.parse(str(path), single=True, strict=False, catch_errors=True)
    value_lines: set[int] = set()

    def walk(block: list[dict]) -> None:
        for directive in block:
            if directive["directive"] in ("map", "geo", "split_clients", "types"):
                value_lines.update(child["line"] for child in directive.get("block", []))
            else:
                walk(directive.get("block", []))

    for config in lenient["config"]:
        walk(config["parsed"])
    strict = crossplane.parse(str(path), single=True, strict=True, catch_errors=True)
    return [e["error"] for e in strict["errors"] if e.get("line") not in value_lines]


# ------------------------------------------------------------------------------------------
# Docker build inputs
# ------------------------------------------------------------------------------------------

def check_docker_inputs(repo: Path, r: Report) -> None:
    dockerfile = (repo / "deploy/Dockerfile").read_text()
    ignore = (repo / "deploy/Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].strip().rstrip("/") for line in ignore if line.startswith("!")}

    # Every file COPY takes from the context must be let through by the ignore file.
    for line in re.findall(r"^COPY\s+(?!.*--from)(.+)$", dockerfile, re.M):
        sources = [w for w in line.split() if not w.startswith("--")][:-1]
        for source in sources:
            r.require(source.rstrip("/") in allowed,
                      f"Dockerfile copies {source}, which Dockerfile.dockerignore keeps out of the context")

    # Cargo must find every target the manifest names before the dependency stage can build.
    # Run the Dockerfile's own stub commands (joined the way the Dockerfile parser joins
    # continued lines) against Cargo.toml, and check that each target then has a source.
    manifest = tomllib.loads((repo / "Cargo.toml").read_text())
    defaults = {"bin": "src/bin/{}.rs", "bench": "benches/{}.rs", "test": "tests/{}.rs", "example": "examples/{}.rs"}
    targets = [t for t in ("src/main.rs", "src/lib.rs") if (repo / t).exists()]
    for kind, pattern in defaults.items():
        targets += [t.get("path", pattern.format(t["name"])) for t in manifest.get(kind, [])]
    stub = re.search(r"^RUN .*?\\\n\s*(mkdir -p src .*?)\\\n\s*&& cargo build", dockerfile, re.M | re.S)
    if r.require(stub, "Dockerfile: no stub step (mkdir -p src ... && cargo build) in the deps stage"):
        with tempfile.TemporaryDirectory() as scratch:
            shutil.copy(repo / "Cargo.toml", scratch)
            command = stub.group(1).replace("\\\n", "")
            run = subprocess.run(["sh", "-c", command], cwd=scratch, capture_output=True, text=True, check=False)
            r.require(run.returncode == 0, f"Dockerfile stub step fails: {run.stderr.strip()}")
            for target in targets:
                r.require((Path(scratch) / target).is_file(),
                          f"Cargo.toml target {target} gets no stub in the Dockerfile's deps stage")
    build_script = manifest.get("package", {}).get("build", "build.rs" if (repo / "build.rs").exists() else None)
    if build_script:
        r.require(re.search(rf"^COPY\s.*\b{re.escape(build_script)}\b", dockerfile, re.M),
                  f"the build script {build_script} is not copied into the image build")

    # Files the release build embeds must be in what the Dockerfile copies. References inside
    # test-only code (after #[cfg(test)], or in tests.rs modules) are not compiled there.
    pattern = re.compile(r'(include_str|include_bytes|migrate)!\(\s*"([^"]+)"')
    for source in sorted((repo / "src").rglob("*.rs")):
        if source.name == "tests.rs":
            continue
        test_from = None
        for number, text in enumerate(source.read_text().splitlines(), 1):
            if test_from is None and re.match(r"\s*#\[cfg\(test\)\]", text):
                test_from = number
            for macro, target in pattern.findall(text):
                if test_from is not None:
                    continue
                base = repo if macro == "migrate" else source.parent
                resolved = (base / target).resolve()
                try:
                    top = resolved.relative_to(repo.resolve()).parts[0]
                except ValueError:
                    top = None
                r.require(top in allowed,
                          f"{source.relative_to(repo)}:{number} embeds {target}, outside what the Dockerfile copies")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path)
    parser.add_argument("--base", type=Path)
    parser.add_argument("--production", type=Path)
    parser.add_argument("--notes", type=Path)
    parser.add_argument("--nginx", type=Path)
    args = parser.parse_args()

    if args.nginx:
        errors = nginx_errors(args.nginx)
        for error in errors:
            print(f"nginx.conf: {error}")
        if not errors:
            print(f"{args.nginx.name}: every directive known, in context, with valid arguments")
        return 1 if errors else 0

    r = Report()
    deploy = args.repo / "deploy"
    template = check_secret_template(deploy / "kubernetes/base/secret.example.yaml", r)
    for which, path in (("base", args.base), ("production", args.production)):
        if path.exists() and path.stat().st_size:
            check_kubernetes(path, which, template, r)
        else:
            r.require(False, f"{which}: no rendered manifests (see the kustomize step)")
    check_compose(deploy, r)
    check_untracked_secrets(args.repo, r)
    check_docker_inputs(args.repo, r)

    for error in r.errors:
        print(f"error: {error}")
    if args.notes and r.notes:
        args.notes.write_text("".join(f"{note}\n" for note in r.notes))
    if not r.errors:
        print("Kubernetes (base, production), Secret template, compose.yaml with nginx.conf, "
              "Docker build inputs: all rules hold")
    return 1 if r.errors else 0


if __name__ == "__main__":
    sys.exit(main())
