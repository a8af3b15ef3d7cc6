//go:build tools

// Package tools pins github.com/yannh/redis-dump-go as a build dependency of this module.
package tools

import _ "github.com/yannh/redis-dump-go"
