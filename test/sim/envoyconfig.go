package sim

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
)

// Protocol is how the mesh treats a service port, as Istio infers it from
// the port's name or appProtocol.
type Protocol string

// Service port protocols.
const (
	// ProtocolTCP: opaque bytes through tcp_proxy (redis, the simulator's
	// own protocol, iperf3, sockperf).
	ProtocolTCP Protocol = "tcp"
	// ProtocolHTTP: HTTP/1.1 through an HTTP connection manager on both
	// sidecars (requests are parsed, routed and pooled).
	ProtocolHTTP Protocol = "http"
)

// Service is a port of the mesh's service registry: every sidecar of the
// node gets outbound listeners and a cluster for it, and inbound filter
// chains for it (every pod is an endpoint of every service). Destinations are pod addresses
// (as for a headless service); connections to a port the registry does not
// list take Istio's passthrough path (plain TCP, no mutual TLS).
type Service struct {
	Name     string // host name part; "svc-PORT" if empty
	Port     uint16
	Protocol Protocol
}

// DefaultServices is the registry of a node created without Services: the
// simulator's app and the benchmark's servers, with their protocols
// declared as an Istio user declares them (port names tcp-*, http-*), so
// that the HTTP inspector does not wait on server-first or binary
// protocols.
var DefaultServices = []Service{
	{Name: "app", Port: 8080, Protocol: ProtocolTCP},
	{Name: "iperf3", Port: 5201, Protocol: ProtocolTCP},
	{Name: "sockperf", Port: 11111, Protocol: ProtocolTCP},
	{Name: "redis", Port: 6379, Protocol: ProtocolTCP},
	{Name: "nginx", Port: 18080, Protocol: ProtocolHTTP},
	{Name: "fortio", Port: 18081, Protocol: ProtocolHTTP},
	{Name: "pool", Port: 9090, Protocol: ProtocolTCP}, // the e2e tests' keep-alive pools
}

// host is the service's fully qualified name, as the outbound cluster's
// name and SNI carry it.
func (s Service) host() string {
	name := s.Name
	if name == "" {
		name = "svc-" + strconv.Itoa(int(s.Port))
	}
	return name + "." + MeshNamespace + ".svc." + TrustDomain
}

// Istio's sidecar ports besides 15001 and 15006.
const (
	EnvoyAdminPort = 15000 // admin, on 127.0.0.1 only
	EnvoyStatsPort = 15090 // Prometheus stats, on every address
)

// ALPN values of the sidecar-to-sidecar hop, as istiod sets them with
// metadata exchange and the ALPN filter off (upstream Envoy has neither):
// the client offers "istio" (pilot/pkg/networking/util ALPNInMesh); the
// inbound mTLS chains accept any of Istio's in-mesh values
// (listener.go); the server offers h2 and http/1.1 (BuildInboundTLS).
var (
	alpnClient     = []string{"istio"}
	alpnInMesh     = []string{"istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2"}
	alpnInMeshHTTP = []string{"istio-http/1.0", "istio-http/1.1", "istio-h2"}
	alpnInMeshTCP  = []string{"istio-peer-exchange", "istio"}
	alpnServer     = []string{"h2", "http/1.1"}
)

// inboundCiphers are the cipher suites Istio's inbound TLS allows (TLS 1.2;
// TLS 1.3 suites are fixed).
var inboundCiphers = []string{"ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
	"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-GCM-SHA256"}

// maxThreshold is what Istio sets every circuit-breaker threshold to
// (effectively unlimited), instead of Envoy's defaults of 1024.
const maxThreshold = 4294967295

// envoyInput is what one sidecar's configuration depends on.
type envoyInput struct {
	Pod      string
	IPv4     netip.Addr
	IPv6     netip.Addr // invalid for an IPv4-only pod
	Services []Service
	Certs    workloadFiles
	LDS      string // the listeners' file (xDS from a file)
}

// meshEndpoint is a pod with an Envoy sidecar, as the registry knows it:
// its addresses get mutual TLS (Istio's tlsMode=istio endpoints).
type meshEndpoint struct {
	Pod        string
	IPv4, IPv6 netip.Addr
}

