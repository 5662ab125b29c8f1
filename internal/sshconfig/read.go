package sshconfig

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// maxIncludeDepth bounds Include nesting, as OpenSSH's READCONF_MAX_DEPTH.
const maxIncludeDepth = 16

// Query is what Host and Match blocks are matched against.
type Query struct {
	// Host is the host as the user typed it (Match originalhost).
	Host string
	// User is the remote user when the destination names one, else "".
	User string
	// LocalUser is the local login name (Match localuser).
	LocalUser string
	// Home is the user's home directory, for ~ in Include.
	Home string
}

// File is one ssh_config file to read.
type File struct {
	Path string
	// Dir is where its relative Include paths are: ~/.ssh for the user's
	// files (and -F), the system directory for the system's.
	Dir string
	// Required makes a missing file an error (-F); OpenSSH's default files
	// may be missing.
	Required bool
}

// Value is one value and the file:line it came from.
type Value struct {
	Args  []string
	Where string
}

// Options are the values that apply to a Query, by lower-case keyword.
type Options struct {
	// First holds the first value obtained for each keyword, which is the
	// one OpenSSH uses.
	First map[string]Value
	// IdentityFiles are all IdentityFile values, in order: they add up.
	IdentityFiles []Value
}

// Get returns the first argument of keyword's value.
func (o *Options) Get(keyword string) (string, bool) {
	v, ok := o.First[keyword]
	if !ok {
		return "", false
	}
	return v.Args[0], true
}

// Read reads the files in order (later files only fill in what earlier
// ones left unset) and returns the options that apply to q.
func Read(q Query, files ...File) (*Options, error) {
	r := &reader{q: q, o: &Options{First: map[string]Value{}}}
	for _, f := range files {
		if err := r.readFile(f.Path, f.Dir, 0, f.Required); err != nil {
			return nil, err
		}
	}
	return r.o, nil
}

// reader gathers the options that apply to one destination.
type reader struct {
	q        Query
	o        *Options
	applying bool
}

func (r *reader) readFile(path, dir string, depth int, required bool) error {
	if depth > maxIncludeDepth {
		return fmt.Errorf("ssh_config %s: Include nested more than %d deep", path, maxIncludeDepth)
	}
	f, err := os.Open(path)
	if err != nil {
		if !required && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("read ssh_config: %w", err)
	}
	defer f.Close()
	r.applying = true // each file starts outside any Host block
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		where := fmt.Sprintf("%s:%d", path, n)
		key, args, err := splitLine(sc.Text())
		if err != nil {
			return fmt.Errorf("ssh_config %s: %w", where, err)
		}
		switch key {
		case "":
			continue
		case "host":
			r.applying = HostMatches(r.q.Host, args)
			continue
		case "match":
			r.applying = r.matchApplies(args)
			continue
		}
		if !r.applying {
			continue
		}
		if len(args) == 0 {
			return fmt.Errorf("ssh_config %s: %s needs a value", where, key)
		}
		switch key {
		case "include":
			for _, pat := range args {
				if !filepath.IsAbs(pat) && !strings.HasPrefix(pat, "~") {
					pat = filepath.Join(dir, pat)
				}
				matches, _ := filepath.Glob(r.tilde(pat))
				for _, m := range matches {
					applying := r.applying
					if err := r.readFile(m, dir, depth+1, false); err != nil {
						return err
					}
					r.applying = applying
				}
			}
		case "identityfile":
			r.o.IdentityFiles = append(r.o.IdentityFiles, Value{args, where})
		default:
			if _, ok := r.o.First[key]; !ok {
				r.o.First[key] = Value{args, where}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read ssh_config %s: %w", path, err)
	}
	return nil
}

func (r *reader) tilde(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		return filepath.Join(r.q.Home, p[1:])
	}
	return p
}

// matchApplies evaluates the Match criteria cardshare can evaluate.
func (r *reader) matchApplies(args []string) bool {
	if len(args) == 1 && strings.EqualFold(args[0], "all") {
		return true
	}
	for i := 0; i < len(args); i++ {
		crit := strings.ToLower(args[i])
		negate := strings.HasPrefix(crit, "!")
		crit = strings.TrimPrefix(crit, "!")
		if i+1 >= len(args) {
			return false
		}
		i++
		var subject string
		switch crit {
		case "host":
			subject = r.q.Host
			if h, ok := r.o.Get("hostname"); ok {
				subject = strings.ReplaceAll(h, "%h", r.q.Host)
			}
		case "originalhost":
			subject = r.q.Host
		case "user":
			subject = r.q.User
			if u, ok := r.o.Get("user"); ok && subject == "" {
				subject = u
			}
		case "localuser":
			subject = r.q.LocalUser
		default:
			return false
		}
		if HostMatches(subject, strings.Split(args[i], ",")) == negate {
			return false
		}
	}
	return true
}

// HostMatches applies a Host pattern list: some pattern matches and no
// negated one does.
func HostMatches(host string, patterns []string) bool {
	ok := false
	for _, p := range patterns {
		if neg, found := strings.CutPrefix(p, "!"); found {
			if wildcard(strings.ToLower(neg), strings.ToLower(host)) {
				return false
			}
		} else if wildcard(strings.ToLower(p), strings.ToLower(host)) {
			ok = true
		}
	}
	return ok
}

// wildcard matches s against a pattern of * and ?, as OpenSSH's
// match_pattern.
func wildcard(p, s string) bool {
	for p != "" {
		switch p[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if wildcard(p[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
		default:
			if s == "" || s[0] != p[0] {
				return false
			}
		}
		p, s = p[1:], s[1:]
	}
	return s == ""
}

// splitLine splits an ssh_config line into its lower-case keyword
// and its arguments: "Key value", "Key=value", double-quoted arguments,
// comments from # at the start of a word.
func splitLine(line string) (string, []string, error) {
	var words []string
	var b strings.Builder
	in, quoted, eq := false, false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '"':
			quoted = false
		case quoted:
			b.WriteByte(c)
		case c == '"':
			quoted, in = true, true
		case c == '=' && !eq && (len(words) == 0 && in || len(words) == 1 && !in):
			// the one '=' between the keyword and its first argument
			eq = true
			if in {
				words, in = append(words, b.String()), false
				b.Reset()
			}
		case c == ' ' || c == '\t' || c == '\r':
			if in {
				words, in = append(words, b.String()), false
				b.Reset()
			}
		case c == '#' && !in:
			i = len(line)
		default:
			b.WriteByte(c)
			in = true
		}
	}
	if quoted {
		return "", nil, errors.New("unterminated quote")
	}
	if in {
		words = append(words, b.String())
	}
	if len(words) == 0 {
		return "", nil, nil
	}
	return strings.ToLower(words[0]), words[1:], nil
}
