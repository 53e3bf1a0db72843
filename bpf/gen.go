package bpf

// The BPF objects are compiled by `make generate` with Debian 12's clang-14
// (pinned so that the committed objects are reproducible); CI regenerates
// them and fails when the committed files differ.
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -mcpu=v3 -g -Wall -Werror" -target bpfel -go-package bpf -type pod_config -type proxy_val -type helper_val -type sock_owner -type global_config -type counter -type sock_key -type endpoint_key -type rule -type capture_config -type capture_event -type limit -type helper_flag -type proxy_flag -type rule_flag -type pod_flag -type usage_val -type share_state -type usage_op -type usage_word -type usage_op_kind -type fill_kept mesh c/mesh_accel.c -- -I./c
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror" -target bpfel -output-dir internal/ruletest -go-package ruletest -type ruletest_case -type end ruletest c/ruletest.c -- -I./c
// The same data path without the capture code, for the benchmark only: it
// shows what an idle capture costs (Options.WithoutCapture). Its Go file is
// built with -tags meshbench only, so that the binaries nodes run embed one
// data path.
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -mcpu=v3 -g -Wall -Werror -DMESH_NO_CAPTURE" -target bpfel -tags meshbench -go-package bpf meshnocap c/mesh_accel.c -- -I./c
