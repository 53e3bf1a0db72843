// Package manifests holds the Kubernetes objects that install mesh-accel
// (kubectl apply -k manifests/): see README.md in this folder. The files
// are embedded, so that tests and tools read exactly what users apply.
package manifests

import "embed"

// Files are the kustomization and the objects it lists.
//
//go:embed *.yaml
var Files embed.FS
