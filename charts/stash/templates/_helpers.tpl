{{/* Names, labels and small values shared by the templates. */}}

{{- define "stash.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name (the release name when it already contains the chart's). */}}
{{- define "stash.fullname" -}}
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

{{/* The operator's Deployment, Service, Lease and RBAC objects share this name. */}}
{{- define "stash.operatorName" -}}
{{- printf "%s-operator" (include "stash.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "stash.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of this release, without app.kubernetes.io/name (generated objects bring theirs). */}}
{{- define "stash.releaseLabels" -}}
helm.sh/chart: {{ include "stash.chart" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "stash.labels" -}}
app.kubernetes.io/name: {{ include "stash.name" . }}
{{ include "stash.releaseLabels" . }}
{{- end }}

{{- define "stash.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stash.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "stash.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stash.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "stash.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* registry/repository:tag (no registry part when it is empty). */}}
{{- define "stash.image" -}}
{{- if .Values.image.registry }}
{{- printf "%s/%s:%s" .Values.image.registry .Values.image.repository (include "stash.imageTag" .) }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "stash.imageTag" .) }}
{{- end }}
{{- end }}

{{/* The Lease the replicas elect a leader with (namespace: the release's). */}}
{{- define "stash.leaseName" -}}
{{- include "stash.operatorName" . }}
{{- end }}

{{/* Secret the operator keeps its webhook CA and serving certificate in (mode operator). */}}
{{- define "stash.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "stash.operatorName" .) }}
{{- end }}

{{/* Annotations of both webhook configurations: cert-manager's CA injection, if asked for. */}}
{{- define "stash.webhookAnnotations" -}}
{{- $certs := .Values.webhook.certificates }}
{{- if and (eq $certs.mode "secret") $certs.certManager.certificate }}
annotations:
  cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace $certs.certManager.certificate }}
{{- end }}
{{- end }}

{{/* The label matchers that select this release's operator in Prometheus. */}}
{{- define "stash.operatorMetricsSelector" -}}
{{- printf "job=%q,namespace=%q" (include "stash.operatorName" .) .Release.Namespace }}
{{- end }}

{{/* The names of the image pull secrets, as a JSON list (OperatorSettings reads JSON). */}}
{{- define "stash.pullSecretNames" -}}
{{- $names := list }}
{{- range .Values.imagePullSecrets }}
{{- $names = append $names .name }}
{{- end }}
{{- toJson $names }}
{{- end }}
