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

from soraplan.planner.names import NameRule, matches, shown

DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
ENV_NAME_MAX = 1024
# Every rule is matched with re.fullmatch after its length check (planner/names.py): no trailing newline passes.
LABEL = NameRule(re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"), DNS_LABEL_MAX, "RFC 1123 label")
SUBDOMAIN = NameRule(re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"), DNS_SUBDOMAIN_MAX,
                     "RFC 1123 subdomain")
LABEL_VALUE = NameRule(re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"), DNS_LABEL_MAX, "label value",
                       min_len=0)
QUALIFIED_NAME = NameRule(re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"), DNS_LABEL_MAX, "qualified name")
ENV_NAME = NameRule(re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*"), ENV_NAME_MAX, "environment variable name")
# An object name as `object_name` makes it when the run name is changed: the slug ends in '-' + 8 hex digits.
HASHED = re.compile(r".*-[0-9a-f]{8}")
HASH_HEX = 8
RFC1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def is_dns_label(value: str) -> bool:
    return matches(LABEL, value)


def is_dns_subdomain(value: str) -> bool:
    return matches(SUBDOMAIN, value)


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
    """The workload's object name: unique per run name, readable, short enough for every pod hostname.

    A run name that already is a canonical object name (an RFC 1035 label: lower-case letters, digits and '-',
    starting with a letter; within the hostname budget; not itself ending in '-' + 8 hex digits) is used as
    it is. Any other run name becomes a readable slug (`sanitize_label`; an 'r-' prefix when it starts with a
    digit) cut to the budget, plus '-' + the first 8 hex digits of the SHA-256 of the exact run name:
    'a.b', 'a_b', 'a..b' and 'A-b' give 'a-b-<hash>' with four different hashes, while 'a-b' stays 'a-b'.

    Distinct run names give distinct object names: names kept as they are never end in '-' + 8 hex digits and
    changed names always do, so the two sets are disjoint; kept names map to themselves; changed names differ
    in their hash unless two SHA-256 digests share their first 32 bits, a case the ledger still catches
    (launch/k8s.py refuses an object name that the ledger records for another run).

    Also an RFC 1035 label (starts with a letter): Services (the headless service of JobSet and Indexed Job)
    and TrainJobs require that.

    Args:
        run_name: the exact run name (LaunchOptions.name).
        kind: the workload kind (sets the hostname budget).
        nodes: the number of nodes (the highest pod index takes room too).

    Returns:
        The object name.
    """
    budget = DNS_LABEL_MAX - hostname_suffix_len(kind, nodes)
    if len(run_name) <= budget and RFC1035_LABEL.fullmatch(run_name) and not HASHED.fullmatch(run_name):
        return run_name
    digest = hashlib.sha256(run_name.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_HEX]
    room = budget - HASH_HEX - 1
    slug = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", run_name.lower())).strip("-")
    if not slug[:1].isalpha():
        slug = ("r-" + slug).rstrip("-")
    if room < 1:
        raise UserError(f"--name: no room for a Kubernetes name ({budget} characters left of {DNS_LABEL_MAX})")
    slug = slug[:room].rstrip("-")
    name = f"{slug}-{digest}"
    assert RFC1035_LABEL.fullmatch(name) and len(name) <= budget, name
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
        raise UserError(f"{what}: {shown(value)} is not a valid Kubernetes name (RFC 1123 label: lower-case letters, "
                        f"digits and '-', starting and ending with a letter or digit, at most {DNS_LABEL_MAX} characters)")
    return value


def check_subdomain(value: str, what: str) -> str:
    """A DNS subdomain the user named (PVC, ConfigMap, service account): valid as given, or one clear error."""
    if not is_dns_subdomain(value):
        raise UserError(f"{what}: {shown(value)} is not a valid Kubernetes object name (RFC 1123 subdomain: lower-case "
                        f"letters, digits, '-' and '.', at most {DNS_SUBDOMAIN_MAX} characters)")
    return value


def check_label_value(value: str, what: str) -> str:
    if not matches(LABEL_VALUE, value):
        raise UserError(f"{what}: {shown(value)} is not a valid label value (at most 63 letters, digits, '-', '_', '.', "
                        "starting and ending with a letter or digit)")
    return value


def check_qualified_name(key: str, what: str) -> str:
    """A label/annotation/nodeSelector key: optional DNS-subdomain prefix + '/' + name (<= 63)."""
    prefix, _, name = key.rpartition("/")
    ok = matches(QUALIFIED_NAME, name)
    if prefix and not is_dns_subdomain(prefix):
        ok = False
    if not ok:
        raise UserError(f"{what}: {shown(key)} is not a valid Kubernetes key ([prefix/]name, name at most 63 letters, "
                        "digits, '-', '_', '.'; prefix a DNS subdomain)")
    return key


def check_env_name(name: str, what: str) -> str:
    if not matches(ENV_NAME, name):
        raise UserError(f"{what}: {shown(name)} is not a valid environment variable name")
    return name


def check_image(image: str | None) -> str:
    if not image:
        raise UserError("--image: a container image is required for --cluster k8s (e.g. registry/org/train:tag)")
    if len(image) > 4096 or any(c.isspace() for c in image) or not image.isprintable():
        raise UserError(f"--image: {image!r} is not a valid image reference (no spaces or control characters)")
    return image
