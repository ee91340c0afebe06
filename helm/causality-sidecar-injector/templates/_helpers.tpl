{{/* The chart name, or nameOverride. */}}
{{- define "causality-sidecar-injector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* `<release>-<chart>` (or the release name when it already holds the chart name), 63 chars max. */}}
{{- define "causality-sidecar-injector.fullname" -}}
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

{{- define "causality-sidecar-injector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource of the webhook. */}}
{{- define "causality-sidecar-injector.labels" -}}
{{ include "causality-sidecar-injector.releaseLabels" . }}
app.kubernetes.io/component: webhook
{{- end }}

{{/* Labels on every resource, without the component (the helm test pod has its own). */}}
{{- define "causality-sidecar-injector.releaseLabels" -}}
helm.sh/chart: {{ include "causality-sidecar-injector.chart" . }}
app.kubernetes.io/name: {{ include "causality-sidecar-injector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the webhook pods. */}}
{{- define "causality-sidecar-injector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "causality-sidecar-injector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{- define "causality-sidecar-injector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "causality-sidecar-injector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image is published nowhere: its repository is a required value (a clear install
error instead of ImagePullBackOff). Build and push it from the project's Dockerfile. */}}
{{- define "causality-sidecar-injector.image" -}}
{{- $repository := required "image.repository is required: build the causality-sidecar image from the project's Dockerfile, push it to your registry and set --set image.repository=REGISTRY/causality-sidecar (see helm/README.md)" .Values.image.repository }}
{{- printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The injected sidecar's image: sidecar.image, else the webhook's own image (same program). */}}
{{- define "causality-sidecar-injector.sidecarImage" -}}
{{- if .Values.sidecar.image.repository }}
{{- printf "%s:%s" .Values.sidecar.image.repository (.Values.sidecar.image.tag | default .Values.image.tag | default .Chart.AppVersion) }}
{{- else }}
{{- $tag := .Values.sidecar.image.tag | default .Values.image.tag | default .Chart.AppVersion }}
{{- $repository := required "image.repository is required: build the causality-sidecar image from the project's Dockerfile, push it to your registry and set --set image.repository=REGISTRY/causality-sidecar (see helm/README.md)" .Values.image.repository }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}
{{- end }}

{{/* The Service the API server calls, and the names its certificate must hold. */}}
{{- define "causality-sidecar-injector.serviceName" -}}
{{- include "causality-sidecar-injector.fullname" . }}
{{- end }}

{{- define "causality-sidecar-injector.dnsNames" -}}
{{- $service := include "causality-sidecar-injector.serviceName" . }}
{{- list $service (printf "%s.%s" $service .Release.Namespace) (printf "%s.%s.svc" $service .Release.Namespace) | toJson }}
{{- end }}

{{/* The Secret holding tls.crt, tls.key and ca.crt (chart-generated or cert-manager's). */}}
{{- define "causality-sidecar-injector.tlsSecretName" -}}
{{- include "causality-sidecar-injector.fullname" . }}-tls
{{- end }}

{{/* Where the webhook pod finds its certificate and key: a Secret volume (never a subPath
mount) so the kubelet's updates reach the files and the webhook reloads them. */}}
{{- define "causality-sidecar-injector.tlsDir" -}}
/etc/causality-sidecar-injector/tls
{{- end }}

{{/* Namespaces never injected: webhook.excludeNamespaces and the release's own. */}}
{{- define "causality-sidecar-injector.excludedNamespaces" -}}
{{- .Values.webhook.excludeNamespaces | concat (list .Release.Namespace) | uniq | toJson }}
{{- end }}

{{/* The webhook's paths: the AdmissionReview carries no namespace labels, so the path says
which entry called (sidecar/inject/webhook.py NAMESPACE_PATH, OPT_IN_PATH). */}}
{{- define "causality-sidecar-injector.namespacePath" -}}
/mutate
{{- end }}

{{- define "causality-sidecar-injector.podPath" -}}
/mutate/opt-in
{{- end }}

{{/* The ConfigMap holding the base sidecar config (sidecar.config), and where the webhook
reads it (a ConfigMap volume: updates reach the file, the webhook re-reads it). */}}
{{- define "causality-sidecar-injector.sidecarConfigName" -}}
{{- include "causality-sidecar-injector.fullname" . }}-sidecar-config
{{- end }}
{{- define "causality-sidecar-injector.sidecarConfigDir" -}}
/etc/causality-sidecar-injector/sidecar-config
{{- end }}
