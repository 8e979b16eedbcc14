{{/* Chart name, overridable. */}}
{{- define "edgebind.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object name prefix: the release name, plus the chart name unless the release name holds it. */}}
{{- define "edgebind.fullname" -}}
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

{{/* Names of the two components' objects (kept short enough for the 63-character limit). */}}
{{- define "edgebind.controller.name" -}}
{{- printf "%s-controller" (include "edgebind.fullname" . | trunc 52 | trimSuffix "-") }}
{{- end }}
{{- define "edgebind.gateway.name" -}}
{{- printf "%s-gateway" (include "edgebind.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "edgebind.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "edgebind.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: edgebind
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component; call with (dict "ctx" $ "component" "controller"). */}}
{{- define "edgebind.selectorLabels" -}}
app.kubernetes.io/name: {{ include "edgebind.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Full labels of one component. */}}
{{- define "edgebind.componentLabels" -}}
{{ include "edgebind.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The container image reference: digest wins over tag; the tag defaults to appVersion. */}}
{{- define "edgebind.image" -}}
{{- $repo := .Values.image.repository }}
{{- with (.Values.global).imageRegistry }}
{{- /* Replace the registry part (the first path segment when it names a host). */}}
{{- $parts := splitList "/" $repo }}
{{- if and (gt (len $parts) 1) (or (contains "." (first $parts)) (contains ":" (first $parts)) (eq (first $parts) "localhost")) }}
{{- $repo = join "/" (rest $parts) }}
{{- end }}
{{- $repo = printf "%s/%s" (trimSuffix "/" .) $repo }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* ServiceAccount names: serviceAccount.name, else the component's name. */}}
{{- define "edgebind.controller.serviceAccountName" -}}
{{- default (include "edgebind.controller.name" .) .Values.controller.serviceAccount.name }}
{{- end }}
{{- define "edgebind.gateway.serviceAccountName" -}}
{{- default (include "edgebind.gateway.name" .) .Values.gateway.serviceAccount.name }}
{{- end }}

{{/* A probe: the chart's endpoint and timings, with the values' overrides. */}}
{{- define "edgebind.probe" -}}
httpGet:
  path: {{ .path }}
  port: admin
{{- toYaml (merge (dict) .override .defaults) | nindent 0 }}
{{- end }}

{{/* Name of the controller's leader-election Lease. */}}
{{- define "edgebind.leaseName" -}}
{{- include "edgebind.controller.name" . }}
{{- end }}

{{/* Namespaces where the controller may read backend Secrets. */}}
{{- define "edgebind.backendSecretNamespaces" -}}
{{- if .Values.controller.backendSecrets.namespaces }}
{{- toJson (uniq .Values.controller.backendSecrets.namespaces) }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}
