package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// LoadDir reads every *.json file of dir in file-name order and returns
// the definitions of all of them, validated together. A file ending in
// .hcl is an error; other files and subdirectories are skipped with a
// warning. The error, if any, joins one *FieldError per problem, each
// naming its file (by base name) and field; nothing is returned then, so
// a caller reloading keeps what it runs.
func LoadDir(dir string, opts Options) (*Definitions, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read config dir: %w", err)
	}
	all := &Definitions{}
	var files []*Definitions
	var errs []error
	for _, e := range entries { // sorted by name
		name := e.Name()
		ext := strings.ToLower(filepath.Ext(name))
		switch {
		case e.IsDir():
			all.Warnings = append(all.Warnings, name+": skipped: a directory (config dirs are not read recursively)")
			continue
		case ext == ".hcl":
			errs = append(errs, &FieldError{File: name, Msg: "HCL is not supported: write the definitions as JSON"})
			continue
		case ext != ".json":
			all.Warnings = append(all.Warnings, name+": skipped: only *.json files are read")
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			errs = append(errs, &FieldError{File: name, Msg: fmt.Sprintf("read: %v", err)})
			continue
		}
		defs, fileErrs := parseFile(name, data, opts)
		errs = append(errs, fileErrs.errs...)
		files = append(files, defs)
	}
	if len(errs) == 0 {
		errs = crossCheck(files)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, d := range files {
		all.Services = append(all.Services, d.Services...)
		all.Checks = append(all.Checks, d.Checks...)
		all.Watches = append(all.Watches, d.Watches...)
		all.Warnings = append(all.Warnings, d.Warnings...)
	}
	return all, nil
}
