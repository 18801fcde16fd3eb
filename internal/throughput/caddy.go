package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// siteNames are the sites of the Caddyfile, each on its own port:
//
//	plain      respond alone (the baseline)
//	plain2     the same again (the A/A comparison: the measurement's own spread)
//	gated      mcp_token, then respond
//	rules      mcp_token with method and tool rules, then respond
//	body       vars body {http.request.body} (reads the body), then respond
//	sdk        reverse_proxy to a Go SDK MCP server (stateless, JSON answers)
//	sdk-rules  mcp_token with the rules, then that reverse_proxy
var siteNames = []string{"plain", "plain2", "gated", "rules", "body", "sdk", "sdk-rules"}

type siteParams struct {
	issuer, audience, jwksURL, sdkAddr string
}

// siteBody is the Caddyfile body of a site.
func siteBody(name string, p siteParams) string {
	token := fmt.Sprintf("\tmcp_token /mcp* {\n\t\tissuer %s\n\t\taudience %s\n\t\tjwks_uri %s\n", p.issuer, p.audience, p.jwksURL)
	const rules = "\t\tmethod_scopes tools/call mcp:read\n\t\ttool_scopes deploy deploy:write\n"
	const respond = "\trespond /mcp* \"ok\" 200\n"
	proxy := fmt.Sprintf("\treverse_proxy /mcp* %s {\n\t\theader_up Host {upstream_hostport}\n\t}\n", p.sdkAddr)
	switch name {
	case "plain", "plain2":
		return respond
	case "gated":
		return token + "\t}\n" + respond
	case "rules":
		return token + rules + "\t}\n" + respond
	case "body":
		return "\tvars /mcp* body {http.request.body}\n" + respond
	case "sdk":
		return proxy
	case "sdk-rules":
		return token + rules + "\t}\n" + proxy
	}
	panic("unknown site " + name)
}

// caddyProc is the running Caddy.
type caddyProc struct {
	cmd   *exec.Cmd
	ports map[string]int
	admin string // host:port of the admin endpoint; "" when off
}

func (c *caddyProc) url(site string) string {
	return fmt.Sprintf("http://127.0.0.1:%d/mcp", c.ports[site])
}

func (c *caddyProc) stop() {
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// startCaddy writes the Caddyfile into dir and starts Caddy with it; with
// admin set, the admin endpoint listens on a free loopback port (for CPU
// profiles).
func startCaddy(bin, dir string, admin bool, p siteParams) (*caddyProc, error) {
	ports, err := freePorts(len(siteNames) + 1)
	if err != nil {
		return nil, err
	}
	c := &caddyProc{ports: map[string]int{}}
	adminLine := "admin off"
	if admin {
		c.admin = fmt.Sprintf("127.0.0.1:%d", ports[len(siteNames)])
		adminLine = "admin " + c.admin
	}
	var b strings.Builder
	fmt.Fprintf(&b, "{\n\t%s\n\tauto_https off\n\tlog default {\n\t\tlevel ERROR\n\t}\n}\n", adminLine)
	for i, name := range siteNames {
		c.ports[name] = ports[i]
		fmt.Fprintf(&b, "# %s\nhttp://127.0.0.1:%d {\n%s}\n", name, ports[i], siteBody(name, p))
	}
	cfgPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	c.cmd = exec.Command(bin, "run", "--config", cfgPath, "--adapter", "caddyfile")
	c.cmd.Stderr = os.Stderr
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	return c, nil
}

// profile saves a CPU profile of Caddy over the next seconds to path.
func (c *caddyProc) profile(seconds int, path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds+30)*time.Second)
	defer cancel()
	u := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", c.admin, seconds)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func freePorts(n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