type obj = map[string]any

// envoyBootstrap returns the bootstrap of a sidecar: clusters and secrets
// as static resources, listeners from the LDS file that the node rewrites
// as pods come and go ([envoyListeners]), as istiod pushes them over xDS
// (docs/envoy.md says what is mirrored and what is left out).
func envoyBootstrap(in envoyInput) obj {
	clusters := []any{
		passthroughCluster("PassthroughCluster", false),
		passthroughCluster("InboundPassthroughCluster", true),
		obj{"name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "10s"},
		staticCluster("prometheus_stats", "127.0.0.1", EnvoyAdminPort),
	}
	for _, s := range in.Services {
		clusters = append(clusters, outboundCluster(s), inboundCluster(s.Port))
	}
	node := "sidecar~" + in.IPv4.String() + "~" + in.Pod + "." + MeshNamespace + "~" + MeshNamespace + ".svc." + TrustDomain
	return obj{
		"node":  obj{"id": node, "cluster": in.Pod + "." + MeshNamespace},
		"admin": obj{"address": sockAddr("127.0.0.1", EnvoyAdminPort)},
		"static_resources": obj{
			"clusters": clusters,
			"secrets": []any{
				obj{"name": "default", "tls_certificate": obj{
					"certificate_chain": obj{"filename": in.Certs.Chain}, "private_key": obj{"filename": in.Certs.Key}}},
				obj{"name": "ROOTCA", "validation_context": obj{"trusted_ca": obj{"filename": in.Certs.Root}}},
			},
		},
		"dynamic_resources": obj{"lds_config": obj{
			"resource_api_version": "V3",
			"path_config_source":   obj{"path": in.LDS, "watched_directory": obj{"path": filepath.Dir(in.LDS)}},
		}},
		// Istio's bootstrap lifts Envoy's connection limit (and with it the
		// warning of an unlimited overload manager).
		"overload_manager": obj{"resource_monitors": []any{obj{
			"name": "envoy.resource_monitors.global_downstream_max_connections",
			"typed_config": obj{
				"@type":                             "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
				"max_active_downstream_connections": 2147483647,
			},
		}}},
	}
}

// envoyListeners returns the sidecar's listeners as an LDS response:
// virtualOutbound, virtualInbound, the stats listener and the outbound
// listeners of the services: for a TCP port one per meshed pod
// (PODIP_PORT, as istiod builds them for a headless service), for an HTTP
// port one shared 0.0.0.0_PORT.
func envoyListeners(in envoyInput, mesh []meshEndpoint, version int) obj {
	listeners := []any{virtualOutbound(), virtualInbound(in), statsListener()}
	for _, s := range in.Services {
		if s.Protocol == ProtocolHTTP {
			listeners = append(listeners, outboundHTTPListener(s, mesh))
			continue
		}
		for _, e := range mesh {
			listeners = append(listeners, outboundTCPListener(s, e))
		}
	}
	for i, l := range listeners {
		l.(obj)["@type"] = "type.googleapis.com/envoy.config.listener.v3.Listener"
		listeners[i] = l
	}
	return obj{"version_info": strconv.Itoa(version), "resources": listeners}
}

func sockAddr(ip string, port int) obj {
	return obj{"socket_address": obj{"address": ip, "port_value": port}}
}

// dualStack gives a listener on 0.0.0.0:port its [::]:port twin, as Istio
// does for dual-stack pods.
func dualStack(l obj, port int) obj {
	l["address"] = sockAddr("0.0.0.0", port)
	l["additional_addresses"] = []any{obj{"address": sockAddr("::", port)}}
	return l
}

func tcpProxy(statPrefix, cluster string) obj {
	return obj{"name": "envoy.filters.network.tcp_proxy", "typed_config": obj{
		"@type":       "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
		"stat_prefix": statPrefix, "cluster": cluster,
	}}
}

// virtualOutbound is listener 15001: it only hands each redirected
// connection to the listener of its original destination (use_original_dst);
// what no listener claims goes to PassthroughCluster, and connections to
// 15001 itself to the black hole (a loop).
func virtualOutbound() obj {
	return dualStack(obj{
		"name": "virtualOutbound", "use_original_dst": true, "traffic_direction": "OUTBOUND",
		"filter_chains": []any{obj{
			"name":               "virtualOutbound-blackhole",
			"filter_chain_match": obj{"destination_port": OutboundPort},
			"filters":            []any{tcpProxy("BlackHoleCluster", "BlackHoleCluster")},
		}},
		"default_filter_chain": obj{"name": "virtualOutbound-catchall-tcp",
			"filters": []any{tcpProxy("PassthroughCluster", "PassthroughCluster")}},
	}, OutboundPort)
}

// outboundTCPListener is a TCP service's listener for one meshed pod
// (PODIP_PORT, bind_to_port false: virtualOutbound hands it the
// connections whose original destination it is), proxied to the service's
// cluster over mutual TLS. Destinations without a listener (pods without
// an Envoy sidecar, ports not in the registry) take virtualOutbound's
// passthrough in plain text, as with Istio's auto mTLS.
func outboundTCPListener(s Service, e meshEndpoint) obj {
	cluster := outboundClusterName(s)
	port := int(s.Port)
	addrs := []netip.Addr{e.IPv4, e.IPv6}
	if !e.IPv4.IsValid() {
		addrs = addrs[1:]
	}
	l := obj{
		"name": addrs[0].String() + "_" + strconv.Itoa(port), "address": sockAddr(addrs[0].String(), port),
		"bind_to_port": false, "traffic_direction": "OUTBOUND",
		"filter_chains": []any{obj{"name": cluster, "filters": []any{tcpProxy(cluster, cluster)}}},
	}
	if len(addrs) == 2 && addrs[1].IsValid() {
		l["additional_addresses"] = []any{obj{"address": sockAddr(addrs[1].String(), port)}}
	}
	return l
}

// outboundHTTPListener is an HTTP service's listener 0.0.0.0_PORT: a
// filter chain per meshed pod routes its requests to the service's
// cluster (mutual TLS); other destinations pass through. (istiod uses one
// chain and per-endpoint TLS metadata, which an ORIGINAL_DST cluster
// cannot carry; one chain per pod also lets the node add and remove pods
// without touching the chains of live connections.)
func outboundHTTPListener(s Service, mesh []meshEndpoint) obj {
	name := "0.0.0.0_" + strconv.Itoa(int(s.Port))
	cluster := outboundClusterName(s)
	var chains []any
	for _, e := range mesh {
		var ranges []any
		for _, a := range []netip.Addr{e.IPv4, e.IPv6} {
			if a.IsValid() {
				ranges = append(ranges, obj{"address_prefix": a.String(), "prefix_len": a.BitLen()})
			}
		}
		chains = append(chains, obj{
			"name":               cluster + "|" + e.Pod,
			"filter_chain_match": obj{"prefix_ranges": ranges},
			"filters":            []any{httpConnectionManager("outbound_"+name, cluster, false)},
		})
	}
	return dualStack(obj{
		"name": name, "bind_to_port": false, "traffic_direction": "OUTBOUND",
		"filter_chains": chains,
		"default_filter_chain": obj{"name": "PassthroughFilterChain",
			"filters": []any{tcpProxy("PassthroughCluster", "PassthroughCluster")}},
	}, int(s.Port))
}

// virtualInbound is listener 15006: the original destination restored,
// TLS and HTTP sniffed by listener filters that peek at the first bytes
// (the HTTP inspector only where no declared port says the protocol),
// then Istio's PERMISSIVE chains per app port and transport, else
// passthrough to the app.
func virtualInbound(in envoyInput) obj {
	chains := []any{obj{
		"name":               "virtualInbound-blackhole",
		"filter_chain_match": obj{"destination_port": InboundPort},
		"filters":            []any{tcpProxy("BlackHoleCluster", "BlackHoleCluster")},
	}}
	noHTTPInspector := []uint16{InboundPort}
	for _, s := range in.Services {
		noHTTPInspector = append(noHTTPInspector, s.Port)
		chains = append(chains, inboundChains(s)...)
	}
	chains = append(chains, inboundPassthroughChains()...)
	return dualStack(obj{
		"name": "virtualInbound", "traffic_direction": "INBOUND",
		"listener_filters": []any{
			listenerFilter("envoy.filters.listener.original_dst", "original_dst.v3.OriginalDst", nil, nil),
			listenerFilter("envoy.filters.listener.tls_inspector", "tls_inspector.v3.TlsInspector",
				obj{"initial_read_buffer_size": 512}, []uint16{InboundPort}),
			listenerFilter("envoy.filters.listener.http_inspector", "http_inspector.v3.HttpInspector", nil, noHTTPInspector),
		},
		"listener_filters_timeout":             "0s",
		"continue_on_listener_filters_timeout": true,
		"filter_chains":                        chains,
	}, InboundPort)
}

// listenerFilter is a listener filter, switched off for connections to
// the disabled destination ports.
func listenerFilter(name, typ string, cfg obj, disabled []uint16) obj {
	tc := obj{"@type": "type.googleapis.com/envoy.extensions.filters.listener." + typ}
	for k, v := range cfg {
		tc[k] = v
	}
	f := obj{"name": name, "typed_config": tc}
	var rules []any
	for _, p := range disabled {
		rules = append(rules, obj{"destination_port_range": obj{"start": p, "end": int(p) + 1}})
	}
	switch len(rules) {
	case 0:
	case 1:
		f["filter_disabled"] = rules[0]
	default:
		f["filter_disabled"] = obj{"or_match": obj{"rules": rules}}
	}
	return f
}

// inboundChains are Istio's PERMISSIVE chains of an app port, all named
// 0.0.0.0_PORT: mutual TLS with an in-mesh ALPN; for TCP also TLS the
// app terminates itself (no ALPN match, passed through); plain text.
func inboundChains(s Service) []any {
	port := strconv.Itoa(int(s.Port))
	name, cluster := "0.0.0.0_"+port, "inbound|"+port+"||"
	filter := tcpProxy(cluster, cluster)
	if s.Protocol == ProtocolHTTP {
		filter = httpConnectionManager("inbound_"+name, cluster, true)
	}
	chains := []any{obj{
		"name": name,
		"filter_chain_match": obj{"destination_port": s.Port, "transport_protocol": "tls",
			"application_protocols": alpnInMesh},
		"transport_socket": downstreamTLS(),
		"filters":          []any{filter},
	}}
	if s.Protocol == ProtocolTCP {
		chains = append(chains, obj{
			"name":               name,
			"filter_chain_match": obj{"destination_port": s.Port, "transport_protocol": "tls"},
			"filters":            []any{filter},
		})
	}
	return append(chains, obj{
		"name":               name,
		"filter_chain_match": obj{"destination_port": s.Port, "transport_protocol": "raw_buffer"},
		"filters":            []any{filter},
	})
}

// inboundPassthroughChains take connections to ports without a chain of
// their own to the app (InboundPassthroughCluster): HTTP and TCP, over
// mutual TLS or plain text, and TLS the app terminates.
func inboundPassthroughChains() []any {
	const cluster = "InboundPassthroughCluster"
	httpFilter := func() []any { return []any{httpConnectionManager(cluster, cluster, true)} }
	tcp := []any{tcpProxy(cluster, cluster)}
	return []any{
		obj{"name": "virtualInbound-catchall-http",
			"filter_chain_match": obj{"transport_protocol": "tls", "application_protocols": alpnInMeshHTTP},
			"transport_socket":   downstreamTLS(), "filters": httpFilter()},
		obj{"name": "virtualInbound-catchall-http",
			"filter_chain_match": obj{"transport_protocol": "raw_buffer", "application_protocols": []string{"http/1.1", "h2c"}},
			"filters":            httpFilter()},
		obj{"name": "virtualInbound",
			"filter_chain_match": obj{"transport_protocol": "tls", "application_protocols": alpnInMeshTCP},
			"transport_socket":   downstreamTLS(), "filters": tcp},
		obj{"name": "virtualInbound", "filter_chain_match": obj{"transport_protocol": "raw_buffer"}, "filters": tcp},
		obj{"name": "virtualInbound", "filter_chain_match": obj{"transport_protocol": "tls"}, "filters": tcp},
	}
}

// commonTLS is the certificate and validation part of both TLS contexts:
// the workload certificate "default", the root "ROOTCA" and the SANs the
// peer must present.
func commonTLS(alpn []string, params obj, san obj) obj {
	return obj{
		"tls_params":                         params,
		"alpn_protocols":                     alpn,
		"tls_certificate_sds_secret_configs": []any{obj{"name": "default"}},
		"combined_validation_context": obj{
			"default_validation_context":           obj{"match_typed_subject_alt_names": []any{obj{"san_type": "URI", "matcher": san}}},
			"validation_context_sds_secret_config": obj{"name": "ROOTCA"},
		},
	}
}

// downstreamTLS is the inbound side: client certificates required, any
// identity of the trust domain accepted.
func downstreamTLS() obj {
	params := obj{"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3",
		"cipher_suites": inboundCiphers}
	return obj{"name": "envoy.transport_sockets.tls", "typed_config": obj{
		"@type":                      "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
		"common_tls_context":         commonTLS(alpnServer, params, obj{"prefix": "spiffe://" + TrustDomain + "/"}),
		"require_client_certificate": true,
	}}
}

// upstreamTLS is the outbound side towards a sidecar: Istio's SNI and
// ALPN, and exactly the service's identity.
func upstreamTLS(s Service) obj {
	params := obj{"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"}
	return obj{"name": "envoy.transport_sockets.tls", "typed_config": obj{
		"@type":              "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
		"common_tls_context": commonTLS(alpnClient, params, obj{"exact": SPIFFEID}),
		"sni":                "outbound_." + strconv.Itoa(int(s.Port)) + "_._." + s.host(),
	}}
}

func outboundClusterName(s Service) string {
	return "outbound|" + strconv.Itoa(int(s.Port)) + "||" + s.host()
}

// circuitBreakers are Istio's defaults: no limit.
func circuitBreakers() obj {
	return obj{"thresholds": []any{obj{
		"max_connections": maxThreshold, "max_pending_requests": maxThreshold,
		"max_requests": maxThreshold, "max_retries": maxThreshold, "track_remaining": true,
	}}}
}

// outboundCluster reaches the service's pods by their address
// (ORIGINAL_DST, as for a headless service) over mutual TLS.
func outboundCluster(s Service) obj {
	c := obj{
		"name": outboundClusterName(s), "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
		"connect_timeout": "10s", "circuit_breakers": circuitBreakers(),
		"transport_socket": upstreamTLS(s),
	}
	return c
}

// inboundCluster reaches the local app at the original destination, from
// 127.0.0.6 (or ::6), which Istio's rules let through un-redirected.
func inboundCluster(port uint16) obj {
	c := passthroughCluster("inbound|"+strconv.Itoa(int(port))+"||", true)
	return c
}

// passthroughCluster connects to the original destination; inbound ones
// bind the sources Istio's rules exempt.
func passthroughCluster(name string, inbound bool) obj {
	c := obj{
		"name": name, "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
		"connect_timeout": "10s", "circuit_breakers": circuitBreakers(),
	}
	if inbound {
		c["upstream_bind_config"] = obj{
			"source_address":         obj{"address": InboundSourceV4.String(), "port_value": 0},
			"extra_source_addresses": []any{obj{"address": obj{"address": InboundSourceV6.String(), "port_value": 0}}},
		}
	}
	return c
}

func staticCluster(name, ip string, port int) obj {
	return obj{
		"name": name, "type": "STATIC", "connect_timeout": "10s",
		"load_assignment": obj{"cluster_name": name, "endpoints": []any{obj{"lb_endpoints": []any{
			obj{"endpoint": obj{"address": sockAddr(ip, port)}},
		}}}},
	}
}

// httpConnectionManager routes every request to cluster with no route
// timeout, as Istio's default; inbound it also forwards the client's
// identity (x-forwarded-client-cert).
func httpConnectionManager(statPrefix, cluster string, inbound bool) obj {
	route := obj{"cluster": cluster, "timeout": "0s", "max_grpc_timeout": "0s"}
	if inbound {
		route["max_stream_duration"] = obj{"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"}
		route["retry_policy"] = obj{"retry_on": "reset-before-request", "num_retries": 2}
	} else {
		route["retry_policy"] = obj{
			"retry_on":    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
			"num_retries": 2, "host_selection_retry_max_attempts": 5,
			"retry_host_predicate": []any{obj{"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": obj{
				"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}},
		}
	}
	hcm := obj{
		"@type":              "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
		"stat_prefix":        statPrefix,
		"use_remote_address": false, "normalize_path": true,
		"path_with_escaped_slashes_action": "KEEP_UNCHANGED",
		"stream_idle_timeout":              "0s",
		"route_config": obj{"name": cluster, "validate_clusters": false, "virtual_hosts": []any{obj{
			"name": cluster, "domains": []any{"*"},
			"routes": []any{obj{
				"match": obj{"prefix": "/"},
				"route": route,
			}},
		}}},
		"http_filters": []any{
			httpFilter("envoy.filters.http.grpc_stats", "grpc_stats.v3.FilterConfig", obj{"emit_filter_state": true, "stats_for_all_methods": false}),
			httpFilter("envoy.filters.http.fault", "fault.v3.HTTPFault", nil),
			httpFilter("envoy.filters.http.cors", "cors.v3.Cors", nil),
			httpFilter("envoy.filters.http.router", "router.v3.Router", nil),
		},
		"upgrade_configs": []any{obj{"upgrade_type": "websocket"}},
	}
	if inbound {
		hcm["forward_client_cert_details"] = "APPEND_FORWARD"
		hcm["set_current_client_cert_details"] = obj{"subject": true, "dns": true, "uri": true}
		hcm["server_name"] = "istio-envoy"
	}
	return obj{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
}

func httpFilter(name, typ string, cfg obj) obj {
	tc := obj{"@type": "type.googleapis.com/envoy.extensions.filters.http." + typ}
	for k, v := range cfg {
		tc[k] = v
	}
	return obj{"name": name, "typed_config": tc}
}

// statsListener serves Envoy's Prometheus stats on 15090 (Istio's
// bootstrap: /stats/prometheus routed to the admin port).
func statsListener() obj {
	return obj{
		"name": "0.0.0.0_" + strconv.Itoa(EnvoyStatsPort), "address": sockAddr("0.0.0.0", EnvoyStatsPort),
		"ignore_global_conn_limit": true, "bypass_overload_manager": true,
		"filter_chains": []any{obj{"filters": []any{obj{
			"name": "envoy.filters.network.http_connection_manager",
			"typed_config": obj{
				"@type":       "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
				"stat_prefix": "stats", "stream_idle_timeout": "0s",
				"route_config": obj{"virtual_hosts": []any{obj{"name": "backend", "domains": []any{"*"},
					"routes": []any{obj{"match": obj{"prefix": "/stats/prometheus"}, "route": obj{"cluster": "prometheus_stats"}}}}}},
				"http_filters": []any{obj{"name": "envoy.filters.http.router", "typed_config": obj{
					"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}},
			},
		}}}},
	}
}

// validate checks the input before a bootstrap is written.
func (in envoyInput) validate() error {
	seen := map[uint16]bool{}
	for _, s := range in.Services {
		switch {
		case s.Port == 0 || s.Port == OutboundPort || s.Port == InboundPort || s.Port == EnvoyAdminPort || s.Port == EnvoyStatsPort:
			return fmt.Errorf("service %q: port %d is not a service port", s.Name, s.Port)
		case s.Protocol != ProtocolTCP && s.Protocol != ProtocolHTTP:
			return fmt.Errorf("service %q: protocol %q is neither %q nor %q", s.Name, s.Protocol, ProtocolTCP, ProtocolHTTP)
		case seen[s.Port]:
			return fmt.Errorf("service %q: port %d listed twice", s.Name, s.Port)
		}
		seen[s.Port] = true
	}
	return nil
}
