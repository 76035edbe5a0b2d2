package archtest

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/vswitch/vswitch"

type pkg struct {
	path    string
	doc     string
	imports []string
}

// listPackages asks the go tool for every package of the module and its
// non-test imports.
func listPackages(t *testing.T) map[string]pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}\t{{.Doc}}\t{{join .Imports \" \"}}", module+"/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]pkg{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		pkgs[f[0]] = pkg{path: f[0], doc: f[1], imports: strings.Fields(f[2])}
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for path, p := range listPackages(t) {
		if p.doc == "" {
			t.Errorf("package %s has no package doc comment (// Package %s ...)", path, path[strings.LastIndex(path, "/")+1:])
		}
	}
}

// rules: a package (and every package of this module it imports, directly
// or not) must not import what the rule forbids.
var rules = []struct {
	pkg string // a package, or with a trailing "/" every package below

	forbidden []string // import paths; a trailing "/" forbids the whole tree
	why       string
}{
	{
		pkg:       module + "/internal/l2",
		forbidden: []string{"syscall", "golang.org/x/sys/", "os/exec", module + "/internal/port/"},
		why:       "the switch core decides and backends do I/O: l2 must not make system calls or know a backend",
	},
	{
		pkg:       module + "/internal/port/",
		forbidden: []string{module + "/internal/l2"},
		why:       "backends satisfy l2.Port without importing the core (only their tests may)",
	},
	{
		pkg:       module + "/internal/vlan",
		forbidden: []string{"syscall", "golang.org/x/sys/", "os", "net", module + "/internal/l2"},
		why:       "the 802.1Q model is pure, shared by the core, the configuration and the CLI",
	},
	{
		pkg:       module + "/internal/config",
		forbidden: []string{"syscall", "golang.org/x/sys/", "os", "net", module + "/internal/l2", module + "/internal/port/"},
		why:       "the desired state is pure data shared with the CLI, which must not reach the data plane",
	},
	{
		pkg:       module + "/internal/cli",
		forbidden: []string{module + "/internal/l2", module + "/internal/daemon", module + "/internal/port/", module + "/internal/store", module + "/internal/apiserver"},
		why:       "the CLI talks to the daemon through the API, never to frames, ports or the store",
	},
	{
		pkg:       module + "/cmd/vswitchctl",
		forbidden: []string{module + "/internal/l2", module + "/internal/daemon", module + "/internal/port/", module + "/internal/store"},
		why:       "vswitchctl is a thin main over the CLI",
	},
	{
		pkg:       module + "/internal/kdp",
		forbidden: []string{module + "/internal/l2", module + "/internal/port/"},
		why:       "the kernel data path is the core's peer, not built on it: the core is only the reference its tests compare with",
	},
	{
		pkg:       module + "/internal/cli",
		forbidden: []string{module + "/internal/kdp"},
		why:       "the CLI never reaches the data plane",
	},
	{
		pkg:       module + "/internal/offload",
		forbidden: []string{"syscall", "golang.org/x/sys/", "os", "net"},
		why:       "offload is pure frame arithmetic, shared by backends: no I/O",
	},
}

func forbids(rule []string, imp string) bool {
	for _, f := range rule {
		if imp == f || strings.HasSuffix(f, "/") && strings.HasPrefix(imp, f) || imp+"/" == f {
			return true
		}
	}
	return false
}

func TestLayering(t *testing.T) {
	pkgs := listPackages(t)
	for _, r := range rules {
		var todo []string
		for path := range pkgs {
			if path == r.pkg || strings.HasSuffix(r.pkg, "/") && strings.HasPrefix(path, r.pkg) {
				todo = append(todo, path)
			}
		}
		if len(todo) == 0 {
			t.Errorf("rule for %s: no such package", r.pkg)
			continue
		}
		// Walk the module-internal import closure of the packages.
		seen := map[string]bool{}
		for len(todo) > 0 {
			cur := todo[len(todo)-1]
			todo = todo[:len(todo)-1]
			if seen[cur] {
				continue
			}
			seen[cur] = true
			for _, imp := range pkgs[cur].imports {
				if forbids(r.forbidden, imp) {
					t.Errorf("%s imports %s (reached from %s): %s", cur, imp, r.pkg, r.why)
				}
				if strings.HasPrefix(imp, module+"/") {
					todo = append(todo, imp)
				}
			}
		}
	}
}

func TestForbidsMatchesTrees(t *testing.T) {
	rule := []string{"syscall", "golang.org/x/sys/", module + "/internal/port/"}
	for imp, want := range map[string]bool{
		"syscall": true, "golang.org/x/sys/unix": true, "golang.org/x/sys": true,
		module + "/internal/port/mem": true, module + "/internal/frame": false, "sync": false, "syscallx": false,
	} {
		if forbids(rule, imp) != want {
			t.Errorf("forbids(%q) = %v, want %v", imp, !want, want)
		}
	}
}
