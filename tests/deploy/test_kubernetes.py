"""deploy/kubernetes as files: the Helm values, the training pod template and the volumes, read with PyYAML.

No network, no helm: deploy/kubernetes/check.sh renders the chart. These catch what drifts in the repository
itself: a setting renamed in pipeline/core, a value changed in values.yaml and not in the pod template, a
password written into a file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.core import defaults
from pipeline.core.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
FILES = ("values.yaml", "pod-template-train.yaml", "volumes.yaml")
# A credential inside a URL (scheme://user:password@host) or a key/password-like setting given a value.
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^@\s]+@")
LITERAL_SECRET_KEYS = {
    "fernetKey",
    "apiSecretKey",
    "jwtSecret",
    "webserverSecretKey",
    "metadataConnection",
    "resultBackendConnection",
    "brokerUrl",
    "password",
    "postgresPassword",
}


def load(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text())


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return load("values.yaml")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load("pod-template-train.yaml")


def base(template: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in template["spec"]["containers"] if c["name"] == "base"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in container["env"]}


def values_env(values: dict[str, Any]) -> dict[str, str]:
    return {var["name"]: var["value"] for var in values["env"]}


def alias(field: str) -> str:
    return str(Settings.model_fields[field].validation_alias)


def test_values_run_the_kubernetes_executor_on_the_project_image(values: dict[str, Any]) -> None:
    assert values["executor"] == "KubernetesExecutor"
    assert (values["defaultAirflowRepository"], values["defaultAirflowTag"]) == ("movierec", "latest")
    assert values["postgresql"]["enabled"] is False  # an external PostgreSQL
    assert values["dags"]["mountPath"] == "/app/dags"  # the image's DAGs, as in docker-compose.yml
    assert not values["dags"]["gitSync"]["enabled"] and not values["dags"]["persistence"]["enabled"]


def test_pod_template_is_a_v1_pod_with_one_gpu(template: dict[str, Any]) -> None:
    assert (template["apiVersion"], template["kind"]) == ("v1", "Pod")
    limits = base(template)["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"  # a string: strict clients refuse an int quantity
    assert template["spec"]["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in template["spec"]["tolerations"])
    assert template["spec"]["restartPolicy"] == "Never"


def test_pod_template_runs_the_values_image_on_cuda(values: dict[str, Any], template: dict[str, Any]) -> None:
    container = base(template)
    assert container["image"] == f"{values['defaultAirflowRepository']}:{values['defaultAirflowTag']}"
    assert env_of(container)[alias("device")]["value"] == "cuda"
    assert values_env(values)[alias("device")] == "cpu"  # every other task pod


def test_project_settings_reach_every_task_pod(values: dict[str, Any], template: dict[str, Any]) -> None:
    """The names pipeline/core/settings.py reads, and the telemetry opt-outs, in the values and the template."""
    plain = values_env(values)
    from_secrets = {entry["envName"] for entry in values["secret"]}
    train = env_of(base(template))
    for name in (alias("home"), alias("mlflow_tracking_uri"), alias("device")):
        assert name in plain and name in train
    assert alias("database_url") in from_secrets
    assert "secretKeyRef" in train[alias("database_url")]["valueFrom"]
    for name, value in {**defaults.TELEMETRY_OPT_OUTS, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}.items():
        assert plain[name] == value and train[name]["value"] == value


def test_pod_template_has_the_values_env(values: dict[str, Any], template: dict[str, Any]) -> None:
    train = env_of(base(template))
    for name, value in values_env(values).items():
        if name != alias("device"):
            assert train[name]["value"] == value, name
    for entry in values["secret"]:
        ref = train[entry["envName"]]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (entry["secretName"], entry["secretKey"])


def test_task_pods_share_movierec_home(values: dict[str, Any], template: dict[str, Any]) -> None:
    home = values_env(values)[alias("home")]
    claims = {d["metadata"]["name"]: d for d in yaml.safe_load_all((DEPLOY / "volumes.yaml").read_text())}
    workers = values["workers"]
    (mount,) = [m for m in workers["extraVolumeMounts"] if m["mountPath"] == home]
    (volume,) = [v for v in workers["extraVolumes"] if v["name"] == mount["name"]]
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert claims[claim]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claims[values["logs"]["persistence"]["existingClaim"]]["spec"]["accessModes"] == ["ReadWriteMany"]
    train_mounts = {m["mountPath"]: m["name"] for m in base(template)["volumeMounts"]}
    train_volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert train_volumes[train_mounts[home]]["persistentVolumeClaim"]["claimName"] == claim
    assert train_volumes["logs"]["persistentVolumeClaim"]["claimName"] in claims


def test_scheduler_mounts_the_training_template(values: dict[str, Any]) -> None:
    scheduler = values["scheduler"]
    (volume,) = [v for v in scheduler["extraVolumes"] if "configMap" in v]
    (mount,) = [m for m in scheduler["extraVolumeMounts"] if m["name"] == volume["name"]]
    path = f"{mount['mountPath']}/pod-template-train.yaml"
    assert "subPath" not in mount  # a directory mount follows ConfigMap updates
    readme = (DEPLOY / "README.md").read_text()
    assert f"create configmap {volume['configMap']['name']}" in readme  # the install step that makes it
    assert "--from-file=deploy/kubernetes/pod-template-train.yaml" in readme  # key: the file's name
    assert path in readme
    dag_path = getattr(defaults, "TRAIN_POD_TEMPLATE", None)
    if dag_path is None:
        pytest.skip("pipeline.core.defaults has no TRAIN_POD_TEMPLATE (the DAG's executor_config) yet")
    assert dag_path == path


@pytest.mark.parametrize("name", FILES)
def test_no_literal_secret(name: str) -> None:
    text = (DEPLOY / name).read_text()
    assert not URL_WITH_PASSWORD.search(text)

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                assert not (key in LITERAL_SECRET_KEYS and value), f"{where}.{key} is set in {name}"
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    for document in yaml.safe_load_all(text):
        walk(document, "")


def test_airflow_secrets_come_from_kubernetes_secrets(values: dict[str, Any]) -> None:
    names = {
        values["data"]["metadataSecretName"],
        values["fernetKeySecretName"],
        values["apiSecretKeySecretName"],
        values["jwtSecretName"],
    }
    assert names == {"movierec-airflow"}
    auth = values["apiServer"]["extraVolumes"][0]["secret"]
    assert auth["secretName"] == "movierec-airflow"
