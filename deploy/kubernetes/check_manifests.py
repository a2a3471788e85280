"""Checks of what deploy/kubernetes/values.yaml renders, and of the training pod template (used by check.sh).

    check_manifests.py check RENDERED [--chart-values FILE]
        RENDERED: the output of `helm template` with values.yaml. Checks the manifests,
        pod-template-train.yaml (against the chart's rendered worker template too) and volumes.yaml; one line
        per check, exit 1 on the first failure.
    check_manifests.py render-sdk CHART OUT --release NAME --namespace NS
        `helm template` through Helm's Go SDK (the helm-python-sdk package), for a machine without the helm
        binary: same chart loading, values merging, values.schema.json validation and template engine.
    check_manifests.py strip-deps CHART OUT
        A copy of the chart directory CHART whose Chart.yaml declares no dependency (check.sh --without-deps).

Needs PyYAML. The pod template is also loaded the way the KubernetesExecutor loads it
(airflow.providers.cncf.kubernetes PodGenerator.deserialize_model_file) where that provider is importable,
else into the kubernetes client's V1Pod where that client is.
"""

from __future__ import annotations

import argparse
import configparser
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
VALUES = HERE / "values.yaml"
POD_TEMPLATE = HERE / "pod-template-train.yaml"
VOLUMES = HERE / "volumes.yaml"

FULLNAME = "movierec-airflow"  # values.yaml fullnameOverride
CONFIG_MAP = f"{FULLNAME}-config"
SECRETS = {"movierec-airflow", "movierec-app"}  # created beforehand (README.md); the chart's own are unused
POD_TEMPLATES_CONFIG_MAP = "movierec-pod-templates"
# the training template's key in that ConfigMap (README.md: kubectl create configmap --from-file)
TRAIN_TEMPLATE_NAME = "pod-template-train.yaml"
PROJECT_ENV = (
    "MOVIEREC_HOME",
    "DATABASE_URL",
    "MLFLOW_TRACKING_URI",
    "MOVIEREC_DEVICE",
    "MLFLOW_DISABLE_TELEMETRY",
    "DO_NOT_TRACK",
    "SCARF_ANALYTICS",
    "AIRFLOW__CORE__LOAD_EXAMPLES",
)
# What the chart adds to every env for Airflow 1's [kubernetes_environment_variables] / [kubernetes_secrets]:
# Airflow 3 reads neither, so the training template leaves them out.
LEGACY_ENV_PREFIXES = ("AIRFLOW__KUBERNETES_ENVIRONMENT_VARIABLES__", "AIRFLOW__KUBERNETES_SECRETS__")


class CheckFailed(Exception):
    pass


def ok(message: str) -> None:
    print(f"ok: {message}")


