// Package cgroupv2 finds the cgroup v2 hierarchy of this host and names cgroups
// by the ID the kernel gives them (the inode number of their directory).
//
// Real nodes mount cgroup v2 at /sys/fs/cgroup, hybrid hosts at
// /sys/fs/cgroup/unified; the mount is always discovered from
// /proc/self/mountinfo, never assumed.
package cgroupv2

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrNoCgroup2 is returned when no cgroup v2 hierarchy is mounted.
var ErrNoCgroup2 = errors.New("no cgroup v2 hierarchy mounted (cgroup v1 only?)")

// Mount returns the mount point of the cgroup v2 hierarchy.
func Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup v2 mount: %w", err)
	}
	defer f.Close()
	return parseMountinfo(f)
}

// parseMountinfo returns the first cgroup2 mount point listed in r, in the
// format of proc(5) mountinfo.
func parseMountinfo(r io.Reader) (string, error) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		fields := strings.Fields(s.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(fields) {
			continue
		}
		if fields[sep+1] == "cgroup2" {
			return unescapeMountPath(fields[4]), nil
		}
	}
	if err := s.Err(); err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	return "", ErrNoCgroup2
}

// unescapeMountPath undoes the octal escapes (\040 for space...) of mountinfo.
func unescapeMountPath(p string) string {
	if !strings.Contains(p, `\`) {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '\\' && i+3 < len(p) {
			var v byte
			ok := true
			for _, c := range p[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// ID returns the kernel's ID of the cgroup at path: the inode number of its
// directory, as bpf_get_current_cgroup_id() reports it.
func ID(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("cgroup id of %s: %w", path, err)
	}
	return st.Ino, nil
}

// IsCgroup2 reports whether path lies on a cgroup v2 file system.
func IsCgroup2(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.CGROUP2_SUPER_MAGIC
}

// Find returns the directories of the cgroups whose IDs are in ids, found
// by walking the cgroup v2 hierarchy mounted at root (a cgroup's ID is not
// a path: this is the only way from one to the other). IDs not found are
// absent from the result: their cgroups are gone.
func Find(root string, ids map[uint64]bool) (map[uint64]string, error) {
	found := make(map[uint64]string, len(ids))
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != root && errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && ids[st.Ino] {
			found[st.Ino] = p
			if len(found) == len(ids) {
				return filepath.SkipAll
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find cgroups under %s: %w", root, err)
	}
	return found, nil
}
