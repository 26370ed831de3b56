// Command gocompat decodes and re-encodes omac's state files with Go's encoding/json and
// gopkg.in/yaml.v3, using the field shapes the Go omac's files have (reference §2.1, §5.1,
// §5.2), so the Rust tests can check that the Go omac reads what omac writes and that
// omac writes what the Go omac would.
//
//	gocompat registry IN OUT   # json.Unmarshal, sort by name, json.MarshalIndent(2 spaces)
//	gocompat config IN OUT     # yaml.Unmarshal, yaml.Encoder with SetIndent(2)
//	gocompat meta IN           # yaml.Unmarshal of omac.yaml, printed as JSON
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"time"

	"gopkg.in/yaml.v3"
)

type registry struct {
	Version    int     `json:"version"`
	Registered []entry `json:"registered"`
}

type entry struct {
	Name                string    `json:"name"`
	Harness             string    `json:"harness,omitempty"`
	SkillDir            string    `json:"skill_dir"`
	BundleHash          string    `json:"bundle_hash"`
	RegisteredAt        time.Time `json:"registered_at"`
	DeclaredSecretNames []string  `json:"declared_secret_names,omitempty"`
	SkippedSecretNames  []string  `json:"skipped_secret_names,omitempty"`
	SkippedConfigFields []string  `json:"skipped_config_fields,omitempty"`
}

type store struct {
	Version  int                          `yaml:"version"`
	Skills   map[string]map[string]string `yaml:"skills"`
	Defaults map[string]map[string]string `yaml:"defaults,omitempty"`
}

type meta struct {
	Name         string   `yaml:"name"`
	Type         string   `yaml:"type"`
	Version      string   `yaml:"version"`
	Description  string   `yaml:"description"`
	Author       string   `yaml:"author"`
	Dependencies []string `yaml:"dependencies"`
	Sidecar      *struct {
		Command        []string `yaml:"command"`
		Mount          string   `yaml:"mount,omitempty"`
		EnvPassthrough []string `yaml:"env_passthrough,omitempty"`
		Secrets        []struct {
			Name           string `yaml:"name"`
			Description    string `yaml:"description,omitempty"`
			Required       *bool  `yaml:"required,omitempty"`
			Pattern        string `yaml:"pattern,omitempty"`
			DefaultFromEnv string `yaml:"default_from_env,omitempty"`
			Multiline      bool   `yaml:"multiline,omitempty"`
		} `yaml:"secrets,omitempty"`
		Config []struct {
			Name           string   `yaml:"name"`
			Description    string   `yaml:"description,omitempty"`
			Type           string   `yaml:"type,omitempty"`
			Required       *bool    `yaml:"required,omitempty"`
			Default        string   `yaml:"default,omitempty"`
			DefaultFromEnv string   `yaml:"default_from_env,omitempty"`
			Pattern        string   `yaml:"pattern,omitempty"`
			Choices        []string `yaml:"choices,omitempty"`
		} `yaml:"config,omitempty"`
		Health *struct {
			Path           string `yaml:"path,omitempty"`
			InitialDelayMS int    `yaml:"initial_delay_ms,omitempty"`
			TimeoutMS      int    `yaml:"timeout_ms,omitempty"`
			IntervalMS     int    `yaml:"interval_ms,omitempty"`
		} `yaml:"health,omitempty"`
		InstallScripts map[string]string `yaml:"install_scripts,omitempty"`
		Protocols      []string          `yaml:"protocols,omitempty"`
		Limits         *struct {
			MaxBodyBytes    int64 `yaml:"max_body_bytes,omitempty"`
			IdleTimeoutSecs int   `yaml:"idle_timeout_secs,omitempty"`
		} `yaml:"limits,omitempty"`
	} `yaml:"sidecar,omitempty"`
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gocompat:", err)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 3 {
		fail(fmt.Errorf("usage: gocompat registry|config|meta IN [OUT]"))
	}
	raw, err := os.ReadFile(os.Args[2])
	if err != nil {
		fail(err)
	}
	switch os.Args[1] {
	case "registry":
		var r registry
		if err := json.Unmarshal(raw, &r); err != nil {
			fail(err)
		}
		sort.SliceStable(r.Registered, func(i, j int) bool { return r.Registered[i].Name < r.Registered[j].Name })
		out, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			fail(err)
		}
		if err := os.WriteFile(os.Args[3], out, 0o600); err != nil {
			fail(err)
		}
	case "config":
		var s store
		if err := yaml.Unmarshal(raw, &s); err != nil {
			fail(err)
		}
		if s.Skills == nil {
			s.Skills = map[string]map[string]string{}
		}
		var buf bytes.Buffer
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(s); err != nil {
			fail(err)
		}
		if err := enc.Close(); err != nil {
			fail(err)
		}
		if err := os.WriteFile(os.Args[3], buf.Bytes(), 0o600); err != nil {
			fail(err)
		}
	case "meta":
		var m meta
		if err := yaml.Unmarshal(raw, &m); err != nil {
			fail(err)
		}
		out, err := json.Marshal(m)
		if err != nil {
			fail(err)
		}
		os.Stdout.Write(out)
	default:
		fail(fmt.Errorf("unknown mode %q", os.Args[1]))
	}
}
