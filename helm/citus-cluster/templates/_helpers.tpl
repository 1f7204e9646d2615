{{/*
Names, labels and derived settings shared by every template. The release name is the
cluster name: Patroni's scope, the headless Service and the prefix of every object.
*/}}

{{/* The cluster name (Patroni scope, headless Service name). */}}
{{- define "citus-cluster.cluster" -}}
{{- .Release.Name -}}
{{- end -}}

{{- define "citus-cluster.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object, for people and tools; never used in selectors. */}}
{{- define "citus-cluster.commonLabels" -}}
helm.sh/chart: {{ include "citus-cluster.chart" . }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/*
The labels Patroni selects its members and DCS objects by (PATRONI_KUBERNETES_LABELS plus
its scope label). They must not change over the life of a cluster.
*/}}
{{- define "citus-cluster.patroniLabels" -}}
application: patroni
cluster-name: {{ include "citus-cluster.cluster" . }}
{{- end -}}

{{/* Selector labels of one group; call with (dict "root" $ "group" N). */}}
{{- define "citus-cluster.groupSelectorLabels" -}}
{{ include "citus-cluster.patroniLabels" .root }}
citus-group: {{ .group | toString | quote }}
{{- end -}}

{{/* Labels of one group's objects and pods; call with (dict "root" $ "group" N). */}}
{{- define "citus-cluster.groupLabels" -}}
{{ include "citus-cluster.groupSelectorLabels" . }}
citus-type: {{ include "citus-cluster.groupType" .group }}
{{- end -}}

{{- define "citus-cluster.groupType" -}}
{{- if eq (int .) 0 }}coordinator{{ else }}worker{{ end -}}
{{- end -}}

{{/* The Citus group numbers, 0 (coordinator) to workers.groups, as a list of ints. */}}
{{- define "citus-cluster.groupNumbers" -}}
{{- toJson (until (add1 (int .Values.workers.groups) | int)) -}}
{{- end -}}

{{/* PGSSLMODE: ssl.mode, or verify-ca with ssl.enabled and prefer without. */}}
{{- define "citus-cluster.sslMode" -}}
{{- if .Values.ssl.mode -}}
{{- .Values.ssl.mode -}}
{{- else if .Values.ssl.enabled -}}
verify-ca
{{- else -}}
prefer
{{- end -}}
{{- end -}}

{{/*
Whether a live StatefulSet (`sts`, as lookup returns it; empty when there is none) serves
TLS: its members got certificates (PGSSLCERT) and a mode other than disable. "true" or "".
*/}}
{{- define "citus-cluster.liveServesTLS" -}}
{{- $env := dict -}}
{{- range $container := (((.sts.spec | default dict).template | default dict).spec | default dict).containers | default list -}}
{{- range $var := $container.env | default list -}}
{{- $_ := set $env $var.name (toString ($var.value | default "")) -}}
{{- end -}}
{{- end -}}
{{- if and (hasKey $env "PGSSLCERT") (ne (get $env "PGSSLMODE") "disable") -}}
true
{{- end -}}
{{- end -}}

{{/*
PCK_TLS_UPGRADE for the members: "true" or "". ssl.upgrade=true/false decides; auto
(the default) looks up the group StatefulSets this release already runs and says "true"
when one of them serves no TLS yet while the new mode refuses plaintext: the seed's
"upgrade an existing cluster to SSL" helm upgrade, which otherwise stalls the rollout.
A first install and `helm template` (lookup sees nothing) give "".
*/}}
{{- define "citus-cluster.tlsUpgrade" -}}
{{- $mode := include "citus-cluster.sslMode" . -}}
{{- $want := toString .Values.ssl.upgrade -}}
{{- if has $mode (list "require" "verify-ca" "verify-full") -}}
{{- if eq $want "true" -}}
true
{{- else if eq $want "auto" -}}
{{- $c := include "citus-cluster.cluster" . -}}
{{- $plain := false -}}
{{- range $g := include "citus-cluster.groupNumbers" . | fromJsonArray -}}
{{- $sts := lookup "apps/v1" "StatefulSet" $.Release.Namespace (printf "%s-%d" $c (int $g)) -}}
{{- if and $sts (not (include "citus-cluster.liveServesTLS" (dict "sts" $sts))) -}}
{{- $plain = true -}}
{{- end -}}
{{- end -}}
{{- if $plain -}}
true
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "citus-cluster.sslSecretName" -}}
{{- default (printf "%s-ssl-certs" (include "citus-cluster.cluster" .)) .Values.ssl.secretName -}}
{{- end -}}

