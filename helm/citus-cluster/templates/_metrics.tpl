{{/*
Names and checks of the TLS exporter (metrics.*): templates/metrics.yaml,
servicemonitor.yaml and prometheusrule.yaml.
*/}}

{{/* The exporter's Deployment, Service and ServiceMonitor name. */}}
{{- define "citus-cluster.metricsName" -}}
{{- printf "%s-tls-metrics" (include "citus-cluster.cluster" .) -}}
{{- end -}}

{{/* Selector labels of the exporter: none of Patroni's, so no Patroni Service or selector ever matches it. */}}
{{- define "citus-cluster.metricsSelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: tls-metrics
{{- end -}}

{{/* The job name the alert rules expect (monitoring/pck-alerts.yml); the Service carries it for jobLabel. */}}
{{- define "citus-cluster.metricsJob" -}}
pck-tls-exporter
{{- end -}}

{{/* verify --mode: metrics.mode, else the cluster's PGSSLMODE. */}}
{{- define "citus-cluster.metricsMode" -}}
{{- default (include "citus-cluster.sslMode" .) .Values.metrics.mode -}}
{{- end -}}

{{/* The metrics values the schema cannot check, listed together with their fixes. */}}
{{- define "citus-cluster.validateMetrics" -}}
{{- $problems := list -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) -}}
{{- $problems = append $problems "metrics.serviceMonitor.enabled=true but metrics.enabled=false: there is no exporter to scrape; set metrics.enabled=true" -}}
{{- end -}}
{{- if $problems -}}
{{- fail (printf "\n\ncitus-cluster: %d problem(s) in the metrics values:\n  - %s\n" (len $problems) (join "\n  - " $problems)) -}}
{{- end -}}
{{- end -}}
