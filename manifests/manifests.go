// Package manifests holds the Kubernetes objects that install mesh-accel
// (kubectl apply -k manifests/): see README.md in this folder. The files
// are embedded, so that tests and tools read exactly what users apply.
package manifests

import "embed"

// Files are the kustomization and the objects it lists.
//
//go:embed *.yaml
var Files embed.FS

// Chart is the Helm chart, under chart/mesh-accel.
//
//go:embed all:chart
var Chart embed.FS

// Components are the kustomize components of each platform, under
// components/NAME.
//
//go:embed components
var Components embed.FS
