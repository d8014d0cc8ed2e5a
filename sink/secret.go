package sink

import (
	"fmt"
	"os"
	"strings"
)

// Secrets (passwords, tokens, private keys' passphrases) never sit in a
// sink URL itself, where `ps`, shell history and logs would show them: a
// parameter that takes one names where to read it, "file:PATH" (the file's
// content, trailing newlines trimmed) or "env:NAME" (an environment
// variable of the server's). SecretRef is such a reference, parsed; Read
// reads it when the sink opens, so that a rotated file is read again at the
// next start.
type SecretRef struct {
	// File or Env, exactly one set.
	File, Env string
}

// IsZero reports whether no secret is referenced.
func (r SecretRef) IsZero() bool { return r.File == "" && r.Env == "" }

// String shows where the secret comes from, never the secret.
func (r SecretRef) String() string {
	switch {
	case r.File != "":
		return "file:" + r.File
	case r.Env != "":
		return "env:" + r.Env
	}
	return ""
}

// ParseSecretRef parses the value of parameter param: "file:PATH" or
// "env:NAME". Anything else is refused without echoing it (it may be the
// secret itself).
func ParseSecretRef(param, v string) (SecretRef, error) {
	switch {
	case strings.HasPrefix(v, "file:") && len(v) > len("file:"):
		return SecretRef{File: v[len("file:"):]}, nil
	case strings.HasPrefix(v, "env:") && len(v) > len("env:"):
		name := v[len("env:"):]
		for _, c := range name {
			if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
				return SecretRef{}, fmt.Errorf("%s: env:NAME wants a variable name (letters, digits, _)", param)
			}
		}
		return SecretRef{Env: name}, nil
	}
	return SecretRef{}, fmt.Errorf("%s: give where to read it, file:PATH or env:NAME (a secret itself never goes in a sink URL, which ps and logs show)", param)
}

// Read returns the secret. An empty secret is an error: it is never what
// was meant.
func (r SecretRef) Read() (string, error) {
	var v string
	switch {
	case r.File != "":
		b, err := os.ReadFile(r.File)
		if err != nil {
			return "", fmt.Errorf("can't read the secret in %s: %w", r.File, err)
		}
		v = strings.TrimRight(string(b), "\r\n")
	case r.Env != "":
		var ok bool
		if v, ok = os.LookupEnv(r.Env); !ok {
			return "", fmt.Errorf("the environment variable %s, which should hold a secret, is not set", r.Env)
		}
	default:
		return "", nil
	}
	if v == "" {
		return "", fmt.Errorf("the secret in %s is empty", r)
	}
	return v, nil
}
