{{/* The labels of every object. */}}
{{- define "mesh-accel.labels" -}}
{{ include "mesh-accel.selectorLabels" . }}
app.kubernetes.io/version: {{ include "mesh-accel.version" . | quote }}
app.kubernetes.io/part-of: mesh-accel
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The DaemonSet's selector: stable over upgrades (no version). */}}
{{- define "mesh-accel.selectorLabels" -}}
app.kubernetes.io/name: mesh-accel
app.kubernetes.io/component: node
{{- end }}

{{- define "mesh-accel.version" -}}
{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* repository:tag, and @digest when one is given. */}}
{{- define "mesh-accel.image" -}}
{{ .Values.image.repository }}:{{ include "mesh-accel.version" . }}{{ with .Values.image.digest }}@{{ . }}{{ end }}
{{- end }}

{{/* The address the installer serves on (--listen): metrics.address, by
default the node's (HOST_IP, status.hostIP), in brackets for IPv6. */}}
{{- define "mesh-accel.listen" -}}
{{ .Values.metrics.address | default "[$(HOST_IP)]" }}:{{ int64 .Values.metrics.port }}
{{- end }}

{{/* The host the kubelet probes: metrics.address without brackets when it
is one address; empty (the pod's IP, which is the node's) by default and
for the wildcard addresses. */}}
{{- define "mesh-accel.probeHost" -}}
{{- $a := .Values.metrics.address | trimPrefix "[" | trimSuffix "]" -}}
{{- if and $a (ne $a "0.0.0.0") (ne $a "::") -}}
{{ $a }}
{{- end -}}
{{- end }}

{{/* The node rules: the values' text, else the defaults for sidecarUID
(rules.DefaultFor). */}}
{{- define "mesh-accel.rules" -}}
{{- if .Values.rules -}}
{{ .Values.rules }}
{{- else -}}
# accelerate traffic of uid {{ int64 .Values.sidecarUID }} (Envoy), never port 15006
chain --uid-owner {{ int64 .Values.sidecarUID }} -j ACCEPT
chain --port 15006 -j RETURN
{{- end }}
{{- end }}
