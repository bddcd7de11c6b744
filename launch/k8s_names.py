"""Kubernetes names: sanitise the run name to RFC 1123, check user values that must already be valid.

Two kinds of value reach a manifest:
- the run name, which soraplan owns: it is *made* valid (lower-cased, other characters -> '-', trimmed to
  a length budget with a short hash so two long names never collide);
- references to things that exist on the cluster (namespace, PVC, Kueue queue, profile labels): these
  are *checked* and refused with one clear line, never silently changed (a changed name would point at
  another object).

Pod hostnames must be DNS labels (<= 63 characters). Each workload kind derives pod hostnames from the
object name; `object_name` keeps the longest hostname of the layout within 63 characters.
"""

from __future__ import annotations

import hashlib
import re

from soraplan.planner.errors import UserError

DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def is_dns_label(value: str) -> bool:
    return len(value) <= DNS_LABEL_MAX and bool(_LABEL.match(value))


def is_dns_subdomain(value: str) -> bool:
    return len(value) <= DNS_SUBDOMAIN_MAX and bool(_SUBDOMAIN.match(value))


def sanitize_label(value: str, max_len: int = DNS_LABEL_MAX, what: str = "name") -> str:
    """`value` as an RFC 1123 label of at most `max_len` characters.

    Lower-case; every character outside [a-z0-9-] becomes '-'; runs of '-' collapse; leading/trailing '-'
    go. When the result is longer than `max_len` it is cut and ends in '-' + 6 hex digits of the SHA-256
    of the original value (distinct long names stay distinct).
    """
    s = re.sub(r"[^a-z0-9-]", "-", value.lower())
    s = re.sub(r"-+", "-", s).strip("-")
    if not s:
        raise UserError(f"{what}: {value!r} has no letter or digit; it cannot become a Kubernetes name")
    if max_len < 8:
        raise UserError(f"{what}: no room for a name ({max_len} characters left of {DNS_LABEL_MAX})")
    if len(s) > max_len:
        digest = hashlib.sha256(value.encode()).hexdigest()[:6]
        s = s[: max_len - 7].rstrip("-") + "-" + digest
    assert is_dns_label(s), s
    return s


# Pod hostname = object name + this suffix (+ the highest index). Budget: hostname <= 63 characters.
#   jobset:      <name>-<replicatedJob>-<jobIndex>-<podIndex>   (replicatedJob "node", one job)
#   trainjob:    the Trainer makes a JobSet of the same name with replicatedJob "node"
#   pytorchjob:  <name>-worker-<i> (and <name>-master-0)
#   indexed-job: <name>-<completionIndex>
def hostname_suffix_len(kind: str, nodes: int) -> int:
    last = str(max(nodes - 1, 0))
    return {"jobset": len("-node-0-") + len(last),
            "trainjob": len("-node-0-") + len(last),
            "pytorchjob": len("-worker-") + len(last),
            "indexed-job": len("-") + len(last)}[kind]


def object_name(run_name: str, kind: str, nodes: int) -> str:
    """The workload's object name: the sanitised run name, short enough for every pod hostname.

    Also an RFC 1035 label (starts with a letter): Services (the headless service of JobSet and Indexed Job)
    and TrainJobs require that, so a name starting with a digit gets an 'r-' prefix ('7b-run' -> 'r-7b-run').
    """
    budget = DNS_LABEL_MAX - hostname_suffix_len(kind, nodes)
    name = sanitize_label(run_name, budget, what="--name")
    if not name[0].isalpha():
        name = sanitize_label("r-" + name, budget, what="--name")
    return name


def pod_hostnames(name: str, kind: str, nodes: int) -> list[str]:
    """The pod hostnames the controllers will create (rank order)."""
    if kind in ("jobset", "trainjob"):
        return [f"{name}-node-0-{i}" for i in range(nodes)]
    if kind == "pytorchjob":
        return [f"{name}-master-0"] + [f"{name}-worker-{i}" for i in range(nodes - 1)]
    return [f"{name}-{i}" for i in range(nodes)]


def check_label(value: str, what: str) -> str:
    """A DNS label the user named (namespace, queue, ...): valid as given, or one clear error."""
    if not is_dns_label(value):
        raise UserError(f"{what}: {value!r} is not a valid Kubernetes name (RFC 1123 label: lower-case letters, "
                        f"digits and '-', starting and ending with a letter or digit, at most {DNS_LABEL_MAX} characters)")
    return value


def check_subdomain(value: str, what: str) -> str:
    """A DNS subdomain the user named (PVC, ConfigMap, service account): valid as given, or one clear error."""
    if not is_dns_subdomain(value):
        raise UserError(f"{what}: {value!r} is not a valid Kubernetes object name (RFC 1123 subdomain: lower-case "
                        f"letters, digits, '-' and '.', at most {DNS_SUBDOMAIN_MAX} characters)")
    return value


def check_label_value(value: str, what: str) -> str:
    if len(value) > DNS_LABEL_MAX or not _LABEL_VALUE.match(value):
        raise UserError(f"{what}: {value!r} is not a valid label value (at most 63 letters, digits, '-', '_', '.', "
                        "starting and ending with a letter or digit)")
    return value


def check_qualified_name(key: str, what: str) -> str:
    """A label/annotation/nodeSelector key: optional DNS-subdomain prefix + '/' + name (<= 63)."""
    prefix, _, name = key.rpartition("/")
    ok = bool(name) and len(name) <= DNS_LABEL_MAX and bool(_QUALIFIED.match(name))
    if prefix and not is_dns_subdomain(prefix):
        ok = False
    if not ok:
        raise UserError(f"{what}: {key!r} is not a valid Kubernetes key ([prefix/]name, name at most 63 letters, "
                        "digits, '-', '_', '.'; prefix a DNS subdomain)")
    return key


def check_env_name(name: str, what: str) -> str:
    if not _ENV_NAME.match(name):
        raise UserError(f"{what}: {name!r} is not a valid environment variable name")
    return name


def check_image(image: str | None) -> str:
    if not image:
        raise UserError("--image: a container image is required for --cluster k8s (e.g. registry/org/train:tag)")
    if len(image) > 4096 or any(c.isspace() for c in image) or not image.isprintable():
        raise UserError(f"--image: {image!r} is not a valid image reference (no spaces or control characters)")
    return image
