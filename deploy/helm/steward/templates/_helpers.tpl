{{- define "steward.name" -}}{{ .Chart.Name }}{{- end -}}
{{- define "steward.fullname" -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- define "steward.labels" -}}
app.kubernetes.io/name: {{ include "steward.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
{{- define "steward.selector" -}}
app.kubernetes.io/name: {{ include "steward.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "steward.serviceAccount" -}}{{ default (include "steward.fullname" .) .Values.serviceAccount.name }}{{- end -}}
