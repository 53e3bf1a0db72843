package install

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/internal/testenv"
)

// imageFiles are the binaries the image holds, by path in the image, and
// the built binary each is.
var imageFiles = map[string]string{
	"/mesh-accel-installer":      "mesh-accel-installer",
	"/mesh-accelctl":             "mesh-accelctl",
	"/opt/mesh-accel/mesh-accel": "mesh-accel",
}

// buildah runs buildah on its own storage under root, so that the test
// leaves nothing in the machine's image store.
type buildah struct {
	tb   testing.TB
	root string
}

func (b buildah) run(args ...string) string {
	b.tb.Helper()
	full := append([]string{"--root", filepath.Join(b.root, "storage"), "--runroot", filepath.Join(b.root, "run"),
		"--storage-driver", "vfs"}, args...)
	cmd := exec.Command("buildah", full...)
	cmd.Env = append(os.Environ(), "BUILDAH_ISOLATION=chroot", "TMPDIR="+b.root)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.tb.Fatalf("buildah %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return strings.TrimSpace(string(out))
}

// The Containerfile builds, with buildah, an image holding the installer,
// the plugin and the CLI as static binaries, and the installer in it runs
// --version. buildah run uses chroot isolation: it needs no OCI runtime,
// and crun refuses hybrid cgroup hosts such as ours.
func TestImage(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := exec.LookPath("buildah"); err != nil {
		testenv.Missing(t, "buildah (apt-get install buildah): %v", err)
	}
	bin := binaries(t)
	root := t.TempDir()
	ctxDir := filepath.Join(root, "context")
	for _, name := range imageFiles {
		writeFile(t, filepath.Join(ctxDir, name), readFile(t, filepath.Join(bin, name)), 0o755)
	}
	b := buildah{t, root}
	t.Cleanup(func() { unmountUnder(t, root) })
	removeNew(t, buildahMachineDirs...)
	const tag = "localhost/mesh-accel:install-test"
	b.run("build", "--quiet", "--layers=false", "-f", filepath.Join("..", "..", "Containerfile"), "-t", tag, ctxDir)
	if ep := b.run("inspect", "--type", "image", "--format", "{{.OCIv1.Config.Entrypoint}}", tag); ep != "[/mesh-accel-installer]" {
		t.Errorf("entrypoint %s", ep)
	}
	ctr := b.run("from", tag)
	t.Cleanup(func() { b.run("rm", ctr) })
	mnt := b.run("mount", ctr)
	for inImage, name := range imageFiles {
		p := filepath.Join(mnt, inImage)
		st, err := os.Stat(p)
		if err != nil {
			t.Errorf("image lacks %s: %v", inImage, err)
			continue
		}
		if st.Mode().Perm() != 0o755 || readFile(t, p) != readFile(t, filepath.Join(bin, name)) {
			t.Errorf("%s: mode %v, or not the built %s", inImage, st.Mode().Perm(), name)
		}
		if !static(t, p) {
			t.Errorf("%s is not a static binary (scratch has no libc)", inImage)
		}
	}
	b.run("umount", ctr)
	out := b.run("run", "--isolation", "chroot", ctr, "--", "/mesh-accel-installer", "--version")
	if out != "mesh-accel-installer "+testVersion {
		t.Errorf("--version in the image printed %q", out)
	}
}

// static reports whether the ELF file at p has no program interpreter.
func static(tb testing.TB, p string) bool {
	tb.Helper()
	f, err := elf.Open(p)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// buildahMachineDirs are where buildah keeps machine-wide state despite
// --root and --runroot: a blob-info cache and its network config folder.
var buildahMachineDirs = []string{"/var/lib/containers", "/run/containers"}

// removeNew removes, at the test's end, those of paths that do not exist
// now.
func removeNew(tb testing.TB, paths ...string) {
	for _, p := range paths {
		if !exists(p) {
			tb.Cleanup(func() { _ = os.RemoveAll(p) })
		}
	}
}

// unmountUnder detaches whatever buildah left mounted under root, so that
// the temporary folder can go.
func unmountUnder(tb testing.TB, root string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], root) {
			mounts = append(mounts, f[4])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(mounts[i], unix.MNT_DETACH); err != nil {
			tb.Logf("unmount %s: %v", mounts[i], err)
		}
	}
}
