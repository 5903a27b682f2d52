{{/*
Chart name, truncated to 63 characters (DNS label).
*/}}
{{- define "mintcache.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart>, or <release> when it already contains the chart name.
*/}}
{{- define "mintcache.fullname" -}}
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

{{/*
Name of the bundled memcached StatefulSet and of its headless Service. At most 52 characters:
StatefulSet pods get a controller-revision-hash label of <name>-<10 chars>.
*/}}
{{- define "mintcache.memcached.fullname" -}}
{{- printf "%s-memcached" (include "mintcache.fullname" . | trunc 42 | trimSuffix "-") }}
{{- end }}

{{- define "mintcache.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels shared by every resource (Kubernetes recommended labels). Component labels are added by
mintcache.labels / mintcache.memcached.labels.
*/}}
{{- define "mintcache.commonLabels" -}}
helm.sh/chart: {{ include "mintcache.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mintcache
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of the mintcache server pods (immutable: never add to them). */}}
{{- define "mintcache.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mintcache.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{- define "mintcache.labels" -}}
{{ include "mintcache.selectorLabels" . }}
{{ include "mintcache.commonLabels" . }}
{{- end }}

{{/* Selector labels of the bundled memcached pods. */}}
{{- define "mintcache.memcached.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mintcache.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: memcached
{{- end }}

{{- define "mintcache.memcached.labels" -}}
{{ include "mintcache.memcached.selectorLabels" . }}
{{ include "mintcache.commonLabels" . }}
{{- end }}

{{- define "mintcache.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mintcache.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image reference: repository:tag, or repository@digest when a digest is given. */}}
{{- define "mintcache.imageRef" -}}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository (toString .tag) }}
{{- end }}
{{- end }}

{{- define "mintcache.image" -}}
{{- $img := deepCopy .Values.image }}
{{- $_ := set $img "tag" (default .Chart.AppVersion .Values.image.tag) }}
{{- include "mintcache.imageRef" $img }}
{{- end }}

{{/* Whether a shared memcached is configured: "true" or "". */}}
{{- define "mintcache.usesMemcached" -}}
{{- if or .Values.memcached.servers .Values.memcached.bundled.enabled }}true{{ end }}
{{- end }}

{{/*
The memcached server list as a JSON array: memcached.servers, or the stable DNS names of the
bundled StatefulSet's pods,
<sts>-<i>.<headless service>.<namespace>.svc.<clusterDomain>:<port> for i in 0..replicas-1.
*/}}
{{- define "mintcache.memcachedServers" -}}
{{- $servers := list }}
{{- if .Values.memcached.bundled.enabled }}
{{- $name := include "mintcache.memcached.fullname" . }}
{{- range $i := until (int .Values.memcached.bundled.replicas) }}
{{- $servers = append $servers (printf "%s-%d.%s.%s.svc.%s:%d" $name $i $name $.Release.Namespace $.Values.clusterDomain (int $.Values.memcached.bundled.port)) }}
{{- end }}
{{- else }}
{{- range .Values.memcached.servers }}
{{- $servers = append $servers (toString .) }}
{{- end }}
{{- end }}
{{- toJson $servers }}
{{- end }}

{{/* Paths inside the container. */}}
{{- define "mintcache.configDir" -}}/etc/mintcache/config{{- end }}
{{- define "mintcache.configFile" -}}mintcache.toml{{- end }}
{{- define "mintcache.tlsDir" -}}/etc/mintcache/tls{{- end }}
{{- define "mintcache.clientCADir" -}}/etc/mintcache/client-ca{{- end }}

{{/* Whether the chart creates the token Secret: "true" or "". */}}
{{- define "mintcache.createAuthSecret" -}}
{{- if and (not .Values.auth.existingSecret) (or .Values.auth.adminTokenSha256 .Values.auth.clientTokenSha256) }}true{{ end }}
{{- end }}

{{- define "mintcache.authSecretName" -}}
{{- default (printf "%s-auth" (include "mintcache.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/* Probe kind: "grpc" or "http" (the schema allows auto, grpc and http). */}}
{{- define "mintcache.probeMode" -}}
{{- if eq .Values.probes.mode "auto" }}
{{- ternary "http" "grpc" .Values.tls.enabled }}
{{- else }}
{{- .Values.probes.mode }}
{{- end }}
{{- end }}

{{/* The least terminationGracePeriodSeconds: preStop sleep + shutdown grace + 5 s. */}}
{{- define "mintcache.minTerminationGracePeriodSeconds" -}}
{{- add (int .Values.preStopSleepSeconds) (int (dig "server" "shutdown_grace_seconds" 20 .Values.config)) 5 }}
{{- end }}

{{/* terminationGracePeriodSeconds: the value given (mintcache.validate checks it), or the least. */}}
{{- define "mintcache.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- include "mintcache.minTerminationGracePeriodSeconds" . }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
memcached.bundled.maxItemSize in bytes. memcached -I takes bytes or a number with k or m (the
schema holds that shape); a plain number from a values file is a float to Helm.
*/}}
{{- define "mintcache.memcached.maxItemBytes" -}}
{{- $v := .Values.memcached.bundled.maxItemSize }}
{{- if kindIs "string" $v }}
{{- $n := atoi (regexFind "^[0-9]+" $v) }}
{{- $unit := regexFind "[kKmM]$" $v | lower }}
{{- if eq $unit "k" }}{{ mul $n 1024 }}{{ else if eq $unit "m" }}{{ mul $n 1048576 }}{{ else }}{{ $n }}{{ end }}
{{- else }}
{{- int64 $v }}
{{- end }}
{{- end }}

{{/*
The server configuration keys the chart sets itself, each with the value to use instead. The
config values and extraEnv may not set them: the ports, probes, Services and NetworkPolicies
are all built from those values, and would otherwise disagree with what the server does.
*/}}
{{- define "mintcache.managedConfigKeys" -}}
{{- dict
  "server" (dict "listen" "containerPorts.grpc")
  "admin" (dict "listen" "containerPorts.admin")
  "memcached" (dict "servers" "memcached.servers or memcached.bundled")
  "tls" (dict "cert" "tls" "key" "tls" "client_ca" "tls.clientCA" "client_cert_optional" "tls.clientCertOptional")
  "auth" (dict "admin_token_sha256" "auth.adminTokenSha256 or auth.existingSecret" "client_token_sha256" "auth.clientTokenSha256 or auth.existingSecret")
  | toJson }}
{{- end }}

{{/*
One TOML value: strings as JSON strings (a subset of TOML basic strings), integral numbers as
integers (Helm reads every YAML number as a float), booleans, and flat lists of those.
*/}}
{{- define "mintcache.tomlValue" -}}
{{- $v := . }}
{{- if kindIs "string" $v }}
{{- toJson $v }}
{{- else if kindIs "bool" $v }}
{{- ternary "true" "false" $v }}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) }}
{{- if eq (float64 $v) (floor $v) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) }}
{{- $v }}
{{- else if kindIs "slice" $v }}
{{- $items := list }}
{{- range $v }}{{ $items = append $items (include "mintcache.tomlValue" .) }}{{ end }}
{{- printf "[%s]" (join ", " $items) }}
{{- else if kindIs "map" $v }}
{{- /* An inline table, keys quoted and in sorted order (early_refresh_beta_by_namespace). */}}
{{- $items := list }}
{{- range $key, $item := $v }}{{ $items = append $items (printf "%s = %s" (toJson $key) (include "mintcache.tomlValue" $item)) }}{{ end }}
{{- printf "{%s}" (join ", " $items) }}
{{- else }}
{{- fail (printf "config: cannot render %v (%s) as a TOML value" $v (kindOf $v)) }}
{{- end }}
{{- end }}

{{/*
The server's TOML configuration: .Values.config plus the keys the chart manages (listen
addresses, memcached servers, TLS paths).
*/}}
{{- define "mintcache.configToml" -}}
{{- $cfg := deepCopy .Values.config }}
{{- range $section := list "server" "admin" "memcached" "tls" "cache" }}
{{- if not (hasKey $cfg $section) }}{{ $_ := set $cfg $section dict }}{{ end }}
{{- end }}
{{- $_ := set $cfg.server "listen" (printf "0.0.0.0:%d" (int .Values.containerPorts.grpc)) }}
{{- $_ := set $cfg.admin "listen" (printf "0.0.0.0:%d" (int .Values.containerPorts.admin)) }}
{{- $_ := set $cfg.memcached "servers" (include "mintcache.memcachedServers" . | fromJsonArray) }}
{{- if .Values.tls.enabled }}
{{- $_ := set $cfg.tls "cert" (printf "%s/tls.crt" (include "mintcache.tlsDir" .)) }}
{{- $_ := set $cfg.tls "key" (printf "%s/tls.key" (include "mintcache.tlsDir" .)) }}
{{- if .Values.tls.clientCA.enabled }}
{{- $_ := set $cfg.tls "client_ca" (printf "%s/ca.crt" (include "mintcache.clientCADir" .)) }}
{{- $_ := set $cfg.tls "client_cert_optional" .Values.tls.clientCertOptional }}
{{- end }}
{{- end }}
{{- /* Labels are strings even when given as --set config.cache.default_version=42. */}}
{{- range $key := list "default_version" "namespace" }}
{{- $v := index $cfg.cache $key }}
{{- if not (kindIs "invalid" $v) }}
{{- if kindIs "float64" $v }}{{ $v = int64 $v }}{{ end }}
{{- $_ := set $cfg.cache $key (toString $v) }}
{{- end }}
{{- end -}}
# mintcache-server configuration, rendered by the {{ .Chart.Name }} chart {{ .Chart.Version }}
# from the release's values (`config`, plus the keys the chart manages). Environment variables
# MINTCACHE_<SECTION>__<KEY> (token digests from the Secret) override it.
{{- range $section := keys $cfg | sortAlpha }}
{{- $body := index $cfg $section }}

[{{ $section }}]
{{- range $key := keys $body | sortAlpha }}
{{- $val := index $body $key }}
{{- if not (kindIs "invalid" $val) }}
{{ $key }} = {{ include "mintcache.tomlValue" $val }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
