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

{{/* The address the installer serves on (--listen). */}}
{{- define "mesh-accel.listen" -}}
{{ .Values.metrics.address }}:{{ int64 .Values.metrics.port }}
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
