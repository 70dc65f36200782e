{{/*
Labels of every object: the component's name and part-of (the same as deploy/'s, which the
selectors use), plus Helm's bookkeeping labels on metadata only (never in a selector).
Call with (dict "root" $ "name" "pcidevices-agent").
*/}}
{{- define "pcidevices.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/part-of: pcidevices
{{ include "pcidevices.helmLabels" .root }}
{{- end }}

{{- define "pcidevices.helmLabels" -}}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The selector and pod labels of a component. */}}
{{- define "pcidevices.podLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/part-of: pcidevices
{{- end }}

{{- define "pcidevices.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* nodeSelector, tolerations and imagePullSecrets of a pod spec, each only when set. */}}
{{- define "pcidevices.scheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
