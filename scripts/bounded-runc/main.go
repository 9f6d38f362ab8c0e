// bounded-runc: an OCI runtime shim for Docker hosts whose capability bounding set lacks
// capabilities that Docker asks for.
//
// Docker 20.10 gives a --privileged container every capability it knows of (moby/moby#42906);
// on a host whose bounding set lacks one (CAP_SYS_RESOURCE here), runc fails with
// "unable to apply caps: operation not permitted". containerd's CRI and podman use the
// current bounding set instead. This shim does the same for Docker: on `create`/`run` it
// edits the bundle's config.json, on `exec` the --process file, removing capabilities
// outside its own bounding set from every capability list, then execs the real runc with
// the same arguments. Nothing else is changed.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Set at build time (-ldflags "-X main.runc=/usr/sbin/runc").
var runc = "/usr/sbin/runc"

// Linux capability numbers 0..40 (include/uapi/linux/capability.h).
var capabilityNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// runc's global options that take a value (they come before the command).
var globalOptionsWithValue = map[string]bool{
	"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true,
}

func boundingSet() (map[string]bool, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if !strings.HasPrefix(line, "CapBnd:") {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "CapBnd:")), 16, 64)
		if err != nil {
			return nil, err
		}
		allowed := map[string]bool{}
		for number, name := range capabilityNames {
			if mask&(1<<uint(number)) != 0 {
				allowed[name] = true
			}
		}
		return allowed, nil
	}
	return nil, fmt.Errorf("no CapBnd line in /proc/self/status")
}

// optionValue finds `--name value`, `-short value` or `--name=value` in args.
func optionValue(args []string, long, short string) (string, bool) {
	for i, arg := range args {
		if (arg == long || arg == short) && i+1 < len(args) {
			return args[i+1], true
		}
		if strings.HasPrefix(arg, long+"=") {
			return strings.TrimPrefix(arg, long+"="), true
		}
	}
	return "", false
}

// command returns runc's command and the arguments after it.
func command(args []string) (string, []string) {
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if globalOptionsWithValue[arg] {
			i++
			continue
		}
		if strings.HasPrefix(arg, "-") {
			continue
		}
		return arg, args[i+1:]
	}
	return "", nil
}

func trim(capabilities map[string]any, allowed map[string]bool) {
	for set, value := range capabilities {
		names, ok := value.([]any)
		if !ok {
			continue
		}
		kept := []any{}
		for _, name := range names {
			if text, ok := name.(string); ok && !allowed[text] {
				continue
			}
			kept = append(kept, name)
		}
		capabilities[set] = kept
	}
}

// trimFile rewrites a process spec (exec) or a whole config.json (create/run) in place.
func trimFile(path string, wholeConfig bool, allowed map[string]bool) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var document map[string]any
	if err := json.Unmarshal(data, &document); err != nil {
		return err
	}
	process := document
	if wholeConfig {
		inner, ok := document["process"].(map[string]any)
		if !ok {
			return nil
		}
		process = inner
	}
	capabilities, ok := process["capabilities"].(map[string]any)
	if !ok {
		return nil
	}
	trim(capabilities, allowed)
	out, err := json.Marshal(document)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, info.Mode().Perm())
}

func main() {
	args := os.Args[1:]
	allowed, err := boundingSet()
	if err == nil {
		name, rest := command(args)
		switch name {
		case "create", "run":
			bundle, found := optionValue(rest, "--bundle", "-b")
			if !found {
				bundle, _ = os.Getwd()
			}
			err = trimFile(filepath.Join(bundle, "config.json"), true, allowed)
		case "exec":
			if process, found := optionValue(rest, "--process", "-p"); found {
				err = trimFile(process, false, allowed)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bounded-runc: %v\n", err)
		os.Exit(1)
	}
	if err := syscall.Exec(runc, append([]string{runc}, args...), os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "bounded-runc: exec %s: %v\n", runc, err)
		os.Exit(1)
	}
}