def require(condition: object, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# --- reading ------------------------------------------------------------------------------------------------


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc.get("kind") == kind and doc.get("metadata", {}).get("name") == name:
            return doc
    raise CheckFailed(f"no {kind} {name} in the rendered manifests")


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"]
    if doc["kind"] == "Pod":
        return spec
    if doc["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    return spec["template"]["spec"]


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    for item in spec.get("containers") or []:
        if item["name"] == name:
            return item
    raise CheckFailed(f"no container {name} in {[c['name'] for c in spec.get('containers') or []]}")


def env_of(item: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in item.get("env") or []}


def values_image(values: dict[str, Any]) -> str:
    images = values.get("images", {}).get("airflow", {})
    repository = images.get("repository") or values["defaultAirflowRepository"]
    return f"{repository}:{images.get('tag') or values['defaultAirflowTag']}"


def mounts(item: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {mount["mountPath"]: mount for mount in item.get("volumeMounts") or []}


def volumes(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {volume["name"]: volume for volume in spec.get("volumes") or []}


# --- checks -------------------------------------------------------------------------------------------------


def check_rendered(docs: list[dict[str, Any]], values: dict[str, Any]) -> dict[str, Any]:
    """The chart's manifests; returns the chart's rendered worker pod template."""
    kinds = Counter(doc["kind"] for doc in docs)
    ok(f"rendered {len(docs)} manifests: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    image = values_image(values)

    config_map = find(docs, "ConfigMap", CONFIG_MAP)
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read_string(config_map["data"]["airflow.cfg"])
    require(cfg.get("core", "executor") == "KubernetesExecutor", "airflow.cfg [core] executor")
    section = cfg["kubernetes_executor"]
    repository, tag = image.rsplit(":", 1)
    require(
        section.get("worker_container_repository") == repository
        and section.get("worker_container_tag") == tag,
        f"[kubernetes_executor] worker image is not {image}",
    )
    ok(f"airflow.cfg: executor = KubernetesExecutor; task pods run {image}")
    require(cfg.get("core", "dags_folder") == "/app/dags", "airflow.cfg [core] dags_folder is not /app/dags")
    require(cfg.get("core", "load_examples") == "False", "airflow.cfg [core] load_examples")
    require("SimpleAuthManager" in cfg.get("core", "auth_manager"), "auth manager is not SimpleAuthManager")
    ok("airflow.cfg: DAGs from the image's /app/dags, no examples, SimpleAuthManager")

    default_template = yaml.safe_load(config_map["data"]["pod_template_file.yaml"])
    require(
        section.get("pod_template_file") == "/opt/airflow/pod_templates/pod_template_file.yaml",
        "[kubernetes_executor] pod_template_file",
    )

    for kind in ("StatefulSet", "Deployment"):
        names = [d["metadata"]["name"] for d in docs if d["kind"] == kind]
        require(
            not any("worker" in n or "redis" in n or "postgresql" in n for n in names), f"{kind}s {names}"
        )
    scheduler = find(docs, "Deployment", f"{FULLNAME}-scheduler")
    find(docs, "Deployment", f"{FULLNAME}-api-server")
    find(docs, "Deployment", f"{FULLNAME}-dag-processor")
    ok("Deployments: scheduler, api-server, dag-processor; no Celery worker, Redis or bundled PostgreSQL")

    launcher = find(docs, "Role", f"{FULLNAME}-pod-launcher-role")
    require(
        any(
            "pods" in rule.get("resources", []) and "create" in rule.get("verbs", [])
            for rule in launcher["rules"]
        ),
        "the pod-launcher role may not create pods",
    )
    binding = find(docs, "RoleBinding", f"{FULLNAME}-pod-launcher-rolebinding")
    subjects = {subject["name"] for subject in binding["subjects"]}
    scheduler_sa = pod_spec(scheduler)["serviceAccountName"]
    require(
        scheduler_sa in subjects, f"scheduler's service account {scheduler_sa} not bound to the pod launcher"
    )
    ok(f"RBAC: the scheduler ({scheduler_sa}) may create pods")

    # the training template reaches the scheduler, where the executor reads it
    spec = pod_spec(scheduler)
    volume = volumes(spec).get(POD_TEMPLATES_CONFIG_MAP)
    require(
        volume and volume.get("configMap", {}).get("name") == POD_TEMPLATES_CONFIG_MAP, "scheduler volume"
    )
    mount = [
        m
        for m in container(spec, "scheduler").get("volumeMounts", [])
        if m["name"] == POD_TEMPLATES_CONFIG_MAP
    ]
    require(
        mount and "subPath" not in mount[0], "scheduler mount of the pod templates (a directory, no subPath)"
    )
    path = f"{mount[0]['mountPath']}/{TRAIN_TEMPLATE_NAME}"
    ok(f"scheduler mounts ConfigMap {POD_TEMPLATES_CONFIG_MAP}: the training template is at {path}")

    # secrets: the pods read the Secrets created beforehand, the chart makes none of those they use
    refs: set[str] = set()
    pods = [
        (d["kind"], d["metadata"]["name"], pod_spec(d)) for d in docs if d["kind"] in ("Deployment", "Job")
    ]
    pods.append(("pod template", "pod_template_file.yaml", default_template["spec"]))
    for _kind, _name, spec in pods:
        for item in (spec.get("initContainers") or []) + spec["containers"]:
            for var in item.get("env") or []:
                ref = (var.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    refs.add(ref["name"])
    require(refs <= SECRETS, f"env from Secrets {sorted(refs - SECRETS)}, not {sorted(SECRETS)}")
    chart_secrets = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "Secret")
    require(not set(chart_secrets) & refs, f"the chart renders a Secret the pods read: {chart_secrets}")
    ok(f"secrets: env only from Secrets {sorted(refs)}; the chart's own ({', '.join(chart_secrets)}) unused")

    # the project's env in every Airflow container
    for kind, name, spec in pods:
        for item in spec["containers"]:
            if item.get("image") != image or item["name"].endswith("log-groomer"):
                continue  # the log groomer sidecar only deletes old log files
            missing = [var for var in PROJECT_ENV if var not in env_of(item)]
            require(not missing, f"{kind} {name} container {item['name']} lacks {missing}")
    ok(f"env {', '.join(PROJECT_ENV)} in every Airflow container and the worker template")

    job = find(docs, "Job", f"{FULLNAME}-run-airflow-migrations")
    args = " ".join(container(pod_spec(job), "run-airflow-migrations").get("args") or [])
    require("movierec db migrate" in args and "movierec airflow init" in args, f"migration job runs {args!r}")
    ok("migration job: app schema, Airflow schema and the training pool (movierec airflow init)")

    api = pod_spec(find(docs, "Deployment", f"{FULLNAME}-api-server"))
    auth = volumes(api).get("airflow-auth", {}).get("secret", {})
    require(auth.get("secretName") == "movierec-airflow", "api-server's passwords file volume")
    ok("api-server: SimpleAuthManager's passwords file from Secret movierec-airflow")
    return default_template


def check_worker_template(template: dict[str, Any], values: dict[str, Any]) -> None:
    """The chart's worker template (every task but the training ones)."""
    spec = template["spec"]
    base = container(spec, "base")
    require(base["image"] == values_image(values), f"worker image {base['image']}")
    require(env_of(base)["MOVIEREC_DEVICE"].get("value") == "cpu", "worker pods' MOVIEREC_DEVICE is not cpu")
    home = mounts(base).get("/var/lib/movierec")
    require(home, "worker pods do not mount MOVIEREC_HOME")
    claim = volumes(spec)[home["name"]].get("persistentVolumeClaim", {}).get("claimName")
    require(claim == "movierec-home", f"MOVIEREC_HOME's claim is {claim}")
    logs = volumes(spec)["logs"].get("persistentVolumeClaim", {}).get("claimName")
    require(logs == "movierec-airflow-logs", f"the logs claim is {logs}")
    ok("worker template: MOVIEREC_DEVICE=cpu; claims movierec-home (MOVIEREC_HOME), movierec-airflow-logs")


def check_train_template(train: dict[str, Any], default: dict[str, Any], values: dict[str, Any]) -> None:
    require(
        train.get("apiVersion") == "v1" and train.get("kind") == "Pod", "pod-template-train.yaml: a v1 Pod"
    )
    spec = train["spec"]
    base = container(spec, "base")
    require(
        base["image"] == values_image(values), f"training image {base['image']} != {values_image(values)}"
    )
    limits = base.get("resources", {}).get("limits", {})
    require(str(limits.get("nvidia.com/gpu")) == "1", f"GPU limit {limits.get('nvidia.com/gpu')!r}")
    require(env_of(base)["MOVIEREC_DEVICE"].get("value") == "cuda", "MOVIEREC_DEVICE is not cuda")
    require(spec.get("nodeSelector") and spec.get("tolerations"), "no GPU node selector / toleration")
    ok("pod-template-train.yaml: v1 Pod, container base, nvidia.com/gpu: 1, MOVIEREC_DEVICE=cuda, GPU nodes")

    # same as the chart's worker template but for the GPU
    default_spec = default["spec"]
    default_base = container(default_spec, "base")
    train_env = env_of(base)
    for name, var in env_of(default_base).items():
        if name.startswith(LEGACY_ENV_PREFIXES) or name == "MOVIEREC_DEVICE":
            continue
        require(name in train_env, f"pod-template-train.yaml lacks env {name}")
        require(train_env[name] == var, f"env {name}: {train_env[name]} != the chart's {var}")
    require(mounts(base) == mounts(default_base), "volume mounts differ from the chart's worker template")
    require(volumes(spec) == volumes(default_spec), "volumes differ from the chart's worker template")
    for key in ("serviceAccountName", "securityContext", "restartPolicy", "terminationGracePeriodSeconds"):
        require(spec.get(key) == default_spec.get(key), f"{key} differs from the chart's worker template")
    require(base.get("securityContext") == default_base.get("securityContext"), "container securityContext")
    ok(
        "pod-template-train.yaml matches the chart's worker template (env, secrets, volumes, mounts, "
        "service account, security context) but for the GPU"
    )


def parse_as_executor(path: Path, default: dict[str, Any], values: dict[str, Any]) -> None:
    """Load the template as the KubernetesExecutor does, or into the kubernetes client's model."""
    try:
        from airflow.providers.cncf.kubernetes import __version__ as provider
        from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator
    except ImportError:
        PodGenerator = None  # noqa: N806
    try:
        from kubernetes import __version__ as client
        from kubernetes.client import ApiClient, V1Pod
    except ImportError:
        print("skipped: neither apache-airflow-providers-cncf-kubernetes nor kubernetes is importable here")
        return
    if PodGenerator is not None:
        how = f"PodGenerator.deserialize_model_file (apache-airflow-providers-cncf-kubernetes {provider})"
    else:
        how = f"the kubernetes client's V1Pod (kubernetes {client})"
    try:
        if PodGenerator is not None:
            pod = PodGenerator.deserialize_model_file(str(path))
        else:  # what deserialize_model_dict does
            pod = ApiClient()._ApiClient__deserialize_model(yaml.safe_load(path.read_text()), V1Pod)
    except Exception as exc:
        raise CheckFailed(f"{how} refuses pod-template-train.yaml: {exc}") from None
    base = [c for c in pod.spec.containers if c.name == "base"]
    require(base, f"{how}: no container base")
    require(str(base[0].resources.limits.get("nvidia.com/gpu")) == "1", f"{how}: GPU limit lost")
    require(pod.spec.tolerations and pod.spec.node_selector, f"{how}: tolerations / node selector lost")
    env = {var.name: var.value for var in base[0].env}
    require(env.get("MOVIEREC_DEVICE") == "cuda", f"{how}: MOVIEREC_DEVICE")
    ok(f"pod-template-train.yaml loads with {how}: V1Pod, GPU limit, toleration, MOVIEREC_DEVICE=cuda")
    if PodGenerator is not None:
        construct_pods(PodGenerator, pod, PodGenerator.deserialize_model_dict(default), values)


def construct_pods(generator: Any, train: Any, default: Any, values: dict[str, Any]) -> None:
    """The pods the executor builds (construct_pod: template, then its own pod, then executor_config)."""
    from kubernetes.client import ApiClient

    image = values_image(values)

    def build(task_id: str, template: Any, map_index: int = -1) -> dict[str, Any]:
        pod = generator.construct_pod(
            dag_id="movierec_weekly",
            task_id=task_id,
            pod_id=f"movierec-weekly-{task_id}",
            try_number=1,
            kube_image=image,
            date=None,
            args=["python", "-m", "airflow.sdk.execution_time.execute_workload", "--json-string", "{}"],
            pod_override_object=generator.from_obj({"pod_template_file": str(POD_TEMPLATE)}),
            base_worker_pod=template,
            namespace="movierec",
            scheduler_job_id="1",
            run_id="scheduled__2026-01-04T00:00:00+00:00",
            map_index=map_index,
        )
        return ApiClient().sanitize_for_serialization(pod)

    train_pod, shard_pod = build("train", train), build("score_shard", default, map_index=0)
    for pod, gpu, device in ((train_pod, "1", "cuda"), (shard_pod, None, "cpu")):
        base = container(pod["spec"], "base")
        limits = base.get("resources", {}).get("limits", {})
        task = pod["metadata"]["annotations"]["task_id"]
        require(base["image"] == image, f"{task} pod image {base['image']}")
        require(limits.get("nvidia.com/gpu") == gpu, f"{task} pod GPU limit {limits.get('nvidia.com/gpu')}")
        require(env_of(base)["MOVIEREC_DEVICE"]["value"] == device, f"{task} pod MOVIEREC_DEVICE")
        require("AIRFLOW_IS_K8S_EXECUTOR_POD" in env_of(base), f"{task} pod: the executor's env not merged")
        require(bool(pod["spec"].get("tolerations")) == bool(gpu), f"{task} pod tolerations")
    ok(
        "PodGenerator.construct_pod: a train pod gets the GPU, MOVIEREC_DEVICE=cuda and GPU-node scheduling; "
        "a score_shard pod (the chart's template) none, MOVIEREC_DEVICE=cpu"
    )


def check_volumes(docs: list[dict[str, Any]]) -> None:
    claims = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "PersistentVolumeClaim"}
    for name in ("movierec-home", "movierec-airflow-logs"):
        require(name in claims, f"volumes.yaml has no claim {name}")
        require(claims[name]["spec"]["accessModes"] == ["ReadWriteMany"], f"{name} is not ReadWriteMany")
    ok("volumes.yaml: claims movierec-home and movierec-airflow-logs, ReadWriteMany")


def check_values_keys(values: dict[str, Any], chart_values: dict[str, Any]) -> None:
    """The chart's schema lets unknown top-level keys through: catch a misspelt one here."""
    unknown = sorted(set(values) - set(chart_values))
    require(not unknown, f"values.yaml keys the chart does not have: {unknown}")
    ok(f"values.yaml: all {len(values)} top-level keys are the chart's")


def check(rendered: Path, chart_values: Path | None) -> None:
    values = yaml.safe_load(VALUES.read_text())
    docs = load_documents(rendered)
    if chart_values is not None:
        check_values_keys(values, yaml.safe_load(chart_values.read_text()))
    default_template = check_rendered(docs, values)
    check_worker_template(default_template, values)
    check_train_template(yaml.safe_load(POD_TEMPLATE.read_text()), default_template, values)
    parse_as_executor(POD_TEMPLATE, default_template, values)
    check_volumes(load_documents(VOLUMES))


# --- rendering without the helm binary ----------------------------------------------------------------------


def render_sdk(chart_path: Path, out: Path, release: str, namespace: str) -> None:
    import helm_python as helm

    with helm.Chart.load(chart_path) as chart:
        # as `helm template` does: a declared dependency must be in charts/, whatever its condition
        loaded = {dep.get("name") for dep in chart.dependencies}
        missing = [
            dep["name"] for dep in chart.metadata.get("dependencies") or [] if dep["name"] not in loaded
        ]
        if missing:
            raise CheckFailed(f"found in Chart.yaml, but missing in charts/ directory: {', '.join(missing)}")
        sdk = helm.helm_sdk_version()
        print(f"renderer: Helm SDK {sdk} (helm-python-sdk); chart {chart.name} {chart.version}")
        try:
            manifests = chart.render(
                yaml.safe_load(VALUES.read_text()), name=release, namespace=namespace, is_install=True
            )
        except helm.HelmError as exc:  # a value the schema refuses, a template's fail
            raise CheckFailed(f"helm template: {exc}") from None
    with out.open("w") as stream:
        for source in sorted(manifests):
            body = manifests[source]
            if source.endswith("NOTES.txt") or not any(yaml.safe_load_all(body)):
                continue  # `helm template` leaves out NOTES.txt and templates that render to comments only
            stream.write(f"---\n# Source: {source}\n{body.strip()}\n")


def strip_deps(chart_path: Path, out: Path) -> None:
    shutil.copytree(chart_path, out)
    meta = yaml.safe_load((out / "Chart.yaml").read_text())
    dropped = [dep["name"] for dep in meta.pop("dependencies", None) or []]
    (out / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    (out / "Chart.lock").unlink(missing_ok=True)
    print(f"chart copy without its dependencies ({', '.join(dropped) or 'none'})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("check")
    run.add_argument("rendered", type=Path)
    run.add_argument("--chart-values", type=Path)
    render = commands.add_parser("render-sdk")
    render.add_argument("chart", type=Path)
    render.add_argument("out", type=Path)
    render.add_argument("--release", required=True)
    render.add_argument("--namespace", required=True)
    strip = commands.add_parser("strip-deps")
    strip.add_argument("chart", type=Path)
    strip.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            check(args.rendered, args.chart_values)
        elif args.command == "render-sdk":
            render_sdk(args.chart, args.out, args.release, args.namespace)
        else:
            strip_deps(args.chart, args.out)
    except CheckFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
