{{/*
How a pod gets its TLS files: the volumes, their mounts and the PGSSL* paths, shared by
the members, the pooler, its setup Job and the exporter, so each mounts them the same way.

Two models (the README's "Revocation" says what each can revoke):
- the shared Secret (default): ssl.secretName, one server pair for every pod, mounted at
  the certificate directory as ca.crt, server.crt and server.key;
- ssl.certManager.csi.enabled: cert-manager's CSI driver issues each pod its own key and
  certificate, with that pod's names, in a volume of its own (the key is made on the node
  and never leaves it); the files land as ca.crt, server.crt and server.key in the
  CSI directory.
Either way the CRL (ssl.secretKeys.crl, default ca.crl) comes from the Secret when it
carries that key, as ca.crl in the certificate directory, where the entrypoint looks for
it by default (PGSSLCRL = $PCK_CERT_DIR/ca.crl when present). It is an optional source of
a projected volume: a pod starts the same when the Secret has no CRL, or, with the CSI
driver, when there is no Secret at all.
*/}}

{{- define "citus-cluster.csiEnabled" -}}
{{- if and .Values.ssl.enabled .Values.ssl.certManager.csi.enabled -}}true{{- end -}}
{{- end -}}

{{/* Where the CSI driver writes a pod's own files (ssl.certManager.csi.enabled). */}}
{{- define "citus-cluster.csiDir" -}}
/etc/ssl/certs/postgresql-pod
{{- end -}}

{{/* The directory holding ca.crt, server.crt and server.key: the Secret's, or the CSI volume's. */}}
{{- define "citus-cluster.tlsFileDir" -}}
{{- if include "citus-cluster.csiEnabled" . -}}
{{- include "citus-cluster.csiDir" . -}}
{{- else -}}
{{- include "citus-cluster.certDir" . -}}
{{- end -}}
{{- end -}}

{{/* The four forms of a Service name a client in the cluster may use; call with (dict "root" $ "service" NAME). */}}
{{- define "citus-cluster.serviceForms" -}}
{{- $ns := .root.Release.Namespace -}}
{{- toJson (list .service (printf "%s.%s" .service $ns) (printf "%s.%s.svc" .service $ns) (printf "%s.%s.svc.%s" .service $ns .root.Values.clusterDomain)) -}}
{{- end -}}

{{/* A JSON list of names split into {"dns": [...], "ip": [...]}, as certificates list them. */}}
{{- define "citus-cluster.splitNames" -}}
{{- $dns := list -}}
{{- $ips := list -}}
{{- range $n := fromJsonArray . -}}
{{- if regexMatch "^[0-9.]+$|:" $n -}}
{{- $ips = append $ips $n -}}
{{- else -}}
{{- $dns = append $dns $n -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "dns" $dns "ip" $ips) -}}
{{- end -}}

{{/*
The names one member's own certificate carries with the CSI driver, in the order
`certs generate --per-member` lists them (entrypoint/certs/names.py member_names): the
pod's stable name (${POD_NAME}, filled in by the driver) in four forms, its group's
Service (it serves there while it is the primary), the workers Service for a worker, the
headless Service, loopback and ssl.certManager.extraNames. No wildcard: a revoked
certificate names one pod. Call with (dict "root" $ "group" N); a JSON list.
*/}}
{{- define "citus-cluster.memberCertNames" -}}
{{- $c := include "citus-cluster.cluster" .root -}}
{{- $ns := .root.Release.Namespace -}}
{{- $pod := "${POD_NAME}" -}}
{{- $names := list (printf "%s.%s.%s.svc.%s" $pod $c $ns .root.Values.clusterDomain) (printf "%s.%s.%s.svc" $pod $c $ns) (printf "%s.%s.%s" $pod $c $ns) (printf "%s.%s" $pod $c) -}}
{{- $services := list (printf "%s-%d" $c (int .group)) -}}
{{- if gt (int .group) 0 -}}
{{- $services = append $services (printf "%s-workers" $c) -}}
{{- end -}}
{{- $services = append $services $c -}}
{{- range $s := $services -}}
{{- $names = concat $names (include "citus-cluster.serviceForms" (dict "root" $.root "service" $s) | fromJsonArray) -}}
{{- end -}}
{{- toJson (uniq (concat $names (list "localhost" "127.0.0.1" "::1") .root.Values.ssl.certManager.extraNames)) -}}
{{- end -}}