{{/* Key of the server certificate in the Secret: cert-manager writes tls.crt. */}}
{{- define "citus-cluster.sslCertKey" -}}
{{- if .Values.ssl.secretKeys.cert -}}
{{- .Values.ssl.secretKeys.cert -}}
{{- else if .Values.ssl.certManager.enabled -}}
tls.crt
{{- else -}}
server.crt
{{- end -}}
{{- end -}}

{{/* Key of the server private key in the Secret: cert-manager writes tls.key. */}}
{{- define "citus-cluster.sslKeyKey" -}}
{{- if .Values.ssl.secretKeys.key -}}
{{- .Values.ssl.secretKeys.key -}}
{{- else if .Values.ssl.certManager.enabled -}}
tls.key
{{- else -}}
server.key
{{- end -}}
{{- end -}}

{{/* Where the Secret is mounted; the seed's PGSSL* paths live here. */}}
{{- define "citus-cluster.certDir" -}}
/etc/ssl/certs/postgresql
{{- end -}}

{{- define "citus-cluster.credentialsSecretName" -}}
{{- default (printf "%s-credentials" (include "citus-cluster.cluster" .)) .Values.credentials.existingSecret -}}
{{- end -}}

{{- define "citus-cluster.serviceAccountName" -}}
{{- default (include "citus-cluster.cluster" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The ports members use between themselves: PostgreSQL and Patroni's REST API. */}}
{{- define "citus-cluster.memberPorts" -}}
- port: 5432
  protocol: TCP
- port: 8008
  protocol: TCP
{{- end -}}

{{/*
The ports clients may reach (NetworkPolicy), on the pods of one component; call with
(dict "root" $ "component" "members"|"pooler"). Members: PostgreSQL, plus
networkPolicy.extraClientPorts. The pooler (pooler.enabled, its own policy): PgBouncer's port.
*/}}
{{- define "citus-cluster.clientPorts" -}}
{{- if eq .component "pooler" -}}
- port: {{ include "citus-cluster.poolerPort" .root }}
  protocol: TCP
{{- else -}}
- port: 5432
  protocol: TCP
{{- with .root.Values.networkPolicy.extraClientPorts }}
{{ toYaml . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* host:port for Patroni's listen settings; an IPv6 address is bracketed. Call with (dict "address" A "port" P). */}}
{{- define "citus-cluster.listen" -}}
{{- if contains ":" .address -}}
[{{ .address }}]:{{ .port }}
{{- else -}}
{{ .address }}:{{ .port }}
{{- end -}}
{{- end -}}

{{- define "citus-cluster.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion (toString .Values.image.tag)) -}}
{{- end -}}

{{/*
The names the server certificate must cover, in the order `patroni-citus-k8s certs
generate` lists them: one wildcard for every pod behind the headless Service, then the
headless, per-group, workers and pooler Services in the four forms a client in the
cluster may use, then the loopback names. The pooler's Service is named whether or not
pooler.enabled, so turning the pooler on needs no new certificate. Returned as a JSON
list of strings.
*/}}
{{- define "citus-cluster.certNames" -}}
{{- $c := include "citus-cluster.cluster" . -}}
{{- $ns := .Release.Namespace -}}
{{- $domain := .Values.clusterDomain -}}
{{- $names := list (printf "*.%s.%s.svc.%s" $c $ns $domain) -}}
{{- $services := list $c -}}
{{- range $g := include "citus-cluster.groupNumbers" . | fromJsonArray -}}
{{- $services = append $services (printf "%s-%d" $c (int $g)) -}}
{{- end -}}
{{- $services = concat $services (list (printf "%s-workers" $c) (printf "%s-pooler" $c)) -}}
{{- range $s := $services -}}
{{- $names = concat $names (list $s (printf "%s.%s" $s $ns) (printf "%s.%s.svc" $s $ns) (printf "%s.%s.svc.%s" $s $ns $domain)) -}}
{{- end -}}
{{- $names = concat $names (list "localhost" "127.0.0.1" "::1") .Values.ssl.certManager.extraNames -}}
{{- toJson (uniq $names) -}}
{{- end -}}

{{/*
Every cross-field rule the schema cannot express, checked together so one failed
install lists every problem with its fix.
*/}}
{{- define "citus-cluster.validate" -}}
{{- $problems := list -}}
{{- $c := include "citus-cluster.cluster" . -}}
{{- $mode := include "citus-cluster.sslMode" . -}}
{{- $strict := list "require" "verify-ca" "verify-full" -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $c) -}}
{{- $problems = append $problems (printf "release name %q: Services <release>-<group> must be DNS-1035 labels; use lowercase letters, digits and '-', starting with a letter (e.g. citusdemo)" $c) -}}
{{- end -}}
{{- $longest := printf "%s-%d" $c (int .Values.workers.groups) -}}
{{- if gt (len $longest) 52 -}}
{{- $problems = append $problems (printf "release name %q is too long: StatefulSet %q must be at most 52 characters so its pods' revision label fits in 63; use a shorter release name" $c $longest) -}}
{{- end -}}
{{- if and (has $mode $strict) (not .Values.ssl.enabled) -}}
{{- $problems = append $problems (printf "ssl.mode=%s needs certificates but ssl.enabled=false: set ssl.enabled=true (and create Secret %s), or use ssl.mode=prefer" $mode (include "citus-cluster.sslSecretName" .)) -}}
{{- end -}}
{{- if and .Values.ssl.enabled (eq $mode "disable") -}}
{{- $problems = append $problems "ssl.mode=disable turns TLS off but ssl.enabled=true mounts certificates: set ssl.enabled=false, or choose a mode that uses TLS (verify-ca, verify-full)" -}}
{{- end -}}
{{- if and .Values.ssl.clientAuth (not .Values.ssl.enabled) -}}
{{- $problems = append $problems "ssl.clientAuth=true needs certificates: set ssl.enabled=true" -}}
{{- end -}}
{{- if not (has (toString .Values.ssl.upgrade) (list "auto" "true" "false")) -}}
{{- $problems = append $problems (printf "ssl.upgrade=%v is not auto, true or false" .Values.ssl.upgrade) -}}
{{- end -}}
{{- if and .Values.ssl.clientAuth (include "citus-cluster.tlsUpgrade" .) -}}
{{- $problems = append $problems "ssl.clientAuth=true cannot be switched on in the same helm upgrade that turns TLS on for a running cluster (its members still run without TLS and have no client certificate, so the new ones would refuse them): upgrade with ssl.clientAuth=false first, then set ssl.clientAuth=true in a second helm upgrade" -}}
{{- end -}}
{{- if and .Values.ssl.clientAuth (not (has $mode $strict)) -}}
{{- $problems = append $problems (printf "ssl.clientAuth=true needs TLS on every link but ssl.mode=%s: set ssl.mode to require, verify-ca or verify-full" $mode) -}}
{{- end -}}
{{- if and .Values.ssl.certManager.enabled (not .Values.ssl.enabled) -}}
{{- $problems = append $problems "ssl.certManager.enabled=true but ssl.enabled=false: set ssl.enabled=true so the pods mount the Certificate's Secret" -}}
{{- end -}}
{{- if and .Values.ssl.certManager.enabled (not .Values.ssl.certManager.issuerRef.name) -}}
{{- $problems = append $problems "ssl.certManager.enabled=true needs ssl.certManager.issuerRef.name: the Issuer or ClusterIssuer that signs the certificate" -}}
{{- end -}}
{{- $csi := .Values.ssl.certManager.csi.enabled -}}
{{- if and $csi (not .Values.ssl.enabled) -}}
{{- $problems = append $problems "ssl.certManager.csi.enabled=true but ssl.enabled=false: set ssl.enabled=true so the pods mount their CSI certificates" -}}
{{- end -}}
{{- if and $csi (not .Values.ssl.certManager.issuerRef.name) -}}
{{- $problems = append $problems "ssl.certManager.csi.enabled=true needs ssl.certManager.issuerRef.name: the Issuer or ClusterIssuer that signs each pod's certificate" -}}
{{- end -}}
{{- if and $csi .Values.ssl.certManager.enabled -}}
{{- $problems = append $problems "ssl.certManager.csi.enabled=true and ssl.certManager.enabled=true: the CSI driver gives each pod its own certificate, the Certificate one shared Secret for all; set ssl.certManager.enabled=false (the Secret then carries the CRL only, if any)" -}}
{{- end -}}
{{- if and .Values.switchoverOnStop.enabled (lt (int .Values.terminationGracePeriodSeconds) (add (int .Values.switchoverOnStop.timeoutSeconds) 10 | int)) -}}
{{- $problems = append $problems (printf "terminationGracePeriodSeconds=%d is too short for switchoverOnStop.timeoutSeconds=%d: the kubelet counts the preStop hand-over in the grace period and Patroni needs time after it to stop PostgreSQL; set terminationGracePeriodSeconds to at least %d" (int .Values.terminationGracePeriodSeconds) (int .Values.switchoverOnStop.timeoutSeconds) (add (int .Values.switchoverOnStop.timeoutSeconds) 10 | int)) -}}
{{- end -}}
{{- if $problems -}}
{{- fail (printf "\n\ncitus-cluster: %d problem(s) in the values:\n  - %s\n" (len $problems) (join "\n  - " $problems)) -}}
{{- end -}}
{{- end -}}
