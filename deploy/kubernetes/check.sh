#!/bin/sh
# Renders the official Airflow Helm chart with values.yaml (`helm template`, which validates the values against
# the chart's values.schema.json) and checks the manifests and pod-template-train.yaml (check_manifests.py).
# No cluster is contacted.
#
# Usage: deploy/kubernetes/check.sh [--without-deps]
#   CHART          the chart: a directory (chart/ of an apache/airflow checkout, or an unpacked chart) or a
#                  repository reference, default apache-airflow/airflow after
#                  `helm repo add apache-airflow https://airflow.apache.org`
#   CHART_VERSION  the version of a repository reference (default 1.19.0); a directory is taken as it is
#   HELM           the helm binary (default: helm). Without one, a chart directory is rendered through Helm's
#                  Go SDK when PYTHON can import helm_python (pip package helm-python-sdk).
#   PYTHON         a Python with PyYAML (default: the project's .venv, else python3); with
#                  apache-airflow-providers-cncf-kubernetes it also loads the pod template as the executor does
#   OUT            keep the rendered manifests in this directory (default: a temporary one, removed)
#   --without-deps render a copy of the chart directory that declares no dependency: for a source checkout
#                  whose charts/ lacks the bundled PostgreSQL subchart (disabled in values.yaml anyway) and
#                  no network to fetch it with `helm dependency build`
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
CHART=${CHART:-apache-airflow/airflow}
CHART_VERSION=${CHART_VERSION:-1.19.0}
HELM=${HELM:-helm}
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$root/.venv/bin/python" ]; then PYTHON=$root/.venv/bin/python; else PYTHON=python3; fi
fi
RELEASE=movierec
NAMESPACE=movierec

without_deps=0
for arg in "$@"; do
    case $arg in
        --without-deps) without_deps=1 ;;
        -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
    esac
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; out=$OUT; else out=$work; fi

chart=$CHART
if [ -d "$CHART" ]; then
    if [ "$without_deps" = 1 ]; then
        "$PYTHON" "$here/check_manifests.py" strip-deps "$CHART" "$work/chart"
        chart=$work/chart
    fi
    echo "chart: $CHART ($(sed -n 's/^version: *//p' "$chart/Chart.yaml"))"
elif [ "$without_deps" = 1 ]; then
    echo "--without-deps needs CHART to be a chart directory" >&2
    exit 2
else
    echo "chart: $CHART $CHART_VERSION"
fi

if command -v "$HELM" >/dev/null 2>&1; then
    echo "renderer: helm $("$HELM" version --short)"
    if [ -d "$chart" ]; then set --; else set -- --version "$CHART_VERSION"; fi
    "$HELM" template "$RELEASE" "$chart" "$@" --namespace "$NAMESPACE" --values "$here/values.yaml" \
        >"$out/rendered.yaml"
    "$HELM" show values "$chart" "$@" >"$out/chart-values.yaml"
elif [ -d "$chart" ] && "$PYTHON" -c 'import helm_python' 2>/dev/null; then
    "$PYTHON" "$here/check_manifests.py" render-sdk "$chart" "$out/rendered.yaml" \
        --release "$RELEASE" --namespace "$NAMESPACE"
    cp "$chart/values.yaml" "$out/chart-values.yaml"
else
    echo "no $HELM binary (https://helm.sh/docs/intro/install/); without one, CHART must be a chart" \
        "directory and PYTHON must import helm_python (pip install helm-python-sdk)" >&2
    exit 2
fi
echo "rendered: $(grep -c '^# Source:' "$out/rendered.yaml") templates, values valid against the chart's schema"

"$PYTHON" "$here/check_manifests.py" check "$out/rendered.yaml" --chart-values "$out/chart-values.yaml"
[ -z "${OUT:-}" ] || echo "manifests kept in $OUT"
echo "deploy/kubernetes: all checks passed"