{{/*
The TLS volumes of a pod (items of `volumes:`). Call with (dict "root" $ "names" JSON-LIST
"commonName" CN): the names and common name are what the CSI driver puts in this pod's
certificate (ignored with the shared Secret). Nothing when ssl.enabled is false.
*/}}
{{- define "citus-cluster.tlsVolumes" -}}
{{- $v := .root.Values -}}
{{- if $v.ssl.enabled -}}
{{- $secret := include "citus-cluster.sslSecretName" .root -}}
{{- if include "citus-cluster.csiEnabled" .root }}
{{- $cm := $v.ssl.certManager -}}
{{- $names := include "citus-cluster.splitNames" .names | fromJson -}}
{{- $usages := list "digital signature" -}}
{{- if eq $cm.privateKeyAlgorithm "RSA" -}}
{{- $usages = append $usages "key encipherment" -}}
{{- end -}}
{{- $usages = concat $usages (list "server auth" "client auth") }}
# This pod's own key and certificate, issued by cert-manager's CSI driver when the pod
# starts and renewed in place; the key is generated on the node and never stored elsewhere.
- name: ssl-certs
  csi:
    driver: csi.cert-manager.io
    readOnly: true
    volumeAttributes:
      csi.cert-manager.io/issuer-name: {{ $cm.issuerRef.name | quote }}
      csi.cert-manager.io/issuer-kind: {{ $cm.issuerRef.kind | quote }}
      csi.cert-manager.io/issuer-group: {{ $cm.issuerRef.group | quote }}
      {{- with .commonName }}
      csi.cert-manager.io/common-name: {{ . | quote }}
      {{- end }}
      {{- with $names.dns }}
      csi.cert-manager.io/dns-names: {{ join "," . | quote }}
      {{- end }}
      {{- with $names.ip }}
      csi.cert-manager.io/ip-sans: {{ join "," . | quote }}
      {{- end }}
      csi.cert-manager.io/duration: {{ $cm.duration | quote }}
      csi.cert-manager.io/renew-before: {{ $cm.renewBefore | quote }}
      csi.cert-manager.io/key-algorithm: {{ $cm.privateKeyAlgorithm | quote }}
      {{- if ne $cm.privateKeyAlgorithm "Ed25519" }}
      csi.cert-manager.io/key-size: {{ $cm.privateKeySize | quote }}
      {{- end }}
      csi.cert-manager.io/key-encoding: "PKCS8"
      csi.cert-manager.io/key-usages: {{ join "," $usages | quote }}
      csi.cert-manager.io/ca-file: "ca.crt"
      csi.cert-manager.io/certificate-file: "server.crt"
      csi.cert-manager.io/privatekey-file: "server.key"
      csi.cert-manager.io/fs-group: {{ $v.podSecurityContext.fsGroup | default 999 | quote }}
{{- if $v.ssl.secretKeys.crl }}
# The CRL only, from the Secret when it exists and carries the key (optional).
- name: ssl-crl
  projected:
    defaultMode: 384
    sources:
      - secret:
          name: {{ $secret }}
          optional: true
          items:
            - key: {{ $v.ssl.secretKeys.crl }}
              path: ca.crl
{{- end }}
{{- else }}
# Whatever the key names in the Secret, the files appear as ca.crt, server.crt and
# server.key (and ca.crl), so the PGSSL* paths are the same for a hand-made and a
# cert-manager Secret. The CRL is a second, optional source: a Secret without it still mounts.
- name: ssl-certs
  projected:
    defaultMode: 384
    sources:
      - secret:
          name: {{ $secret }}
          items:
            - key: {{ $v.ssl.secretKeys.ca }}
              path: ca.crt
            - key: {{ include "citus-cluster.sslCertKey" .root }}
              path: server.crt
            - key: {{ include "citus-cluster.sslKeyKey" .root }}
              path: server.key
      {{- if $v.ssl.secretKeys.crl }}
      - secret:
          name: {{ $secret }}
          optional: true
          items:
            - key: {{ $v.ssl.secretKeys.crl }}
              path: ca.crl
      {{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The mounts of the volumes above (items of `volumeMounts:`); call with the root context. */}}
{{- define "citus-cluster.tlsVolumeMounts" -}}
{{- if .Values.ssl.enabled }}
- name: ssl-certs
  mountPath: {{ include "citus-cluster.tlsFileDir" . }}
  readOnly: true
{{- if and (include "citus-cluster.csiEnabled" .) .Values.ssl.secretKeys.crl }}
- name: ssl-crl
  mountPath: {{ include "citus-cluster.certDir" . }}
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}
