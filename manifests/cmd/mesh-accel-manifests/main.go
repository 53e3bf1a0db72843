// Command mesh-accel-manifests writes the manifests of a release (package
// render): scripts/release-manifests.sh runs it.
//
//	mesh-accel-manifests --version v1.2.3 --image registry/mesh-accel --digest sha256:... --out bin/release
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/mesh-accel/mesh-accel/manifests/render"
)

func main() {
	var img render.Image
	out := flag.String("out", "bin/release", "folder of the release files")
	flag.StringVar(&img.Tag, "version", "", "the release (v1.2.3): the image tag, the chart's version, the version label")
	flag.StringVar(&img.Repository, "image", "", "the image repository, without a tag (registry/mesh-accel)")
	flag.StringVar(&img.Digest, "digest", "", "the image's digest (sha256:...)")
	flag.Parse()
	files, err := render.WriteRelease(img, *out)
	for _, f := range files {
		fmt.Println(*out + "/" + f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mesh-accel-manifests:", err)
		os.Exit(1)
	}
}
