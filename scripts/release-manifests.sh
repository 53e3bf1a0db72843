#!/usr/bin/env bash
# Release manifests: the kustomize and Helm renderings of manifests/ and the
# packaged chart, the image referenced as IMAGE:VERSION@DIGEST, into OUT
# (make release-manifests; package manifests/render does the rendering).
#
#   VERSION  the release, a semantic version (v1.2.3)
#   IMAGE    the image repository, registry/mesh-accel (a tag is dropped)
#   DIGEST   sha256:... of the image as pushed (buildah push --digestfile);
#            when empty, the digest of the local image IMAGE:VERSION that
#            `make image IMAGE=registry/mesh-accel:VERSION` built
#   OUT      the output folder (bin/release)
set -euo pipefail

GO=${GO:-go}
OUT=${OUT:-bin/release}
: "${VERSION:?VERSION=v1.2.3 names the release}"
: "${IMAGE:?IMAGE=registry/mesh-accel names the image repository}"

# registry:5000/mesh-accel:tag -> registry:5000/mesh-accel (a colon after the
# last slash is a tag; one before it is a port).
repo=${IMAGE%@*}
last=${repo##*/}
if [[ $last == *:* ]]; then
	repo=${repo%:*}
fi

digest=${DIGEST:-}
if [[ -z $digest ]]; then
	command -v buildah >/dev/null || { echo "release-manifests: no DIGEST and no buildah to read it from $repo:$VERSION" >&2; exit 1; }
	digest=$(buildah inspect --type image --format '{{.FromImageDigest}}' "$repo:$VERSION") || {
		echo "release-manifests: no local image $repo:$VERSION (make image IMAGE=$repo:$VERSION VERSION=$VERSION), or pass DIGEST=" >&2
		exit 1
	}
	echo "release-manifests: digest $digest of the local image $repo:$VERSION; a registry may store another one after push (use DIGEST from buildah push --digestfile)" >&2
fi

exec "$GO" run ./manifests/cmd/mesh-accel-manifests --version "$VERSION" --image "$repo" --digest "$digest" --out "$OUT"
