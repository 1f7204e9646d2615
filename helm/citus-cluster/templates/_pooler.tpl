{{/*
Names and checks of the connection pooler (pooler.*): templates/pooler.yaml.
*/}}

{{/* The pooler's Deployment, Service and PodDisruptionBudget, and the name clients use. */}}
{{- define "citus-cluster.poolerName" -}}
{{- printf "%s-pooler" (include "citus-cluster.cluster" .) -}}
{{- end -}}

{{/* PgBouncer's port (PCK_POOLER_LISTEN's default, entrypoint/pooler/settings.py DEFAULT_PORT). */}}
{{- define "citus-cluster.poolerPort" -}}
6432
{{- end -}}

{{- define "citus-cluster.poolerAuthSecretName" -}}
{{- default (printf "%s-pooler-auth" (include "citus-cluster.cluster" .)) .Values.pooler.existingSecret -}}
{{- end -}}

{{/* Selector labels of the pooler's pods: none of Patroni's, so no member Service or Patroni selector ever matches them. */}}
{{- define "citus-cluster.poolerSelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: pooler
{{- end -}}

{{/* The pods of the pooler and of its setup Job, as a podSelector's body (the members' NetworkPolicy admits them on 5432). */}}
{{- define "citus-cluster.poolerPeerSelector" -}}
matchLabels:
  app.kubernetes.io/name: {{ .Chart.Name }}
  app.kubernetes.io/instance: {{ .Release.Name }}
matchExpressions:
  - key: app.kubernetes.io/component
    operator: In
    values: [pooler, pooler-setup]
{{- end -}}

{{/* The coordinator group's Service, which Patroni points at the group's primary: the pooler's and the setup Job's target. */}}
{{- define "citus-cluster.coordinatorHost" -}}
{{- printf "%s-0.%s.svc.%s" (include "citus-cluster.cluster" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/* The pooler's names in its own certificate with the CSI driver: its Service in the four forms, and loopback. */}}
{{- define "citus-cluster.poolerCertNames" -}}
{{- $forms := include "citus-cluster.serviceForms" (dict "root" . "service" (include "citus-cluster.poolerName" .)) | fromJsonArray -}}
{{- toJson (uniq (concat $forms (list "localhost" "127.0.0.1" "::1") .Values.ssl.certManager.extraNames)) -}}
{{- end -}}

{{/* The pooler values the schema cannot check, listed together with their fixes. */}}
{{- define "citus-cluster.validatePooler" -}}
{{- $problems := list -}}
{{- $p := .Values.pooler -}}
{{- if $p.enabled -}}
{{- range $role := list .Values.credentials.superuserUsername .Values.credentials.replicationUsername -}}
{{- if eq $p.authUser $role -}}
{{- $problems = append $problems (printf "pooler.authUser=%s is a role the members use (credentials.*Username): the setup Job makes the auth role a plain login role without privileges, and the lookup never returns superusers or replication roles; choose another name (e.g. pgbouncer)" $p.authUser) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $problems -}}
{{- fail (printf "\n\ncitus-cluster: %d problem(s) in the pooler values:\n  - %s\n" (len $problems) (join "\n  - " $problems)) -}}
{{- end -}}
{{- end -}}
