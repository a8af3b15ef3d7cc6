//go:build tools

// Package tools pins github.com/restic/rest-server as a build dependency of this module.
package tools

import _ "github.com/restic/rest-server/cmd/rest-server"
