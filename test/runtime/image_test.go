package runtime

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
	"github.com/mesh-accel/mesh-accel/test/cnichain"
)

// imageDirPrefix starts the name of the folder of a run's image (its
// storage, the Makefile's BIN), followed by the test process's pid.
const imageDirPrefix = "mesh-accel-runtime-image-"

// testVersion is the VERSION the image is built with.
const testVersion = "v0.0.0-runtime-test"

// repoRoot is the repository, from this package's folder.
const repoRoot = "../.."

// requireRuntime stops the test unless the machine can build the image
// and run it: root, buildah, runc, make, and the kernel's BPF features.
func requireRuntime(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	for _, tool := range []struct{ cmd, pkg string }{{"buildah", "buildah"}, {"runc", "runc"}, {"make", "make"}} {
		if _, err := exec.LookPath(tool.cmd); err != nil {
			testenv.Missing(t, "%s (apt-get install %s): %v", tool.cmd, tool.pkg, err)
		}
	}
	if err := bpf.CheckKernel(); err != nil {
		testenv.Missing(t, "%v", err)
	}
}

// image is the image `make image` built, in a buildah storage of its own
// (a storage.conf that CONTAINERS_STORAGE_CONF names), so that the test
// leaves nothing in the machine's image store.
type image struct {
	dir, ref string
	env      []string // buildah's environment
	plugins  string   // the reference CNI plugins, built
}

var built struct {
	once sync.Once
	img  *image
	err  error
}

// builtImage builds the image once per test run with the Makefile's own
// target (`make -o deps image`: the dependencies are the machine's, as
// `make test` installed them), and the reference CNI plugins the pods'
// chain needs. TestMain removes both.
func builtImage(t *testing.T) *image {
	t.Helper()
	built.once.Do(func() { built.img, built.err = buildImage() })
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.img
}

func buildImage() (*image, error) {
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", imageDirPrefix, os.Getpid()))
	if err != nil {
		return nil, err
	}
	img := &image{dir: dir, ref: "localhost/mesh-accel-runtime-test-" + cnichain.RandHex(4) + ":" + testVersion,
		plugins: filepath.Join(dir, "plugins")}
	conf := filepath.Join(dir, "storage.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n",
		filepath.Join(dir, "storage"), filepath.Join(dir, "run")), 0o644); err != nil {
		return img, err
	}
	img.env = append(os.Environ(), "CONTAINERS_STORAGE_CONF="+conf, "BUILDAH_ISOLATION=chroot", "TMPDIR="+dir)
	cmd := exec.Command("make", "-C", repoRoot, "-o", "deps", "image", "GO="+cnichain.GoTool(),
		"BIN="+filepath.Join(dir, "bin"), "IMAGE="+img.ref, "VERSION="+testVersion)
	cmd.Env = img.env
	if out, err := cmd.CombinedOutput(); err != nil {
		return img, fmt.Errorf("make image: %w\n%s", err, out)
	}
	// The primary CNI's plugins of the pods' chain, static as
	// cnichain.BuildPlugins builds them (the build cache serves both).
	cmd = exec.Command(cnichain.GoTool(), append([]string{"build", "-trimpath", "-ldflags", "-s -w", "-o", img.plugins + "/"},
		referencePlugins...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return img, fmt.Errorf("build the CNI plugins: %w\n%s", err, out)
	}
	return img, nil
}

// referencePlugins are the chain's plugins before mesh-accel, which the
// installer in the image installs itself.
var referencePlugins = []string{
	"github.com/containernetworking/plugins/plugins/main/loopback",
	"github.com/containernetworking/plugins/plugins/main/bridge",
	"github.com/containernetworking/plugins/plugins/ipam/host-local",
}

// buildah runs buildah on the image's storage.
func (img *image) buildah(args ...string) (string, error) {
	cmd := exec.Command("buildah", args...)
	cmd.Env = img.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("buildah %s: %w\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return strings.TrimSpace(string(out)), nil
}

// rootfs gives a new working container of the image and returns its root
// file system, removed at the test's end: each run starts from the image
// as a node pulls it.
func (img *image) rootfs(t *testing.T) string {
	t.Helper()
	name := "mesh-accel-runtime-" + cnichain.RandHex(4)
	if _, err := img.buildah("from", "--name", name, img.ref); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := img.buildah("rm", name); err != nil {
			t.Error(err)
		}
	})
	mnt, err := img.buildah("mount", name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = img.buildah("umount", name) })
	return mnt
}

// remove deletes the image and its storage (TestMain).
func (img *image) remove() {
	_, _ = img.buildah("rmi", "--all", "--force")
	os.RemoveAll(img.dir)
}

// buildahMachineDirs are where buildah keeps machine-wide state despite
// the storage configuration: a blob-info cache and its network config
// folder. TestMain removes those this run created.
var buildahMachineDirs = []string{"/var/lib/containers", "/run/containers"}
