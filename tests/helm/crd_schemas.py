"""The prometheus-operator objects the chart renders, checked against the monitoring.coreos.com/v1 CRDs.

kubernetes-validate knows only built-in kinds, and no package registry this project reaches
ships the operator's CRDs. These are the parts of the CRDs' openAPIV3Schema the chart uses,
copied field by field (types, patterns, enums, required) from the operator's
example/prometheus-operator-crd/monitoring.coreos.com_{servicemonitors,prometheusrules}.yaml,
with every object closed (`additionalProperties: false`): stricter than the API server,
which would silently prune a misspelled field.
"""

from __future__ import annotations

from typing import Any, Mapping

# The CRDs' pattern for a Prometheus duration (interval, scrapeTimeout, for).
DURATION = {"type": "string",
            "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {"type": "object", "required": ["name"],
            "properties": {"name": {"type": "string", "minLength": 1}, "labels": STRING_MAP}}

SERVICE_MONITOR_V1: Mapping[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["endpoints", "selector"],
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {"type": "object", "additionalProperties": False,
                             "properties": {"matchLabels": STRING_MAP, "matchExpressions": {"type": "array"}}},
                "namespaceSelector": {"type": "object", "additionalProperties": False,
                                      "properties": {"any": {"type": "boolean"},
                                                     "matchNames": {"type": "array", "items": {"type": "string"}}}},
                "endpoints": {"type": "array", "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"},
                        "path": {"type": "string"},
                        "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                        "interval": DURATION,
                        "scrapeTimeout": DURATION,
                        "honorLabels": {"type": "boolean"},
                    },
                }},
            },
        },
    },
}

PROMETHEUS_RULE_V1: Mapping[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "groups": {"type": "array", "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "interval": DURATION,
                        "labels": STRING_MAP,
                        "limit": {"type": "integer"},
                        "query_offset": DURATION,
                        "rules": {"type": "array", "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["expr"],
                            "properties": {
                                "alert": {"type": "string"},
                                "record": {"type": "string"},
                                "expr": {"type": ["string", "integer"]},  # x-kubernetes-int-or-string
                                "for": DURATION,
                                "keep_firing_for": DURATION,
                                "labels": STRING_MAP,
                                "annotations": STRING_MAP,
                            },
                        }},
                    },
                }},
            },
        },
    },
}

CRD_SUBSETS = {"ServiceMonitor": SERVICE_MONITOR_V1, "PrometheusRule": PROMETHEUS_RULE_V1}
