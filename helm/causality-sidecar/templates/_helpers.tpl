{{/* The chart name, or nameOverride. */}}
{{- define "causality-sidecar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* `<release>-<chart>` (or the release name when it already holds the chart name), 63 chars max. */}}
{{- define "causality-sidecar.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "causality-sidecar.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "causality-sidecar.labels" -}}
helm.sh/chart: {{ include "causality-sidecar.chart" . }}
{{ include "causality-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the pods. */}}
{{- define "causality-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "causality-sidecar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "causality-sidecar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "causality-sidecar.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The port of a `host:port` / `[v6]:port` listen address from the sidecar config.
Usage: include "causality-sidecar.port" (list . "proxy")
*/}}
{{- define "causality-sidecar.port" -}}
{{- $root := index . 0 }}
{{- $section := index . 1 }}
{{- $address := index $root.Values.sidecar.config $section "listen" | toString }}
{{- $port := splitList ":" $address | last }}
{{- if not (regexMatch "^[0-9]+$" $port) }}
{{- fail (printf "sidecar.config.%s.listen: expected host:port, got %q" $section $address) }}
{{- end }}
{{- $port }}
{{- end }}

{{/* The listen host of a section; fails when a port the kubelet or the Service must reach binds loopback. */}}
{{- define "causality-sidecar.reachableHost" -}}
{{- $root := index . 0 }}
{{- $section := index . 1 }}
{{- $address := index $root.Values.sidecar.config $section "listen" | toString }}
{{- $host := regexReplaceAll ":[0-9]+$" $address "" | trimPrefix "[" | trimSuffix "]" }}
{{- if or (hasPrefix "127." $host) (eq $host "::1") (eq $host "localhost") }}
{{- fail (printf "sidecar.config.%s.listen binds loopback (%s): the kubelet and Prometheus could not reach it; use 0.0.0.0" $section $address) }}
{{- end }}
{{- $host }}
{{- end }}

{{- define "causality-sidecar.proxyPort" -}}
{{- include "causality-sidecar.port" (list . "proxy") }}
{{- end }}

{{- define "causality-sidecar.adminPort" -}}
{{- include "causality-sidecar.port" (list . "admin") }}
{{- end }}

{{- define "causality-sidecar.ingestPort" -}}
{{- include "causality-sidecar.port" (list . "ingest") }}
{{- end }}

{{- define "causality-sidecar.metricsPath" -}}
{{- .Values.sidecar.config.admin.metrics_path | default "/metrics" }}
{{- end }}

{{/* The sidecar image is published nowhere: its repository is a required value (a clear
install error instead of ImagePullBackOff). Build and push it from the project's Dockerfile. */}}
{{- define "causality-sidecar.sidecarImage" -}}
{{- $repository := required "sidecar.image.repository is required: build the image from the project's Dockerfile, push it to your registry and set --set sidecar.image.repository=REGISTRY/causality-sidecar (see helm/README.md)" .Values.sidecar.image.repository }}
{{- printf "%s:%s" $repository (.Values.sidecar.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The sidecar container; `native` adds restartPolicy: Always for the init-container form. */}}
{{- define "causality-sidecar.sidecarContainer" -}}
{{- $ := index . 0 }}
{{- $native := index . 1 -}}
{{- $tlsDir := include "causality-sidecar.adminTlsDir" $ }}
- name: {{ $.Values.sidecar.name }}
  image: {{ include "causality-sidecar.sidecarImage" $ | quote }}
  imagePullPolicy: {{ $.Values.sidecar.image.pullPolicy }}
  {{- if $native }}
  restartPolicy: Always
  {{- end }}
  args: ["run", "--config", "/etc/causality-sidecar/config.yaml"]
  env:
    {{- /* the pod's identity (downward API): a service.instance.id stable across restarts */}}
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    - name: OTEL_RESOURCE_ATTRIBUTES
      value: "k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME),k8s.container.name={{ $.Values.sidecar.name }}"
    {{- if $.Values.sidecar.mallocTuning }}
    - name: MALLOC_MMAP_THRESHOLD_
      value: "4194304"
    - name: MALLOC_TRIM_THRESHOLD_
      value: "67108864"
    {{- end }}
    {{- with $.Values.sidecar.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    {{- if include "causality-sidecar.proxyEnabled" $ }}
    - name: proxy
      containerPort: {{ include "causality-sidecar.proxyPort" $ }}
      protocol: TCP
    {{- end }}
    - name: metrics
      containerPort: {{ include "causality-sidecar.adminPort" $ }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /healthz
      port: metrics
      {{- if $tlsDir }}
      scheme: HTTPS  # the kubelet does not verify the certificate
      {{- end }}
    {{- toYaml $.Values.sidecar.probes.startup | nindent 4 }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: metrics
      {{- if $tlsDir }}
      scheme: HTTPS  # the kubelet does not verify the certificate
      {{- end }}
    {{- toYaml $.Values.sidecar.probes.liveness | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: metrics
      {{- if $tlsDir }}
      scheme: HTTPS  # the kubelet does not verify the certificate
      {{- end }}
    {{- toYaml $.Values.sidecar.probes.readiness | nindent 4 }}
  securityContext:
    {{- toYaml $.Values.containerSecurityContext | nindent 4 }}
  {{- with $.Values.sidecar.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: sidecar-config
      mountPath: /etc/causality-sidecar
      readOnly: true
    - name: sidecar-tmp
      mountPath: /tmp
    {{- if $.Values.sidecar.metricsAuth.secretName }}
    - name: metrics-auth
      mountPath: {{ include "causality-sidecar.authDir" $ }}
      readOnly: true
    {{- end }}
    {{- if $tlsDir }}
    - name: admin-tls
      mountPath: {{ $tlsDir }}
      readOnly: true
    {{- end }}
    {{- with $.Values.sidecar.volumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/* "true" unless sidecar.config.proxy.enabled is false. */}}
{{- define "causality-sidecar.proxyEnabled" -}}
{{- if ne (toString .Values.sidecar.config.proxy.enabled) "false" }}true{{ end }}
{{- end }}

{{/* "true" unless sidecar.config.ingest.enabled is false. */}}
{{- define "causality-sidecar.ingestEnabled" -}}
{{- if ne (toString .Values.sidecar.config.ingest.enabled) "false" }}true{{ end }}
{{- end }}

{{/* Where the metrics bearer token Secret is mounted in the sidecar. */}}
{{- define "causality-sidecar.authDir" -}}
/var/run/causality-sidecar/metrics-auth
{{- end }}

{{/* The sidecar config: sidecar.config, plus admin.bearer_token_file when metricsAuth is on. */}}
{{- define "causality-sidecar.config" -}}
{{- $config := deepCopy .Values.sidecar.config }}
{{- with .Values.sidecar.metricsAuth.secretName }}
{{- $admin := $config.admin | default dict }}
{{- $_ := set $admin "bearer_token_file" (printf "%s/%s" (include "causality-sidecar.authDir" $) $.Values.sidecar.metricsAuth.secretKey) }}
{{- $_ := set $config "admin" $admin }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
The directory the admin.tls Secret (sidecar.adminTlsSecret) is mounted at: the directory of
sidecar.config.admin.tls.cert_file, "" without admin.tls. Fails, as the injector does
(sidecar/inject/baseconfig.py), when no Secret is named, when cert_file is not absolute or
sits where the chart mounts something else, and when key_file or client_ca_file is in
another directory.
*/}}
{{- define "causality-sidecar.adminTlsDir" -}}
{{- $tls := (.Values.sidecar.config.admin | default dict).tls }}
{{- if $tls }}
{{- $cert := $tls.cert_file | default "" | toString }}
{{- if not $cert }}
{{- fail "sidecar.config.admin.tls.cert_file is required with admin.tls: the chart mounts sidecar.adminTlsSecret at its directory" }}
{{- end }}
{{- if not (isAbs $cert) }}
{{- fail (printf "sidecar.config.admin.tls.cert_file: must be an absolute path in the pod, got %q" $cert) }}
{{- end }}
{{- $dir := dir $cert }}
{{- $taken := list "/" "/tmp" "/etc/causality-sidecar" (include "causality-sidecar.authDir" .) }}
{{- if has $dir $taken }}
{{- fail (printf "sidecar.config.admin.tls.cert_file: is in %s, where the chart mounts something else: choose a directory of its own, e.g. /etc/causality-sidecar-tls/tls.crt" $dir) }}
{{- end }}
{{- range $name := list "key_file" "client_ca_file" }}
{{- $path := index $tls $name }}
{{- if and $path (ne (dir (toString $path)) $dir) }}
{{- fail (printf "sidecar.config.admin.tls.%s: must be in the directory of admin.tls.cert_file (%s): the chart mounts one Secret there" $name $dir) }}
{{- end }}
{{- end }}
{{- if not .Values.sidecar.adminTlsSecret }}
{{- fail (printf "sidecar.config.admin.tls is on, but no Secret holds the certificate: set sidecar.adminTlsSecret to a Secret in namespace %s with the files, mounted read-only at %s" .Release.Namespace $dir) }}
{{- end }}
{{- $dir }}
{{- end }}
{{- end }}

{{/* "https" when the admin port speaks TLS (sidecar.config.admin.tls), else "http". */}}
{{- define "causality-sidecar.adminScheme" -}}
{{- if include "causality-sidecar.adminTlsDir" . }}https{{ else }}http{{ end }}
{{- end }}

{{/*
The scheme and tlsConfig lines of a PodMonitor / ServiceMonitor endpoint.
Usage: include "causality-sidecar.monitorTls" (list . "podMonitor")
*/}}
{{- define "causality-sidecar.monitorTls" -}}
{{- $root := index . 0 }}
{{- $kind := index . 1 }}
{{- if include "causality-sidecar.adminTlsDir" $root }}
{{- $tlsConfig := index $root.Values.metrics $kind "tlsConfig" }}
{{- if not $tlsConfig }}
{{- fail (printf "metrics.%s.tlsConfig is empty, but sidecar.config.admin.tls is on: Prometheus must trust the sidecar's certificate (and present a client certificate with client_ca_file); set it, e.g. ca from the Secret %s (docs/deployment.md, \"HTTPS on the admin port\")" $kind $root.Values.sidecar.adminTlsSecret) }}
{{- end }}
scheme: https
tlsConfig:
  {{- toYaml $tlsConfig | nindent 2 }}
{{- end }}
{{- end }}
