package kubernetes_test

import (
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/streamgate/streamgate/config"
)

// The parts of the Kubernetes objects the test reads.
type (
	object struct {
		Kind     string   `yaml:"kind"`
		Metadata metadata `yaml:"metadata"`
		Data     map[string]string
		Spec     yaml.Node `yaml:"spec"`
		file     string
	}
	metadata struct {
		Name        string            `yaml:"name"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	}
	deploymentSpec struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata metadata `yaml:"metadata"`
			Spec     podSpec  `yaml:"spec"`
		} `yaml:"template"`
	}
	podSpec struct {
		TerminationGracePeriodSeconds *int        `yaml:"terminationGracePeriodSeconds"`
		Containers                    []container `yaml:"containers"`
		Volumes                       []struct {
			Name      string `yaml:"name"`
			ConfigMap *struct {
				Name  string `yaml:"name"`
				Items []struct {
					Key  string `yaml:"key"`
					Path string `yaml:"path"`
				} `yaml:"items"`
			} `yaml:"configMap"`
		} `yaml:"volumes"`
	}
	container struct {
		Name  string   `yaml:"name"`
		Image string   `yaml:"image"`
		Args  []string `yaml:"args"`
		Env   []struct {
			Name  string `yaml:"name"`
			Value string `yaml:"value"`
		} `yaml:"env"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		ReadinessProbe *probe `yaml:"readinessProbe"`
		LivenessProbe  *probe `yaml:"livenessProbe"`
		Lifecycle      struct {
			PreStop *struct {
				Sleep *struct {
					Seconds int `yaml:"seconds"`
				} `yaml:"sleep"`
				Exec *struct {
					Command []string `yaml:"command"`
				} `yaml:"exec"`
			} `yaml:"preStop"`
		} `yaml:"lifecycle"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
		} `yaml:"volumeMounts"`
	}
	probe struct {
		HTTPGet *struct {
			Path string    `yaml:"path"`
			Port yaml.Node `yaml:"port"`
		} `yaml:"httpGet"`
	}
	serviceSpec struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string    `yaml:"name"`
			Port       int       `yaml:"port"`
			TargetPort yaml.Node `yaml:"targetPort"`
		} `yaml:"ports"`
	}
	ingressSpec struct {
		Rules []struct {
			HTTP struct {
				Paths []struct {
					Backend struct {
						Service struct {
							Name string `yaml:"name"`
							Port struct {
								Name string `yaml:"name"`
							} `yaml:"port"`
						} `yaml:"service"`
					} `yaml:"backend"`
				} `yaml:"paths"`
			} `yaml:"http"`
		} `yaml:"rules"`
	}
)

// loadObjects parses every YAML document of every .yaml file here.
func loadObjects(t *testing.T) map[string]*object {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	objs := map[string]*object{}
	for _, f := range files {
		r, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(r)
		dec.KnownFields(false)
		for {
			var o object
			if err := dec.Decode(&o); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			o.file = f
			if objs[o.Kind] != nil {
				t.Fatalf("%s: a second %s; the test expects one of each", f, o.Kind)
			}
			objs[o.Kind] = &o
		}
		r.Close()
	}
	for _, kind := range []string{"ConfigMap", "Deployment", "Service", "Ingress"} {
		if objs[kind] == nil {
			t.Fatalf("no %s in %v", kind, files)
		}
	}
	return objs
}

func decodeSpec[T any](t *testing.T, o *object) T {
	t.Helper()
	var spec T
	if err := o.Spec.Decode(&spec); err != nil {
		t.Fatalf("%s %s spec: %v", o.file, o.Kind, err)
	}
	return spec
}

// TestManifestsAgreeWithConfig checks the sidecar manifests against the
// proxy.yaml their ConfigMap carries: the config is valid (with the
// container's environment applied), and the container args, ports, probes,
// termination timing, Service and Ingress agree with it.
func TestManifestsAgreeWithConfig(t *testing.T) {
	objs := loadObjects(t)
	cm := objs["ConfigMap"]
	dep := decodeSpec[deploymentSpec](t, objs["Deployment"])
	pod := dep.Template.Spec
	sg, app := findContainer(t, pod, "streamgate"), findContainer(t, pod, "app")

	// The config, as the container will load it.
	var env []string
	for _, e := range sg.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	cfg, warnings, err := config.Parse([]byte(cm.Data["proxy.yaml"]), "configmap.yaml:proxy.yaml", env)
	if err != nil {
		t.Fatalf("the ConfigMap's proxy.yaml is invalid:\n%v", err)
	}
	if len(warnings) > 0 {
		t.Errorf("warnings (unknown STREAMGATE_* variables?): %v", warnings)
	}

	t.Run("config file mounted where args point", func(t *testing.T) {
		if len(sg.Args) != 2 || sg.Args[0] != "-config" {
			t.Fatalf("args %q, want [-config FILE]", sg.Args)
		}
		if got := configPath(t, pod, sg, cm.Metadata.Name, "proxy.yaml"); got != sg.Args[1] {
			t.Errorf("the ConfigMap's proxy.yaml is mounted at %q, args say %q", got, sg.Args[1])
		}
	})

	t.Run("ports", func(t *testing.T) {
		if got, want := portNamed(t, sg, "http"), listenPort(t, cfg.Listen); got != want {
			t.Errorf("containerPort http %d, listen %q", got, cfg.Listen)
		}
		if got, want := portNamed(t, sg, "admin"), listenPort(t, cfg.Admin); got != want {
			t.Errorf("containerPort admin %d, admin %q", got, cfg.Admin)
		}
		if host, _, _ := net.SplitHostPort(cfg.Admin); host == "127.0.0.1" || host == "localhost" || host == "::1" {
			t.Errorf("admin %q is on loopback: the kubelet's probes connect to the pod IP", cfg.Admin)
		}
		u, err := url.Parse(cfg.Upstream)
		if err != nil {
			t.Fatal(err)
		}
		if got := portNamed(t, app, "app"); strconv.Itoa(got) != u.Port() || (u.Hostname() != "127.0.0.1" && u.Hostname() != "localhost") {
			t.Errorf("upstream %q, want the app container's port %d on loopback", cfg.Upstream, got)
		}
	})

	t.Run("probes on the admin port", func(t *testing.T) {
		checkProbe(t, sg, "readiness", sg.ReadinessProbe, "/readyz", listenPort(t, cfg.Admin))
		checkProbe(t, sg, "liveness", sg.LivenessProbe, "/healthz", listenPort(t, cfg.Admin))
	})

	t.Run("termination timing", func(t *testing.T) {
		if pod.TerminationGracePeriodSeconds == nil {
			t.Fatal("no terminationGracePeriodSeconds: the default 30s is shorter than the drain")
		}
		grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
		shutdown, delay := cfg.Timeouts.Shutdown.Std(), cfg.Timeouts.DrainDelay.Std()
		sgSleep, appSleep := preStopSleep(t, sg), preStopSleep(t, app)
		// drain_delay is spent inside shutdown; counting it again errs on
		// the safe side.
		if need := sgSleep + shutdown + delay; grace < need {
			t.Errorf("terminationGracePeriodSeconds %s < streamgate preStop %s + shutdown %s + drain_delay %s", grace, sgSleep, shutdown, delay)
		}
		if appSleep < sgSleep+shutdown {
			t.Errorf("the app's preStop sleep %s ends before streamgate's drain (preStop %s + shutdown %s): live connections would lose their upstream", appSleep, sgSleep, shutdown)
		}
		if grace <= appSleep {
			t.Errorf("terminationGracePeriodSeconds %s leaves the app no time after its preStop sleep %s", grace, appSleep)
		}
	})

	t.Run("service targets streamgate", func(t *testing.T) {
		svc := decodeSpec[serviceSpec](t, objs["Service"])
		for k, v := range svc.Selector {
			if dep.Template.Metadata.Labels[k] != v || dep.Selector.MatchLabels[k] != v {
				t.Errorf("service selector %s=%s does not match the pods", k, v)
			}
		}
		if len(svc.Ports) != 1 {
			t.Fatalf("service ports %+v: want only streamgate's", svc.Ports)
		}
		if got := resolvePort(t, sg, svc.Ports[0].TargetPort); got != listenPort(t, cfg.Listen) {
			t.Errorf("service targetPort %d, streamgate listens on %q", got, cfg.Listen)
		}
	})

	t.Run("ingress timeouts above pings", func(t *testing.T) {
		ing := objs["Ingress"]
		spec := decodeSpec[ingressSpec](t, ing)
		for _, r := range spec.Rules {
			for _, p := range r.HTTP.Paths {
				if b := p.Backend.Service; b.Name != objs["Service"].Metadata.Name || b.Port.Name != "http" {
					t.Errorf("ingress backend %+v, want service %s port http", b, objs["Service"].Metadata.Name)
				}
			}
		}
		for _, key := range []string{"proxy-read-timeout", "proxy-send-timeout"} {
			v := ing.Metadata.Annotations["nginx.ingress.kubernetes.io/"+key]
			secs, err := strconv.Atoi(v)
			if err != nil {
				t.Errorf("annotation %s = %q, want seconds", key, v)
				continue
			}
			timeout := time.Duration(secs) * time.Second
			if ping := cfg.WebSocket.PingInterval.Std(); ping == 0 || ping >= timeout {
				t.Errorf("websocket.ping_interval %s is not below ingress-nginx %s %s", ping, key, timeout)
			}
			if hb := cfg.SSE.Heartbeat.Std(); hb >= timeout {
				t.Errorf("sse.heartbeat %s is not below ingress-nginx %s %s", hb, key, timeout)
			}
		}
	})
}

func findContainer(t *testing.T, pod podSpec, name string) container {
	t.Helper()
	for _, c := range pod.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return container{}
}

// configPath is where key of ConfigMap cmName appears inside c.
func configPath(t *testing.T, pod podSpec, c container, cmName, key string) string {
	t.Helper()
	for _, v := range pod.Volumes {
		if v.ConfigMap == nil || v.ConfigMap.Name != cmName {
			continue
		}
		file := key
		if len(v.ConfigMap.Items) > 0 {
			file = ""
			for _, it := range v.ConfigMap.Items {
				if it.Key == key {
					file = it.Path
				}
			}
		}
		for _, m := range c.VolumeMounts {
			if m.Name == v.Name && file != "" {
				return path.Join(m.MountPath, file)
			}
		}
	}
	t.Fatalf("ConfigMap %s key %s is not mounted in container %s", cmName, key, c.Name)
	return ""
}

func portNamed(t *testing.T, c container, name string) int {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, name)
	return 0
}

// resolvePort returns a port given by number or by the name of one of c's ports.
func resolvePort(t *testing.T, c container, n yaml.Node) int {
	t.Helper()
	if p, err := strconv.Atoi(n.Value); err == nil {
		return p
	}
	return portNamed(t, c, n.Value)
}

func listenPort(t *testing.T, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	p, err2 := strconv.Atoi(port)
	if err != nil || err2 != nil {
		t.Fatalf("address %q has no port", addr)
	}
	return p
}

func checkProbe(t *testing.T, c container, kind string, p *probe, wantPath string, wantPort int) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s probe of %s: want httpGet %s", kind, c.Name, wantPath)
		return
	}
	if p.HTTPGet.Path != wantPath || resolvePort(t, c, p.HTTPGet.Port) != wantPort {
		t.Errorf("%s probe %s on port %s, want %s on %d", kind, p.HTTPGet.Path, p.HTTPGet.Port.Value, wantPath, wantPort)
	}
}

// preStopSleep is how long c's preStop hook sleeps: a sleep action, or an
// exec of sleep N; 0 without a hook.
func preStopSleep(t *testing.T, c container) time.Duration {
	t.Helper()
	h := c.Lifecycle.PreStop
	switch {
	case h == nil:
		return 0
	case h.Sleep != nil:
		return time.Duration(h.Sleep.Seconds) * time.Second
	case h.Exec != nil && len(h.Exec.Command) == 2 && h.Exec.Command[0] == "sleep":
		n, err := strconv.Atoi(strings.TrimSuffix(h.Exec.Command[1], "s"))
		if err == nil {
			return time.Duration(n) * time.Second
		}
	}
	t.Fatalf("container %s: a preStop hook the test cannot time", c.Name)
	return 0
}
