package bpf

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The licence the BPF sources declare is the one the repository ships:
// every file under c/ starts with the SPDX line LICENSE names, the
// programs' license section is GPL-compatible as the kernel wants, the
// texts are in LICENSES/, and the image's label says the same.
func TestLicenceDeclared(t *testing.T) {
	const spdx = "SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)"
	files, err := filepath.Glob(filepath.Join("c", "*.[ch]"))
	if err != nil || len(files) == 0 {
		t.Fatalf("BPF sources: %v, %v", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := bytes.Cut(b, []byte("\n"))
		if !strings.Contains(string(first), spdx) {
			t.Errorf("%s: first line %q, want the %q comment", f, first, spdx)
		}
		if bytes.Contains(b, []byte(`SEC("license")`)) && !bytes.Contains(b, []byte(`SEC("license") = "Dual BSD/GPL"`)) {
			t.Errorf("%s: license section is not \"Dual BSD/GPL\"", f)
		}
	}
	lic, err := os.ReadFile(filepath.Join("..", "LICENSE"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"(GPL-2.0-only OR BSD-2-Clause)", "BSD 2-Clause License"} {
		if !bytes.Contains(lic, []byte(want)) {
			t.Errorf("LICENSE does not say %q", want)
		}
	}
	for _, f := range []string{"GPL-2.0-only.txt", "BSD-2-Clause.txt"} {
		if _, err := os.Stat(filepath.Join("..", "LICENSES", f)); err != nil {
			t.Errorf("licence text: %v", err)
		}
	}
	cf, err := os.ReadFile(filepath.Join("..", "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(cf, []byte(`org.opencontainers.image.licenses="BSD-2-Clause AND (GPL-2.0-only OR BSD-2-Clause)"`)) {
		t.Error("the image's licences label does not match LICENSE")
	}
}
