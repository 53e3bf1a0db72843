{{/* The labels of every object: the selector's, then the others. */}}
{{- define "mesh-accel.labels" -}}
{{ include "mesh-accel.selectorLabels" . }}
{{ include "mesh-accel.commonLabels" . }}
helm.sh/chart: {{ include "mesh-accel.chart" . }}
{{- end }}

{{/* The labels of every object and pod but the name and component: the
version, the release (app.kubernetes.io/instance) and the tool. */}}
{{- define "mesh-accel.commonLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ include "mesh-accel.version" . | quote }}
app.kubernetes.io/part-of: mesh-accel
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The pod template's labels: those of the objects but helm.sh/chart (a
new chart version that changes nothing in the pod must not roll every
node), and podLabels. */}}
{{- define "mesh-accel.podLabels" -}}
{{ include "mesh-accel.selectorLabels" . }}
{{ include "mesh-accel.commonLabels" . }}
{{- with .Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The DaemonSet's selector: stable over upgrades (no version). It has
no app.kubernetes.io/instance either: a DaemonSet's selector is immutable,
so adding it would make `helm upgrade` of every existing install fail, and
it would select nothing more precisely (the chart installs once per
cluster: its ClusterRole and the nodes' CNI entry are cluster-wide). */}}
{{- define "mesh-accel.selectorLabels" -}}
app.kubernetes.io/name: mesh-accel
app.kubernetes.io/component: node
{{- end }}

{{/* helm.sh/chart: name-version, as Helm's own starter chart writes it. */}}
{{- define "mesh-accel.chart" -}}
{{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mesh-accel.version" -}}
{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* repository:tag@digest. The digest is image.digest when set; else the
released chart's (the Chart.yaml annotation accel.mesh/image-digest,
written by make release-manifests) when the tag is the chart's appVersion,
none for any other tag: overriding image.tag never keeps the digest of the
release's image. */}}
{{- define "mesh-accel.image" -}}
{{- $tag := include "mesh-accel.version" . -}}
{{- $digest := .Values.image.digest -}}
{{- if and (not $digest) (eq $tag .Chart.AppVersion) -}}
{{- $digest = index (.Chart.Annotations | default dict) "accel.mesh/image-digest" -}}
{{- end -}}
{{ .Values.image.repository }}:{{ $tag }}{{ with $digest }}@{{ . }}{{ end }}
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
(rules.DefaultText). */}}
{{- define "mesh-accel.rules" -}}
{{- if .Values.rules -}}
{{ .Values.rules }}
{{- else -}}
{{- /* generated from rules.DefaultText by `go generate ./manifests/render`; do not edit */ -}}
# accelerate traffic of uid {{ int64 .Values.sidecarUID }} (Envoy), never port 15006
chain --uid-owner {{ int64 .Values.sidecarUID }} -j ACCEPT
chain --port 15006 -j RETURN
{{- /* end of the generated rules */}}
{{- end }}
{{- end }}

{{/* A monitoring object of files/monitoring (list of the root context, the
file's name, the values' extra labels), in the release's namespace and with
the chart's labels: the file's apiVersion, kind and metadata are decoded
and written again, its spec is copied as it is (so that its text, e.g. the
alerts' expressions, stays byte for byte), with the PodMonitor's job
(namespace/name) in the release's namespace. */}}
{{- define "mesh-accel.monitoringObject" -}}
{{- $root := index . 0 -}}
{{- $file := printf "files/monitoring/%s" (index . 1) -}}
{{- $text := $root.Files.Get $file | replace "job=\"mesh-accel/" (printf "job=\"%s/" $root.Release.Namespace) -}}
{{- $parts := splitn "\nspec:\n" 2 $text -}}
{{- if not $parts._1 }}{{ fail (printf "%s: want a top-level spec" $file) }}{{ end -}}
{{- $obj := $parts._0 | fromYaml -}}
{{- $chart := include "mesh-accel.commonLabels" $root | fromYaml -}}
{{- $_ := set $chart "helm.sh/chart" (include "mesh-accel.chart" $root) -}}
{{- $_ := set $obj.metadata "namespace" $root.Release.Namespace -}}
{{- $_ := set $obj.metadata "labels" (merge (dict) ($obj.metadata.labels | default dict) $chart (index . 2 | default dict)) -}}
apiVersion: {{ $obj.apiVersion }}
kind: {{ $obj.kind }}
metadata:
  {{- toYaml $obj.metadata | nindent 2 }}
spec:
{{ $parts._1 }}
{{- end }}
