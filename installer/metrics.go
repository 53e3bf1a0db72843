package installer

import "github.com/mesh-accel/mesh-accel/installer/metrics"

// Metric names of the installer, the node, the rules ConfigMap and the data
// path's counters (package metrics, which defines them).
const (
	MetricPodsAttached          = metrics.PodsAttached
	MetricPodsBroken            = metrics.PodsBroken
	MetricRuleReloadErrors      = metrics.RuleReloadErrors
	MetricConflistRepairs       = metrics.ConflistRepairs
	MetricSweptEntries          = metrics.SweptEntries
	MetricDataPath              = metrics.DataPath
	MetricDataPathSkewed        = metrics.DataPathSkewed
	MetricOlderStateSockets     = metrics.OlderStateSockets
	MetricNodeActive            = metrics.NodeActive
	MetricReady                 = metrics.Ready
	MetricEnabled               = metrics.Enabled
	MetricBuildInfo             = metrics.BuildInfo
	MetricMapEntries            = metrics.MapEntries
	MetricMapMaxEntries         = metrics.MapMaxEntries
	MetricPodSetupFailures      = metrics.PodSetupFailures
	MetricCNIAddDuration        = metrics.CNIAddDuration
	MetricPodMapEntries         = metrics.PodMapEntries
	MetricPodQuota              = metrics.PodQuota
	MetricGuaranteedShare       = metrics.GuaranteedShare
	MetricGuaranteedPods        = metrics.GuaranteedPods
	MetricSharedPool            = metrics.SharedPool
	MetricSharedPoolInUse       = metrics.SharedPoolInUse
	MetricRegistrationsExpired  = metrics.RegistrationsExpired
	MetricRulesReloadSuccessful = metrics.RulesReloadSuccessful
	MetricRulesReloadAttempt    = metrics.RulesReloadAttempt
	MetricRulesReloadSuccess    = metrics.RulesReloadSuccess
	MetricSwitchKeyInvalid      = metrics.SwitchKeyInvalid
	MetricSocketsTagged         = metrics.SocketsTagged
	MetricConnectingRegistered  = metrics.ConnectingRegistered
	MetricConnectingReleased    = metrics.ConnectingReleased
	MetricConnectionsSeen       = metrics.ConnectionsSeen
	MetricConnectionsAccepted   = metrics.ConnectionsAccepted
	MetricConnectionsRejected   = metrics.ConnectionsRejected
	MetricConnectionsClosed     = metrics.ConnectionsClosed
	MetricRedirectedDirections  = metrics.RedirectedDirections
	MetricFallbackDirections    = metrics.FallbackDirections
	MetricResumedDirections     = metrics.ResumedDirections
	MetricRedirectedMessages    = metrics.RedirectedMessages
	MetricRedirectedBytes       = metrics.RedirectedBytes
	MetricFallbackMessages      = metrics.FallbackMessages
	MetricUnpairedMessages      = metrics.UnpairedMessages
	MetricMapFullErrors         = metrics.MapFullErrors
	MetricCapturedMessages      = metrics.CapturedMessages
	MetricCaptureDropped        = metrics.CaptureDropped
)
