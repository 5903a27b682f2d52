{{/*
The chart's fail guards: value combinations that cannot work are refused at lint, template and
install time (templates/validate.yaml runs them), not by a pod that crash-loops. What one value
alone must be (type, enum, range, pattern, known key) is in values.schema.json; these are the
rules that relate several values to each other, to the server or to memcached. deploy/check.sh
makes each of them fail once.
*/}}
{{- define "mintcache.validate" -}}
{{- $v := .Values }}
{{- $managed := include "mintcache.managedConfigKeys" . | fromJson }}
{{- range $section, $keys := $managed }}
{{- range $key, $owner := $keys }}
{{- if not (kindIs "invalid" (dig $section $key nil $v.config)) }}
{{- fail (printf "config.%s.%s is managed by the chart: set %s instead" $section $key $owner) }}
{{- end }}
{{- $var := printf "MINTCACHE_%s__%s" $section $key | upper }}
{{- range $v.extraEnv }}
{{- if eq (upper .name) $var }}
{{- fail (printf "extraEnv %s sets %s.%s, which the chart manages: set %s instead" .name $section $key $owner) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- range $v.extraEnv }}
{{- if eq (upper .name) "MINTCACHE_CONFIG" }}
{{- fail "extraEnv MINTCACHE_CONFIG: the chart points it at the ConfigMap; set config.* instead" }}
{{- end }}
{{- end }}
{{- if and $v.memcached.servers $v.memcached.bundled.enabled }}
{{- fail "memcached.servers and memcached.bundled.enabled are exclusive: use an external memcached or the bundled one" }}
{{- end }}
{{- if and (not (include "mintcache.usesMemcached" .)) (or $v.autoscaling.enabled (gt (int $v.replicaCount) 1)) (not $v.allowUnsharedEmbeddedStore) }}
{{- fail "more than one mintcache pod without memcached: each pod would have its own embedded store (no shared keys, leases or invalidations). Set memcached.servers or memcached.bundled.enabled (or allowUnsharedEmbeddedStore=true)" }}
{{- end }}
{{- if and $v.tls.enabled (not $v.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName (a kubernetes.io/tls Secret with tls.crt and tls.key)" }}
{{- end }}
{{- if and $v.tls.clientCA.enabled (not $v.tls.enabled) }}
{{- fail "tls.clientCA.enabled needs tls.enabled" }}
{{- end }}
{{- if and (dig "auth" "admin_subjects" (list) $v.config) (not $v.tls.clientCA.enabled) }}
{{- fail "config.auth.admin_subjects needs tls.clientCA.enabled (admin rights by client certificate need mutual TLS)" }}
{{- end }}
{{- if and $v.tls.enabled (eq $v.probes.mode "grpc") }}
{{- fail "probes.mode grpc with tls.enabled: the kubelet's gRPC probes cannot speak TLS; use auto or http (HTTP probes on the admin port)" }}
{{- end }}
{{- if eq (int $v.containerPorts.grpc) (int $v.containerPorts.admin) }}
{{- fail "containerPorts.grpc and containerPorts.admin must differ" }}
{{- end }}
{{- if not (kindIs "invalid" $v.terminationGracePeriodSeconds) }}
{{- $min := int (include "mintcache.minTerminationGracePeriodSeconds" .) }}
{{- if lt (int $v.terminationGracePeriodSeconds) $min }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be at least preStopSleepSeconds + config.server.shutdown_grace_seconds + 5 = %d, or the kubelet kills pods still draining" (int $v.terminationGracePeriodSeconds) $min) }}
{{- end }}
{{- end }}
{{- $message := dig "server" "max_message_bytes" nil $v.config }}
{{- $value := dig "limits" "max_value_bytes" nil $v.config }}
{{- $key := dig "limits" "max_key_bytes" nil $v.config }}
{{- if not (or (kindIs "invalid" $message) (kindIs "invalid" $value) (kindIs "invalid" $key)) }}
{{- $needed := add (int64 $value) (int64 $key) 1024 }}
{{- if lt (int64 $message) $needed }}
{{- fail (printf "config.server.max_message_bytes (%d) must be at least config.limits.max_value_bytes + config.limits.max_key_bytes + 1024 = %d" (int64 $message) $needed) }}
{{- end }}
{{- end }}
{{- if $v.memcached.bundled.enabled }}
{{- $mc := $v.memcached.bundled }}
{{- $item := int64 (include "mintcache.memcached.maxItemBytes" .) }}
{{- if or (lt $item 1024) (gt $item 1073741824) }}
{{- fail (printf "memcached.bundled.maxItemSize %v is %d bytes: memcached takes 1k to 1024m" $mc.maxItemSize $item) }}
{{- end }}
{{- if gt (mul $item 2) (mul (int64 $mc.memoryMB) 1048576) }}
{{- fail (printf "memcached.bundled.maxItemSize %v is more than half of memoryMB (%d MiB): memcached refuses to start" $mc.maxItemSize (int64 $mc.memoryMB)) }}
{{- end }}
{{- if and (not (kindIs "invalid" $value)) (lt $item (add (int64 $value) 1024)) }}
{{- fail (printf "memcached.bundled.maxItemSize %v (%d bytes) must hold config.limits.max_value_bytes + 1024 = %d (key, item header and envelope)" $mc.maxItemSize $item (add (int64 $value) 1024)) }}
{{- end }}
{{- end }}
{{- if and $v.podDisruptionBudget.enabled (kindIs "invalid" $v.podDisruptionBudget.minAvailable) (kindIs "invalid" $v.podDisruptionBudget.maxUnavailable) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable" }}
{{- end }}
{{- if and $v.autoscaling.enabled (kindIs "invalid" $v.autoscaling.targetCPUUtilizationPercentage) (kindIs "invalid" $v.autoscaling.targetMemoryUtilizationPercentage) }}
{{- fail "autoscaling: set targetCPUUtilizationPercentage and/or targetMemoryUtilizationPercentage" }}
{{- end }}
{{- end }}
