{{- define "osprey.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "osprey.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "osprey.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "osprey.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "osprey.agent" -}}{{ include "osprey.fullname" . | trunc 57 | trimSuffix "-" }}-agent{{- end -}}
{{- define "osprey.collector" -}}{{ include "osprey.fullname" . | trunc 53 | trimSuffix "-" }}-collector{{- end -}}

{{- define "osprey.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: osprey
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "osprey.agent.selector" -}}
app.kubernetes.io/name: {{ include "osprey.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{- define "osprey.collector.selector" -}}
app.kubernetes.io/name: {{ include "osprey.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: collector
{{- end -}}

{{- define "osprey.agent.serviceAccount" -}}
{{- if .Values.agent.serviceAccount.create -}}{{ default (include "osprey.agent" .) .Values.agent.serviceAccount.name }}{{- else -}}{{ default "default" .Values.agent.serviceAccount.name }}{{- end -}}
{{- end -}}

{{- define "osprey.collector.serviceAccount" -}}
{{- if .Values.collector.serviceAccount.create -}}{{ default (include "osprey.collector" .) .Values.collector.serviceAccount.name }}{{- else -}}{{ default "default" .Values.collector.serviceAccount.name }}{{- end -}}
{{- end -}}

{{- define "osprey.image" -}}
{{ .image.repository }}:{{ default .appVersion .image.tag }}
{{- end -}}

{{/* The collector's OTLP gRPC address, as agents reach it. */}}
{{- define "osprey.collector.otlpGrpc" -}}
http://{{ include "osprey.collector" . }}.{{ .Release.Namespace }}.svc:{{ .Values.collector.ports.otlpGrpc }}
{{- end -}}

{{/* A TOML value from a values entry: integers stay integers (Helm reads every number as a
float64, which toToml would write as 65536.0), strings are quoted, lists recurse. */}}
{{- define "osprey.toml" -}}
{{- $v := . -}}
{{- if kindIs "float64" $v -}}
{{- if eq $v (float64 (int64 $v)) -}}{{ int64 $v }}{{- else -}}{{ $v }}{{- end -}}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) (kindIs "bool" $v) -}}
{{- $v -}}
{{- else if kindIs "slice" $v -}}
[{{- range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "osprey.toml" $e }}{{ end }}]
{{- else if kindIs "map" $v -}}
{ {{- range $i, $k := keys $v | sortAlpha }}{{ if $i }},{{ end }} {{ toJson $k }} = {{ include "osprey.toml" (get $v $k) }}{{ end }} }
{{- else -}}
{{- toJson (toString $v) -}}
{{- end -}}
{{- end -}}
